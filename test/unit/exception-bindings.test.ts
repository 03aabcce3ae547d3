// The default exception reaches every bundled linker rule: ldguard's own through their
// [[rule.exceptions_list]], Elastic's rule (seed, v1, current) through the exception_bindings
// option, so that its text stays as Elastic wrote it. A binding is checked like any option.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig } from '../../agent/src/config.js';
import { bundledRulePaths, bundledRulesDir, RULE_REVISIONS } from '../../shared/paths.js';
import { DEFAULT_EXCEPTION_LIST_ID, loadRuleSet, SEED_RULE_ID } from '../../shared/rule.js';
import { tempDir } from '../helpers/temp.js';

describe('the default exception', () => {
  it.each(RULE_REVISIONS)('is bound to every bundled rule, Elastic\'s by configuration (revision %s)', (revision) => {
    const { rules, warnings } = loadRuleSet(bundledRulePaths(revision), DEFAULTS.exceptionBindings);
    expect(warnings).toEqual([]);
    expect(rules.length).toBeGreaterThanOrEqual(6);
    const linker = rules.filter((r) => r.name.startsWith('Dynamic Linker'));
    // Not the package database rule, which spares no write by exception, nor the view rule: a mount
    // over a library directory is no package's doing.
    expect(linker.length).toBe(rules.length - 2);
    for (const r of linker) expect([r.ruleId, r.exceptions.map((l) => l.listId)]).toEqual([r.ruleId, [DEFAULT_EXCEPTION_LIST_ID]]);
    expect(rules.find((r) => r.name.startsWith('Package Database'))!.exceptions).toEqual([]);
    const seed = rules.find((r) => r.ruleId === SEED_RULE_ID)!;
    expect(seed.exceptionsList).toEqual([]); // not from its text
    expect(readFileSync(seed.file, 'utf8')).not.toContain('exceptions_list');
  });

  it('is not bound without the binding, and a binding to a list not loaded warns', () => {
    const seedOnly = join(bundledRulesDir(), 'linux');
    expect(loadRuleSet([seedOnly]).rules[0]!.exceptions).toEqual([]);
    const { rules, warnings } = loadRuleSet([seedOnly], DEFAULTS.exceptionBindings);
    expect(rules[0]!.exceptions).toEqual([]);
    expect(warnings).toEqual([expect.stringContaining(`no .ndjson file in the rules path defines list_id ${DEFAULT_EXCEPTION_LIST_ID}`)]);
  });

  it('reads exception_bindings from the config file, refusing what is not RULE_ID=LIST_ID', () => {
    const file = join(tempDir('ldg-bind-'), 'agent.toml');
    writeFileSync(file, 'exception_bindings = []\n');
    expect(loadConfig(file, {}).exceptionBindings).toEqual([]);
    writeFileSync(file, `exception_bindings = ["${SEED_RULE_ID}=my-list"]\n`);
    expect(loadConfig(file, {}).exceptionBindings).toEqual([{ ruleId: SEED_RULE_ID, listId: 'my-list' }]);
    writeFileSync(file, 'exception_bindings = ["my-list"]\n');
    expect(() => loadConfig(file, {})).toThrowError(/LDG_ERR_CONFIG[\s\S]*option exception_bindings: expected a list of "RULE_ID=LIST_ID" strings/);
  });
});

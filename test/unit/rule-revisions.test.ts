// Elastic's upstream revisions are data, kept byte for byte, and run unchanged; the agent's
// rule_revision picks one at a time.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/src/config.js';
import { bundledRulePaths, bundledRulesDir, findRepoRoot } from '../../shared/paths.js';
import { loadRuleFile, loadRules } from '../../shared/rule.js';
import { tempDir } from '../helpers/temp.js';

const root = findRepoRoot();
const UPSTREAM = join(root, 'shared/rules-upstream');
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const events = readFileSync(join(root, 'test/fixtures/events/ld_so_creation.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: { id: string } });
const expected = JSON.parse(readFileSync(join(root, 'test/fixtures/events/ld_so_creation.expected.json'), 'utf8')) as Record<'seed' | 'v1' | 'current', string[]>;

describe.each(['v1', 'current'] as const)('upstream revision %s', (rev) => {
  const file = join(UPSTREAM, `defense_evasion_ld_so_creation.${rev}.toml`);
  const source = parseToml(readFileSync(file.replace(/\.toml$/, '.source'), 'utf8')) as { sha256: string; version_lock: number; repository: string };

  it('is Elastic\'s file byte for byte (sha256 as its .source records)', () => {
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(source.sha256);
    expect(source.repository).toBe('elastic/detection-rules');
  });

  it('loads unchanged, with the version its version lock gives', () => {
    const rule = loadRuleFile(file);
    expect(rule.ruleId).toBe(SEED_ID);
    expect(rule.version).toBe(source.version_lock);
  });

  it('fires and skips on the fixture events as its query says', () => {
    const rule = loadRuleFile(file);
    expect(events.filter((e) => rule.query.match(e)).map((e) => e.event.id)).toEqual(expected[rev]);
  });
});

describe('rule_revision', () => {
  const ruleFiles = (cfg: { rules: readonly string[] }) => loadRules(cfg.rules).map((r) => [r.ruleId, r.file.slice(root.length + 1)]);

  it('seed (the default) runs the seed; v1 and current replace it, keeping ldguard\'s own rules', () => {
    const seed = ruleFiles(loadConfig(undefined, {}));
    expect(seed.find(([id]) => id === SEED_ID)?.[1]).toBe('shared/rules/linux/defense_evasion_ld_so_creation.toml');
    for (const rev of ['v1', 'current'] as const) {
      const got = ruleFiles(loadConfig(undefined, { ruleRevision: rev }));
      expect(got.filter(([id]) => id === SEED_ID)).toEqual([[SEED_ID, `shared/rules-upstream/defense_evasion_ld_so_creation.${rev}.toml`]]);
      expect(got.filter(([id]) => id !== SEED_ID)).toEqual(seed.filter(([id]) => id !== SEED_ID));
    }
  });

  it('is read from the config file', () => {
    const dir = tempDir('ldg-rev-');
    writeFileSync(join(dir, 'agent.toml'), 'rule_revision = "current"\n');
    expect(loadConfig(join(dir, 'agent.toml'), {}).rules).toEqual(bundledRulePaths('current'));
  });

  it('refuses an unknown revision, and a revision beside hand-given rules', () => {
    expect(() => loadConfig(undefined, { ruleRevision: 'v2' })).toThrow(/option rule_revision: expected "seed", "v1", "current"/);
    expect(() => loadConfig(undefined, { ruleRevision: 'current', rules: [bundledRulesDir()] })).toThrow(/rule_revision selects among the bundled rules, but rules is set too/);
  });

  it('never loads two revisions at once: the loader refuses the duplicate rule_id', () => {
    expect(() => loadRules([bundledRulesDir(), join(UPSTREAM, 'defense_evasion_ld_so_creation.current.toml')])).toThrow(/LDG_ERR_RULE_DUPLICATE: .*set rule_revision/);
  });
});

// A rule field that no event can carry switches its rule off in silence: the loader refuses it
// (file:line:column, and the field it probably meant); a valid field the agent never sets loads,
// with a warning; `?field` is never refused. Also: interval = "0s" is refused.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';
import { parseRule } from '../../shared/rule.js';
import { fieldsNotSet, KNOWN_FIELDS, nearestField } from '../../shared/rule-fields.js';
import { refusalOf } from '../helpers/rules.js';

const seedText = readFileSync(`${bundledRulesDir()}/linux/defense_evasion_ld_so_creation.toml`, 'utf8');
// Elastic's current revision, byte for byte (shared/rules-upstream/).
const revision = readFileSync(`${findRepoRoot()}/shared/rules-upstream/defense_evasion_ld_so_creation.current.toml`, 'utf8');

const refusal = (text: string) => refusalOf(text);

describe('rule fields', () => {
  it('refuses a field in neither ECS nor Elastic Defend, at its line and column, naming the nearest field', () => {
    const text = seedText.replace('file.path like', 'file.pth like');
    const e = refusal(text);
    const line = text.split('\n').findIndex((l) => l.includes('file.pth like')) + 1;
    expect(e.code).toBe('LDG_ERR_RULE_INVALID');
    expect(e.problems).toEqual([{ line, column: text.split('\n')[line - 1]!.indexOf('file.pth') + 1, message: expect.stringContaining('unknown field file.pth') }]);
    expect(e.message).toContain(`bad.toml:${line}:`);
    expect(e.message).toContain('did you mean file.path?');
  });

  it('names the nearest field for typos in nested and Elastic Defend fields', () => {
    expect(nearestField('process.parnt.name')).toBe('process.parent.name');
    expect(nearestField('file.Ext.orignal.path')).toBe('file.Ext.original.path');
    expect(nearestField('proces.executable')).toBe('process.executable');
  });

  it('never refuses ?field (EQL optional field), even one unknown', () => {
    const rule = parseRule(seedText.replace('file.path like', '?file.pth like'), 'ok.toml');
    expect(fieldsNotSet(rule.ast)).toContain('file.pth');
    expect(() => parseRule(seedText.replace('file.path like', '?file.path like'), 'ok.toml')).not.toThrow();
  });

  it('loads a valid field the agent never sets, and lists it for the warning', () => {
    const rule = parseRule(seedText.replace('file.path like', 'process.Ext.ancestry != null and file.path like'), 'ok.toml');
    expect(fieldsNotSet(rule.ast)).toEqual(['process.Ext.ancestry']);
  });

  it('knows every field of the seed and of the later upstream revision, and the agent sets them all', () => {
    for (const text of [seedText, revision]) expect(fieldsNotSet(parseRule(text, 'up.toml').ast)).toEqual([]);
    for (const f of ['file.Ext.original.path', 'process.Ext.ancestry', 'process.parent.executable', 'host.os.type', 'user.id']) expect(KNOWN_FIELDS.has(f), f).toBe(true);
  });

  it('refuses interval = "0s"', () => {
    const text = seedText.replace('interval = "5m"', 'interval = "0s"');
    const e = refusal(text);
    expect(e.problems).toEqual([{ line: text.split('\n').indexOf('interval = "0s"') + 1, column: 1, message: expect.stringContaining('longer than zero') }]);
  });
});

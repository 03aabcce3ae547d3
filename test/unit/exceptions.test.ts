// The exception matcher and Kibana's export format, on data: a realistic export (fixture) and
// small hand-made lists for each entry type, operator, nesting, expiry, missing fields and refusals.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExceptionListError, parseExceptionLists } from '../../shared/exceptions/list.js';
import { exceptedBy } from '../../shared/exceptions/match.js';
import { loadRuleSet } from '../../shared/rule.js';
import { findRepoRoot } from '../../shared/paths.js';

const FIXTURE = join(findRepoRoot(), 'test/fixtures/exceptions/ld_so_package_managers.ndjson');
const NOW = Date.parse('2026-09-10T00:00:00Z');

const list = { _version: 'WzEsMV0=', created_at: '2026-09-02T08:14:51.603Z', created_by: 'a', description: 'd', id: 'x', immutable: false, list_id: 'L', name: 'L', namespace_type: 'single', os_types: [], tags: [], tie_breaker_id: 't', type: 'detection', updated_at: '2026-09-02T08:14:51.603Z', updated_by: 'a', version: 1 };
function exportOf(items: Array<Record<string, unknown>>, listDoc: Record<string, unknown> = list): string {
  const full = items.map((it, i) => ({ _version: 'v', comments: [], created_at: 'c', created_by: 'a', description: 'd', id: `id${i}`, item_id: `item-${i}`, list_id: 'L', name: `n${i}`, namespace_type: 'single', os_types: ['linux'], tags: [], tie_breaker_id: 't', type: 'simple', updated_at: 'u', updated_by: 'a', ...it }));
  const summary = { exported_exception_list_count: 1, exported_exception_list_item_count: full.length, missing_exception_list_item_count: 0, missing_exception_list_items: [], missing_exception_lists: [], missing_exception_lists_count: 0 };
  return [listDoc, ...full, summary].map((d) => JSON.stringify(d)).join('\n') + '\n';
}
/** The item_id that excepts doc, or null, under a list of one item with these entries. */
function verdict(entries: unknown[], doc: unknown, extra: Record<string, unknown> = {}): string | null {
  const { lists } = parseExceptionLists(exportOf([{ entries, ...extra }]), 'mem.ndjson', NOW);
  return exceptedBy(lists, doc, NOW)?.item_id ?? null;
}
const ev = (process: Record<string, unknown>, more: Record<string, unknown> = {}) => ({ file: { path: '/lib64/ld-linux-x86-64.so.2' }, process, user: { id: '0' }, ...more });

describe('Kibana export fixture', () => {
  const { lists, warnings } = parseExceptionLists(readFileSync(FIXTURE, 'utf8'), FIXTURE, NOW);

  it('loads as exported: one list, every item', () => {
    expect(lists.map((l) => [l.listId, l.namespaceType, l.items.length])).toEqual([['ld-so-package-managers', 'single', 7]]);
    expect(warnings).toEqual([]);
  });

  it.each([
    ['match', ev({ executable: '/usr/bin/dpkg', name: 'dpkg' }), 'dpkg-by-path'],
    ['match_any', ev({ executable: '/usr/libexec/dnf5' }), 'rpm-family'],
    ['wildcard and a second entry', ev({ executable: '/usr/lib/podman/buildah' }), 'buildah-in-lib'],
    ['excluded on a missing field matches (must_not)', ev({ executable: '/sbin/apk' }), 'apk-not-from-tmp'],
    ['nested: one element matches both', ev({ executable: '/opt/vendor/bin/patcher', Ext: { code_signature: [{ subject_name: 'Other', trusted: true }, { subject_name: 'Vendor Ltd', trusted: true }] } }), 'signed-vendor-tool'],
    ['before expire_time', ev({ executable: '/usr/local/bin/rollout' }), 'maintenance-window'],
    ['excluded exists: no tty', ev({ executable: '/opt/puppetlabs/puppet/bin/puppet' }), 'no-tty-puppet'],
  ])('%s', (_, doc, item) => {
    expect(exceptedBy(lists, doc, NOW)).toEqual({ list_id: 'ld-so-package-managers', item_id: item });
  });

  it.each([
    ['a name is not an executable', ev({ executable: '/tmp/dpkg', name: 'dpkg' })],
    ['match is case-sensitive', ev({ executable: '/USR/BIN/DPKG' })],
    ['wildcard is case-sensitive', ev({ executable: '/usr/lib/podman/Buildah' })],
    ['wildcard needs the other entry too (user.id)', { ...ev({ executable: '/usr/lib/podman/buildah' }), user: { id: '1000' } }],
    ['excluded entry fails when the value is there', ev({ executable: '/sbin/apk', parent: { executable: '/tmp/x/sh' } })],
    ['nested needs one element to match all its entries', ev({ executable: '/opt/vendor/bin/patcher', Ext: { code_signature: [{ subject_name: 'Other', trusted: true }, { subject_name: 'Vendor Ltd', trusted: false }] } })],
    ['nested on a missing field', ev({ executable: '/opt/vendor/bin/patcher' })],
    ['excluded exists fails when the field is there', ev({ executable: '/opt/puppetlabs/puppet/bin/puppet', tty: { char_device: { major: 136 } } })],
  ])('not excepted: %s', (_, doc) => {
    expect(exceptedBy(lists, doc, NOW)).toBeNull();
  });

  it('skips an item past its expire_time', () => {
    const doc = ev({ executable: '/usr/local/bin/rollout' });
    expect(exceptedBy(lists, doc, Date.parse('2026-09-29T23:59:59Z'))?.item_id).toBe('maintenance-window');
    expect(exceptedBy(lists, doc, Date.parse('2026-09-30T00:00:01Z'))).toBeNull();
  });
});

describe('entry semantics', () => {
  const exe = (value: string, operator = 'included') => [{ field: 'process.executable', operator, type: 'match', value }];

  it('excluded match: true on a missing field, false when equal, true when different', () => {
    expect(verdict(exe('/usr/bin/dpkg', 'excluded'), { process: {} })).toBe('item-0');
    expect(verdict(exe('/usr/bin/dpkg', 'excluded'), ev({ executable: '/usr/bin/dpkg' }))).toBeNull();
    expect(verdict(exe('/usr/bin/dpkg', 'excluded'), ev({ executable: '/usr/bin/cp' }))).toBe('item-0');
  });

  it('included match on a missing field does not match', () => {
    expect(verdict(exe('/usr/bin/dpkg'), { process: { pid: 1 } })).toBeNull();
  });

  it('match_any excluded: none of the values', () => {
    const e = [{ field: 'process.executable', operator: 'excluded', type: 'match_any', value: ['/a', '/b'] }];
    expect(verdict(e, ev({ executable: '/a' }))).toBeNull();
    expect(verdict(e, ev({ executable: '/c' }))).toBe('item-0');
  });

  it('wildcard: * crosses /, ? is one character, the whole value must match', () => {
    const w = (value: string) => [{ field: 'process.executable', operator: 'included', type: 'wildcard', value }];
    expect(verdict(w('/usr/*'), ev({ executable: '/usr/lib/x/y' }))).toBe('item-0');
    expect(verdict(w('/usr/bin/python3.1?'), ev({ executable: '/usr/bin/python3.11' }))).toBe('item-0');
    expect(verdict(w('/usr/bin/python3.1?'), ev({ executable: '/usr/bin/python3.111' }))).toBeNull();
    expect(verdict(w('bin/dpkg'), ev({ executable: '/usr/bin/dpkg' }))).toBeNull();
  });

  it('exists: a null value does not exist; an object does', () => {
    const e = [{ field: 'process.parent', operator: 'included', type: 'exists' }];
    expect(verdict(e, ev({ parent: null }))).toBeNull();
    expect(verdict(e, ev({ parent: { pid: 1 } }))).toBe('item-0');
  });

  it('multi-valued fields match when any value does; numbers compare as their text', () => {
    expect(verdict([{ field: 'event.type', operator: 'included', type: 'match', value: 'creation' }], { event: { type: ['change', 'creation'] } })).toBe('item-0');
    expect(verdict([{ field: 'process.pid', operator: 'included', type: 'match', value: '42' }], ev({ pid: 42 }))).toBe('item-0');
  });

  it('reads flattened keys ("process.executable") as Elasticsearch does', () => {
    expect(verdict(exe('/usr/bin/dpkg'), { 'process.executable': '/usr/bin/dpkg' })).toBe('item-0');
  });

  it('an item needs all its entries; a list needs any item', () => {
    const { lists } = parseExceptionLists(
      exportOf([{ entries: [...exe('/x'), { field: 'user.id', operator: 'included', type: 'match', value: '0' }] }, { entries: exe('/y') }]),
      'mem.ndjson',
    );
    expect(exceptedBy(lists, ev({ executable: '/x' }), NOW)?.item_id).toBe('item-0');
    expect(exceptedBy(lists, { ...ev({ executable: '/x' }), user: { id: '1' } }, NOW)).toBeNull();
    expect(exceptedBy(lists, ev({ executable: '/y' }), NOW)?.item_id).toBe('item-1');
  });

  it('nested entries with excluded: the element must lack the value', () => {
    const e = [{ field: 'process.Ext.code_signature', type: 'nested', entries: [{ field: 'trusted', operator: 'excluded', type: 'match', value: 'false' }] }];
    expect(verdict(e, ev({ Ext: { code_signature: [{ trusted: false }] } }))).toBeNull();
    expect(verdict(e, ev({ Ext: { code_signature: [{ subject_name: 's' }] } }))).toBe('item-0');
  });
});

describe('refusals and errors name the item_id and file:line', () => {
  const problemOf = (text: string): string => {
    try {
      parseExceptionLists(text, 'x.ndjson', NOW);
    } catch (err) {
      expect(err).toBeInstanceOf(ExceptionListError);
      return (err as Error).message;
    }
    throw new Error('expected the file to be refused');
  };

  it('refuses type "list" (value lists are not exported)', () => {
    const msg = problemOf(exportOf([{ item_id: 'uses-a-list', entries: [{ field: 'process.executable', operator: 'included', type: 'list', list: { id: 'exes', type: 'keyword' } }] }]));
    expect(msg).toMatch(/^LDG_ERR_EXCEPTION_INVALID: /);
    expect(msg).toContain('x.ndjson:2: item_id "uses-a-list": entries[0]: type "list"');
    expect(msg).toContain('match_any');
  });

  it('collects every problem, each with its item_id and line', () => {
    const msg = problemOf(
      exportOf([
        { item_id: 'bad-op', entries: [{ field: 'process.executable', operator: 'is', type: 'match', value: '/x' }] },
        { item_id: 'bad-expiry', expire_time: 'next tuesday', entries: [{ field: 'process.executable', operator: 'included', type: 'match', value: '/x' }] },
        { item_id: 'nested-wildcard', entries: [{ field: 'a', type: 'nested', entries: [{ field: 'b', operator: 'included', type: 'wildcard', value: '*' }] }] },
        { item_id: 'empty', entries: [] },
      ]),
    );
    expect(msg).toContain('x.ndjson:2: item_id "bad-op": entries[0].operator');
    expect(msg).toContain('x.ndjson:3: item_id "bad-expiry": expire_time');
    expect(msg).toContain('x.ndjson:4: item_id "nested-wildcard": entries[0].entries[0].type');
    expect(msg).toContain('x.ndjson:5: item_id "empty": entries');
  });

  it('refuses an export whose summary counts more items than it holds (truncated)', () => {
    const text = exportOf([{ entries: [{ field: 'process.executable', operator: 'included', type: 'match', value: '/x' }] }]);
    const lines = text.trim().split('\n');
    const summary = JSON.parse(lines[2]!);
    summary.exported_exception_list_item_count = 5;
    expect(problemOf([lines[0], lines[1], JSON.stringify(summary)].join('\n'))).toContain('x.ndjson:3: the export summary counts 5 item(s) but the file holds 1');
  });

  it('refuses an Endpoint list and an item of another list', () => {
    expect(problemOf(exportOf([], { ...list, type: 'endpoint', list_id: 'endpoint_list' }))).toContain('enforced by Elastic Defend');
    expect(problemOf(exportOf([{ item_id: 'stray', list_id: 'other', entries: [{ field: 'f', operator: 'included', type: 'exists' }] }]))).toContain('item_id "stray": list_id "other" names no list');
  });

  it('refuses a line that is not JSON, naming it', () => {
    expect(problemOf(exportOf([]).replace('\n', '\n{oops\n'))).toContain('x.ndjson:2: not JSON');
  });

  it('warns on process.name (the comm hole), naming the item', () => {
    const { warnings } = parseExceptionLists(exportOf([{ item_id: 'by-name', entries: [{ field: 'process.name', operator: 'included', type: 'match', value: 'dnf' }] }]), 'x.ndjson', NOW);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('x.ndjson:2: item_id "by-name"');
    expect(warnings[0]).toContain('process.executable');
  });
});

describe('binding lists to rules (exceptions_list)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const seed = join(findRepoRoot(), 'shared/rules/linux/defense_evasion_ld_so_creation.toml');
  function rulesDir(refs: string): string {
    const d = mkdtempSync(join(tmpdir(), 'ldg-exc-'));
    dirs.push(d);
    const text = `${readFileSync(seed, 'utf8')}\n${refs}`; // an array of tables may come last, as detection-rules writes it
    writeFileSync(join(d, 'rule.toml'), text);
    return d;
  }
  const ref = (listId: string, ns = 'single') => `[[rule.exceptions_list]]\nid = "8e4a1f30-69a2-11f1-9c1b-2b5f0e3d7a11"\nlist_id = "${listId}"\nnamespace_type = "${ns}"\ntype = "detection"\n`;

  it('binds a list from an .ndjson beside the rule by list_id', () => {
    const d = rulesDir(ref('ld-so-package-managers'));
    cpSync(FIXTURE, join(d, 'lists.ndjson'));
    const { rules, warnings } = loadRuleSet([d]);
    expect(rules[0]!.exceptions.map((l) => l.listId)).toEqual(['ld-so-package-managers']);
    expect(warnings.filter((w) => !w.includes('expired'))).toEqual([]);
  });

  it('refuses a reference to a list that is not there', () => {
    const d = rulesDir(ref('nope'));
    expect(() => loadRuleSet([d])).toThrow(/LDG_ERR_EXCEPTION_LIST_MISSING: .*list_id nope/);
  });

  it('refuses a reference whose namespace_type differs', () => {
    const d = rulesDir(ref('ld-so-package-managers', 'agnostic'));
    cpSync(FIXTURE, join(d, 'lists.ndjson'));
    expect(() => loadRuleSet([d])).toThrow(/LDG_ERR_EXCEPTION_LIST_MISSING/);
  });

  it('warns about a list no rule names', () => {
    const d = rulesDir('');
    cpSync(FIXTURE, join(d, 'lists.ndjson'));
    expect(loadRuleSet([d]).warnings.join('\n')).toContain('named by no rule');
  });

  it('refuses the same list_id in two files', () => {
    const d = rulesDir(ref('ld-so-package-managers'));
    cpSync(FIXTURE, join(d, 'a.ndjson'));
    cpSync(FIXTURE, join(d, 'b.ndjson'));
    expect(() => loadRuleSet([d])).toThrow(/LDG_ERR_EXCEPTION_DUPLICATE/);
  });
});

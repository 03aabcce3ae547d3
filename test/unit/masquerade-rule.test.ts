// The masquerade rule's names keep up with the upstream exclusions: every program either revision
// of Elastic's rule spares by name (v1's process.name list, the basenames of current's literal
// executables) must be a name the rule compares, both with comm and with the executable's basename.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_MANAGER_NAMES } from '../../agent/src/enrich/package/managers.js';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';

const rule = readFileSync(join(bundledRulesDir(), 'ldguard/ldguard_ld_so_package_manager_masquerade.toml'), 'utf8');
const query = /query = '''([\s\S]*?)'''/.exec(rule)![1]!;
const list = (re: RegExp, text: string) => [...(re.exec(text)?.[1] ?? '').matchAll(/"([^"]*)"/g)].map((m) => m[1]!);

/** Names the upstream revisions exclude: literal process.name values and executable basenames. */
function upstreamNames(): Set<string> {
  const dir = join(findRepoRoot(), 'shared/rules-upstream');
  const out = new Set<string>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.toml'))) {
    const q = /query = '''([\s\S]*?)'''/.exec(readFileSync(join(dir, f), 'utf8'))![1]!;
    for (const n of list(/process\.name in \(([^)]*)\)/, q)) out.add(n);
    for (const exe of list(/process\.executable in \(([^)]*)\)/, q)) {
      // /proc/self/exe and /dev/fd/N name no program: their basenames ("exe", "3") are no manager's.
      if (exe.startsWith('/proc/') || exe.startsWith('/dev/')) continue;
      out.add(exe.slice(exe.lastIndexOf('/') + 1));
    }
  }
  return out;
}

describe('masquerade rule names', () => {
  const names = list(/process\.name in \(([^)]*)\)/, query);
  const basenames = list(/process\.executable like \(([^)]*)\)/, query).map((p) => p.replace(/^\*\//, ''));

  it('covers every name the upstream revisions exclude, plus zypper and packagekitd', () => {
    const want = [...upstreamNames(), 'zypper', 'packagekitd'];
    expect(want.length).toBeGreaterThan(10);
    for (const n of want) expect(names, n).toContain(n);
  });

  it('compares the same names with the executable basename, each within comm\'s 15 characters', () => {
    expect([...basenames].sort()).toEqual([...names].sort());
    for (const n of names) expect(n.length, n).toBeLessThanOrEqual(15);
  });

  it('names exactly the writers the agent judges against their package database (PACKAGE_MANAGER_NAMES)', () => {
    expect([...names].sort()).toEqual([...PACKAGE_MANAGER_NAMES].sort());
  });
});

describe('the package manager write rule', () => {
  const pmQuery = /query = '''([\s\S]*?)'''/.exec(readFileSync(join(bundledRulesDir(), 'ldguard/ldguard_ld_so_package_manager_write.toml'), 'utf8'))![1]!;
  const seed = /query = '''([\s\S]*?)'''/.exec(readFileSync(join(bundledRulesDir(), 'linux/defense_evasion_ld_so_creation.toml'), 'utf8'))![1]!;

  it('names exactly the writers Elastic\'s rule spares by name, by comm and by executable basename', () => {
    const spared = list(/process\.name in \(([^)]*)\)/, seed);
    expect(spared.length).toBeGreaterThan(3);
    expect(list(/process\.name in \(([^)]*)\)/, pmQuery).sort()).toEqual([...spared].sort());
    expect(list(/process\.executable like \(([^)]*)\)/, pmQuery).map((p) => p.replace(/^\*\//, '')).sort()).toEqual([...spared].sort());
  });

  it('is the masquerade rule\'s complement: it fires only on a verified package manager', () => {
    expect(pmQuery).toContain('ldguard.package.verdict == "verified" and ldguard.package.role == "package_manager"');
    expect(query).toContain('not (ldguard.package.verdict == "verified" and ldguard.package.role == "package_manager")');
  });
});

// The view rule (mounts and replaced directories, agent/src/mounts.ts) is data like any rule: it
// must name every directory the agent watches, or a mount over one would be seen and re-marked but
// never alerted; and it must fire on the agent's view changes only, never on a file event.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../agent/src/config.js';
import { pathMatcher } from '../../agent/src/known-files.js';
import { namePrefixes, ruleDirectories } from '../../agent/src/prefilter.js';
import { bundledRulesDir } from '../../shared/paths.js';
import { loadRules } from '../../shared/rule.js';

const rules = loadRules([bundledRulesDir()]);
const view = rules.find((r) => r.file.endsWith(join('ldguard', 'ldguard_lib_dir_view_changed.toml')))!;

const event = (action: string, path: string, type: 'change' | 'creation' = 'change') => ({
  event: { category: ['file'], type: [type], action },
  file: { path, name: path.slice(path.lastIndexOf('/') + 1), directory: path.slice(0, path.lastIndexOf('/')) || '/' },
  process: {},
  host: { os: { type: 'linux' } },
  ldguard: { view_change: { id: 'x' } },
});

describe('the view rule', () => {
  it('names every directory the agent watches by default or because a rule names it, and their parents', () => {
    expect(view).toBeDefined();
    const dirs = new Set([...DEFAULTS.watch, ...ruleDirectories(rules)]);
    expect(dirs.size).toBeGreaterThan(4);
    for (const d of dirs) {
      expect(view.query.match(event('mounted', d)), d).toBe(true);
      for (let p = d.slice(0, d.lastIndexOf('/')) || '/'; ; p = p.slice(0, p.lastIndexOf('/')) || '/') {
        expect(view.query.match(event('mounted', p)), `${p}, parent of ${d}`).toBe(true);
        if (p === '/') break;
      }
    }
  });

  it('fires on each of the agent\'s view actions over a loader, and on a multiarch loader', () => {
    for (const action of ['mounted', 'unmounted', 'mount_changed', 'directory_replaced']) {
      expect(view.query.match(event(action, '/usr/lib64/ld-linux-x86-64.so.2')), action).toBe(true);
    }
    expect(view.query.match(event('mounted', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'))).toBe(true);
  });

  it('does not fire on a file event, on a library that is no loader, or on a path no one watches', () => {
    expect(view.query.match(event('creation', '/usr/lib64/ld-linux-x86-64.so.2', 'creation'))).toBe(false);
    expect(view.query.match(event('rename', '/usr/lib64/ld-linux-x86-64.so.2'))).toBe(false);
    expect(view.query.match(event('mounted', '/usr/lib/x86_64-linux-gnu/libc.so.6'))).toBe(false);
    expect(view.query.match(event('mounted', '/usr/share'))).toBe(false);
  });

  it('changes neither the kernel name filter nor the baseline the other rules give (the in-place rule\'s /usr/lib64/ld64.so.2 included)', () => {
    const others = rules.filter((r) => r !== view);
    const dirs = [...DEFAULTS.watch, ...ruleDirectories(rules)];
    expect(namePrefixes(rules, dirs)).toEqual(namePrefixes(others, dirs));
    const all = pathMatcher(rules)!;
    const without = pathMatcher(others)!;
    const samples = ['/usr/lib64/ld64.so.2', '/usr/lib64/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib64', '/usr/lib/ld-linux-x/evil.so'];
    expect(samples.map(all)).toEqual(samples.map(without));
    expect(all('/usr/lib64/ld64.so.2')).toBe(true);
  });
});

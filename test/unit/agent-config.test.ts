import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/src/config.js';
import { pathMatcher } from '../../agent/src/known-files.js';
import { namePrefixes, ruleDirectories } from '../../agent/src/prefilter.js';
import { resolveDirInRoot, resolveWatchDirs } from '../../agent/src/watch-dirs.js';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';
import { loadRules, parseRule } from '../../shared/rule.js';
import { tempDir } from '../helpers/temp.js';

const tmp = () => tempDir('ldg-unit-');

describe('watched directories are resolved the way the host inside --root resolves them', () => {
  it('merged /usr: /lib and /usr/lib are one directory, reported under its real host path', () => {
    const root = tmp();
    mkdirSync(join(root, 'usr/lib'), { recursive: true });
    symlinkSync('usr/lib', join(root, 'lib'));
    const { dirs, missing } = resolveWatchDirs(root, ['/lib', '/lib64', '/usr/lib']);
    expect(missing).toEqual(['/lib64']);
    expect(dirs).toHaveLength(1);
    expect(dirs[0]).toMatchObject({ host: '/usr/lib', aliases: ['/lib', '/usr/lib'] });
  });

  it('an absolute symlink points inside the root, never at the agent\'s own filesystem', () => {
    const root = tmp();
    mkdirSync(join(root, 'usr/lib64'), { recursive: true });
    symlinkSync('/usr/lib64', join(root, 'lib64'));
    expect(resolveDirInRoot(root, '/lib64')).toBe(join(root, 'usr/lib64'));
    symlinkSync('../../../../../../usr/lib64', join(root, 'up'));
    expect(resolveDirInRoot(root, '/up')).toBe(join(root, 'usr/lib64')); // .. stops at the root
  });

  it('a symlink loop resolves to nothing rather than hanging', () => {
    const root = tmp();
    symlinkSync('b', join(root, 'a'));
    symlinkSync('a', join(root, 'b'));
    expect(resolveDirInRoot(root, '/a')).toBeNull();
  });
});

describe('the kernel pre-filter is derived from the rules', () => {
  const rules = loadRules([bundledRulesDir()]);

  it('the seed rule needs only names starting ld-linux in the four directories', () => {
    expect(namePrefixes(rules.filter((r) => r.file.includes('/linux/')), ['/lib', '/lib64', '/usr/lib', '/usr/lib64'])).toEqual(['ld-linux']);
  });

  it('the multiarch rule adds its file.name prefixes, and its file.directory values to the watched directories', () => {
    expect(namePrefixes(rules, ['/lib', '/lib64', '/usr/lib', '/usr/lib64', '/usr/lib/x86_64-linux-gnu'])).toEqual(['ld-linux', 'ld64.so']);
    const dirs = ruleDirectories(rules);
    expect(dirs).toContain('/usr/lib/x86_64-linux-gnu');
    expect(dirs).toContain('/lib/aarch64-linux-gnu');
    // The in-place rule names the seed's four directories too (already watched by default).
    expect(dirs.every((d) => /^\/(usr\/)?lib\/[a-z0-9_]+-linux-gnu[a-z0-9]*$/.test(d) || ['/lib', '/lib64', '/usr/lib', '/usr/lib64'].includes(d))).toBe(true);
  });

  it('the rescan matcher reaches the multiarch loader, and only it', () => {
    const m = pathMatcher(rules)!;
    expect(m('/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2')).toBe(true);
    expect(m('/lib/powerpc64le-linux-gnu/ld64.so.2')).toBe(true);
    expect(m('/usr/lib/x86_64-linux-gnu/libc.so.6')).toBe(false);
    expect(m('/usr/lib/x86_64-linux-gnu/sub/ld-linux-x86-64.so.2')).toBe(false);
  });

  it('the view rule (mounts, replaced directories) widens neither the kernel filter nor the rescan: no creation or rename has its actions', () => {
    const view = rules.filter((r) => r.file.endsWith('ldguard_lib_dir_view_changed.toml'));
    expect(view).toHaveLength(1);
    expect(namePrefixes(view, ['/lib', '/lib64', '/usr/lib', '/usr/lib64', '/usr/lib/x86_64-linux-gnu'])).toEqual([]);
    expect(pathMatcher(view)!('/usr/lib64/ld-linux-x86-64.so.2')).toBe(false);
    // The same actions beside "creation" are a creation rule again: bounded by its paths.
    const wide = parseRule(readFileSync(view[0]!.file, 'utf8').replace('"directory_replaced")', '"directory_replaced", "creation")'), 'x.toml');
    expect(namePrefixes([wide], ['/usr/lib64'])).toEqual(['ld-linux', 'ld64.so']);
    expect(pathMatcher([wide])!('/usr/lib64/ld-linux-x86-64.so.2')).toBe(true);
  });

  it('a rule whose pattern wildcards over the directory forwards everything', () => {
    const seed = readSeed().replace('"/lib/ld-linux*.so*"', '"/l*/ld-linux*.so*"');
    expect(namePrefixes([parseRule(seed, 'x.toml')], ['/lib'])).toEqual(['']);
  });

  it('a rule that does not pin file.path forwards everything', () => {
    const seed = readSeed().replace('event.type == "creation" and', 'event.type == "creation" or');
    expect(namePrefixes([parseRule(seed, 'x.toml')], ['/lib'])).toEqual(['']);
  });
});

function readSeed(): string {
  return readFileSync(`${findRepoRoot()}/shared/rules/linux/defense_evasion_ld_so_creation.toml`, 'utf8');
}

describe('agent configuration', () => {
  it('collects every error, each naming the option and what was expected', () => {
    const dir = tmp();
    const file = join(dir, 'agent.toml');
    writeFileSync(file, 'source = "ebpf"\nwatch = "lib"\nhash_max_bytes = -1\nbogus = 1\n');
    expect(() => loadConfig(file, {})).toThrowError(/LDG_ERR_CONFIG/);
    try {
      loadConfig(file, {});
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain('unknown option "bogus"');
      expect(msg).toContain('option source: expected "auto", "fanotify" or "inotify"');
      expect(msg).toContain('option watch: expected a non-empty list of strings');
      expect(msg).toContain('option hash_max_bytes: expected a whole number');
    }
  });

  it('a collector without a token file is refused with the command that makes one', () => {
    expect(() => loadConfig(undefined, { collector: 'ws://127.0.0.1:1' })).toThrowError(/ldguard token create/);
  });

  it('collector is one URL or a list (first preferred), each checked; flags repeat it', () => {
    const dir = tmp();
    const file = join(dir, 'agent.toml');
    writeFileSync(join(dir, 'token'), 't\n', { mode: 0o600 });
    writeFileSync(file, `collector = ["wss://a.example:8750", "wss://b.example:8750"]\ntoken_file = "${join(dir, 'token')}"\n`);
    expect(loadConfig(file, {}).collector).toEqual(['wss://a.example:8750', 'wss://b.example:8750']);
    writeFileSync(file, `collector = "wss://a.example:8750"\ntoken_file = "${join(dir, 'token')}"\n`);
    expect(loadConfig(file, {}).collector).toEqual(['wss://a.example:8750']);
    expect(loadConfig(file, { collector: ['wss://c.example:1', 'wss://d.example:1'] }).collector).toEqual(['wss://c.example:1', 'wss://d.example:1']);
    writeFileSync(file, `collector = ["wss://a.example:8750", "https://b.example"]\ntoken_file = "${join(dir, 'token')}"\n`);
    expect(() => loadConfig(file, {})).toThrowError(/option collector: expected ws:\/\/HOST:PORT or wss:\/\/HOST:PORT, got "https:\/\/b.example"/);
    expect(loadConfig(undefined, {}).collector).toEqual([]);
  });

  it('a TOML syntax error names the line', () => {
    const file = join(tmp(), 'agent.toml');
    writeFileSync(file, 'root = "/"\nsource = \n');
    expect(() => loadConfig(file, {})).toThrowError(/agent\.toml:2:\d+: TOML syntax/);
  });

  it('flags override the file and the result is frozen', () => {
    const file = join(tmp(), 'agent.toml');
    writeFileSync(file, 'source = "inotify"\n');
    const cfg = loadConfig(file, { source: 'fanotify', stateDir: 'rel/state' });
    expect(cfg.source).toBe('fanotify');
    expect(cfg.stateDir).toBe(join(process.cwd(), 'rel/state'));
    expect(Object.isFrozen(cfg)).toBe(true);
  });
});

describe('one file, one alert when a rescan and a live event both see it', () => {
  it('a live event after a rescan report is recognised, for the same inode and only briefly', async () => {
    const { RecentFiles } = await import('../../agent/src/known-files.js');
    const dir = tmp();
    const file = join(dir, 'ld-linux.so.2');
    writeFileSync(file, 'x');
    const ino = (await import('node:fs')).statSync(file).ino;
    const seen = new RecentFiles(200);
    expect(seen.fromRescan(file)).toBe(false);
    seen.rescanned(file, ino);
    expect(seen.fromRescan(file)).toBe(true);
    expect(seen.wasLive(file, ino)).toBe(false);
    await new Promise((r) => setTimeout(r, 250));
    expect(seen.fromRescan(file)).toBe(false); // later: a new creation, not the same one
    seen.live(file);
    expect(seen.wasLive(file, ino)).toBe(true);
    expect(seen.wasLive(file, ino + 1)).toBe(false); // another inode is another file
  });
});

describe('--root', () => {
  it('a missing root is a configuration error naming the fix, not a stack trace', () => {
    expect(() => loadConfig(undefined, { root: '/nonexistent-ldguard-root' })).toThrowError(/LDG_ERR_CONFIG[\s\S]*option root: \/nonexistent-ldguard-root does not exist; give the directory where the host's \/ is mounted/);
  });

  it('a root that is a file is refused too', () => {
    const file = join(tmp(), 'f');
    writeFileSync(file, '');
    expect(() => loadConfig(undefined, { root: file })).toThrowError(/option root: .* is not a directory/);
  });
});

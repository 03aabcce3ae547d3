// Kernel tests of the native addon (agent/native): real fanotify, the real process connector,
// real processes writing into a scratch tree under a mkdtemp directory, never into the host's
// /lib, /lib64, /usr/lib or /usr/lib64. The tree mimics merged /usr: lib -> usr/lib.
// Trigger programs (test/fixtures/triggers/native-*) report their own pid, then write.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LdgError } from '../../shared/errors.js';
import { Watcher, nativeAddonPaths, type NativeEvent } from '../../agent/src/native.js';
import { tempDir } from '../helpers/temp.js';

const TRIGGERS = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'triggers');
const ADDON = nativeAddonPaths()[0] ?? '';
const PYTHON = '/usr/bin/python3';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Ran {
  pid: number;     // the spawned process
  out: string;
}

/** Runs a command to completion; rejects with its stderr when it fails. */
function run(cmd: string, args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ pid: child.pid ?? 0, out });
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`));
    });
  });
}

/** Compiles a trigger into dir; static when the toolchain can, so no ld.so is exec'd for it. */
function compile(source: string, out: string, opts: { static?: boolean } = {}): void {
  const args = ['-O2', '-Wall', '-o', out, join(TRIGGERS, source)];
  if (opts.static && spawnSync('cc', ['-static', ...args]).status === 0) return;
  const r = spawnSync('cc', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc ${source} failed: ${r.stderr}`);
}

const fmt = (e: NativeEvent) =>
  `${e.kind} ${e.dir}/${e.name} pid=${e.pid} ${e.attribution} exe=${e.process?.exe} comm=${e.process?.comm}`;

describe.skipIf(process.getuid?.() !== 0)('native watcher on the real kernel (needs root: fanotify and the process connector)', () => {
  let root = '';
  let usrLib = '';
  let usrLib64 = '';
  let src = '';
  let source = '';
  let bin = '';
  let watcher: Watcher | undefined;
  const seen: NativeEvent[] = [];
  const wake: Array<() => void> = [];
  let seq = 0;

  const fresh = (tag: string) => `ld-linux-${tag}-${process.pid}-${++seq}.so.2`;

  async function nextEvent(match: (e: NativeEvent) => boolean, ms = 5000): Promise<NativeEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = seen.find(match);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${ms} ms; last seen:\n${seen.slice(-8).map(fmt).join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async function expectNoEvent(match: (e: NativeEvent) => boolean, ms = 300): Promise<void> {
    await sleep(ms);
    expect(seen.filter(match).map(fmt)).toEqual([]);
  }

  // Each kind of writer: how to run it on a file, and what the event must say about it.
  interface Writer {
    kind: 'create' | 'moved_to';
    exe: () => string;
    comm: string;
    /** The "#!" script the kernel ran for the writer's image (ProcInfo.script); none when absent. */
    script?: () => string;
    /** Writes `file`; resolves with the pid of the process that made the write. */
    write(file: string): Promise<number>;
  }
  const pidFromOutput = (r: Ran) => Number.parseInt(r.out.split('\n')[0] ?? '', 10);
  const writers: Record<string, Writer> = {
    touch: { kind: 'create', exe: () => realpathSync('/usr/bin/touch'), comm: 'touch', write: async (f) => (await run('/usr/bin/touch', [f])).pid },
    cp: { kind: 'create', exe: () => realpathSync('/usr/bin/cp'), comm: 'cp', write: async (f) => (await run('/usr/bin/cp', [source, f])).pid },
    'sh redirect': {
      kind: 'create', exe: () => realpathSync('/bin/sh'), comm: 'sh',
      write: async (f) => (await run('/bin/sh', ['-c', 'echo x > "$1"', 'sh', f])).pid,
    },
    ln: { kind: 'create', exe: () => realpathSync('/usr/bin/ln'), comm: 'ln', write: async (f) => (await run('/usr/bin/ln', [source, f])).pid },
    'ln -s': { kind: 'create', exe: () => realpathSync('/usr/bin/ln'), comm: 'ln', write: async (f) => (await run('/usr/bin/ln', ['-s', source, f])).pid },
    mv: {
      kind: 'moved_to', exe: () => realpathSync('/usr/bin/mv'), comm: 'mv',
      write: async (f) => {
        const from = join(src, `mv-${++seq}`);
        writeFileSync(from, 'x');
        return (await run('/usr/bin/mv', [from, f])).pid;
      },
    },
    'python3 -c': {
      kind: 'create', exe: () => realpathSync(PYTHON), comm: 'python3',
      write: async (f) => (await run(PYTHON, ['-c', 'import sys; open(sys.argv[1], "w").write("x")', f])).pid,
    },
    'C writer that exits at once': {
      kind: 'create', exe: () => join(bin, 'writer-static'), comm: 'writer-static',
      write: async (f) => pidFromOutput(await run(join(bin, 'writer-static'), [f])),
    },
    'C writer that execs /bin/true': {
      kind: 'create', exe: () => join(bin, 'writer-dynamic'), comm: 'writer-dynamic',
      write: async (f) => pidFromOutput(await run(join(bin, 'writer-dynamic'), [f, '/bin/true'])),
    },
    'forked subshell that never execs': {
      kind: 'create', exe: () => realpathSync('/bin/sh'), comm: 'sh',
      write: async (f) => pidFromOutput(await run('/bin/sh', ['-c', readFileSync(join(TRIGGERS, 'native-subshell.sh'), 'utf8'), 'sh', f])),
    },
    'copy of cp named dnf': {
      kind: 'create', exe: () => join(bin, 'cp-as-dnf', 'dnf'), comm: 'dnf',
      write: async (f) => (await run(join(bin, 'cp-as-dnf', 'dnf'), [source, f])).pid,
    },
    '#!/usr/bin/python3 script named dnf': {
      kind: 'create', exe: () => realpathSync(PYTHON), comm: 'dnf', script: () => join(bin, 'script-dnf', 'dnf'),
      write: async (f) => pidFromOutput(await run(join(bin, 'script-dnf', 'dnf'), [f])),
    },
    'the same script named only in argv (python3 dnf)': {
      kind: 'create', exe: () => realpathSync(PYTHON), comm: 'python3',
      write: async (f) => pidFromOutput(await run(PYTHON, [join(bin, 'script-dnf', 'dnf'), f])),
    },
  };

  beforeAll(() => {
    root = realpathSync(tempDir('ldg-native-'));
    usrLib = join(root, 'usr', 'lib');
    usrLib64 = join(root, 'usr', 'lib64');
    src = join(root, 'src');
    bin = join(root, 'bin');
    for (const d of [usrLib, usrLib64, src, join(bin, 'cp-as-dnf'), join(bin, 'script-dnf')]) mkdirSync(d, { recursive: true });
    symlinkSync('usr/lib', join(root, 'lib'));
    symlinkSync('usr/lib64', join(root, 'lib64'));
    source = join(src, 'source');
    writeFileSync(source, 'x');
    compile('native-writer.c', join(bin, 'writer-static'), { static: true });
    compile('native-writer.c', join(bin, 'writer-dynamic'));
    compile('native-churn.c', join(bin, 'churn'));
    copyFileSync('/usr/bin/cp', join(bin, 'cp-as-dnf', 'dnf'));
    chmodSync(join(bin, 'cp-as-dnf', 'dnf'), 0o755);
    copyFileSync(join(TRIGGERS, 'native-dnf.py'), join(bin, 'script-dnf', 'dnf'));
    chmodSync(join(bin, 'script-dnf', 'dnf'), 0o755);
    watcher = new Watcher({ dirs: [usrLib, usrLib64], prefixes: ['ld-linux'] }, (events) => {
      seen.push(...events);
      for (const w of wake.splice(0)) w();
    });
  });

  afterAll(() => {
    watcher?.close();
  });

  it('uses pidfds, the process connector and exec marks on this kernel', () => {
    const s = watcher!.stats();
    expect(s).toMatchObject({ pidfd: true, netlink: 'ok', netlinkError: '', closed: false });
    expect(s.execMarks).toBeGreaterThan(0);
    for (const k of ['read', 'forwarded', 'overflows', 'execEvents', 'cacheEntries', 'procConnectorLost'] as const)
      expect(typeof s[k]).toBe('number');
  });

  it.each(Object.keys(writers))('%s: reports the writer\'s pid, exe and comm, the name and the real dir', async (label) => {
    const w = writers[label]!;
    const name = fresh(label.replace(/[^a-z0-9]+/gi, '-'));
    const pid = await w.write(join(usrLib, name));
    const e = await nextEvent((x) => x.name === name && x.kind === w.kind);
    expect({ kind: e.kind, dir: e.dir, name: e.name, isDir: e.isDir, pid: e.pid }).toEqual({ kind: w.kind, dir: usrLib, name, isDir: false, pid });
    expect(e.attribution).not.toBe('unknown');
    expect({ exe: e.process?.exe, comm: e.process?.comm, pid: e.process?.pid }).toEqual({ exe: w.exe(), comm: w.comm, pid });
    // Only an image the kernel ran a script for names one: not a script in argv, not sh -c, not an ELF.
    expect(e.process?.script ?? null).toBe(w.script?.() ?? null);
    expect(typeof e.timeNs).toBe('bigint');
    expect(e.process?.startTicks).toBeGreaterThan(0);
    expect(e.parent?.pid).toBe(e.process?.ppid);
  });

  it('names the parent of a forked subshell: the shell that forked it', async () => {
    const name = fresh('parent');
    // The parent outlives the event's resolution (it sleeps after its subshell), so its comm is read
    // from /proc: "sh", the name it was exec'd by. Once a parent is gone and reaped, its comm is the
    // cache's guess from the file it ran ("dash"): measured once in CI, under load.
    const shell = run('/bin/sh', ['-c', `${readFileSync(join(TRIGGERS, 'native-subshell.sh'), 'utf8')}\nsleep 1`, 'sh', join(usrLib, name)]);
    const e = await nextEvent((x) => x.name === name && x.kind === 'create');
    const r = await shell;
    expect(e.pid).toBe(pidFromOutput(r));
    expect(e.pid).not.toBe(r.pid);
    expect(e.process?.ppid).toBe(r.pid);
    expect({ pid: e.parent?.pid, exe: e.parent?.exe, comm: e.parent?.comm }).toEqual({ pid: r.pid, exe: realpathSync('/bin/sh'), comm: 'sh' });
  });

  it('forwards names by prefix, ASCII case-insensitively, and nothing else', async () => {
    const upper = `LD-LINUX-UPPER-${process.pid}.so.2`;
    const other = `libc-${process.pid}.so.6`;
    await run('/usr/bin/touch', [join(usrLib, upper), join(usrLib, other)]);
    await nextEvent((x) => x.name === upper && x.kind === 'create');
    await expectNoEvent((x) => x.name === other);
  });

  it('reports /lib through the symlink and /usr/lib once each, under the real directory', async () => {
    const viaLib = fresh('via-lib');
    const viaUsr = fresh('via-usr-lib');
    const viaLib64 = fresh('via-lib64');
    await run('/usr/bin/touch', [join(root, 'lib', viaLib)]);
    await run('/usr/bin/touch', [join(usrLib, viaUsr)]);
    await run('/usr/bin/touch', [join(root, 'lib64', viaLib64)]);
    for (const name of [viaLib, viaUsr, viaLib64]) await nextEvent((x) => x.name === name && x.kind === 'create');
    await sleep(300);
    for (const [name, dir] of [[viaLib, usrLib], [viaUsr, usrLib], [viaLib64, usrLib64]] as const) {
      expect(seen.filter((x) => x.name === name && x.kind === 'create').map((x) => x.dir)).toEqual([dir]);
    }
  });

  it('reports a matching directory, then watches it once added (forwardAll), until removed', async () => {
    const name = fresh('dir').replace(/\.so\.2$/, '');
    const sub = join(usrLib, name);
    mkdirSync(sub);
    const e = await nextEvent((x) => x.name === name && x.kind === 'create');
    expect(e).toMatchObject({ dir: usrLib, isDir: true, pid: process.pid });
    watcher!.addDir(sub, { forwardAll: true });
    await run('/usr/bin/touch', [join(sub, 'evil.so')]);
    const inside = await nextEvent((x) => x.dir === sub && x.name === 'evil.so' && x.kind === 'create');
    expect(inside.process?.exe).toBe(realpathSync('/usr/bin/touch'));
    watcher!.removeDir(sub);
    await run('/usr/bin/touch', [join(sub, 'evil2.so')]);
    await expectNoEvent((x) => x.dir === sub && x.name === 'evil2.so');
  });

  it('keeps every matching event among 2,000 unrelated creations', async () => {
    const before = watcher!.stats().read;
    const churn = run(join(bin, 'churn'), [usrLib, '2000', 'remove']);
    const names: string[] = [];
    const writes: Promise<Ran>[] = [];
    for (let i = 0; i < 20; i++) {
      const name = fresh('among-churn');
      names.push(name);
      writes.push(run('/usr/bin/touch', [join(usrLib, name)]));
      if (i % 4 === 3) await Promise.all(writes.splice(0));
    }
    await Promise.all([churn, ...writes]);
    for (const name of names) await nextEvent((x) => x.name === name && x.kind === 'create');
    expect(watcher!.stats().read - before).toBeGreaterThanOrEqual(2000);
    expect(seen.filter((x) => x.name.startsWith('churn-'))).toEqual([]);
  });

  /** Runs ~100 writers of every kind, 4 at a time, into dir; returns the figures. */
  async function attributionRun(dir: string, events: () => NativeEvent[]) {
    const kinds = Object.keys(writers);
    const jobs = Array.from({ length: 9 * kinds.length }, (_, i) => kinds[i % kinds.length]!);
    const results: Array<{ label: string; pid: number; name: string }> = [];
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < jobs.length) {
        const label = jobs[next++]!;
        const name = fresh('attr');
        const pid = await writers[label]!.write(join(dir, name));
        results.push({ label, pid, name });
      }
    }));
    const out = { total: results.length, pid: 0, exact: 0, comm: 0, live_proc: 0, exec_cache: 0, unknown: 0, misses: [] as string[] };
    const deadline = Date.now() + 10_000;
    for (const r of results) {
      const w = writers[r.label]!;
      let e: NativeEvent | undefined;
      while (!(e = events().find((x) => x.name === r.name && x.kind === w.kind)) && Date.now() < deadline) await sleep(20);
      if (!e) {
        out.misses.push(`${r.label}: no event for ${r.name}`);
        continue;
      }
      out[e.attribution]++;
      if (e.pid === r.pid) out.pid++;
      if (e.pid === r.pid && e.process?.exe === w.exe()) out.exact++;
      else out.misses.push(`${r.label}: want pid ${r.pid} ${w.exe()}, got ${fmt(e)}`);
      if (e.process?.comm === w.comm) out.comm++;
      else out.misses.push(`${r.label}: want comm ${w.comm}, got ${fmt(e)}`);
    }
    const pct = (n: number) => ((100 * n) / out.total).toFixed(1);
    const figures = `${out.exact}/${out.total} exact pid+exe (${pct(out.exact)}%), comm ${out.comm}/${out.total} (${pct(out.comm)}%); ` +
      `live_proc ${out.live_proc}, exec_cache ${out.exec_cache}, unknown ${out.unknown}`;
    return { ...out, figures };
  }

  it('attributes ~100 short-lived writers of mixed kinds to their exact pid and exe (at least 99%)', async () => {
    const r = await attributionRun(usrLib, () => seen);
    console.log(`native attribution (exec cache): ${r.figures}${r.misses.length ? `\n  ${r.misses.join('\n  ')}` : ''}`);
    expect(r.pid).toBe(r.total);
    expect(r.exact / r.total).toBeGreaterThanOrEqual(0.99);
  });

  it('measures the baseline without the exec cache (live /proc only): it never claims the cache', async () => {
    const dir = join(root, 'live-only');
    mkdirSync(dir);
    const got: NativeEvent[] = [];
    const live = new Watcher({ dirs: [dir], prefixes: ['ld-linux'], execCache: false }, (events) => got.push(...events));
    try {
      const r = await attributionRun(dir, () => got);
      console.log(`native attribution (live /proc only): ${r.figures}`);
      expect(r.pid).toBe(r.total);
      expect(r.exec_cache).toBe(0);
      expect(live.stats()).toMatchObject({ execEvents: 0, execMarks: 0 });
    } finally {
      live.close();
    }
  });

  it('forwards a kernel queue overflow as an event and counts it', async () => {
    // The queue size is read from this sysctl when the group is created: shrink it for one group
    // only, and restore it at once.
    const sysctl = '/proc/sys/fs/fanotify/max_queued_events';
    const saved = readFileSync(sysctl, 'utf8').trim();
    const dir = join(root, 'overflow');
    mkdirSync(dir);
    const got: NativeEvent[] = [];
    let small: Watcher;
    writeFileSync(sysctl, '1');
    try {
      small = new Watcher({ dirs: [dir], prefixes: [], execCache: false }, (events) => got.push(...events));
    } finally {
      writeFileSync(sysctl, saved);
    }
    try {
      await run(join(bin, 'churn'), [dir, '2000']);
      const deadline = Date.now() + 5000;
      while (!got.some((x) => x.kind === 'overflow') && Date.now() < deadline) await sleep(20);
      expect(got.find((x) => x.kind === 'overflow')).toMatchObject({ dir: '', name: '', pid: 0, attribution: 'unknown', process: null });
      expect(got.filter((x) => x.kind !== 'overflow')).toEqual([]);
      expect(small.stats().overflows).toBeGreaterThan(0);
    } finally {
      small.close();
    }
  });

  it('throws coded errors naming the syscall and errno', () => {
    const missing = join(root, 'missing');
    const attempt = (f: () => void) => {
      try {
        f();
      } catch (err) {
        return err;
      }
      throw new Error('no error thrown');
    };
    const ctor = attempt(() => new Watcher({ dirs: [missing], prefixes: [''] }, () => {}));
    expect(ctor).toBeInstanceOf(LdgError);
    expect(ctor).toMatchObject({ code: 'LDG_ERR_FANOTIFY_MARK' });
    expect((ctor as Error).message).toMatch(/realpath\(3\) failed for .*missing: ENOENT \(No such file or directory\)/);
    const add = attempt(() => watcher!.addDir(missing));
    expect(add).toMatchObject({ code: 'LDG_ERR_FANOTIFY_MARK' });
    const file = join(src, 'not-a-dir');
    writeFileSync(file, '');
    expect((attempt(() => watcher!.addDir(file)) as Error).message).toMatch(/fanotify_mark\(2\) failed for .*: ENOTDIR/);
  });

  it('reports EPERM with its code when not privileged', () => {
    const script = `
      const { Watcher } = require(${JSON.stringify(ADDON)});
      try { new Watcher({ dirs: ['/'], prefixes: [''] }, () => {}); console.log('started'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000, cwd: '/' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ code: 'LDG_ERR_FANOTIFY_EPERM', message: 'fanotify_init(2) failed: EPERM (Operation not permitted)' });
  });

  it('lets the process exit after close(), with no callback after it', () => {
    const dir = join(root, 'exit');
    mkdirSync(dir);
    const script = `
      const { Watcher } = require(${JSON.stringify(ADDON)});
      const { execFileSync } = require('node:child_process');
      let calls = 0;
      const w = new Watcher({ dirs: [${JSON.stringify(dir)}], prefixes: [''] }, () => { calls++; });
      execFileSync('/usr/bin/touch', [${JSON.stringify(join(dir, 'a'))}]);
      setTimeout(() => {
        w.close();
        w.close();
        const atClose = calls;
        execFileSync('/usr/bin/touch', [${JSON.stringify(join(dir, 'b'))}]);
        setTimeout(() => console.log(JSON.stringify({ atClose, calls, closed: w.stats().closed })), 300);
      }, 500);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15_000 });
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    const out = JSON.parse(r.stdout) as { atClose: number; calls: number; closed: boolean };
    expect(out.atClose).toBeGreaterThan(0);
    expect(out).toEqual({ atClose: out.atClose, calls: out.atClose, closed: true });
  });

  it('keeps the event loop alive while running unless unref()ed, and exits cleanly either way', () => {
    const script = (unref: boolean) => `
      const { Watcher } = require(${JSON.stringify(ADDON)});
      const w = new Watcher({ dirs: [${JSON.stringify(src)}], prefixes: [''] }, () => {});
      ${unref ? 'w.unref();' : ''}
      console.log('started');`;
    const held = spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8', timeout: 3000 });
    expect(held.stdout).toBe('started\n');
    expect(held.signal).toBe('SIGTERM');   // still running when the timeout killed it
    const free = spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8', timeout: 15_000 });
    expect({ status: free.status, signal: free.signal, stdout: free.stdout, stderr: free.stderr }).toEqual({ status: 0, signal: null, stdout: 'started\n', stderr: '' });
  });
});

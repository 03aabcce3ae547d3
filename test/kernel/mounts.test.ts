// Mounts and the watched directories' lifecycle (issue #17, items 1 and 2): the real agent on a
// scratch root, real mount(8), umount(8), mkdir, mv and ln. Mounts are made only on the scratch
// root's directories and are always undone when the test ends, pass or fail (whenDone runs the
// unmount before the agent stops and the root is removed). Each case ends in alerts that name the
// path as the host sees it and, where knowable, the exact process; and no case gives two alerts for
// one change.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, realpathSync, rmdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';
import { Watcher, type NativeEvent } from '../../agent/src/native.js';

const VIEW = 'Library Directory or Dynamic Linker (ld.so) Covered, Uncovered or Replaced';
const CREATED = 'Dynamic Linker (ld.so) Creation';
const UNIDENTIFIED = 'Dynamic Linker (ld.so) Created by an Unidentified Process';
const LOADER = 'ld-linux-x86-64.so.2';
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Alert = Record<string, any>;

/** A scratch root and the agent on it, both gone when the test ends; `prepare` runs before start. */
async function agentOn(prepare?: (root: string) => void): Promise<RunningAgent> {
  const root = removeWhenDone(realpathSync(scratchRoot('ldg-mnt-')));
  prepare?.(root);
  const agent = await startAgent({ root });
  whenDone(() => agent.stop());
  return agent;
}

/** Runs mount(8) with args, target last; the target is unmounted when the test ends (all layers). */
function mount(...args: string[]): SpawnSyncReturns<Buffer> {
  const target = args[args.length - 1]!;
  whenDone(() => {
    for (let i = 0; i < 8 && spawnSync('findmnt', ['-rn', '--mountpoint', target]).status === 0; i++) spawnSync('umount', [target]);
  });
  const r = spawnSync('mount', args);
  expect(r.status, String(r.stderr)).toBe(0);
  return r;
}

function run(cmd: string, ...args: string[]): SpawnSyncReturns<Buffer> {
  const r = spawnSync(cmd, args);
  expect(r.status, `${cmd} ${args.join(' ')}: ${String(r.stderr)}`).toBe(0);
  return r;
}

const of = (alerts: Alert[], path: string) => alerts.filter((a) => a.file.path === path);

/** Waits for the agent to log that it re-marked a directory, n times in all. */
async function remarked(agent: RunningAgent, n = 1): Promise<void> {
  const count = () => agent.logs().filter((l) => l.msg === 're-marked a watched directory: its path leads to another directory now').length;
  for (let i = 0; i < 400 && count() < n; i++) await sleep(25);
  expect(count(), 're-mark logged').toBeGreaterThanOrEqual(n);
}

/** cp writes the loader; its alert must name that cp, exactly once, under hostPath. */
async function expectWriterAlert(agent: RunningAgent, dest: string, hostPath: string): Promise<void> {
  const cp = run('cp', '/bin/true', dest);
  const alerts = await agent.waitForAlerts((a) => of(a, hostPath).length > 0);
  await sleep(300); // a duplicate (a rescan's, say) would come now
  const hits = of(agent.alerts(), hostPath);
  expect(hits.map((a) => [a.rule.name, a.process.pid, a.process.name]), JSON.stringify(alerts.map((a) => a.file.path))).toEqual([[CREATED, cp.pid, 'cp']]);
  expect(hits[0]!.process.executable).toBe(realpathSync('/usr/bin/cp'));
}

describe.skipIf(!isRoot)('mounts over the watched paths (skipped: needs root for fanotify and mount)', () => {
  it('the addon: a filesystem mounted after start is marked for FAN_OPEN_EXEC before its mount event is handed over, which names mount(8)', async () => {
    const dir = tempDir('ldg-mnt-native-');
    mkdirSync(join(dir, 'watched'));
    const events: NativeEvent[] = [];
    let marksAtEvent = -1;
    const w = new Watcher({ dirs: [join(dir, 'watched')], prefixes: ['ld-'] }, (evs) => {
      for (const e of evs) if (e.kind === 'mount' && marksAtEvent < 0) marksAtEvent = w.stats().execMarks;
      events.push(...evs);
    });
    whenDone(() => w.close());
    expect(w.stats().mounts).toMatch(/^(fanotify|poll) /);
    const before = w.stats().execMarks;
    mkdirSync(join(dir, 'fresh'));
    const m = mount('-t', 'tmpfs', 'ldg-test', join(dir, 'fresh'));
    for (let i = 0; i < 200 && marksAtEvent < 0; i++) await sleep(25);
    expect(marksAtEvent, 'the new tmpfs was marked before the event').toBe(before + 1);
    const attach = events.find((e) => e.kind === 'mount')!;
    if (w.stats().mounts.startsWith('fanotify')) {
      expect([attach.dir, attach.pid, attach.process?.exe, attach.name]).toEqual(['attach', m.pid, realpathSync('/usr/bin/mount'), expect.stringMatching(/^\d+$/)]);
    } else {
      expect([attach.dir, attach.pid]).toEqual(['change', 0]); // the mountinfo fallback names nobody
    }
  });

  it('tmpfs over lib64: an alert naming mount(8), then a loader created in it alerts with its writer', async () => {
    const agent = await agentOn();
    const lib64 = join(agent.root, 'usr/lib64');
    const m = mount('-t', 'tmpfs', 'ldg-test', lib64);
    const alerts = await agent.waitForAlerts((a) => of(a, '/usr/lib64').length > 0);
    const view = of(alerts, '/usr/lib64');
    expect(view.map((a) => [a.rule.name, a.event.action, a.process.pid, a.process.name])).toEqual([[VIEW, 'mounted', m.pid, 'mount']]);
    expect(view[0]!.ldguard.view_change.mount_id).toMatch(/^\d+$/);
    expect(view[0]!.ldguard.view_change.before).not.toBe(view[0]!.ldguard.view_change.after);
    await expectWriterAlert(agent, join(agent.root, 'lib64', LOADER), `/usr/lib64/${LOADER}`);
    expect(of(agent.alerts(), '/usr/lib64')).toHaveLength(1);
  });

  it('a mount that hides the genuine loader, then goes: its two alerts, and the loader back is no new file', async () => {
    const agent = await agentOn((root) => writeFileSync(join(root, 'usr/lib64', LOADER), 'the genuine loader'));
    const lib64 = join(agent.root, 'usr/lib64');
    mount('-t', 'tmpfs', 'ldg-test', lib64);
    await agent.waitForAlerts((a) => of(a, '/usr/lib64').length > 0);
    run('umount', lib64);
    await agent.waitForAlerts((a) => of(a, '/usr/lib64').length > 1);
    await sleep(500); // the rescan after the unmount would report the loader now, if it did
    expect(of(agent.alerts(), '/usr/lib64').map((a) => a.event.action)).toEqual(['mounted', 'unmounted']);
    expect(of(agent.alerts(), `/usr/lib64/${LOADER}`)).toEqual([]);
  });

  it('tmpfs over /usr, an ancestor: an alert per watched directory it hid, and a lib64 made in it is marked at once', async () => {
    const agent = await agentOn();
    const m = mount('-t', 'tmpfs', 'ldg-test', join(agent.root, 'usr'));
    const hidden = ['/usr/lib', '/usr/lib64', '/usr/lib/x86_64-linux-gnu'];
    await agent.waitForAlerts((a) => hidden.every((p) => of(a, p).length > 0));
    for (const p of hidden) {
      expect(of(agent.alerts(), p).map((a) => [a.rule.name, a.event.action, a.process.pid, a.ldguard.view_change.after]), p).toEqual([[VIEW, 'mounted', m.pid, '']]);
    }
    mkdirSync(join(agent.root, 'usr/lib64'));
    await remarked(agent);
    await expectWriterAlert(agent, join(agent.root, 'lib64', LOADER), `/usr/lib64/${LOADER}`);
  });

  it('a file bind-mounted over the loader: one alert on the loader\'s path naming mount(8), none from the rescan', async () => {
    const agent = await agentOn((root) => {
      writeFileSync(join(root, 'usr/lib64', LOADER), 'the genuine loader');
      // A loader symlink (as Debian's /lib64 one): its own inode stays, so it is no change of its own.
      symlinkSync(LOADER, join(root, 'usr/lib64', `${LOADER}.link`));
    });
    const evil = join(agent.stateDir, 'evil-loader');
    writeFileSync(evil, 'not the loader');
    const m = mount('--bind', evil, join(agent.root, 'usr/lib64', LOADER));
    const path = `/usr/lib64/${LOADER}`;
    await agent.waitForAlerts((a) => of(a, path).length > 0);
    await sleep(500); // the rescan after the mount would report the same file now, if it did
    const hits = of(agent.alerts(), path);
    expect(hits.map((a) => [a.rule.name, a.event.action, a.process.pid, a.process.name])).toEqual([[VIEW, 'mounted', m.pid, 'mount']]);
    // The alert shows what the host sees there now.
    expect(hits[0]!.file.size).toBe('not the loader'.length);
    expect(of(agent.alerts(), `${path}.link`)).toEqual([]);
  });

  it('umount uncovering a loader planted under a mount: the unmount\'s alert, and the loader as unidentified, linked to it', async () => {
    const agent = await agentOn((root) => {
      writeFileSync(join(root, 'usr/lib64', LOADER), 'planted below');
      // Hidden before the agent starts: its baseline is the tmpfs' empty view.
      const r = spawnSync('mount', ['-t', 'tmpfs', 'ldg-test', join(root, 'usr/lib64')]);
      expect(r.status, String(r.stderr)).toBe(0);
      whenDone(() => spawnSync('umount', [join(root, 'usr/lib64')]));
    });
    expect(agent.alerts()).toEqual([]);
    const um = run('umount', join(agent.root, 'usr/lib64'));
    const path = `/usr/lib64/${LOADER}`;
    const alerts = await agent.waitForAlerts((a) => of(a, '/usr/lib64').length > 0 && of(a, path).length > 0);
    await sleep(300);
    const view = of(agent.alerts(), '/usr/lib64');
    expect(view.map((a) => [a.rule.name, a.event.action, a.process.pid, a.process.name])).toEqual([[VIEW, 'unmounted', um.pid, 'umount']]);
    const found = of(agent.alerts(), path);
    expect(found.map((a) => [a.rule.name, a.ldguard.source, a.ldguard.view_change?.id]), JSON.stringify(alerts)).toEqual([[UNIDENTIFIED, 'rescan', view[0]!.ldguard.view_change.id]]);
  });
});

describe.skipIf(!isRoot)('watched directories that come, go and are replaced (skipped: needs root for fanotify)', () => {
  it('a directory created after start is marked at once: a loader in it alerts with its writer', async () => {
    const agent = await agentOn((root) => rmdirSync(join(root, 'usr/lib64')));
    mkdirSync(join(agent.root, 'usr/lib64'));
    await remarked(agent);
    await expectWriterAlert(agent, join(agent.root, 'lib64', LOADER), `/usr/lib64/${LOADER}`);
    // A directory made where none was is how a missing /lib64 gets made: marked, not alerted.
    expect(of(agent.alerts(), '/usr/lib64')).toEqual([]);
  });

  it('a loader written at once into a directory just made is reported, by its writer or as unidentified, once', async () => {
    const agent = await agentOn((root) => rmdirSync(join(root, 'usr/lib64')));
    // No wait for the mark: the writer races it. Either the mark wins (the writer is named) or the
    // rescan after the mark finds the file (unidentified); never silence, never both.
    const sh = run('sh', '-c', `mkdir "$1" && cp /bin/true "$1/${LOADER}"`, 'sh', join(agent.root, 'usr/lib64'));
    expect(sh.status).toBe(0);
    const path = `/usr/lib64/${LOADER}`;
    await agent.waitForAlerts((a) => of(a, path).length > 0);
    await sleep(500);
    const hits = of(agent.alerts(), path);
    expect(hits).toHaveLength(1);
    expect([CREATED, UNIDENTIFIED]).toContain(hits[0]!.rule.name);
    if (hits[0]!.rule.name === CREATED) expect(hits[0]!.process.name).toBe('cp');
  });

  it('deleted and made again: an alert on the replacement, and a loader in the new one alerts with its writer', async () => {
    const agent = await agentOn();
    const lib64 = join(agent.root, 'usr/lib64');
    rmdirSync(lib64);
    mkdirSync(lib64);
    await remarked(agent);
    await expectWriterAlert(agent, join(lib64, LOADER), `/usr/lib64/${LOADER}`);
    expect(of(agent.alerts(), '/usr/lib64').map((a) => [a.rule.name, a.event.action])).toEqual([[VIEW, 'directory_replaced']]);
  });

  it('renamed away and replaced: the new one is watched, and the old one\'s files are not reported under the old path', async () => {
    const agent = await agentOn();
    const lib64 = join(agent.root, 'usr/lib64');
    renameSync(lib64, `${lib64}.old`);
    mkdirSync(lib64);
    await remarked(agent);
    // Written first into the directory moved away: the host sees it at /usr/lib64.old, which no rule watches.
    run('cp', '/bin/true', join(`${lib64}.old`, `${LOADER}.moved-away`));
    await expectWriterAlert(agent, join(lib64, LOADER), `/usr/lib64/${LOADER}`);
    expect(agent.alerts().filter((a) => a.file.path.endsWith('.moved-away'))).toEqual([]);
    expect(of(agent.alerts(), '/usr/lib64').map((a) => [a.rule.name, a.event.action])).toEqual([[VIEW, 'directory_replaced']]);
  });

  it('replaced with a rule-matching subdirectory of the same name inside: that one is watched too (the * of the rule crosses /)', async () => {
    const agent = await agentOn((root) => mkdirSync(join(root, 'usr/lib64/ld-linux-sub')));
    const lib64 = join(agent.root, 'usr/lib64');
    renameSync(lib64, `${lib64}.old`);
    mkdirSync(join(lib64, 'ld-linux-sub'), { recursive: true });
    await remarked(agent);
    await sleep(300); // the rescan that follows the re-mark marks the subdirectory
    await expectWriterAlert(agent, join(lib64, 'ld-linux-sub', 'evil.so'), '/usr/lib64/ld-linux-sub/evil.so');
  });

  it('swapped for a symlink: the target is watched, and a loader written through it is reported under the watched path', async () => {
    const agent = await agentOn();
    const lib64 = join(agent.root, 'usr/lib64');
    mkdirSync(join(agent.root, 'elsewhere'));
    renameSync(lib64, `${lib64}.old`);
    symlinkSync('../elsewhere', lib64);
    await remarked(agent);
    await expectWriterAlert(agent, join(agent.root, 'lib64', LOADER), `/usr/lib64/${LOADER}`);
    expect(of(agent.alerts(), '/usr/lib64').map((a) => [a.rule.name, a.event.action])).toEqual([[VIEW, 'directory_replaced']]);
    copyFileSync('/bin/true', join(`${lib64}.old`, `${LOADER}.old-dir`));
    await sleep(300);
    expect(agent.alerts().filter((a) => a.file.path.endsWith('.old-dir'))).toEqual([]);
  });
});

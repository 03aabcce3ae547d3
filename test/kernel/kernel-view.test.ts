// No blind spots in the kernel view (issue #17): the real agent on a scratch root, real writers.
// Each case ends in an alert that names the path and, where knowable, the exact writer; and no
// case gives two alerts for one operation.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../helpers/agent.js';

const RENAMED = 'Dynamic Linker (ld.so) Renamed Into Place';
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot)('kernel view with fanotify (skipped: needs root for fanotify)', () => {
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await startAgent({ source: 'fanotify' });
  });
  afterAll(async () => {
    expect(await agent.stop()).toBe(0);
  });

  // A marker written last: once its alert is there, every earlier event was judged.
  async function settle(tag: string): Promise<Array<Record<string, any>>> {
    spawnSync('touch', [join(agent.root, `lib64/ld-linux-x86-64.so.2.marker-${tag}`)]);
    await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith(`.marker-${tag}`)));
    await sleep(300); // a rescan after a new directory runs after its mark: let it report, if it would
    return agent.alerts();
  }

  it('one mv of a rule-matching directory gives one alert, its rename, not a second "unidentified" one for what it holds', async () => {
    const staged = join(agent.stateDir, 'ld-linux-d.so.2x');
    mkdirSync(staged);
    writeFileSync(join(staged, 'inner'), 'x');
    spawnSync('mv', [staged, join(agent.root, 'lib/')]);
    const alerts = (await settle('dir')).filter((a) => a.file.path.startsWith('/usr/lib/ld-linux-d.so.2x'));
    expect(alerts.map((a) => [a.rule.name, a.file.path, a.process.name])).toEqual([[RENAMED, '/usr/lib/ld-linux-d.so.2x', 'mv']]);
  });

  it('a directory moved in whose own name no rule matches: each linker-looking file in it is a rename by mv, never an unknown creation', async () => {
    const staged = join(agent.stateDir, 'ld-linux-y');
    mkdirSync(staged);
    writeFileSync(join(staged, 'evil.so'), 'x');
    const mv = spawnSync('mv', [staged, join(agent.root, 'lib/')]);
    expect(mv.status).toBe(0);
    const alerts = (await settle('dir2')).filter((a) => a.file.path.startsWith('/usr/lib/ld-linux-y'));
    expect(alerts.map((a) => [a.rule.name, a.file.path, a.event.action, a.process.name, a.ldguard.attribution])).toEqual([
      [RENAMED, '/usr/lib/ld-linux-y/evil.so', 'rename', 'mv', expect.stringMatching(/^(live_proc|exec_cache)$/)],
    ]);
  });

  it('a writer that set its comm to dnf, then fexecve\'d a memfd, is never dropped and never named by its previous image', async () => {
    // The previous image (python3) calls itself dnf, which the rule excludes; the writer is the
    // memfd's program. The exec is invisible to fanotify (memfd has no mount to mark).
    const script = [
      'import ctypes, os, sys',
      'ctypes.CDLL(None).prctl(15, b"dnf", 0, 0, 0)',
      'fd = os.memfd_create("ldg-payload", 0)',
      'os.write(fd, open("/bin/touch", "rb").read())',
      'os.execve(f"/proc/self/fd/{fd}", ["touch", sys.argv[1]], {})',
    ].join('\n');
    const paths: string[] = [];
    for (let i = 0; i < 10; i++) {
      const name = `ld-linux-x86-64.so.2.memfd${i}`;
      const r = spawnSync('python3', ['-c', script, join(agent.root, 'lib64', name)]);
      expect(r.status, String(r.stderr)).toBe(0);
      paths.push(`/usr/lib64/${name}`);
    }
    const alerts = await agent.waitForAlerts((a) => paths.every((p) => a.some((x) => x.file.path === p)));
    for (const p of paths) {
      const hits = alerts.filter((x) => x.file.path === p);
      expect(hits, `${p}: exactly one alert`).toHaveLength(1);
      const a = hits[0]!;
      expect(a.process.name, p).not.toBe('dnf');
      expect(a.process.executable ?? '', p).not.toMatch(/python/);
      if (a.ldguard.attribution === 'unknown') {
        expect(a.rule.name).toBe('Dynamic Linker (ld.so) Created by an Unidentified Process');
        expect(a.ldguard.attribution_reason).toBe('exec_unseen');
      } else {
        expect(a.process.executable).toBe('/memfd:ldg-payload (deleted)');
      }
    }
  });

  it('a rename into place carries its source, as Elastic Defend does: file.Ext.original.path and .name', async () => {
    const staged = join(realpathSync(agent.stateDir), 'staged-loader');
    writeFileSync(staged, 'not a loader');
    expect(spawnSync('mv', [staged, join(agent.root, 'lib64/ld-linux-x86-64.so.2.origin')]).status).toBe(0);
    // dpkg's way: NAME.dpkg-new renamed over NAME in the same directory, reported in the host's view.
    writeFileSync(join(agent.root, 'lib64/ld-linux-x86-64.so.2.dpkg-new'), 'x');
    expect(spawnSync('mv', [join(agent.root, 'lib64/ld-linux-x86-64.so.2.dpkg-new'), join(agent.root, 'lib64/ld-linux-x86-64.so.2.final')]).status).toBe(0);
    const alerts = await settle('origin');
    const origin = alerts.filter((a) => a.file.path === '/usr/lib64/ld-linux-x86-64.so.2.origin');
    expect(origin.map((a) => [a.rule.name, a.file.Ext?.original])).toEqual([[RENAMED, { path: staged, name: 'staged-loader' }]]);
    const final = alerts.filter((a) => a.file.path === '/usr/lib64/ld-linux-x86-64.so.2.final');
    expect(final.map((a) => a.file.Ext?.original)).toEqual([{ path: '/usr/lib64/ld-linux-x86-64.so.2.dpkg-new', name: 'ld-linux-x86-64.so.2.dpkg-new' }]);
  });

  it('a FIFO is not reported as file.type "file": file.type is left out and ldguard.file_type says fifo', async () => {
    spawnSync('mkfifo', [join(agent.root, 'lib64/ld-linux-x86-64.so.2.fifo')]);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.fifo')));
    const hits = alerts.filter((x) => x.file.path.endsWith('.fifo'));
    expect(hits).toHaveLength(1);
    expect(hits[0]!.file.type).toBeUndefined();
    expect(hits[0]!.ldguard.file_type).toBe('fifo');
    expect(hits[0]!.process.name).toBe('mkfifo');
  });

  it('a writer whose executable lies under --root is shown as the host inside the root sees it; one outside is flagged', async () => {
    mkdirSync(join(agent.root, 'usr/bin'), { recursive: true });
    const inside = join(agent.root, 'usr/bin/ldg-cp');
    copyFileSync('/bin/cp', inside);
    spawnSync('chmod', ['755', inside]);
    const r = spawnSync(inside, ['/bin/true', join(agent.root, 'lib64/ld-linux-x86-64.so.2.rooted')]);
    expect(r.status).toBe(0);
    spawnSync('cp', ['/bin/true', join(agent.root, 'lib64/ld-linux-x86-64.so.2.outside')]);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.rooted')) && a.some((x) => x.file.path.endsWith('.outside')));
    const rooted = alerts.find((x) => x.file.path.endsWith('.rooted'))!;
    expect(rooted.process.executable).toBe('/usr/bin/ldg-cp');
    expect(rooted.ldguard.process_outside_root).toBeUndefined();
    const outside = alerts.find((x) => x.file.path.endsWith('.outside'))!;
    expect(outside.process.executable).not.toContain(agent.root);
    expect(outside.ldguard.process_outside_root).toBe(true);
  });
});

// What happened while the agent was down (#18 item 2, agent/src/baseline/): the real agent on a
// scratch root, stopped, the loader changed behind its back with the genuine tools (rm + cp, an
// append, chmod/chown, dpkg --root), then started again on the same state dir. Each change must end
// in an alert saying what changed, unless the package database confirms it (then an excepted
// record, paging no one); a baseline deleted or edited meanwhile must be an alert, never a silent
// first run. Never the real /usr/lib.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { callApi, createToken, startTestCollector } from '../helpers/collector.js';
import { buildDeb, dpkgDatabase, dpkgInstall } from '../helpers/deb.js';
import { buildLoaderRpm, rpmDatabase, rpmInstall } from '../helpers/rpm.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasRpm = spawnSync('rpmbuild', ['--version']).status === 0;
const LOADER = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
const IN_PLACE = 'Dynamic Linker (ld.so) Changed in Place';
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** A scratch root with one loader, and a state dir; the agent's first run recorded and stopped. */
async function firstRun(content = 'the genuine loader\n'.repeat(200), extra: string[] = []): Promise<{ root: string; state: string; loader: string }> {
  const root = removeWhenDone(scratchRoot());
  const state = tempDir('ldg-state-');
  const loader = join(root, LOADER);
  writeFileSync(loader, content, { mode: 0o755 });
  const agent = await startAgent({ root, stateDir: state, extra });
  whenDone(() => agent.stop('SIGKILL'));
  expect(await agent.stop()).toBe(0);
  expect(agent.alerts()).toEqual([]); // a first run on a root with no package database records, unchecked
  return { root, state, loader };
}

async function restart(root: string, state: string, extra: string[] = []): Promise<RunningAgent> {
  const agent = await startAgent({ root, stateDir: state, extra });
  whenDone(() => agent.stop('SIGKILL'));
  return agent;
}

const about = (path: string) => (a: Record<string, any>) => a.file.path === path;

describe.skipIf(!isRoot)('changes made while the agent was down (skipped: needs root for fanotify and the scratch root)', () => {
  it('reports rm + cp over the loader (ext4 reuses the inode) with the new hash and what changed', async () => {
    const { root, state, loader } = await firstRun();
    const before = statSync(loader);
    const evil = join(tempDir('ldg-evil-'), 'evil');
    writeFileSync(evil, 'EVIL LOADER\n'.repeat(300));
    rmSync(loader);
    execFileSync('cp', [evil, loader]);
    const reused = statSync(loader).ino === before.ino;
    const agent = await restart(root, state);
    const alerts = (await agent.waitForAlerts((a) => a.some(about(LOADER)))).filter(about(LOADER));
    expect(alerts.length).toBeGreaterThan(0);
    const a = alerts[0]!;
    expect(a.file.hash.sha256).toBe(sha(readFileSync(evil)));
    expect(a.ldguard.excepted_by).toBeUndefined();
    expect(a.ldguard.baseline.package).toMatchObject({ verdict: 'inconclusive', reason: 'no_database' });
    expect(a.ldguard.baseline.before.sha256).toBe(sha('the genuine loader\n'.repeat(200)));
    if (reused) {
      // The case an inode-only baseline missed: same inode, other ctime, size and bytes.
      expect([a.rule.name, a.event.action, a.ldguard.baseline.status]).toEqual([IN_PLACE, 'modification', 'changed_while_down']);
      expect(a.ldguard.baseline.changed).toEqual(expect.arrayContaining(['size', 'sha256', 'ctimeMs']));
      expect(a.ldguard.baseline.changed).not.toContain('ino');
    } else {
      expect([a.event.action, a.ldguard.baseline.status]).toEqual(['creation', 'new_while_down']);
      expect(a.ldguard.baseline.changed).toEqual(expect.arrayContaining(['ino', 'sha256']));
    }
    console.log(`rm + cp while down: inode ${reused ? 'reused' : 'not reused'} (${before.ino})`);
    expect(await agent.stop()).toBe(0);
    // Accepted, so recorded: the next start is quiet.
    const again = await restart(root, state);
    expect(again.alerts()).toEqual([]);
    expect(again.logs().some((l) => l.msg === 'rule-matching files differ from the baseline at start')).toBe(false);
    expect(await again.stop()).toBe(0);
  });

  it('reports an in-place append made while down as a modification, with the old and new hashes', async () => {
    const { root, state, loader } = await firstRun();
    const ino = statSync(loader).ino;
    execFileSync('sh', ['-c', 'printf "appended" >> "$1"', 'sh', loader]);
    expect(statSync(loader).ino).toBe(ino);
    const agent = await restart(root, state);
    const [a] = (await agent.waitForAlerts((x) => x.some(about(LOADER)))).filter(about(LOADER));
    expect([a!.rule.name, a!.event.type, a!.event.action, a!.ldguard.source, a!.ldguard.attribution]).toEqual([IN_PLACE, ['change'], 'modification', 'rescan', 'unknown']);
    expect(a!.ldguard.baseline).toMatchObject({ status: 'changed_while_down', before: { sha256: sha('the genuine loader\n'.repeat(200)), size: 3800, ino } });
    expect(a!.ldguard.baseline.changed).toEqual(expect.arrayContaining(['size', 'sha256', 'mtimeMs']));
    expect(a!.file.hash.sha256).toBe(sha(readFileSync(loader)));
    expect(a!.file.size).toBe(3808);
    expect(await agent.stop()).toBe(0);
  });

  it('reports mode and owner changed while down as attributes_modified', async () => {
    const { root, state, loader } = await firstRun();
    chmodSync(loader, 0o4777);
    chownSync(loader, 1, 1);
    const agent = await restart(root, state);
    const [a] = (await agent.waitForAlerts((x) => x.some(about(LOADER)))).filter(about(LOADER));
    expect([a!.rule.name, a!.event.action, a!.ldguard.baseline.status]).toEqual([IN_PLACE, 'attributes_modified', 'changed_while_down']);
    expect([...a!.ldguard.baseline.changed].sort()).toEqual(['ctimeMs', 'gid', 'mode', 'uid']);
    expect(a!.ldguard.baseline.before).toMatchObject({ uid: 0, gid: 0, mode: 0o100755 });
    expect(a!.file.hash.sha256).toBe(sha('the genuine loader\n'.repeat(200))); // the bytes are the same
    expect(await agent.stop()).toBe(0);
  });

  it('takes a baseline of the first format (inodes only) as upgraded: no alert for a file whose inode matches, one for a file replaced', async () => {
    const root = removeWhenDone(scratchRoot());
    const state = tempDir('ldg-state-');
    const loader = join(root, LOADER);
    const other = join(root, 'usr/lib64/ld-linux-x86-64.so.2');
    writeFileSync(loader, 'the genuine loader\n', { mode: 0o755 });
    writeFileSync(other, 'the other loader\n', { mode: 0o755 });
    writeFileSync(join(state, 'agent-id'), '6f1c1d1e-0000-4000-8000-000000000001\n');
    // As an agent before this change left it: version 1, host path -> inode; the other's inode is stale.
    writeFileSync(join(state, 'known-files.json'), JSON.stringify({ version: 1, files: { [LOADER]: statSync(loader).ino, '/usr/lib64/ld-linux-x86-64.so.2': statSync(other).ino + 1 } }));
    const agent = await restart(root, state);
    const alerts = await agent.waitForAlerts((a) => a.some(about('/usr/lib64/ld-linux-x86-64.so.2')));
    expect(agent.logs().some((l) => String(l.msg).startsWith('baseline upgraded'))).toBe(true);
    expect(alerts.filter(about(LOADER))).toEqual([]);
    expect(alerts.some((a) => a.event.action?.startsWith('baseline_'))).toBe(false);
    expect(alerts.find(about('/usr/lib64/ld-linux-x86-64.so.2'))!.ldguard.baseline).toMatchObject({ status: 'new_while_down', package: { verdict: 'inconclusive' } });
    expect(await agent.stop()).toBe(0);
    // Upgraded: the next start has the facts, so an append while down is caught.
    const saved = JSON.parse(readFileSync(join(state, 'known-files.json'), 'utf8')) as { version: number; files: Record<string, { sha256?: string }> };
    expect(saved.version).toBe(2);
    expect(saved.files[LOADER]!.sha256).toBe(sha('the genuine loader\n'));
  });

  it('excepts an upgrade dpkg made while down (bytes match its md5sums), and reports an edit it does not vouch for', async () => {
    const root = removeWhenDone(scratchRoot());
    const state = tempDir('ldg-state-');
    dpkgDatabase(root);
    const rel = LOADER.slice(1);
    dpkgInstall(root, buildDeb('ldg-libc', '1.0', { [rel]: 'loader version 1\n'.repeat(100) }));
    // A real first run: the file is checked against the database, which vouches for it.
    let agent = await restart(root, state);
    expect(agent.logs().find((l) => l.msg === 'no trusted baseline: rule-matching files checked against the package database')).toMatchObject({ vouched: [LOADER], state: 'first_run' });
    expect(await agent.stop()).toBe(0);
    expect(agent.alerts()).toEqual([]);

    dpkgInstall(root, buildDeb('ldg-libc', '2.0', { [rel]: 'loader version 2\n'.repeat(120) }));
    agent = await restart(root, state);
    const mine = (await agent.waitForAlerts((x) => x.some(about(LOADER)))).filter(about(LOADER));
    expect(mine.length).toBeGreaterThan(0);
    for (const a of mine) {
      expect(a.ldguard.excepted_by).toEqual({ list_id: 'ldguard-package-database', item_id: 'dpkg-md5-verified' });
      expect(a.ldguard.baseline.package).toEqual({ manager: 'dpkg', verdict: 'verified', reason: 'md5_matches', name: 'ldg-libc' });
      expect(a.file.hash.sha256).toBe(sha('loader version 2\n'.repeat(120)));
    }
    expect(await agent.stop()).toBe(0);

    // The package's bytes, made setuid: dpkg vouches for bytes, never for a mode, so this pages.
    chmodSync(join(root, LOADER), 0o4755);
    agent = await restart(root, state);
    const [suid] = (await agent.waitForAlerts((x) => x.some(about(LOADER)))).filter(about(LOADER));
    expect([suid!.event.action, suid!.ldguard.excepted_by]).toEqual(['attributes_modified', undefined]);
    expect(suid!.ldguard.baseline).toMatchObject({ status: 'changed_while_down', package: { verdict: 'verified' } });
    expect(await agent.stop()).toBe(0);
    chmodSync(join(root, LOADER), 0o755);
    agent = await restart(root, state); // the mode put back is a change of its own (ctime): not vouched for either
    await agent.waitForAlerts((x) => x.some(about(LOADER)));
    expect(await agent.stop()).toBe(0);

    // The same file edited by hand: the package lists it with other bytes.
    execFileSync('sh', ['-c', 'printf "patched" >> "$1"', 'sh', join(root, LOADER)]);
    agent = await restart(root, state);
    const [edit] = (await agent.waitForAlerts((x) => x.some(about(LOADER)))).filter(about(LOADER));
    expect(edit!.ldguard.excepted_by).toBeUndefined();
    expect(edit!.ldguard.baseline).toMatchObject({ status: 'changed_while_down', package: { verdict: 'mismatch', reason: 'md5_differs', name: 'ldg-libc' } });
    expect(await agent.stop()).toBe(0);
  });
});

describe.skipIf(!isRoot || !hasRpm)('changes while down on an rpm root (skipped: needs root, rpm and rpmbuild)', () => {
  it('vouches on a first run, excepts an upgrade rpm made while down (sha256 of rpm\'s database), and reports an edit', async () => {
    const root = removeWhenDone(scratchRoot());
    const state = tempDir('ldg-state-');
    rpmDatabase(root);
    const RPM_LOADER = '/usr/lib64/ld-linux-ldgrpm.so.1';
    rpmInstall(root, buildLoaderRpm(false));
    // A real first run: rpm's database vouches for the loader, read by the agent itself.
    let agent = await restart(root, state);
    expect(agent.logs().find((l) => l.msg === 'no trusted baseline: rule-matching files checked against the package database')).toMatchObject({ vouched: [RPM_LOADER], state: 'first_run' });
    expect(await agent.stop()).toBe(0);
    expect(agent.alerts()).toEqual([]);

    // Upgraded while down by the genuine rpm: a change rpm's database confirms, excepted.
    const v2 = buildLoaderRpm(false, { release: '2', content: '/usr/bin/true' });
    execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '-U', '--nodeps', v2], { stdio: 'pipe' });
    agent = await restart(root, state);
    const mine = (await agent.waitForAlerts((x) => x.some(about(RPM_LOADER)))).filter(about(RPM_LOADER));
    expect(mine.length).toBeGreaterThan(0);
    for (const a of mine) {
      expect(a.ldguard.excepted_by).toEqual({ list_id: 'ldguard-package-database', item_id: 'rpm-sha256-verified' });
      expect(a.ldguard.baseline.package).toEqual({ manager: 'rpm', verdict: 'verified', reason: 'sha256_matches', name: 'ldg-rpmld' });
      expect(a.file.hash.sha256).toBe(sha(readFileSync('/usr/bin/true')));
    }
    expect(await agent.stop()).toBe(0);

    // Edited by hand while down: rpm lists it with other bytes.
    execFileSync('sh', ['-c', 'printf "patched" >> "$1"', 'sh', join(root, RPM_LOADER)]);
    agent = await restart(root, state);
    const [edit] = (await agent.waitForAlerts((x) => x.some(about(RPM_LOADER)))).filter(about(RPM_LOADER));
    expect(edit!.ldguard.excepted_by).toBeUndefined();
    expect(edit!.ldguard.baseline).toMatchObject({ status: 'changed_while_down', package: { manager: 'rpm', verdict: 'mismatch', reason: 'sha256_differs', name: 'ldg-rpmld' } });
    expect(await agent.stop()).toBe(0);
  });
});

describe.skipIf(!isRoot)('a baseline deleted or edited while the agent was down, with a collector (skipped: needs root)', () => {
  const stored = async (port: number, admin: string, pred: (a: Array<Record<string, any>>) => boolean) => {
    const end = Date.now() + 15_000;
    for (;;) {
      const all = ((await callApi(port, '/api/alerts?limit=1000', admin)).body.alerts ?? []) as Array<Record<string, any>>;
      if (pred(all) || Date.now() > end) return all;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  async function withCollector() {
    const dir = tempDir('ldg-coll-');
    const db = join(dir, 'collector.db');
    const c = await startTestCollector(dir, db);
    const tokenFile = join(dir, 'agent.token');
    writeFileSync(tokenFile, `${await createToken(db, 'while-down')}\n`, { mode: 0o600 });
    const admin = await createToken(db, 'admin', 'admin');
    return { port: c.port, admin, extra: ['--collector', `ws://127.0.0.1:${c.port}`, '--token-file', tokenFile] };
  }

  it('alerts when the baseline was deleted, naming the generation it expected, and does not trust the files on disk', async () => {
    const c = await withCollector();
    const { root, state } = await firstRun(undefined, c.extra);
    const seal = JSON.parse(readFileSync(join(state, 'known-files.json.seal'), 'utf8')) as { generation: number };
    rmSync(join(state, 'known-files.json'));
    const agent = await restart(root, state, c.extra);
    const all = await stored(c.port, c.admin, (a) => a.some((x) => x.event.action === 'baseline_missing') && a.some(about(LOADER)));
    const lost = all.find((x) => x.event.action === 'baseline_missing')!;
    expect(lost.rule.name).toBe('ldguard Baseline Missing or Tampered');
    expect(lost.ldguard.baseline_state).toMatchObject({ kind: 'missing', expected_generation: seal.generation });
    const file = all.find(about(LOADER))!;
    expect(file.ldguard.baseline).toMatchObject({ status: 'unverified', baseline_state: 'missing', package: { verdict: 'inconclusive', reason: 'no_database' } });
    expect(file.ldguard.excepted_by).toBeUndefined();
    expect(await agent.stop()).toBe(0);
  });

  it('says, when the baseline and its seal are both wiped, that the baseline is missing; the collector, that its generation went back', async () => {
    const c = await withCollector();
    const { root, state } = await firstRun(undefined, c.extra);
    const second = await restart(root, state, c.extra); // each start saves: the generation grows
    expect(await second.stop()).toBe(0);
    const seal = JSON.parse(readFileSync(join(state, 'known-files.json.seal'), 'utf8')) as { generation: number };
    expect(seal.generation).toBeGreaterThanOrEqual(2);
    rmSync(join(state, 'known-files.json'));
    rmSync(join(state, 'known-files.json.seal'));
    const agent = await restart(root, state, c.extra);
    const all = await stored(c.port, c.admin, (a) => a.some((x) => x.event.action === 'baseline_missing') && a.some((x) => x.ldguard?.notice?.kind === 'baseline_rolled_back'));
    // The agent knows only that it ran before (its agent id is there), not the generation.
    expect(all.find((x) => x.event.action === 'baseline_missing')!.ldguard.baseline_state).toEqual({ kind: 'missing', detail: expect.stringContaining('known-files.json is gone') });
    const n = all.find((x) => x.ldguard?.notice?.kind === 'baseline_rolled_back')!;
    expect(n.ldguard.notice.reason).toContain(`lower than ${seal.generation} recorded before`);
    expect(n.ldguard.notice.claimed_agent_id).toBe(readFileSync(join(state, 'agent-id'), 'utf8').trim());
    expect(all.some((x) => x.ldguard?.notice?.kind === 'agent_replaced')).toBe(false); // the same agent id: only its baseline went
    expect(await agent.stop()).toBe(0);
  });

  it('alerts when the baseline was edited by hand (an entry dropped), and reports the file again', async () => {
    const c = await withCollector();
    const { root, state } = await firstRun(undefined, c.extra);
    const file = join(state, 'known-files.json');
    const data = JSON.parse(readFileSync(file, 'utf8')) as { generation: number; files: Record<string, unknown> };
    delete data.files[LOADER];
    writeFileSync(file, JSON.stringify(data));
    const agent = await restart(root, state, c.extra);
    const all = await stored(c.port, c.admin, (a) => a.some((x) => x.event.action === 'baseline_edited') && a.some(about(LOADER)));
    const edited = all.find((x) => x.event.action === 'baseline_edited')!;
    expect(edited.ldguard.baseline_state).toMatchObject({ kind: 'edited', expected_generation: data.generation, found_generation: data.generation });
    expect(all.find(about(LOADER))!.ldguard.baseline).toMatchObject({ status: 'unverified', baseline_state: 'edited' });
    expect(await agent.stop()).toBe(0);
  });
});

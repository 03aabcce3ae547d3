// Exclusions that can't be faked (#19): the real agent on a scratch root where the genuine dpkg
// installed "ldg-fakepm" (cp shipped as /usr/bin/dnf). Each writer stays alive (cp reading a pipe)
// until its alert is in, so the agent judges a live process, as it does a package manager.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, closeSync, constants, copyFileSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildFakePm, dpkgDatabase, dpkgInstall } from '../helpers/deb.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const MASQ_ID = 'b7c1e9a2-4f3d-4a6b-9e2c-1d8f5a7b3c64';

/**
 * Runs `exe FIFO dest` (cp semantics: it creates dest, copies what the FIFO gives) and keeps it
 * alive until close() ends the FIFO. A FIFO, not a pipe on stdin: node's stdio pipes are sockets,
 * which cp cannot open by /dev/stdin. Opened O_RDWR so the open does not wait for cp.
 */
function heldCp(exe: string, dest: string): { child: ChildProcess; close: () => void } {
  const fifo = join(tempDir('ldg-fifo-'), 'in');
  execFileSync('mkfifo', [fifo]);
  const fd = openSync(fifo, constants.O_RDWR);
  writeSync(fd, 'x');
  const child = spawn(exe, [fifo, dest], { stdio: ['ignore', 'ignore', 'inherit'] });
  whenDone(() => child.kill('SIGKILL'));
  return { child, close: () => closeSync(fd) };
}

describe.skipIf(!isRoot)('writers posing as package managers (skipped: needs root for fanotify and dpkg --root)', () => {
  it('alerts on an unregistered dnf, a comm set to dnf, and a registered non-manager dnf; verified vs mismatch', async () => {
    const root = removeWhenDone(scratchRoot('ldg-masq-'));
    dpkgDatabase(root);
    dpkgInstall(root, buildFakePm());
    mkdirSync(join(root, 'opt'), { recursive: true });
    copyFileSync('/bin/cp', join(root, 'opt/dnf')); // the same bytes, in no package
    chmodSync(join(root, 'opt/dnf'), 0o755);

    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    const lib64 = join(root, 'lib64');
    const byPath = (alerts: Array<Record<string, any>>, suffix: string) => alerts.filter((a) => a.file.path.endsWith(suffix));
    const alertFor = async (suffix: string) => {
      const all = await agent.waitForAlerts((a) => byPath(a, suffix).length > 0);
      return byPath(all, suffix);
    };

    // 1. The unregistered copy: the seed rule spares it by name; the masquerade rule does not.
    const unreg = heldCp(join(root, 'opt/dnf'), join(lib64, 'ld-linux-x86-64.so.2.unreg'));
    let got = await alertFor('.unreg');
    unreg.close();
    expect(got.map((a) => a.rule.id)).toEqual([MASQ_ID]);
    expect(got[0]).toMatchObject({ process: { pid: unreg.child.pid, name: 'dnf', executable: '/opt/dnf' }, ldguard: { package: { manager: 'dpkg', verdict: 'inconclusive', reason: 'not_in_any_package' } } });

    // 2. The registered package's binary: verified, but ldg-fakepm is no package manager's package.
    const reg = heldCp(join(root, 'usr/bin/dnf'), join(lib64, 'ld-linux-x86-64.so.2.reg'));
    got = await alertFor('.reg');
    reg.close();
    expect(got.map((a) => a.rule.id)).toEqual([MASQ_ID]);
    expect(got[0]!.ldguard.package).toEqual({ manager: 'dpkg', name: 'ldg-fakepm', verdict: 'verified', reason: 'md5_matches' });

    // 3. Its bytes altered after install: mismatch (once the running copy is gone: ETXTBSY otherwise).
    if (reg.child.exitCode === null && reg.child.signalCode === null) await new Promise((r) => reg.child.once('exit', r));
    appendFileSync(join(root, 'usr/bin/dnf'), Buffer.from([0]));
    const bad = heldCp(join(root, 'usr/bin/dnf'), join(lib64, 'ld-linux-x86-64.so.2.bad'));
    got = await alertFor('.bad');
    bad.close();
    expect(got.map((a) => a.rule.id)).toEqual([MASQ_ID]);
    expect(got[0]!.ldguard.package).toEqual({ manager: 'dpkg', name: 'ldg-fakepm', verdict: 'mismatch', reason: 'md5_differs' });

    // 4. A process that set its own comm to dnf (python3, judged against the agent's host database).
    const py = spawn('python3', ['-c', "import sys\nopen('/proc/self/comm','w').write('dnf')\nf=open(sys.argv[1],'w'); f.write('x'); f.flush(); sys.stdin.read()", join(lib64, 'ld-linux-x86-64.so.2.comm')], { stdio: ['pipe', 'ignore', 'inherit'] });
    whenDone(() => py.kill('SIGKILL'));
    got = await alertFor('.comm');
    py.stdin!.end();
    expect(got.map((a) => a.rule.id)).toEqual([MASQ_ID]);
    expect(got[0]).toMatchObject({ process: { pid: py.pid, name: 'dnf' } });
    expect(got.every((a) => a.rule.id !== SEED_ID)).toBe(true);
    expect(await agent.stop()).toBe(0);
  });
});

// Package managers written as scripts (#19 item 2): dnf is `#!/usr/bin/python3`, so the process that
// writes is python3 (comm "dnf"). The genuine dnf (Debian's package) installs a locally built rpm
// into a scratch root's rpm database, offline, under the agent: the writer is judged with the script
// the kernel executed (/usr/bin/dnf-3, from its own exec event in the exec cache), and its writes to
// ROOT/var/lib/rpm (watched now) raise no package-database alert. The same dnf named only in argv
// (`python3 /usr/bin/dnf`) is python3, no package manager: its database write pages, as does dnf's
// with PYTHONPATH set. A script in no package, named dnf, with the same "#!" line: the masquerade
// rule fires.
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildLoaderRpm, rpmDatabase, rpmHome } from '../helpers/rpm.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const DNF = '/usr/bin/dnf';
const PYTHON = '/usr/bin/python3';
const hasDnf = spawnSync(DNF, ['--version']).status === 0 && spawnSync('rpmbuild', ['--version']).status === 0;
const DB_RULE_ID = '5c2d8e41-7b9a-4f06-a3d1-9e4b6c0f2a87';
const MASQ_ID = 'b7c1e9a2-4f3d-4a6b-9e2c-1d8f5a7b3c64';

/** dnf on the root alone: no repository (offline), the local .rpm only. */
const dnfArgs = (root: string, ...cmd: string[]) => ['--installroot', root, '--setopt=reposdir=/nonexistent', '--disablerepo=*', '-y', '-q', ...cmd];

/** An alert in one line, for messages that say what came instead. */
const brief = (a: Record<string, any>) => `${a.rule.name}: ${a.event.action} ${a.file.path} by ${a.process?.executable} pid ${a.process?.pid} (${a.ldguard.package?.verdict} ${a.ldguard.package?.reason})`;

describe.skipIf(!isRoot || !hasDnf)('dnf, a Python script, as a package manager (skipped: needs root, dnf and rpmbuild: apt-get install dnf rpm)', () => {
  it('verifies dnf run as /usr/bin/dnf by its script, not python3 /usr/bin/dnf; a script named dnf in no package is a masquerade', async () => {
    const root = removeWhenDone(scratchRoot('ldg-dnf-'));
    rpmDatabase(root);
    const pkg = buildLoaderRpm(false);
    const env = { ...process.env, HOME: rpmHome() };
    // Made before the agent starts: a script changed (ctime) after its process started is not judged.
    const fake = join(tempDir('ldg-fakednf-'), 'dnf');
    writeFileSync(fake, `#!${PYTHON}\nimport shutil, sys\nshutil.copyfile('/lib64/ld-linux-x86-64.so.2', sys.argv[1])\n`);
    chmodSync(fake, 0o755);
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    expect(agent.logs().find((l) => l.msg === 'package databases watched')?.dirs).toEqual(['/var/lib/rpm']);
    const isDb = (a: Record<string, any>) => a.rule.id === DB_RULE_ID;

    // 1. The genuine dnf, as its "#!" line runs it. Its rename of rpm's NAME;<hex> into place pages
    // (the ldguard rename rule: no repository offers the package), naming dnf's package, verified.
    const install = spawnSync(DNF, dnfArgs(root, 'install', pkg), { encoding: 'utf8', env });
    expect(install.status, install.stderr).toBe(0);
    const final = (a: Record<string, any>) => a.file.path === '/usr/lib64/ld-linux-ldgrpm.so.1' && a.process?.pid === install.pid;
    let alerts = await agent.waitForAlerts((all) => all.some(final), 30_000);
    const placed = alerts.filter(final);
    expect(placed.map(brief)).toEqual([expect.stringMatching(/^Dynamic Linker \(ld\.so\) Renamed Into Place: /)]);
    expect(placed[0]).toMatchObject({
      process: { name: 'dnf', executable: '/usr/bin/python3.11' },
      ldguard: {
        package: {
          manager: 'dpkg', name: 'dnf', role: 'package_manager', verdict: 'verified',
          interpreter: { name: 'python3.11-minimal', verdict: 'verified' },
          script: { path: '/usr/bin/dnf-3', name: 'dnf', role: 'package_manager', verdict: 'verified', reason: 'md5_matches_at_path' },
        },
        file_package: { manager: 'rpm', name: 'ldg-rpmld', verdict: 'verified' },
      },
    });
    // Verified, so no masquerade (that rule names dnf); the seed rule spares comm "dnf" by name.
    expect(alerts.filter((a) => a.rule.id === MASQ_ID).map(brief)).toEqual([]);

    // 2. The same dnf named only in argv: python3 is the script the kernel ran, in no package
    // manager's package. Its removal writes rpm's database: the package-database alert.
    const remove = spawnSync(PYTHON, [DNF, ...dnfArgs(root, 'remove', 'ldg-rpmld')], { encoding: 'utf8', env });
    expect(remove.status, remove.stderr).toBe(0);
    alerts = await agent.waitForAlerts((all) => all.some((a) => isDb(a) && a.process?.pid === remove.pid), 30_000);
    const byArgv = alerts.filter((a) => isDb(a) && a.process?.pid === remove.pid);
    expect(byArgv.length).toBeGreaterThan(0);
    expect(byArgv[0]!.file.path).toMatch(/^\/var\/lib\/rpm\/rpmdb\.sqlite/);
    expect(byArgv[0]).toMatchObject({ process: { name: 'python3', executable: '/usr/bin/python3.11' }, ldguard: { package: { name: 'python3.11-minimal', verdict: 'verified' } } });
    expect(byArgv[0]!.ldguard.package.role).toBeUndefined();
    expect(byArgv[0]!.ldguard.package.script).toBeUndefined();
    // Everything before it was processed first: dnf's own writes (and the agent's rpm queries) paged no one.
    expect(alerts.filter((a) => isDb(a) && a.process?.pid !== remove.pid).map(brief)).toEqual([]);

    // 2b. dnf through its "#!" line again, with a module path of one's own: python3 would import a
    // planted dnf from it. The interpreter is not verified, so neither is the writer.
    const planted = spawnSync(DNF, dnfArgs(root, 'install', pkg), { encoding: 'utf8', env: { ...env, PYTHONPATH: tempDir('ldg-pypath-') } });
    expect(planted.status, planted.stderr).toBe(0);
    alerts = await agent.waitForAlerts((all) => all.some((a) => isDb(a) && a.process?.pid === planted.pid), 30_000);
    expect(alerts.find((a) => isDb(a) && a.process?.pid === planted.pid)).toMatchObject({
      process: { name: 'dnf' },
      ldguard: { package: { name: 'dnf', verdict: 'inconclusive', reason: 'interpreter_environment', script: { path: '/usr/bin/dnf-3', verdict: 'verified' } } },
    });

    // 3. A plain overwrite of the database by cp: the package-database alert.
    expect(spawnSync('cp', ['/etc/hostname', join(root, 'var/lib/rpm/rpmdb.sqlite')]).status).toBe(0);
    alerts = await agent.waitForAlerts((all) => all.some((a) => isDb(a) && a.process?.executable === '/usr/bin/cp'), 30_000);
    expect(alerts.filter((a) => isDb(a) && a.process?.executable === '/usr/bin/cp').map((a) => [a.file.path, a.event.action])).toContainEqual(['/var/lib/rpm/rpmdb.sqlite', 'modification']);

    // 4. A script in no package, named dnf, run through the same "#!" line: the masquerade rule.
    const fakeRun = spawnSync(fake, [join(root, 'lib64/ld-linux-x86-64.so.2.fakednf')]);
    expect(fakeRun.status).toBe(0);
    const isPlanted = (a: Record<string, any>) => a.file.path === '/lib64/ld-linux-x86-64.so.2.fakednf' || a.file.path === '/usr/lib64/ld-linux-x86-64.so.2.fakednf';
    alerts = await agent.waitForAlerts((all) => all.some(isPlanted), 30_000);
    const masq = alerts.filter(isPlanted);
    expect(masq.map((a) => a.rule.id)).toEqual([MASQ_ID]);
    expect(masq[0]).toMatchObject({
      process: { pid: fakeRun.pid, name: 'dnf', executable: '/usr/bin/python3.11' },
      ldguard: {
        package: { verdict: 'inconclusive', reason: 'not_in_any_package', interpreter: { verdict: 'verified' }, script: { path: fake, verdict: 'inconclusive', reason: 'not_in_any_package' } },
      },
    });
    expect(await agent.stop()).toBe(0);
  });
});

// The file's package verdict with rpm (#19): the genuine rpmbuild builds a package shipping a loader,
// the genuine rpm installs it into a scratch root's own database under the agent. rpm writes
// NAME;<hex> and renames it into place: the temporary name is judged as NAME, once rpm exited,
// against rpm's database (asked through the host's verified rpm). It alerts: the package is
// verified but no repository offers it (the root configures none: package-rpm-repo.test.ts). rpm's
// database is watched: rpm's writes to it page no one, a cp over it does.
// And the writer on an rpm system (the agent reads rpm's database itself, not through the host's
// rpm): an executable the root's rpm database lists, in a package named like a package manager, is
// judged by the sha256 that database recorded; its bytes changed, it is a masquerade.
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildLoaderRpm, buildRpm, rpmDatabase, rpmInstall } from '../helpers/rpm.js';
import { removeWhenDone, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasRpm = spawnSync('rpmbuild', ['--version']).status === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const DB_RULE_ID = '5c2d8e41-7b9a-4f06-a3d1-9e4b6c0f2a87';
const MASQ_ID = 'b7c1e9a2-4f3d-4a6b-9e2c-1d8f5a7b3c64';

describe.skipIf(!isRoot || !hasRpm)('rpm installs (skipped: needs root, rpm and rpmbuild)', () => {
  it('judges the loader rpm wrote against rpm\'s database (verified, ldg-rpmld 1.0-1) and alerts: no repository offers it', async () => {
    const root = removeWhenDone(scratchRoot('ldg-rpm-'));
    rpmDatabase(root);
    const pkg = buildLoaderRpm();
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));

    rpmInstall(root, pkg);
    const tmp = (a: Record<string, any>) => a.rule.id === SEED_ID && /^\/usr\/lib64\/ld-linux-ldgrpm\.so\.1;[0-9a-f]{8}$/.test(a.file.path);
    const final = (a: Record<string, any>) => a.file.path === '/usr/lib64/ld-linux-ldgrpm.so.1';
    const alerts = await agent.waitForAlerts((all) => all.some(tmp) && all.some(final), 30_000);
    const created = alerts.filter(tmp);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({
      process: { executable: '/usr/bin/rpm' },
      ldguard: {
        package: { name: 'rpm', role: 'package_manager', verdict: 'verified' },
        file_package: { manager: 'rpm', judged_as: '/usr/lib64/ld-linux-ldgrpm.so.1', name: 'ldg-rpmld', version: '1.0-1', verdict: 'verified', reason: 'sha256_matches' },
      },
    });
    expect(created[0]!.ldguard.excepted_by).toBeUndefined();
    expect(created[0]!.ldguard.file_package.offered_by).toBeUndefined();
    // Renamed into place: it pages as well (judged the same way, or, if rpm was already gone, unverified).
    for (const a of alerts.filter(final)) expect(a.ldguard.excepted_by).toBeUndefined();

    // rpm's database is watched: rpm's own writes to it (rpmdb.sqlite, -wal, -shm) and the agent's
    // queries (rpm -q writes -shm) are a verified package manager's; a cp over it is not. Its alert
    // comes after everything before it was judged, so none of rpm's paged.
    expect(agent.logs().find((l) => l.msg === 'package databases watched')?.dirs).toEqual(['/var/lib/rpm']);
    const isDb = (a: Record<string, any>) => a.rule.id === DB_RULE_ID;
    const byCp = (a: Record<string, any>) => isDb(a) && a.process?.executable === '/usr/bin/cp';
    expect(spawnSync('cp', ['/etc/hostname', join(root, 'var/lib/rpm/rpmdb.sqlite')]).status).toBe(0);
    const all = await agent.waitForAlerts((a) => a.some(byCp), 30_000);
    expect(all.filter(byCp).map((a) => [a.file.path, a.event.action])).toContainEqual(['/var/lib/rpm/rpmdb.sqlite', 'modification']);
    expect(all.filter((a) => isDb(a) && !byCp(a)).map((a) => `${a.file.path} by ${a.process?.executable}`)).toEqual([]);
    expect(await agent.stop()).toBe(0);
  });

  it('judges a writer in the root against the root\'s rpm database: a package named rpm listing the executable is verified by sha256; its bytes changed, a masquerade', async () => {
    const root = removeWhenDone(scratchRoot('ldg-rpmwriter-'));
    rpmDatabase(root);
    // A package "rpm" whose /usr/bin/rpm is a copy of cp: a package manager's package by name, its bytes as recorded.
    rpmInstall(root, buildRpm('rpm', [['/usr/bin/rpm', '/usr/bin/cp']], '4.99'));
    const tool = join(root, 'usr/bin/rpm');
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    const write = (name: string) => {
      const r = spawnSync(tool, ['/lib64/ld-linux-x86-64.so.2', join(root, 'usr/lib64', name)]);
      expect(r.status).toBe(0);
      return r.pid;
    };
    const of = (pid: number | undefined) => (a: Record<string, any>) => a.process?.pid === pid;
    const pid = write('ld-linux-rpmwriter.so.2');
    let alerts = await agent.waitForAlerts((all) => all.some(of(pid)), 30_000);
    const genuine = alerts.filter(of(pid));
    expect(genuine.map((a) => a.rule.id)).toEqual([SEED_ID]);
    expect(genuine[0]).toMatchObject({
      process: { executable: '/usr/bin/rpm', name: 'rpm' },
      // cp may exit before it is judged: then it is judged at its path.
      ldguard: { package: { manager: 'rpm', name: 'rpm', role: 'package_manager', verdict: 'verified', reason: expect.stringMatching(/^sha256_matches(_at_path)?$/) } },
    });
    // The same executable with bytes the package did not ship: a mismatch, and a package manager's name on it.
    appendFileSync(tool, Buffer.from('changed'));
    // Changed well before it starts: a change within the clock tick of its start reads as a change since (inconclusive).
    await new Promise((r) => setTimeout(r, 100));
    const changed = write('ld-linux-rpmwriter2.so.2');
    alerts = await agent.waitForAlerts((all) => all.filter(of(changed)).length >= 2, 30_000); // two rules: their lines may land apart
    const forged = alerts.filter(of(changed));
    expect(forged.map((a) => a.rule.id).sort()).toEqual([MASQ_ID, SEED_ID].sort()); // the seed rule spares no "rpm" by name
    expect(forged[0]!.ldguard.package).toMatchObject({ manager: 'rpm', name: 'rpm', verdict: 'mismatch', reason: 'sha256_differs' });
    expect(await agent.stop()).toBe(0);
  });
});

// The file's package verdict with rpm (#19): the genuine rpmbuild builds a package shipping a loader,
// the genuine rpm installs it into a scratch root's own database under the agent. rpm writes
// NAME;<hex> and renames it into place: the temporary name is judged as NAME, once rpm exited,
// against rpm's database (asked through the host's verified rpm). It alerts: the package is
// verified but no repository offers it (the root configures none: package-rpm-repo.test.ts). rpm's
// database is watched: rpm's writes to it page no one, a cp over it does.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildLoaderRpm, rpmDatabase, rpmInstall } from '../helpers/rpm.js';
import { removeWhenDone, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasRpm = spawnSync('rpmbuild', ['--version']).status === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const DB_RULE_ID = '5c2d8e41-7b9a-4f06-a3d1-9e4b6c0f2a87';

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
});

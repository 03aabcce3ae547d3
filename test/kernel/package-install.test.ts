// The default exception with real package managers (#19): a Debian root made by the genuine
// debootstrap (cached: the first run makes it, which takes minutes), the real libc6 .deb that
// root's repository offers (apt-get download), installed by the genuine dpkg under the agent.
// A real install pages no one, and is on record as excepted with its package named; a package
// built here shipping a loader, installed by the same genuine dpkg, alerts: no repository offers it.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startAgent } from '../helpers/agent.js';
import { buildImpostorDeb, buildLocalLoaderDeb } from '../helpers/deb.js';
import { DEBOOTSTRAP_MS, debianRoot, downloadedDeb } from '../helpers/debootstrap.js';
import { tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasDebootstrap = spawnSync('debootstrap', ['--version']).status === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const DB_RULE_ID = '5c2d8e41-7b9a-4f06-a3d1-9e4b6c0f2a87';
const EXCEPTED = { list_id: 'ldguard-verified-package-install', item_id: 'verified-manager-offered-package' };

/** An alert in one line, for messages that say what came instead. */
const brief = (a: Record<string, any>) => `${a.rule.name}: ${a.event.action} ${a.file.path} by ${a.process?.executable} (${a.ldguard.attribution}, ${a.ldguard.package?.reason})`;

function dpkgI(root: string, deb: string): void {
  execFileSync('dpkg', [`--root=${root}`, '--force-unsafe-io', '-i', deb], { stdio: 'pipe' });
}

describe.skipIf(!isRoot || !hasDebootstrap)('package installs in a debootstrap root (skipped: needs root and debootstrap)', () => {
  it('a real dpkg -i of libc6 is recorded as excepted, naming libc6; a locally built loader package alerts', async () => {
    const root = debianRoot(tempDir('ldg-debroot-'));
    const libc6 = downloadedDeb('libc6');
    const version = /libc6_([^_]+)_/.exec(libc6)![1]!.replace('%3a', ':');
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));

    dpkgI(root, libc6);
    // dpkg has exited: its held events are judged within the settle poll.
    const seedTmp = (a: Record<string, any>) => a.rule.id === SEED_ID && a.file.path === '/usr/lib64/ld-linux-x86-64.so.2.dpkg-new';
    let alerts = await agent.waitForAlerts((all) => all.length >= 5 && all.some(seedTmp), 30_000);
    // Measured: the seed rule on the symlink's .dpkg-new and .dpkg-tmp, the rename rule on the
    // symlink renamed into place, the multiarch rule on the loader's own .dpkg-new and .dpkg-tmp.
    expect(alerts.map((a) => `${a.rule.name}: ${a.file.path}`).sort()).toEqual([
      'Dynamic Linker (ld.so) Creation in a Multiarch Directory: /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.dpkg-new',
      'Dynamic Linker (ld.so) Creation in a Multiarch Directory: /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.dpkg-tmp',
      'Dynamic Linker (ld.so) Creation: /usr/lib64/ld-linux-x86-64.so.2.dpkg-new',
      'Dynamic Linker (ld.so) Creation: /usr/lib64/ld-linux-x86-64.so.2.dpkg-tmp',
      'Dynamic Linker (ld.so) Renamed Into Place: /usr/lib64/ld-linux-x86-64.so.2',
    ]);
    // Every one on record, none paging: excepted, the package named, the writer the host's dpkg.
    for (const a of alerts) {
      expect(a.process.executable).toBe('/usr/bin/dpkg');
      expect(a.ldguard.excepted_by).toEqual(EXCEPTED);
      expect(a.ldguard.file_package).toMatchObject({ name: 'libc6', version, verdict: 'verified' });
    }
    expect(alerts.find(seedTmp)).toMatchObject({
      ldguard: {
        excepted_by: EXCEPTED,
        package: { name: 'dpkg', role: 'package_manager', verdict: 'verified' },
        file_package: { judged_as: '/usr/lib64/ld-linux-x86-64.so.2', name: 'libc6', version, verdict: 'verified', offered_by: 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages' },
      },
    });

    const before = alerts.length;
    dpkgI(root, buildLocalLoaderDeb());
    const local = (a: Record<string, any>) => a.file.path.startsWith('/usr/lib64/ld-linux-ldg.so.1');
    alerts = await agent.waitForAlerts((all) => all.filter(local).length >= 2, 30_000);
    const mine = alerts.slice(before).filter(local);
    expect(mine.map((a) => [a.rule.name, a.file.path])).toEqual([
      ['Dynamic Linker (ld.so) Creation', '/usr/lib64/ld-linux-ldg.so.1.dpkg-new'],
      ['Dynamic Linker (ld.so) Renamed Into Place', '/usr/lib64/ld-linux-ldg.so.1'],
    ]);
    expect(alerts.slice(before).filter((a) => !local(a)).map(brief)).toEqual([]); // nothing late from libc6
    for (const a of mine) {
      expect(a.ldguard.excepted_by).toBeUndefined();
      expect(a.ldguard.file_package).toMatchObject({ name: 'ldg-localld', version: '1.0', verdict: 'verified' });
      expect(a.ldguard.file_package.offered_by).toBeUndefined();
    }

    // An impostor: a package built here under the name and version the repository offers for
    // "hello", shipping a loader. Verified (dpkg recorded its own md5sums), but not the index's .deb.
    const index = readFileSync(join(root, 'var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages'), 'utf8');
    const helloVersion = /\nPackage: hello\n(?:.+\n)*?Version: (.+)\n/.exec(index)![1]!;
    // Two genuine installs: dpkg's own database writes are a verified package manager's.
    expect(alerts.filter((a) => a.rule.id === DB_RULE_ID).map(brief)).toEqual([]);
    const atImpostor = alerts.length;
    dpkgI(root, buildImpostorDeb('hello', helloVersion));
    const evil = (a: Record<string, any>) => a.file.path.startsWith('/usr/lib64/ld-linux-evil.so.2');
    alerts = await agent.waitForAlerts((all) => all.filter(evil).length >= 2, 30_000);
    const impostor = alerts.slice(atImpostor).filter(evil);
    expect(impostor.map((a) => a.rule.name)).toEqual(['Dynamic Linker (ld.so) Creation', 'Dynamic Linker (ld.so) Renamed Into Place']);
    for (const a of impostor) {
      expect(a.ldguard.excepted_by).toBeUndefined();
      expect(a.ldguard.file_package).toMatchObject({ name: 'hello', version: helloVersion, verdict: 'verified' });
      expect(a.ldguard.file_package.offered_by).toBeUndefined();
    }

    // A fake one: cp copied to /usr/local/bin/dpkg, writing dpkg's temporary name. Not a verified
    // package manager, so nothing waits and nothing spares it.
    copyFileSync('/bin/cp', join(root, 'usr/local/bin/dpkg'));
    chmodSync(join(root, 'usr/local/bin/dpkg'), 0o755);
    expect(spawnSync(join(root, 'usr/local/bin/dpkg'), ['/etc/hostname', join(root, 'lib64/ld-linux-x86-64.so.2.dpkg-new')]).status).toBe(0);
    const fake = (a: Record<string, any>) => a.rule.id === SEED_ID && a.process?.executable === '/usr/local/bin/dpkg';
    const faked = (await agent.waitForAlerts((all) => all.some(fake))).filter(fake);
    expect(faked).toHaveLength(1);
    expect(faked[0]!.ldguard.excepted_by).toBeUndefined();
    expect(faked[0]!.ldguard.file_package).toBeUndefined();
    expect(await agent.stop()).toBe(0);
  }, DEBOOTSTRAP_MS + 120_000);

  it('a real apt-get install --reinstall libc6 inside the root (its own apt and dpkg) is recorded as excepted too', async () => {
    const root = debianRoot(tempDir('ldg-debroot-'));
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    // debootstrap left the .debs it installed in apt's archive: apt takes libc6 from there, checked
    // against the root's index, and runs the root's dpkg on /var/cache/apt/archives/libc6_*.deb.
    execFileSync('chroot', [root, 'apt-get', 'install', '--reinstall', '-y', '-q', '--no-download', 'libc6'], { stdio: 'pipe', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    const alerts = await agent.waitForAlerts((all) => all.length >= 5, 30_000);
    expect(alerts.map(brief).filter((b) => !b.startsWith('Dynamic Linker'))).toEqual([]);
    expect(alerts).toHaveLength(5);
    for (const a of alerts) {
      expect(a.process.executable).toBe('/usr/bin/dpkg');
      expect(a.ldguard.process_outside_root).toBeUndefined();
      expect(a.process.args.filter((x: string) => /^\/var\/cache\/apt\/archives\/libc6_.+_amd64\.deb$/.test(x))).toHaveLength(1);
      expect(a.ldguard.excepted_by).toEqual(EXCEPTED);
      expect(a.ldguard.file_package).toMatchObject({ name: 'libc6', verdict: 'verified', offered_by: 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages' });
    }
    expect(await agent.stop()).toBe(0);
  }, DEBOOTSTRAP_MS + 120_000);

  it('alerts on the package database written by anything else, and trusts it no more: the same libc6 install then pages', async () => {
    const root = debianRoot(tempDir('ldg-debroot-'));
    const libc6 = downloadedDeb('libc6');
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    expect(agent.logs().find((l) => l.msg === 'package databases watched')?.dirs).toEqual(['/var/lib/dpkg', '/var/lib/dpkg/info', '/var/lib/dpkg/updates', '/var/lib/apt/lists']);
    const isDb = (a: Record<string, any>) => a.rule.id === DB_RULE_ID;

    // In place: a shell appends a digest line to libc6's md5sums (dash is in no package manager's package).
    const sh = spawnSync('sh', ['-c', `echo "00000000000000000000000000000000  usr/lib/evil.so" >> '${join(root, 'var/lib/dpkg/info/libc6:amd64.md5sums')}'`]);
    expect(sh.status).toBe(0);
    // A package of one's own listed as published: a paragraph appended to apt's index.
    const index = join(root, 'var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages');
    expect(spawnSync('sh', ['-c', `printf '\\nPackage: ldg-localld\\nVersion: 1.0\\nArchitecture: amd64\\n' >> '${index}'`]).status).toBe(0);
    // A new file: cp puts a .list in info/.
    const cp = spawnSync('cp', ['/etc/hostname', join(root, 'var/lib/dpkg/info/ldg-evil.list')]);
    expect(cp.status).toBe(0);
    const names = ['libc6:amd64.md5sums', 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages', 'ldg-evil.list'];
    let alerts = await agent.waitForAlerts((all) => names.every((n) => all.some((a) => isDb(a) && a.file.name === n)));
    const db = alerts.filter(isDb);
    expect(db.find((a) => a.file.name === 'libc6:amd64.md5sums' && a.event.action === 'modification')).toMatchObject({ event: { action: 'modification' }, file: { path: '/var/lib/dpkg/info/libc6:amd64.md5sums' }, process: { executable: '/usr/bin/dash' } });
    expect(db.find((a) => a.file.name === names[1] && a.event.action === 'modification')).toMatchObject({ file: { path: `/var/lib/apt/lists/${names[1]}` } });
    expect(db.find((a) => a.file.name === 'ldg-evil.list' && a.event.action === 'creation')).toMatchObject({ event: { action: 'creation' }, process: { executable: '/usr/bin/cp' } });
    expect(agent.logs().some((l) => String(l.msg).startsWith('a package database was written by a process that is not a verified package manager'))).toBe(true);

    // The genuine install now: dpkg's own database writes alert nothing, but no loader write is spared.
    const before = alerts.length;
    dpkgI(root, libc6);
    alerts = await agent.waitForAlerts((all) => all.slice(before).filter((a) => !isDb(a)).length >= 5, 30_000);
    const after = alerts.slice(before);
    expect(after.filter(isDb).map(brief)).toEqual([]);
    expect(after.length).toBe(5);
    for (const a of after) {
      expect(a.ldguard.excepted_by).toBeUndefined();
      expect(a.ldguard.file_package).toMatchObject({ verdict: 'inconclusive', reason: 'database_touched' });
    }
    expect(await agent.stop()).toBe(0);
  }, DEBOOTSTRAP_MS + 120_000);
});

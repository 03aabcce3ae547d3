// The default exception on rpm hosts (#19 item 3): a real upgrade from a configured repository pages
// no one, a package of one's own making at the same name and version does. Everything is genuine:
// gpg makes the repository's signing key, rpmbuild the package, rpmsign signs it, createrepo_c makes
// the repository's metadata, and dnf installs from it (file:// baseurl, offline) into a scratch root
// under the agent, importing nothing itself (rpm's keyring gets the key first, as `rpm --import`).
// Then the genuine rpm installs the same name and version built here, unsigned, and once more signed
// by a key root imported into rpm's keyring: both page (rpm-origin.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildLoaderRpm, rpmDatabase, rpmHome, rpmInstall, rpmRepository, signingKey, signRpm } from '../helpers/rpm.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasTools = ['dnf', 'rpmbuild', 'rpmsign', 'createrepo_c', 'gpg'].every((t) => spawnSync(t, ['--version']).status === 0);
const EXCEPTED = { list_id: 'ldguard-verified-package-install', item_id: 'verified-manager-offered-package' };
const UID = 'ldguard test repository <repo@ldguard.test>';
const PKG = { name: 'ldg-repold', version: '2.0', release: '3', loader: '/usr/lib64/ld-linux-ldgrepo.so.1' };

const rpm = (root: string, ...args: string[]) => execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', ...args], { stdio: 'pipe' });
const brief = (a: Record<string, any>) => `${a.rule.name}: ${a.file.path} by ${a.process?.executable} (${a.ldguard.package?.verdict} ${a.ldguard.package?.reason}; file ${a.ldguard.file_package?.verdict} ${a.ldguard.file_package?.reason} offered_by ${a.ldguard.file_package?.offered_by})`;

describe.skipIf(!isRoot || !hasTools)('rpm repositories (skipped: needs root, dnf, rpmbuild, rpmsign, createrepo_c and gpg: apt-get install dnf rpm createrepo-c gpg)', () => {
  it('a dnf install from a configured repository signed by its key pages no one; the same package built here, unsigned or signed by a key root imported, pages', async () => {
    const root = removeWhenDone(scratchRoot('ldg-rpmrepo-'));
    rpmDatabase(root);
    const key = signingKey(UID);
    const genuine = buildLoaderRpm(false, PKG);
    signRpm(genuine, key, UID);
    const repo = rpmRepository([genuine]);
    mkdirSync(join(root, 'etc/yum.repos.d'), { recursive: true });
    mkdirSync(join(root, 'etc/pki/rpm-gpg'), { recursive: true });
    writeFileSync(join(root, 'etc/pki/rpm-gpg/RPM-GPG-KEY-ldgtest'), key.armored);
    writeFileSync(join(root, 'etc/yum.repos.d/ldgtest.repo'), `[ldgtest]\nname=ldguard test\nbaseurl=file://${repo}\nenabled=1\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-ldgtest\n`);
    rpm(root, '--import', join(root, 'etc/pki/rpm-gpg/RPM-GPG-KEY-ldgtest'));
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    const ours = (pid: number | undefined) => (a: Record<string, any>) => a.process?.pid === pid && /ld-linux-ldgrepo\.so\.1/.test(a.file.path);
    const final = (pid: number | undefined) => (a: Record<string, any>) => ours(pid)(a) && a.file.path === PKG.loader;

    // 1. dnf, from the repository: rpm's NAME;<hex> renamed into place is one record, excepted.
    const env = { ...process.env, HOME: rpmHome() };
    const dnf = spawnSync('dnf', ['--installroot', root, `--setopt=reposdir=${join(root, 'etc/yum.repos.d')}`, '--releasever=1', '-y', '-q', 'install', PKG.name], { encoding: 'utf8', env });
    expect(dnf.status, dnf.stderr).toBe(0);
    let alerts = await agent.waitForAlerts((all) => all.some(final(dnf.pid)), 30_000);
    const upgrade = alerts.filter(ours(dnf.pid));
    expect(upgrade.length, upgrade.map(brief).join('\n')).toBeGreaterThan(0);
    for (const a of upgrade) {
      expect(a.ldguard.excepted_by, brief(a)).toEqual(EXCEPTED);
      expect(a.ldguard.file_package).toMatchObject({ manager: 'rpm', name: PKG.name, version: '2.0-3', verdict: 'verified', offered_by: 'ldgtest' });
    }
    rpm(root, '-e', PKG.name);

    // 2. The same name and version, built here and not signed, installed by the genuine rpm: the
    // package is verified against rpm's database, but no repository offers it. It pages.
    const local = buildLoaderRpm(true, PKG);
    const installLocal = () => {
      const before = Date.now();
      rpmInstall(root, local);
      return before;
    };
    installLocal();
    const byRpm = (a: Record<string, any>) => a.process?.executable === '/usr/bin/rpm' && /ld-linux-ldgrepo\.so\.1/.test(a.file.path);
    alerts = await agent.waitForAlerts((all) => all.filter(byRpm).length >= 2, 30_000);
    const unsigned = alerts.filter(byRpm);
    expect(unsigned.length, alerts.map(brief).join('\n')).toBeGreaterThanOrEqual(2);
    for (const a of unsigned) {
      expect(a.ldguard.excepted_by, brief(a)).toBeUndefined();
      expect(a.ldguard.file_package?.offered_by, brief(a)).toBeUndefined();
    }
    expect(unsigned.some((a) => a.ldguard.file_package?.verdict === 'verified' && a.ldguard.file_package.name === PKG.name), unsigned.map(brief).join('\n')).toBe(true);
    rpm(root, '-e', PKG.name);

    // 3. Signed by a key root made and imported into rpm's keyring: rpm accepts it, the repository's
    // gpgkey does not hold that key. It pages.
    const otherUid = 'someone else <else@ldguard.test>';
    const other = signingKey(otherUid);
    signRpm(local, other, otherUid);
    const otherKey = join(tempDir('ldg-otherkey-'), 'key.asc');
    writeFileSync(otherKey, other.armored);
    rpm(root, '--import', otherKey);
    const seen = alerts.filter(byRpm).length;
    installLocal();
    alerts = await agent.waitForAlerts((all) => all.filter(byRpm).length >= seen + 2, 30_000);
    const foreign = alerts.filter(byRpm).slice(seen);
    expect(foreign.length, alerts.map(brief).join('\n')).toBeGreaterThanOrEqual(2);
    for (const a of foreign) {
      expect(a.ldguard.excepted_by, brief(a)).toBeUndefined();
      expect(a.ldguard.file_package?.offered_by, brief(a)).toBeUndefined();
    }
    expect(foreign.some((a) => a.ldguard.file_package?.verdict === 'verified'), foreign.map(brief).join('\n')).toBe(true);
    expect(await agent.stop()).toBe(0);
  });
});

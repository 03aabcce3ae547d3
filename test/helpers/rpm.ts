// Real rpm packages for tests, built by the genuine rpmbuild and installed by the genuine rpm into a
// scratch root's own database (ROOT/var/lib/rpm: Debian's rpm would otherwise use ~/.rpmdb).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './temp.js';

/**
 * "ldg-rpmld" 1.0-1: a copy of the host's loader shipped as /usr/lib64/ld-linux-ldgrpm.so.1, and
 * (padding) 128 MiB of zeros in /usr/share/ldg-rpmld, unpacked after the loader: rpm then still runs
 * when its loader write is judged, as with a real package's payload, instead of exiting within
 * ~30 ms (then it is judged at its image's path). Returns the .rpm's path.
 */
export function buildLoaderRpm(padding = true): string {
  const top = tempDir('ldg-rpmbuild-');
  const spec = join(top, 'ldg-rpmld.spec');
  writeFileSync(
    spec,
    [
      'Name: ldg-rpmld', 'Version: 1.0', 'Release: 1', 'Summary: a loader built on this host', 'License: none', 'BuildArch: x86_64',
      '%description', 'a loader built on this host',
      '%install', 'mkdir -p %{buildroot}/usr/lib64 %{buildroot}/usr/share/ldg-rpmld', 'cp /lib64/ld-linux-x86-64.so.2 %{buildroot}/usr/lib64/ld-linux-ldgrpm.so.1',
      `head -c ${padding ? 134217728 : 1} /dev/zero > %{buildroot}/usr/share/ldg-rpmld/padding`,
      '%files', '/usr/lib64/ld-linux-ldgrpm.so.1', '/usr/share/ldg-rpmld/padding', '',
    ].join('\n'),
  );
  // No debuginfo split or brp scripts: the package is the loader as copied.
  execFileSync('rpmbuild', ['--define', `_topdir ${top}`, '--define', '__os_install_post %{nil}', '--define', 'debug_package %{nil}', '--define', '_binary_payload w1.gzdio', '-bb', spec], { stdio: 'pipe' });
  const dir = join(top, 'RPMS/x86_64');
  return join(dir, readdirSync(dir).find((f) => f.endsWith('.rpm'))!);
}

/** rpm's empty database in ROOT/var/lib/rpm. */
export function rpmDatabase(root: string): void {
  mkdirSync(join(root, 'var/lib/rpm'), { recursive: true });
  execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '--initdb'], { stdio: 'pipe' });
}

/** Installs an .rpm into ROOT with the genuine rpm (no dependency checks: the root holds no rpm system). */
export function rpmInstall(root: string, rpm: string): void {
  execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '-i', '--nodeps', rpm], { stdio: 'pipe' });
}

/**
 * A HOME whose ~/.rpmmacros sets rpm's database to /var/lib/rpm, for tools that use librpm with no
 * --dbpath option (dnf --installroot): Debian's rpm defaults to ~/.rpmdb, which under --installroot
 * is ROOT/root/.rpmdb, not the database the agent watches and the file verdicts read.
 */
export function rpmHome(): string {
  const home = tempDir('ldg-rpmhome-');
  writeFileSync(join(home, '.rpmmacros'), '%_dbpath /var/lib/rpm\n');
  return home;
}

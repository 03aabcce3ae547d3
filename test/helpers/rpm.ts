// Real rpm packages for tests, built by the genuine rpmbuild and installed by the genuine rpm into a
// scratch root's own database (ROOT/var/lib/rpm: Debian's rpm would otherwise use ~/.rpmdb).
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tempDir } from './temp.js';

/**
 * "ldg-rpmld" 1.0-1 (or the name, version and release given): a copy of the host's loader (or of
 * `content`) shipped as /usr/lib64/ld-linux-ldgrpm.so.1 (or `loader`), and (padding) 128 MiB of zeros in
 * /usr/share/NAME, unpacked after the loader: rpm then still runs when its loader write is judged,
 * as with a real package's payload, instead of exiting within ~30 ms (then it is judged at its
 * image's path). Returns the .rpm's path.
 */
export function buildLoaderRpm(padding = true, pkg: { name?: string; version?: string; release?: string; loader?: string; content?: string } = {}): string {
  const { name = 'ldg-rpmld', version = '1.0', release = '1', loader = '/usr/lib64/ld-linux-ldgrpm.so.1', content = '/lib64/ld-linux-x86-64.so.2' } = pkg;
  const zeros = join(tempDir('ldg-padding-'), 'padding');
  execFileSync('truncate', ['-s', String(padding ? 134217728 : 1), zeros]);
  return buildRpm(name, [[loader, content], [`/usr/share/${name}/padding`, zeros]], version, release);
}

/** A package of these files (host path inside the package, then the file whose bytes it ships), built by the genuine rpmbuild. Returns the .rpm's path. */
export function buildRpm(name: string, files: Array<[string, string]>, version = '1.0', release = '1'): string {
  const top = tempDir('ldg-rpmbuild-');
  const spec = join(top, `${name}.spec`);
  writeFileSync(
    spec,
    [
      `Name: ${name}`, `Version: ${version}`, `Release: ${release}`, 'Summary: built on this host', 'License: none', 'BuildArch: x86_64',
      '%description', 'built on this host',
      '%install', ...files.map(([dest, src]) => `mkdir -p %{buildroot}${dirname(dest)} && cp ${src} %{buildroot}${dest}`),
      '%files', ...files.map(([dest]) => dest), '',
    ].join('\n'),
  );
  // No debuginfo split or brp scripts: the package is the files as copied.
  execFileSync('rpmbuild', ['--define', `_topdir ${top}`, '--define', '__os_install_post %{nil}', '--define', 'debug_package %{nil}', '--define', '_binary_payload w1.gzdio', '-bb', spec], { stdio: 'pipe' });
  const dir = join(top, 'RPMS/x86_64');
  return join(dir, readdirSync(dir).find((f) => f.endsWith('.rpm'))!);
}

/** A signing key of the genuine gpg, in a keyring of its own: its armored public key and its 16-hex-digit id. */
export interface SigningKey {
  home: string;
  armored: string;
  id: string;
}

/** A new RSA signing key (gpg --quick-gen-key, no passphrase). */
export function signingKey(uid: string): SigningKey {
  const home = tempDir('ldg-gpg-');
  chmodSync(home, 0o700);
  const env = { ...process.env, GNUPGHOME: home };
  execFileSync('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', uid, 'rsa2048', 'sign', 'never'], { env, stdio: 'pipe' });
  const armored = execFileSync('gpg', ['--armor', '--export', uid], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const colons = execFileSync('gpg', ['--with-colons', '--list-keys', uid], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const id = /^pub:[^:]*:[^:]*:[^:]*:([0-9A-F]{16}):/m.exec(colons)![1]!.toLowerCase();
  return { home, armored, id };
}

/** Signs an .rpm in place with the genuine rpmsign (Debian's rpm names gpg2; the gpg package installs gpg). */
export function signRpm(rpm: string, key: SigningKey, uid: string): void {
  execFileSync('rpmsign', ['--define', '__gpg /usr/bin/gpg', '--define', `_gpg_name ${uid}`, '--define', `_gpg_path ${key.home}`, '--addsign', rpm], { env: { ...process.env, GNUPGHOME: key.home }, stdio: 'pipe' });
}

/** A repository of these .rpm files, its metadata made by the genuine createrepo_c. Returns its folder. */
export function rpmRepository(rpms: string[]): string {
  const dir = tempDir('ldg-rpmrepo-');
  for (const r of rpms) copyFileSync(r, join(dir, basename(r)));
  execFileSync('createrepo_c', ['-q', dir], { stdio: 'pipe' });
  return dir;
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

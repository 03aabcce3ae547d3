// Real Debian packages for tests, made and installed by the genuine tools: dpkg-deb builds the
// .deb, dpkg installs it into a scratch root with its own database (ROOT/var/lib/dpkg), never
// into the system's.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tempDir } from './temp.js';

/** Gives ROOT the empty database dpkg --root needs (status, info/, updates/, available). */
export function dpkgDatabase(root: string): string {
  const admin = join(root, 'var/lib/dpkg');
  for (const d of ['info', 'updates', 'triggers']) mkdirSync(join(admin, d), { recursive: true });
  writeFileSync(join(admin, 'status'), '');
  writeFileSync(join(admin, 'available'), '');
  return admin;
}

/**
 * "ldg-fakepm": a copy of /bin/cp shipped as /usr/bin/dnf (a tool with a package manager's name
 * that is no package manager), plus a marker under /lib64 for the merged-/usr alias lookups.
 * Returns the .deb's path.
 */
export function buildFakePm(): string {
  const stage = join(tempDir('ldg-deb-'), 'ldg-fakepm');
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(
    join(stage, 'DEBIAN/control'),
    'Package: ldg-fakepm\nVersion: 1.0\nArchitecture: all\nMaintainer: ldguard tests <tests@ldguard.invalid>\nDescription: cp shipped under a package manager name\n',
  );
  const files: Array<[string, string]> = [['/bin/cp', 'usr/bin/dnf']];
  for (const [from, to] of files) {
    mkdirSync(dirname(join(stage, to)), { recursive: true });
    copyFileSync(from, join(stage, to));
    chmodSync(join(stage, to), 0o755);
  }
  mkdirSync(join(stage, 'lib64'), { recursive: true });
  writeFileSync(join(stage, 'lib64/ldg-fakepm.marker'), 'marker\n');
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', stage, `${stage}.deb`], { stdio: 'pipe' });
  return `${stage}.deb`;
}

/** Installs a .deb into ROOT with the genuine dpkg, against ROOT's own database. */
export function dpkgInstall(root: string, deb: string): void {
  execFileSync('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-unsafe-io', '-i', deb], { stdio: 'pipe' });
}

/**
 * A package named `name` at `version` shipping `files` (path inside the root, without its leading
 * slash → content); built by the genuine dpkg-deb. Returns the .deb's path.
 */
export function buildDeb(name: string, version: string, files: Record<string, string | Buffer>): string {
  const stage = join(tempDir('ldg-deb-'), `${name}_${version}`);
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(join(stage, 'DEBIAN/control'), `Package: ${name}\nVersion: ${version}\nArchitecture: all\nMaintainer: ldguard tests <tests@ldguard.invalid>\nDescription: test package\n`);
  for (const [to, content] of Object.entries(files)) {
    mkdirSync(dirname(join(stage, to)), { recursive: true });
    writeFileSync(join(stage, to), content, { mode: 0o755 });
  }
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', stage, `${stage}.deb`], { stdio: 'pipe' });
  return `${stage}.deb`;
}

/**
 * "ldg-localld": a package built here (in no repository) shipping a loader-named file,
 * /lib64/ld-linux-ldg.so.1 (a copy of the host's loader), beside libc6's own. Returns the .deb's path.
 */
export function buildLocalLoaderDeb(): string {
  const stage = join(tempDir('ldg-deb-'), 'ldg-localld');
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(
    join(stage, 'DEBIAN/control'),
    'Package: ldg-localld\nVersion: 1.0\nArchitecture: amd64\nMaintainer: ldguard tests <tests@ldguard.invalid>\nDescription: a loader built on this host\n',
  );
  mkdirSync(join(stage, 'lib64'), { recursive: true });
  copyFileSync('/lib64/ld-linux-x86-64.so.2', join(stage, 'lib64/ld-linux-ldg.so.1'));
  chmodSync(join(stage, 'lib64/ld-linux-ldg.so.1'), 0o755);
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', stage, `${stage}.deb`], { stdio: 'pipe' });
  return `${stage}.deb`;
}

/**
 * "ldg-symld" 1.0: a loader-named regular file in the multiarch directory and a /lib64 symlink to
 * it, laid out as libc6 lays out its loader (the symlink is in .list only; md5sums has the file).
 * It carries DEBIAN/md5sums as a distribution's packages do (dh_md5sums; dpkg-deb makes none).
 */
export function buildSymlinkLoaderDeb(): string {
  const stage = join(tempDir('ldg-deb-'), 'ldg-symld');
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(
    join(stage, 'DEBIAN/control'),
    'Package: ldg-symld\nVersion: 1.0\nArchitecture: amd64\nMaintainer: ldguard tests <tests@ldguard.invalid>\nDescription: a loader and its /lib64 symlink\n',
  );
  mkdirSync(join(stage, 'lib/x86_64-linux-gnu'), { recursive: true });
  writeFileSync(join(stage, 'lib/x86_64-linux-gnu/ld-ldgtest.so.1'), 'a loader\n');
  mkdirSync(join(stage, 'lib64'), { recursive: true });
  symlinkSync('/lib/x86_64-linux-gnu/ld-ldgtest.so.1', join(stage, 'lib64/ld-ldgtest.so.1'));
  writeFileSync(join(stage, 'DEBIAN/md5sums'), `${createHash('md5').update('a loader\n').digest('hex')}  lib/x86_64-linux-gnu/ld-ldgtest.so.1\n`);
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', stage, `${stage}.deb`], { stdio: 'pipe' });
  return `${stage}.deb`;
}

/**
 * A package built here under a repository package's name and version ("hello" at the version the
 * index offers), shipping a loader-named file, /lib64/ld-linux-evil.so.2 (the host's loader), with
 * its own DEBIAN/md5sums: dpkg records its digests, so only its origin tells it from the real one.
 */
export function buildImpostorDeb(name: string, version: string): string {
  const stage = join(tempDir('ldg-deb-'), name);
  mkdirSync(join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(join(stage, 'DEBIAN/control'), `Package: ${name}\nVersion: ${version}\nArchitecture: amd64\nMaintainer: ldguard tests <tests@ldguard.invalid>\nDescription: not the real ${name}\n`);
  mkdirSync(join(stage, 'lib64'), { recursive: true });
  copyFileSync('/lib64/ld-linux-x86-64.so.2', join(stage, 'lib64/ld-linux-evil.so.2'));
  writeFileSync(join(stage, 'DEBIAN/md5sums'), `${createHash('md5').update(readFileSync(join(stage, 'lib64/ld-linux-evil.so.2'))).digest('hex')}  lib64/ld-linux-evil.so.2\n`);
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', stage, `${stage}.deb`], { stdio: 'pipe' });
  return `${stage}.deb`;
}

// Real pacman packages for tests: built by the genuine makepkg (as nobody: makepkg refuses root),
// gathered into a repository by the genuine repo-add, installed by the genuine pacman (Debian's
// pacman-package-manager) into a scratch root's own database, offline (a file:// server).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { tempDir } from './temp.js';

export const hasPacman = ['pacman', 'makepkg', 'repo-add', 'bsdtar', 'fakeroot'].every((t) => spawnSync(t, ['--version']).status === 0);

/** Owns a folder and everything in it by nobody (uid 65534), for makepkg. */
function giveToNobody(dir: string): void {
  execFileSync('chown', ['-R', 'nobody', dir]);
}

/**
 * A package NAME-1.0-1 (x86_64, zstd as Arch's are) shipping a copy of the host's loader at
 * `loader` (and `content` instead of it, given). Returns the package file's path.
 */
export function buildLoaderPackage(name: string, loader: string, content?: string): string {
  const dir = tempDir('ldg-makepkg-');
  copyFileSync(content ?? '/lib64/ld-linux-x86-64.so.2', join(dir, 'loader'));
  writeFileSync(
    join(dir, 'PKGBUILD'),
    [
      `pkgname=${name}`, 'pkgver=1.0', 'pkgrel=1', "pkgdesc='a loader built on this host'", "arch=('x86_64')", "license=('none')",
      "source=('loader')", "sha256sums=('SKIP')", "options=('!strip' '!debug')",
      'package() {', `  install -Dm755 "$srcdir/loader" "$pkgdir${loader}"`, '}', '',
    ].join('\n'),
  );
  giveToNobody(dir);
  execFileSync('runuser', ['-u', 'nobody', '--', 'env', `HOME=${dir}`, `PKGDEST=${dir}`, `SRCDEST=${dir}`, `BUILDDIR=${join(dir, 'build')}`, 'PKGEXT=.pkg.tar.zst', 'makepkg', '-f', '--nodeps'], { cwd: dir, stdio: 'pipe' });
  return join(dir, readdirSync(dir).find((f) => f.endsWith('.pkg.tar.zst'))!);
}

/** A repository `name` of these package files, its database made by repo-add. Returns its folder. */
export function pacmanRepository(name: string, pkgs: string[]): string {
  const dir = tempDir('ldg-pacrepo-');
  for (const p of pkgs) copyFileSync(p, join(dir, basename(p)));
  execFileSync('repo-add', ['-q', join(dir, `${name}.db.tar.gz`), ...pkgs.map((p) => join(dir, basename(p)))], { stdio: 'pipe' });
  return dir;
}

/**
 * pacman's database, cache and configuration in ROOT, the configuration naming `repos` (name →
 * folder), its local and sync databases made by the genuine pacman (`-Sy`), as a pacman system has them.
 */
export function pacmanRoot(root: string, repos: Record<string, string>): void {
  for (const d of ['var/lib/pacman', 'var/cache/pacman/pkg', 'etc']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(
    join(root, 'etc/pacman.conf'),
    ['[options]', 'Architecture = x86_64', 'SigLevel = Never', 'CheckSpace = no', '', ...Object.entries(repos).flatMap(([n, dir]) => [`[${n}]`, `Server = file://${dir}`, ''])].join('\n'),
  );
  execFileSync('pacman', pacmanArgs(root, '-Sy'), { stdio: 'pipe' });
}

/** pacman's arguments for ROOT: its own database, cache and configuration. */
export function pacmanArgs(root: string, ...cmd: string[]): string[] {
  return ['-r', root, '-b', join(root, 'var/lib/pacman'), '--cachedir', join(root, 'var/cache/pacman/pkg'), '--config', join(root, 'etc/pacman.conf'), '--noconfirm', ...cmd];
}

// A real Debian root for tests, made by the genuine debootstrap and cached between runs, with the
// real .debs apt downloads from the same repository. Making the cache takes minutes (debootstrap
// downloads and unpacks ~90 packages); a run that finds it copies it (~200 MB, seconds).
// The cache is outside the repository, keyed by suite: /var/cache/ldguard-test/<suite>-minbase
// (the root) and <suite>-minbase.debs/ (downloaded packages). It is built under a temporary name
// and renamed into place, so an interrupted build is never taken for a finished one.
// The "configured repository" of the root is the one debootstrap installed from: debootstrap
// leaves its sources.list and the signed index it checked (var/lib/apt/lists/*_Packages), so the
// root's lists need no `apt-get update` and the downloaded .deb is the version that index offers.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const CACHE_DIR = '/var/cache/ldguard-test';
/** How long making the cache may take (debootstrap on a slow mirror). */
export const DEBOOTSTRAP_MS = 15 * 60_000;
const MIRROR = 'http://deb.debian.org/debian';

/** The cached minbase root of `suite`, made now when missing (minutes: see DEBOOTSTRAP_MS). */
export function cachedDebianRoot(suite = 'bookworm'): string {
  const dir = join(CACHE_DIR, `${suite}-minbase`);
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(CACHE_DIR, { recursive: true });
  process.stderr.write(`ldguard tests: making the cached Debian root ${dir} with debootstrap (minutes, once; later runs copy it)\n`);
  try {
    execFileSync('debootstrap', ['--variant=minbase', suite, tmp, MIRROR], { stdio: 'pipe', timeout: DEBOOTSTRAP_MS });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(dir)) throw err; // another run finished first: its root serves
  }
  return dir;
}

/** A copy of the cached root at `dest` (an empty folder the caller removes). */
export function debianRoot(dest: string, suite = 'bookworm'): string {
  // cp -a, not fs.cpSync: the root holds device nodes (dev/null …), owners other than root and hard links.
  execFileSync('cp', ['-a', `${cachedDebianRoot(suite)}/.`, dest], { stdio: 'pipe' });
  return dest;
}

/**
 * The real .deb of `pkg` as the root's repository offers it (`apt-get download` inside the cached
 * root, so that the version is its index's), cached beside the root.
 */
export function downloadedDeb(pkg: string, suite = 'bookworm'): string {
  const root = cachedDebianRoot(suite);
  const debs = `${root}.debs`;
  mkdirSync(debs, { recursive: true });
  const have = () => readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  let name = have();
  if (!name) {
    execFileSync('chroot', [root, 'sh', '-c', `cd /tmp && apt-get download -q ${pkg}`], { stdio: 'pipe', timeout: 5 * 60_000 });
    const got = readdirSync(join(root, 'tmp')).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!got) throw new Error(`apt-get download ${pkg} in ${root} left no ${pkg}_*.deb in its /tmp`);
    renameSync(join(root, 'tmp', got), join(debs, got));
    name = got;
  }
  return join(debs, name);
}

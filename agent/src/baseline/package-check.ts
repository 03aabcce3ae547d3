// Does the package database vouch for a file as it is on disk now? Asked at start of every file
// that differs from the baseline (an upgrade while the agent was down) and, when there is no
// baseline to trust (a first run, a baseline lost or edited), of every rule-matching file.
// "verified": a package lists the path (under any merged-/usr alias) and the digest it recorded is
// the file's (dpkg's md5sums; rpm's and pacman's sha256, where dpkg lists no such file: the
// databases read as the writers' verdicts read them, enrich/package/root-databases.ts); for a
// symlink, a package lists the link and the file it resolves to is verified.
// Anything else is "mismatch" (a package lists it with other bytes) or "inconclusive" (no database,
// no package lists it, no digest recorded, unreadable): never a confirmation.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DpkgDb } from '../enrich/package/dpkg-db.js';
import { PacmanDb } from '../enrich/package/pacman-db.js';
import { RpmDb } from '../enrich/package/rpm-db.js';
import { hasDatabase, mainManager, recorded, type Manager, type RootDatabases } from '../enrich/package/root-databases.js';
import { resolvePathInRoot, toHostPath } from '../watch-dirs.js';

export interface PackageCheck {
  verdict: 'verified' | 'mismatch' | 'inconclusive';
  /** md5_matches, sha256_differs …; no_database, not_in_any_package, no_md5sum (dpkg) or no_digest, unreadable, too_large. */
  reason: string;
  /** The database that judged it. */
  manager: Manager;
  /** The package that lists the file, when one does. */
  name?: string;
}

/** The root's package databases, read once per start (rpm's and pacman's are the process's own, rpm-db.ts). */
export function rootDatabases(realRoot: string): RootDatabases {
  let dpkg: DpkgDb | null = null;
  try {
    dpkg = new DpkgDb(join(realRoot, 'var/lib/dpkg'));
  } catch {
    // no dpkg database under the root
  }
  return { dpkg, rpm: RpmDb.of(realRoot), pacman: PacmanDb.of(realRoot) };
}

export function checkWithPackages(dbs: RootDatabases, realRoot: string, hostPath: string, hashMaxBytes: number): PackageCheck {
  if (!hasDatabase(dbs)) return { verdict: 'inconclusive', reason: 'no_database', manager: mainManager(dbs) };
  const rec = recorded(dbs, hostPath);
  if (!rec) return { verdict: 'inconclusive', reason: 'not_in_any_package', manager: mainManager(dbs) };
  const { name, manager } = rec;
  const real = resolvePathInRoot(realRoot, hostPath);
  let isLink = false;
  try {
    isLink = lstatSync(join(realRoot, hostPath)).isSymbolicLink();
  } catch {
    return { verdict: 'inconclusive', reason: 'unreadable', manager, name };
  }
  if (!real) return { verdict: 'inconclusive', reason: 'unreadable', manager, name };
  // dpkg records no digest for a symlink: the file it resolves to must be verified on its own.
  if (isLink) {
    const target = checkWithPackages(dbs, realRoot, toHostPath(realRoot, real), hashMaxBytes);
    return target.verdict === 'verified' ? { ...target, name } : { ...target, name: target.name ?? name };
  }
  if (!rec.digest) return { verdict: 'inconclusive', reason: manager === 'dpkg' ? 'no_md5sum' : 'no_digest', manager, name };
  let bytes: Buffer;
  try {
    if (lstatSync(real).size > hashMaxBytes) return { verdict: 'inconclusive', reason: 'too_large', manager, name };
    bytes = readFileSync(real);
  } catch {
    return { verdict: 'inconclusive', reason: 'unreadable', manager, name };
  }
  const { algo, hex } = rec.digest;
  const got = createHash(algo).update(bytes).digest('hex');
  return got === hex ? { verdict: 'verified', reason: `${algo}_matches`, manager, name } : { verdict: 'mismatch', reason: `${algo}_differs`, manager, name };
}

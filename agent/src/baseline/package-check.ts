// Does the package database vouch for a file as it is on disk now? Asked at start of every file
// that differs from the baseline (an upgrade while the agent was down) and, when there is no
// baseline to trust (a first run, a baseline lost or edited), of every rule-matching file.
// "verified": a package lists the path (under any merged-/usr alias) and the md5 it recorded is
// the file's; for a symlink, a package lists the link and the file it resolves to is verified.
// Anything else is "mismatch" (a package lists it with other bytes) or "inconclusive" (no database,
// no package lists it, no md5 recorded, unreadable): never a confirmation.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DpkgDb } from '../enrich/package/dpkg-db.js';
import { resolvePathInRoot, toHostPath } from '../watch-dirs.js';

export interface PackageCheck {
  verdict: 'verified' | 'mismatch' | 'inconclusive';
  reason: 'md5_matches' | 'md5_differs' | 'no_database' | 'not_in_any_package' | 'no_md5sum' | 'unreadable' | 'too_large';
  /** The package that lists the file, when one does. */
  name?: string;
}

/** The dpkg database of the root (ROOT/var/lib/dpkg), read once per start; null when there is none. */
export function rootDatabase(realRoot: string): DpkgDb | null {
  try {
    return new DpkgDb(join(realRoot, 'var/lib/dpkg'));
  } catch {
    return null;
  }
}

export function checkWithPackages(db: DpkgDb | null, realRoot: string, hostPath: string, hashMaxBytes: number): PackageCheck {
  if (!db) return { verdict: 'inconclusive', reason: 'no_database' };
  const owner = db.owner(hostPath);
  if (!owner) return { verdict: 'inconclusive', reason: 'not_in_any_package' };
  const name = owner.pkg.name;
  const real = resolvePathInRoot(realRoot, hostPath);
  let isLink = false;
  try {
    isLink = lstatSync(join(realRoot, hostPath)).isSymbolicLink();
  } catch {
    return { verdict: 'inconclusive', reason: 'unreadable', name };
  }
  if (!real) return { verdict: 'inconclusive', reason: 'unreadable', name };
  // dpkg records no md5 for a symlink: the file it resolves to must be verified on its own.
  if (isLink) {
    const target = checkWithPackages(db, realRoot, toHostPath(realRoot, real), hashMaxBytes);
    return target.verdict === 'verified' ? { ...target, name } : { ...target, name: target.name ?? name };
  }
  const want = db.md5(owner.pkg, owner.listed);
  if (!want) return { verdict: 'inconclusive', reason: 'no_md5sum', name };
  let bytes: Buffer;
  try {
    if (lstatSync(real).size > hashMaxBytes) return { verdict: 'inconclusive', reason: 'too_large', name };
    bytes = readFileSync(real);
  } catch {
    return { verdict: 'inconclusive', reason: 'unreadable', name };
  }
  const got = createHash('md5').update(bytes).digest('hex');
  return got === want ? { verdict: 'verified', reason: 'md5_matches', name } : { verdict: 'mismatch', reason: 'md5_differs', name };
}

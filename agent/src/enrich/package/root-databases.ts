// A root's package databases as the verdicts read them, in one order: dpkg's first (it owns the
// system on Debian), then rpm's, then pacman's, where none before lists the path. Shared by the
// writer's verdict (verify.ts) and the start-up check of files changed while down
// (baseline/package-check.ts).
import type { PackageFacts } from '../../../../shared/ecs.js';
import type { DpkgDb } from './dpkg-db.js';
import type { PacmanDb } from './pacman-db.js';
import type { RpmDb } from './rpm-db.js';

export type Manager = PackageFacts['manager'];

export interface RootDatabases {
  /** Null when the root has no dpkg database (or it cannot be read). */
  dpkg: DpkgDb | null;
  rpm: RpmDb;
  pacman: PacmanDb;
}

/** What a package database recorded for a path: its package and digest (null: the package records none). */
export interface Recorded {
  manager: Manager;
  name: string;
  digest: { algo: string; hex: string } | null;
}

/** Whether any of them can vouch for a file (rpm's Berkeley DB format is not read). */
export function hasDatabase(dbs: RootDatabases): boolean {
  return dbs.dpkg !== null || dbs.rpm.readable() || dbs.pacman.present();
}

/** The database a path is judged against when none lists it: the first the root has. */
export function mainManager(dbs: Pick<RootDatabases, 'rpm' | 'pacman'> & { dpkg: unknown }): Manager {
  if (dbs.dpkg) return 'dpkg';
  if (dbs.rpm.present()) return 'rpm';
  return dbs.pacman.present() ? 'pacman' : 'dpkg';
}

/** The package and digest recorded for the host path; null when no database lists it. rpmMaxAgeMs: how old a copy of rpm's database may answer (rpm-db.ts). */
export function recorded(dbs: RootDatabases, path: string, rpmMaxAgeMs = 0): Recorded | null {
  const d = dbs.dpkg?.owner(path);
  if (d) {
    const md5 = dbs.dpkg!.md5(d.pkg, d.listed);
    return { manager: 'dpkg', name: d.pkg.name, digest: md5 ? { algo: 'md5', hex: md5 } : null };
  }
  const r = dbs.rpm.present() ? dbs.rpm.owner(path, rpmMaxAgeMs) : null;
  if (r) return { manager: 'rpm', name: r.name, digest: dbs.rpm.digest(r, path) };
  const p = dbs.pacman.present() ? dbs.pacman.owner(path) : null;
  return p ? { manager: 'pacman', name: p.name, digest: dbs.pacman.digest(p, path) } : null;
}

// The file's package facts (ldguard.file_package): which installed package owns the file a package
// manager wrote (dpkg's, rpm's and pacman's databases, all read directly: dpkg-db.ts, rpm-db.ts,
// pacman-db.ts), at
// which version, whether its bytes are the ones that package recorded, and which configured
// repository offers that very package (deb-origin.ts with apt's lists; rpm-origin.ts with the rpm
// repositories' metadata and keys; pacman-origin.ts with the sync databases and pacman's cache). The default exception
// (shared/rules/ldguard/ldguard_default_exception.ndjson) spares a write only on all of that.
// When: after the writer exited (dpkg records a package's md5sums and marks it installed only after
// unpacking its files), or 120 s after the write; the pipeline holds such events (settle.ts).
// Against the watched root's database (ROOT/var/lib/dpkg): the file is the root's, whoever wrote it.
// Names: a temporary name (X.dpkg-new, X.dpkg-tmp, rpm's X;<hex>) is judged by X, the name dpkg
// renames it to (or restores it under); the caller passes X when it saw the rename.
// A symlink passes when its package lists it and its target, resolved inside the root, has the md5
// the same package recorded: dpkg records no symlink targets, so the target's bytes stand for it.
// Fails closed: once the database was written by anything but a verified package manager
// (taint()), no verdict read from it is "verified" again until the agent restarts.
// Cost: one lstat per event; a DpkgDb snapshot per database state, an md5 of the file and the apt
// index reads per new (device, inode, size, ctime) and database state. Bounded as verify.ts is.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { FilePackageFacts } from '../../../../shared/ecs.js';
import { resolveInRoot } from '../../root-path.js';
import { AptLists } from './apt-lists.js';
import { DebOrigin, type WriterArgs } from './deb-origin.js';
import { DpkgDb, dpkgStamp, UNPACKED_STATES } from './dpkg-db.js';
import { PacmanDb } from './pacman-db.js';
import { PacmanOrigin } from './pacman-origin.js';
import { RpmDb } from './rpm-db.js';
import { RpmOrigin } from './rpm-origin.js';
import { RpmRepos } from './rpm-repos.js';
import { mainManager } from './root-databases.js';

const CACHE_MAX = 4096;

/** A cached verdict: the facts without the repository's answer, with the package's architecture to ask it with. */
type Verdict = Omit<FilePackageFacts, 'judged_as' | 'offered_by'> & {
  arch?: string;
  /** rpm's EPOCH ("0" when none), to ask the repositories with. */
  epoch?: string;
  /** rpm: the key whose signature over the installed header checks out against rpm's keyring (rpm-db.ts), null when none. */
  signer?: string | null;
  /** pacman: the package's mtree as the local database holds it, to find the cached package it came from. */
  mtree?: Buffer | null;
  /** What matched: the path as the package lists it and its digest (dpkg: md5), for deb-origin.ts. */
  digest?: { listed: string; hex: string };
};
type Wanted = { algo: string; hex: string; listed: string } | null;

interface JudgedFile {
  /** Host path of the name judged. */
  path: string;
  symlink: boolean;
  regular: boolean;
  size: number;
}
const HASH_MAX_BYTES = 512 * 1024 * 1024;

/** dpkg's temporary names (X.dpkg-new, X.dpkg-tmp) and rpm's (X;<8 hex>): X; null for any other name. */
export function finalNameOf(path: string): string | null {
  const m = /^(.+?)(?:\.dpkg-new|\.dpkg-tmp|;[0-9a-f]{8})$/.exec(path);
  return m && !m[1]!.endsWith('/') ? m[1]! : null;
}

export class FileVerifier {
  private db: { stamp: string; db: DpkgDb } | undefined;
  private readonly cache = new Map<string, Verdict>();
  private touched: string | null = null;
  readonly apt: AptLists;
  readonly rpm: RpmDb;
  readonly pacman: PacmanDb;
  private readonly pacmanOrigin: PacmanOrigin;
  private readonly origin: DebOrigin;
  private readonly rpmOrigin: RpmOrigin;
  readonly admindir: string;

  /** realRoot: the agent's --root, real path. */
  constructor(private readonly realRoot: string) {
    this.admindir = join(realRoot, 'var/lib/dpkg');
    this.apt = new AptLists(join(realRoot, 'var/lib/apt/lists'));
    this.rpm = RpmDb.of(realRoot);
    this.origin = new DebOrigin(realRoot, this.apt);
    this.rpmOrigin = new RpmOrigin(new RpmRepos(realRoot));
    this.pacman = PacmanDb.of(realRoot);
    this.pacmanOrigin = new PacmanOrigin(realRoot);
  }

  /** The database was written by a writer that is not a verified package manager: every verdict from now on is inconclusive. */
  taint(why: string): void {
    this.touched ??= why;
  }

  get tainted(): string | null {
    return this.touched;
  }

  /**
   * hostPath: the file as the host sees it; renamedTo: the name it was seen renamed to, if any.
   * Never throws: what cannot be read is an inconclusive verdict with its reason.
   */
  facts(hostPath: string, renamedTo?: string, writer?: WriterArgs): FilePackageFacts {
    const judged = renamedTo ?? finalNameOf(hostPath) ?? hostPath;
    const as = judged !== hostPath ? { judged_as: judged } : {};
    const rpm = this.rpm.present();
    const pacman = this.pacman.present();
    const manager = mainManager({ dpkg: existsSync(join(this.admindir, 'status')), rpm: this.rpm, pacman: this.pacman });
    if (this.touched) return { manager, ...as, verdict: 'inconclusive', reason: 'database_touched' };
    const stamp = this.stamp(rpm, pacman);
    if (stamp === null) return { manager, ...as, verdict: 'inconclusive', reason: 'no_database' };
    let st;
    try {
      st = lstatSync(posix.join(this.realRoot, judged), { bigint: true });
    } catch {
      return { manager, ...as, verdict: 'inconclusive', reason: 'file_gone' };
    }
    const key = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${stamp}:${judged}`;
    let v = this.cache.get(key);
    if (!v) {
      const file = { path: judged, symlink: st.isSymbolicLink(), regular: st.isFile(), size: Number(st.size) };
      // dpkg's database first (it owns the system on Debian); rpm's, then pacman's, when none before lists the file.
      const dstamp = dpkgStamp(this.admindir);
      v = dstamp !== null ? this.judgeDpkg(file, dstamp) : undefined;
      if (rpm && (!v || v.reason === 'not_in_any_package')) v = this.judgeRpm(file);
      if (pacman && (!v || v.reason === 'not_in_any_package')) v = this.judgePacman(file);
      v ??= { manager, verdict: 'inconclusive', reason: 'no_database' };
      // A package manager may have written a database while it was read: such a verdict is not kept.
      if (this.stamp(rpm, pacman) !== stamp) v = { manager: v.manager, name: v.name, version: v.version, verdict: 'inconclusive', reason: 'database_changing' };
      else {
        if (this.cache.size >= CACHE_MAX) this.cache.clear();
        this.cache.set(key, v);
      }
    }
    // Asked each time, not cached with the verdict: it depends on the writer's .deb and apt's
    // indexes (deb-origin.ts), on the repositories' metadata and keys (rpm-origin.ts), or on the
    // sync databases and the package cache (pacman-origin.ts), not on the file.
    const offeredBy = v.verdict === 'verified' ? this.offeredBy(v, writer) : null;
    const { arch: _arch, epoch: _epoch, signer: _signer, mtree: _mtree, digest: _digest, ...facts } = v;
    return { ...as, ...facts, ...(offeredBy ? { offered_by: offeredBy } : {}) };
  }

  /** The repository offering a verified file's package (dpkg: the writer's .deb; rpm: the signed package; pacman: the cached package); null when none does. */
  private offeredBy(v: Verdict, writer: WriterArgs | undefined): string | null {
    if (!v.name || !v.version || !v.arch) return null;
    if (v.manager === 'dpkg') return v.digest ? this.origin.offeredBy(v.name, v.version, v.arch, v.digest.listed, v.digest.hex, writer) : null;
    if (v.manager === 'pacman') return v.mtree ? this.pacmanOrigin.offeredBy({ name: v.name, version: v.version, arch: v.arch }, v.mtree) : null;
    return v.epoch !== undefined && v.signer ? this.rpmOrigin.offeredBy({ name: v.name, version: v.version, arch: v.arch, epoch: v.epoch }, v.signer) : null;
  }

  /** The state of the databases the verdict reads; null when there is none. */
  private stamp(rpm: boolean, pacman: boolean): string | null {
    const d = dpkgStamp(this.admindir);
    if (!rpm && !pacman) return d;
    return `${d ?? ''}|rpm:${rpm ? this.rpm.stamp() : ''}|pacman:${pacman ? this.pacman.stamp() : ''}`;
  }


  private snapshot(stamp: string): DpkgDb | null {
    if (this.db?.stamp === stamp) return this.db.db;
    try {
      const db = new DpkgDb(this.admindir, UNPACKED_STATES);
      this.db = { stamp, db };
      return db;
    } catch {
      return null;
    }
  }

  private judgeDpkg(f: JudgedFile, stamp: string): Verdict {
    const db = this.snapshot(stamp);
    if (!db) return { manager: 'dpkg', verdict: 'inconclusive', reason: 'no_database' };
    const owner = db.owner(f.path);
    if (!owner) return { manager: 'dpkg', verdict: 'inconclusive', reason: 'not_in_any_package' };
    const status = db.status(owner.pkg.name)!;
    const named = { manager: 'dpkg' as const, name: owner.pkg.name, version: status.version, arch: status.arch };
    return this.compare(f, named, (bytesAt) => {
      const hit = f.symlink ? db.md5Any(owner.pkg, bytesAt) : { md5: db.md5(owner.pkg, owner.listed), listed: owner.listed };
      return hit?.md5 ? { algo: 'md5', hex: hit.md5, listed: hit.listed } : null;
    });
  }

  private judgeRpm(f: JudgedFile): Verdict {
    // rpm < 4.16's Berkeley DB (RHEL 8) is not read: say so rather than "in no package".
    if (!this.rpm.readable()) return { manager: 'rpm', verdict: 'inconclusive', reason: 'rpm_database_format_not_read' };
    const owner = this.rpm.owner(f.path);
    if (!owner) return { manager: 'rpm', verdict: 'inconclusive', reason: 'not_in_any_package' };
    const named = { manager: 'rpm' as const, name: owner.name, version: owner.version, arch: owner.arch, epoch: owner.epoch, signer: this.rpm.signer(owner) };
    return this.compare(f, named, (bytesAt) => {
      const d = this.rpm.digest(owner, bytesAt);
      return d ? { ...d, listed: bytesAt } : null;
    });
  }

  private judgePacman(f: JudgedFile): Verdict {
    const owner = this.pacman.owner(f.path);
    if (!owner) return { manager: 'pacman', verdict: 'inconclusive', reason: 'not_in_any_package' };
    const named = { manager: 'pacman' as const, name: owner.name, version: owner.version, arch: owner.arch, mtree: this.pacman.mtreeBytes(owner) };
    return this.compare(f, named, (bytesAt) => {
      const d = this.pacman.digest(owner, bytesAt);
      return d ? { ...d, listed: bytesAt } : null;
    });
  }

  /**
   * The file's bytes (a symlink's: its target's, resolved inside the root) against the digest its
   * package recorded for them; `want(bytesAt)` looks that digest up for the host path of the bytes.
   */
  private compare(f: JudgedFile, named: Pick<Verdict, 'manager' | 'name' | 'version' | 'arch' | 'epoch' | 'signer' | 'mtree'>, want: (bytesAt: string) => Wanted): Verdict {
    let bytesAt = f.path;
    let size = f.size;
    if (f.symlink) {
      bytesAt = resolveInRoot(this.realRoot, f.path);
      try {
        const t = lstatSync(posix.join(this.realRoot, bytesAt));
        if (!t.isFile()) return { ...named, verdict: 'inconclusive', reason: 'target_not_a_file' };
        size = t.size;
      } catch {
        return { ...named, verdict: 'inconclusive', reason: 'target_missing' };
      }
    } else if (!f.regular) {
      return { ...named, verdict: 'inconclusive', reason: 'not_a_file' };
    }
    const digest = want(bytesAt);
    if (!digest) return { ...named, verdict: 'inconclusive', reason: f.symlink ? 'target_not_in_package' : 'no_digest' };
    if (size > HASH_MAX_BYTES) return { ...named, verdict: 'inconclusive', reason: 'too_large' };
    let got: string;
    try {
      got = createHash(digest.algo).update(readFileSync(posix.join(this.realRoot, bytesAt))).digest('hex');
    } catch {
      return { ...named, verdict: 'inconclusive', reason: 'file_gone' };
    }
    const what = f.symlink ? 'target_' : '';
    return got === digest.hex
      ? { ...named, verdict: 'verified', reason: `${what}${digest.algo}_matches`, digest: { listed: digest.listed, hex: digest.hex } }
      : { ...named, verdict: 'mismatch', reason: `${what}${digest.algo}_differs` };
  }
}

// The file's package facts (ldguard.file_package): which installed package owns the file a package
// manager wrote, at which version, whether its bytes are the ones that package recorded, and which
// configured repository offers that version (package/apt-lists.ts). The default exception
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
import { lstatSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { FilePackageFacts } from '../../../../shared/ecs.js';
import { resolveInRoot } from '../../root-path.js';
import { AptLists } from './apt-lists.js';
import { DpkgDb, dpkgStamp } from './dpkg-db.js';

const CACHE_MAX = 4096;

/** A cached verdict: the facts without the repository's answer, with the package's architecture to ask it with. */
type Verdict = Omit<FilePackageFacts, 'manager' | 'judged_as' | 'offered_by'> & { arch?: string };
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
  readonly admindir: string;

  /** realRoot: the agent's --root, real path. */
  constructor(private readonly realRoot: string) {
    this.admindir = join(realRoot, 'var/lib/dpkg');
    this.apt = new AptLists(join(realRoot, 'var/lib/apt/lists'));
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
  facts(hostPath: string, renamedTo?: string): FilePackageFacts {
    const judged = renamedTo ?? finalNameOf(hostPath) ?? hostPath;
    const as = judged !== hostPath ? { judged_as: judged } : {};
    if (this.touched) return { manager: 'dpkg', ...as, verdict: 'inconclusive', reason: 'database_touched' };
    const stamp = dpkgStamp(this.admindir);
    if (stamp === null) return { manager: 'dpkg', ...as, verdict: 'inconclusive', reason: 'no_database' };
    let st;
    try {
      st = lstatSync(posix.join(this.realRoot, judged), { bigint: true });
    } catch {
      return { manager: 'dpkg', ...as, verdict: 'inconclusive', reason: 'file_gone' };
    }
    const key = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${stamp}:${judged}`;
    let v = this.cache.get(key);
    if (!v) {
      v = this.judge(judged, st.isSymbolicLink(), st.isFile(), Number(st.size), stamp);
      // dpkg may have written the database while it was read: such a verdict is not kept.
      if (dpkgStamp(this.admindir) !== stamp) v = { name: v.name, version: v.version, verdict: 'inconclusive', reason: 'database_changing' };
      else {
        if (this.cache.size >= CACHE_MAX) this.cache.clear();
        this.cache.set(key, v);
      }
    }
    // Asked each time, not cached with the verdict: apt-get update changes the answer, not the file
    // (AptLists keeps its own answers until an index changes).
    const offeredBy = v.verdict === 'verified' && v.name && v.version && v.arch ? this.apt.offeredBy(v.name, v.version, v.arch) : null;
    const { arch: _arch, ...facts } = v;
    return { manager: 'dpkg', ...as, ...facts, ...(offeredBy ? { offered_by: offeredBy } : {}) };
  }

  private snapshot(stamp: string): DpkgDb | null {
    if (this.db?.stamp === stamp) return this.db.db;
    try {
      const db = new DpkgDb(this.admindir);
      this.db = { stamp, db };
      return db;
    } catch {
      return null;
    }
  }

  private judge(path: string, symlink: boolean, regular: boolean, size: number, stamp: string): Verdict {
    const db = this.snapshot(stamp);
    if (!db) return { verdict: 'inconclusive', reason: 'no_database' };
    const owner = db.owner(path);
    if (!owner) return { verdict: 'inconclusive', reason: 'not_in_any_package' };
    const status = db.status(owner.pkg.name)!;
    const named = { name: owner.pkg.name, version: status.version };
    let bytesAt: string; // host path of the bytes that stand for the file
    let want: string | null;
    if (symlink) {
      bytesAt = resolveInRoot(this.realRoot, path);
      want = db.md5Any(owner.pkg, bytesAt)?.md5 ?? null;
      if (!want) return { ...named, verdict: 'inconclusive', reason: 'target_not_in_package' };
      try {
        const t = lstatSync(posix.join(this.realRoot, bytesAt));
        if (!t.isFile()) return { ...named, verdict: 'inconclusive', reason: 'target_not_a_file' };
        size = t.size;
      } catch {
        return { ...named, verdict: 'inconclusive', reason: 'target_missing' };
      }
    } else if (regular) {
      bytesAt = path;
      want = db.md5(owner.pkg, owner.listed);
      if (!want) return { ...named, verdict: 'inconclusive', reason: 'no_md5sum' };
    } else {
      return { ...named, verdict: 'inconclusive', reason: 'not_a_file' };
    }
    if (size > HASH_MAX_BYTES) return { ...named, verdict: 'inconclusive', reason: 'too_large' };
    let got: string;
    try {
      got = createHash('md5').update(readFileSync(posix.join(this.realRoot, bytesAt))).digest('hex');
    } catch {
      return { ...named, verdict: 'inconclusive', reason: 'file_gone' };
    }
    if (got !== want) return { ...named, verdict: 'mismatch', reason: symlink ? 'target_md5_differs' : 'md5_differs' };
    return { ...named, arch: status.arch, verdict: 'verified', reason: symlink ? 'target_md5_matches' : 'md5_matches' };
  }
}

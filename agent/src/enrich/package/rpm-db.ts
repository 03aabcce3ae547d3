// rpm's database, read directly: ROOT/var/lib/rpm/rpmdb.sqlite (rpm 4.16+: Fedora 33+, RHEL 9+),
// SQLite tables of header blobs (rpm-header.ts) and their indexes. Read by the agent itself, not
// through the host's rpm: on an rpm host nothing but rpm's own database could vouch for
// /usr/bin/rpm, and a swapped rpm would answer anything, its own digest included.
// The database is read from a private copy (rpmdb.sqlite and its -wal, taken when the stamp
// changed; the -wal folded in and the copy unlinked at once, read through the open handle):
// opening rpm's file in place would write its -shm (the agent would then write the database it
// watches) and take SQLite locks rpm waits on. A copy taken while rpm writes may be
// torn: SQLite then fails to read it, and the verdict is inconclusive; the caller also compares
// the stamp before and after (file-verdict.ts).
// A copy costs what the file weighs (~0.4 s for 80 MB here, a full Fedora install's order), and
// rpm rewrites its database for every package of a transaction, while each of its writes there is
// an event whose writer is judged: a caller may take a snapshot up to `maxAgeMs` old (the writer's
// verdict: dnf's and python3's headers do not change within a transaction), or insist on the
// current state (the file's verdict, once the writer exited: 0).
// Each header read is checked as rpm checks it: SHA256HEADER over its immutable region, and its
// signature, when present, against the keys of rpm's keyring (its gpg-pubkey headers); a header
// whose digest fails is skipped, as rpm skips it. Not read: the Berkeley DB format of rpm < 4.16
// (RHEL 8): no verdict there, `present()` is true and every lookup answers nothing.
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type DatabaseType from 'better-sqlite3';
import { mergedUsrAliases } from './dpkg-db.js';
import { publicKeys, verifiedSigner, type PublicKey } from './openpgp.js';
import { RpmHeader } from './rpm-header.js';

const FILE = 'rpmdb.sqlite';

export interface RpmOwner {
  name: string;
  /** VERSION-RELEASE, as repositories name it. */
  version: string;
  arch: string;
  /** EPOCH, "0" when the package has none. */
  epoch: string;
  /** The path as the package lists it (one of the merged-/usr names). */
  listed: string;
  header: RpmHeader;
}

interface Snapshot {
  stamp: string;
  /** When it was copied (ms, monotonic). */
  at: number;
  db: DatabaseType.Database;
  keyring?: PublicKey[];
}

/** One per root, shared by every verdict of the process: a copy of a large database is taken once per change, not once per reader. */
const shared = new Map<string, RpmDb>();

export class RpmDb {
  private snap: Snapshot | null = null;
  readonly dir: string;

  /** The process's RpmDb for the root (its real path). */
  static of(root: string): RpmDb {
    let db = shared.get(root);
    if (!db) shared.set(root, (db = new RpmDb(root)));
    return db;
  }

  /** root: the real path of the root whose database this is ("/" for the host's). */
  constructor(root: string) {
    this.dir = join(root, 'var/lib/rpm');
  }

  /** The root has an rpm database (either format). */
  present(): boolean {
    return existsSync(join(this.dir, FILE)) || existsSync(join(this.dir, 'Packages'));
  }

  /** The root has an rpm database in the format read (rpmdb.sqlite, rpm 4.16+). */
  readable(): boolean {
    return existsSync(join(this.dir, FILE));
  }

  /** The database's state (rpmdb.sqlite and its -wal: size and mtime); null when there is none. */
  stamp(): string | null {
    const part = (f: string) => {
      try {
        const st = statSync(join(this.dir, f));
        return `${st.size}:${st.mtimeMs}`;
      } catch {
        return '-';
      }
    };
    const main = part(FILE);
    if (main === '-') return this.present() ? 'bdb' : null;
    return `${main}|${part(`${FILE}-wal`)}`;
  }

  /** The installed package listing `path` (under any merged-/usr name), in a snapshot at most `maxAgeMs` older than the database; null when none does, or the database cannot be read. */
  owner(path: string, maxAgeMs = 0): RpmOwner | null {
    const db = this.open(maxAgeMs);
    if (!db) return null;
    try {
      for (const alias of mergedUsrAliases(path)) {
        const rows = db.prepare('SELECT hnum, idx FROM Basenames WHERE key = ?').all(posix.basename(alias)) as Array<{ hnum: number; idx: number }>;
        for (const r of rows) {
          const h = this.header(db, r.hnum);
          if (h && posix.normalize(h.files()[r.idx] ?? '') === alias) return { name: h.name, version: h.version, arch: h.arch, epoch: h.epoch, listed: alias, header: h };
        }
      }
    } catch {
      // a torn copy, or not rpm's schema
    }
    return null;
  }

  /** The digest the package recorded for `path` (any merged-/usr name), with its algorithm as Node names it. */
  digest(owner: RpmOwner, path: string): { algo: string; hex: string } | null {
    const d = owner.header.digest(new Set(mergedUsrAliases(path)));
    return d ? { algo: d.algo, hex: d.hex } : null;
  }

  /**
   * The id of the key (16 hex digits) whose signature over the installed header checks out, that
   * key being in rpm's keyring; null when the header is unsigned, signed by a key not in the
   * keyring, or its signature fails.
   */
  signer(owner: RpmOwner): string | null {
    const sig = owner.header.signature();
    const db = this.snap?.db;
    if (!sig || !this.snap || !db) return null;
    this.snap.keyring ??= this.keyring(db);
    return verifiedSigner(owner.header.signed, sig, this.snap.keyring);
  }

  private keyring(db: DatabaseType.Database): PublicKey[] {
    try {
      const rows = db.prepare("SELECT hnum FROM Name WHERE key = 'gpg-pubkey'").all() as Array<{ hnum: number }>;
      return rows.flatMap((r) => {
        const h = this.header(db, r.hnum);
        return h ? publicKeys(Buffer.from(h.description)) : [];
      });
    } catch {
      return [];
    }
  }

  /** Header `hnum`, if it parses and its digest holds (rpm skips such a header too). */
  private header(db: DatabaseType.Database, hnum: number): RpmHeader | null {
    const row = db.prepare('SELECT blob FROM Packages WHERE hnum = ?').get(hnum) as { blob: Buffer } | undefined;
    if (!row) return null;
    try {
      const h = new RpmHeader(row.blob);
      return h.digestHolds() ? h : null;
    } catch {
      return null;
    }
  }

  /** The state of the snapshot verdicts are read from now (the live stamp once a fresh one is taken). */
  snapshotStamp(maxAgeMs: number): string | null {
    this.open(maxAgeMs);
    return this.snap?.stamp ?? this.stamp();
  }

  /** A snapshot of the database: the one held if it is the current state or younger than maxAgeMs, else a new copy; null when there is none or it cannot be read. */
  private open(maxAgeMs: number): DatabaseType.Database | null {
    if (this.snap && performance.now() - this.snap.at < maxAgeMs) return this.snap.db;
    const stamp = this.stamp();
    if (this.snap?.stamp === stamp) return this.snap.db;
    this.close();
    if (stamp === null || stamp === 'bdb') return null;
    const dir = mkdtempSync(join(tmpdir(), 'ldguard-rpmdb-'));
    let db: DatabaseType.Database | undefined;
    try {
      copyFileSync(join(this.dir, FILE), join(dir, FILE));
      if (existsSync(join(this.dir, `${FILE}-wal`))) copyFileSync(join(this.dir, `${FILE}-wal`), join(dir, `${FILE}-wal`));
      const Database = createRequire(import.meta.url)('better-sqlite3') as typeof DatabaseType;
      db = new Database(join(dir, FILE), { fileMustExist: true });
      // The copy's -wal goes into the copy itself, which then needs no file beside it: it is read
      // through the open handle once its folder is gone.
      db.pragma('journal_mode = DELETE');
      db.pragma('query_only = ON');
      this.snap = { stamp, at: performance.now(), db };
      return db;
    } catch {
      db?.close();
      return null;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Closes the snapshot (its copy is gone already). */
  close(): void {
    this.snap?.db.close();
    this.snap = null;
  }
}

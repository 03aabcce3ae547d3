// Which store --db names: a PostgreSQL URL (postgres:// or postgresql://) or a SQLite file. Any
// other URL is refused: before this, `--db postgres://…` was taken for a path and made a folder
// named `postgres:`, and a typo in a scheme would do the same.
import { chownSync, existsSync, statSync } from 'node:fs';
import { LdgError } from '../../../shared/errors.js';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type DbSpec = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** `scheme://…`, or `scheme:` before anything but a path separator (a Windows-style `C:\` has none here). */
const URL_LIKE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

export function isDbUrl(db: string): boolean {
  return URL_LIKE.test(db);
}

export function parseDb(db: string): DbSpec {
  const m = URL_LIKE.exec(db);
  if (!m) return { kind: 'sqlite', path: db };
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') return { kind: 'postgres', url: db };
  throw new LdgError('LDG_ERR_DB_URL', `--db ${m[1]}://…: unknown database scheme ${JSON.stringify(m[1])}; give a SQLite file path (e.g. /var/lib/ldguard/collector.db) or postgres://USER@HOST:PORT/DATABASE`);
}

export interface OpenStoreOptions {
  /** A command's (token, db backup): a SQLite file that is not there is an error, never created. */
  mustExist?: boolean;
  /** The collector: SQLite's writer threads; PostgreSQL's LISTEN session and agent leases. */
  collector?: boolean;
  leaseMissedHeartbeats?: number;
  onMigrate?: (message: string) => void;
  onWarning?: (message: string) => void;
}

export async function openStore(db: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const spec = parseDb(db);
  if (spec.kind === 'postgres') return PostgresStore.open(spec.url, opts);
  if (opts.mustExist && !existsSync(spec.path)) {
    throw new LdgError('LDG_ERR_NO_DATABASE', `no collector database at ${spec.path}: the collector creates it at its first start (systemctl start ldguard-collector, or ldguard db init --db ${spec.path}); if it lives elsewhere, set db in ${INSTALLED_CONFIG_PATH} or pass --db`);
  }
  const store = await SqliteStore.open(spec.path, { workers: opts.collector, onMigrate: opts.onMigrate });
  if (opts.mustExist) ownLikeTheDatabase(spec.path);
  return store;
}

/** Where the installed collector's config lives (collector/src/config.ts INSTALLED_CONFIG; not imported: config.ts imports this file). */
const INSTALLED_CONFIG_PATH = '/etc/ldguard/collector.toml';

/**
 * A command run as root on the database of a collector that runs as another user (systemd's
 * DynamicUser) makes SQLite's -wal and -shm files, and the derived index files, root's: the
 * collector could then not open them. They are given to the database file's owner. Called after
 * opening and again after closing (what closing left).
 */
export function ownLikeTheDatabase(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (process.getuid?.() !== 0 || st.uid === 0) return;
  const base = path.endsWith('.db') ? path.slice(0, -3) : path;
  for (const f of [path, `${base}.hosts.db`, `${base}.search.db`].flatMap((p) => [p, `${p}-wal`, `${p}-shm`, `${p}-journal`])) {
    try {
      const s = statSync(f);
      if (s.uid !== st.uid || s.gid !== st.gid) chownSync(f, st.uid, st.gid);
    } catch {
      // not there: nothing to give
    }
  }
}

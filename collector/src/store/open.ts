// Which store --db names: a PostgreSQL URL (postgres:// or postgresql://) or a SQLite file. Any
// other URL is refused: before this, `--db postgres://…` was taken for a path and made a folder
// named `postgres:`, and a typo in a scheme would do the same.
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
  /** The collector: SQLite's writer threads; PostgreSQL's LISTEN session and agent leases. */
  collector?: boolean;
  leaseMissedHeartbeats?: number;
  onMigrate?: (message: string) => void;
  onWarning?: (message: string) => void;
}

export async function openStore(db: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const spec = parseDb(db);
  if (spec.kind === 'postgres') return PostgresStore.open(spec.url, opts);
  return SqliteStore.open(spec.path, { workers: opts.collector, onMigrate: opts.onMigrate });
}

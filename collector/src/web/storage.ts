// The dashboard's storage for the collector's store: what it reads (reads.ts) and its credentials
// (credentials/store.ts), on connections of their own. SQLite: one connection to the collector's
// file (the credentials share the reads' connection) and the search indexer. PostgreSQL: one small
// pool for both; the credentials are then every collector's over that database.
import type { Logger } from '../../../shared/log.js';
import { PostgresCredentials } from '../credentials/postgres.js';
import { SqliteCredentials } from '../credentials/sqlite.js';
import type { CredentialStore } from '../credentials/store.js';
import { PostgresStore } from '../store/postgres.js';
import { SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import type { DashboardReads } from './reads.js';
import { PostgresDashboardReads } from './reads-postgres.js';
import { SqliteDashboardReads } from './reads-sqlite.js';

/** Connections the dashboard holds on PostgreSQL: a page load asks for a few things at once. */
const PG_POOL_MAX = 4;

export interface DashboardStorage {
  reads: DashboardReads;
  credentials: CredentialStore;
}

export function dashboardStorage(store: Store, log: Logger): DashboardStorage {
  if (store instanceof PostgresStore) {
    const pool = store.newPool('ldguard-web', PG_POOL_MAX);
    return { reads: new PostgresDashboardReads(pool), credentials: new PostgresCredentials(pool) };
  }
  if (store instanceof SqliteStore) {
    const reads = new SqliteDashboardReads(store, log);
    return { reads, credentials: new SqliteCredentials(reads.queries.db) };
  }
  throw new Error(`no dashboard storage for a ${store.kind} store`);
}

// What the collector bench reads from a store itself, beside the collector's /metrics: the agents
// table's writes (presence: hellos, heartbeats, last_seen) and the bytes the alerts take on disk.
// Read-only while collectors run; the SQLite size is read once its collector has exited (a
// checkpoint first, so the WAL is counted once, in the file).
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';

export interface StoreSize {
  alerts: number;
  bytes: number;
  /** What `bytes` counts. */
  how: string;
}

export interface StoreProbe {
  /** Agents-table rows inserted or updated since the database was made; null where the store cannot tell. */
  agentRowWrites(): Promise<number | null>;
  /** Alerts held and the bytes they take. SQLite: only once no collector has the file open. */
  size(): Promise<StoreSize>;
}

async function pgQuery<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

export function postgresProbe(url: string): StoreProbe {
  return {
    // The server's statistics, flushed by each backend about once a second once idle: read over
    // windows of several seconds.
    agentRowWrites: async () => Number((await pgQuery<{ n: string }>(url, "SELECT n_tup_ins + n_tup_upd AS n FROM pg_stat_user_tables WHERE relname = 'agents'"))[0]?.n ?? NaN),
    size: async () => {
      await pgQuery(url, 'VACUUM ANALYZE alerts');
      const [r] = await pgQuery<{ n: string; b: string }>(url, "SELECT (SELECT count(*) FROM alerts) AS n, pg_total_relation_size('alerts') AS b");
      return { alerts: Number(r!.n), bytes: Number(r!.b), how: "pg_total_relation_size('alerts') after VACUUM: heap, TOAST and every index, the pg_trgm one included" };
    },
  };
}

export function sqliteProbe(file: string): StoreProbe {
  return {
    agentRowWrites: () => Promise.resolve(null),
    size: () => {
      const d = new Database(file, { fileMustExist: true });
      let alerts: number;
      try {
        d.pragma('wal_checkpoint(TRUNCATE)');
        alerts = (d.prepare('SELECT count(*) AS n FROM alerts').get() as { n: number }).n;
      } finally {
        d.close();
      }
      // collector.db, its -wal and -shm, and its side databases (collector.hosts.db, the host index;
      // collector.search.db, the dashboard's free-text index).
      const stem = basename(file).replace(/\.db$/, '');
      const files = readdirSync(dirname(file)).filter((f) => f.startsWith(`${stem}.`) && /\.db(-wal|-shm)?$/.test(f));
      const bytes = files.reduce((s, f) => s + statSync(join(dirname(file), f)).size, 0);
      return Promise.resolve({ alerts, bytes, how: `the files ${files.join(', ')} after a WAL checkpoint, no writer open` });
    },
  };
}

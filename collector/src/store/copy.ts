// `ldguard db copy`: a site's SQLite database into PostgreSQL, for moving to several collectors.
//
// Contract:
// - The source is a stopped collector's database. A running collector holds SQLite's shared lock
//   for as long as it has the file open (WAL mode), so taking the exclusive lock for an instant
//   (nothing is written) tells whether anyone has it open; if someone has, the copy is refused
//   (LDG_ERR_DB_IN_USE). The copy then reads through a read-only connection, inside one read
//   transaction: one snapshot from the first row to the last check.
// - The target's schema is the PostgreSQL store's own: it is opened through PostgresStore (its
//   migrations, under their lock), closed, and the rows are then written by one client of the same
//   making (postgresClient).
// - What is copied: every table both schemas hold. Alerts keep their ids (the workflow history
//   refers to them, and the API's cursors are (ts, id)), with their documents as the stored bytes;
//   tokens (hashes only: no secret exists in either database), their agent bindings, agents,
//   host_seals, the quarantine, and where the dashboard ran on the source, its passwords (scrypt
//   hashes, keyed by their token's hash), its logins' preferences (web_prefs, by name) and the
//   audit log (ids kept; append-only on both sides).
//   Not copied: the dashboard's sessions (log in again) and the derived search and host indexes
//   (PostgreSQL indexes the alerts table itself).
// - Resumable: the small tables are written first in one transaction (upserts: a re-run writes the
//   same rows again), then the alerts in id order, BATCH_ROWS to a transaction with their history.
//   The target's highest alert id is how far a killed copy got; a re-run checks that what is there
//   is exactly the source's alerts up to that id (else it is another site's data: refused,
//   LDG_ERR_DB_COPY_TARGET) and goes on from there. The (ots, uuid, agent_id) constraint and the
//   primary key make a duplicate an error, never a second row.
// - Checked: counts and digests of every table on both sides (store/copy-check.ts); the caller
//   reports a mismatch as an error naming the table. A re-run of a finished copy only checks it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import { checkCopy, pgText, targetIsPrefix, type TableCheck } from './copy-check.js';
import { ownLikeTheDatabase } from './open.js';
import { PostgresStore, postgresClient, redactUrl } from './postgres.js';
import { SCHEMA_VERSION } from './sqlite.js';
import { GROUP_KEY_COLUMNS, groupKeyArrays, groupKeyColumns } from './group-fill.js';

/** Key of the session advisory lock a copy holds on its target ("ldgcopy" in ASCII; the store's migration lock is another). */
const COPY_LOCK = '0x6c6467636f707900';

/** Alerts per target transaction: a killed copy loses at most this much work (about 10 MB of documents at 2 KB each). */
export const BATCH_ROWS = 5_000;

export const NOT_COPIED = [
  'dashboard sessions (log in again)',
  "the dashboard's search and host indexes (derived; PostgreSQL indexes the alerts itself)",
] as const;

export interface CopyProgress {
  /** Alerts in the target so far (this run's and a killed run's). */
  done: number;
  total: number;
  /** Alerts this run wrote per second since it started. */
  rowsPerSec: number;
}

export interface CopyOptions {
  /** The SQLite file. */
  from: string;
  /** postgres:// or postgresql:// URL (PG* variables and the password file fill what it leaves out). */
  to: string;
  batchRows?: number;
  onProgress?: (p: CopyProgress) => void;
  onMigrate?: (message: string) => void;
}

export interface CopyResult {
  from: string;
  /** The URL without its password. */
  to: string;
  /** Alerts already in the target from an earlier run (0 on a fresh copy). */
  resumedAt: number;
  /** Alerts this run wrote. */
  copied: number;
  seconds: number;
  checks: TableCheck[];
  notCopied: readonly string[];
}

const IN_USE_CODES = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);

/**
 * The stopped collector's database, read-only, in an open read transaction. Refused when anyone
 * holds it open (see the top of this file) or when it is not a current ldguard database.
 */
export function openSource(path: string): BetterSqlite3.Database {
  if (!existsSync(path)) throw new LdgError('LDG_ERR_NO_DATABASE', `no collector database at ${path}; give the SQLite file with --from (the db of /etc/ldguard/collector.toml by default)`);
  const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  try {
    const probe = new Database(path, { fileMustExist: true, timeout: 0 });
    try {
      // EXCLUSIVE locking mode makes a WAL connection take the file's exclusive lock, which every
      // other open connection's shared lock refuses (a plain BEGIN EXCLUSIVE in WAL mode would not).
      probe.pragma('locking_mode = EXCLUSIVE');
      probe.exec('BEGIN EXCLUSIVE');
      probe.exec('ROLLBACK');
    } finally {
      probe.close();
    }
  } catch (err) {
    if (IN_USE_CODES.has((err as { code?: string }).code ?? '')) {
      throw new LdgError('LDG_ERR_DB_IN_USE', `${path} is open in another process (a running collector?): it could not be locked. Stop the collector first (systemctl stop ldguard-collector), then run ldguard db copy again`);
    }
    throw new LdgError('LDG_ERR_DB', `cannot open ${path}: ${errorMessage(err)}. Give the collector's SQLite file with --from`, { cause: err });
  } finally {
    ownLikeTheDatabase(path);
  }
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const v = db.prepare("SELECT value FROM meta WHERE key = 'schema'").pluck().get() as string | undefined;
    if (Number(v) !== SCHEMA_VERSION) {
      throw new LdgError('LDG_ERR_DB_SCHEMA', `${path} has schema ${v ?? 'none'}, this ldguard copies schema ${SCHEMA_VERSION}: upgrade it first (ldguard db init --db ${path}), then copy`);
    }
    // One snapshot for the whole copy and its check.
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM alerts').pluck().get();
    return db;
  } catch (err) {
    db.close();
    if (err instanceof LdgError) throw err;
    throw new LdgError('LDG_ERR_DB', `${path} is not a collector database (${errorMessage(err)}); give the collector's SQLite file with --from`, { cause: err });
  }
}

/** Rows of the target a copy would never have written: another site's (or a collector's since). */
async function foreignRows(src: BetterSqlite3.Database, c: pg.Client): Promise<string[]> {
  const out: string[] = [];
  const keyed: Array<{ pg: string; sqlite: string; params: (r: unknown[]) => unknown[]; name: (r: unknown[]) => string }> = [
    { pg: 'SELECT hash, name FROM tokens', sqlite: 'SELECT 1 FROM tokens WHERE hash = ?', params: (r) => [r[0]], name: (r) => `token ${String(r[1])}` },
    { pg: 'SELECT agent_id FROM agents', sqlite: 'SELECT 1 FROM agents WHERE agent_id = ?', params: (r) => [r[0]], name: (r) => `agent ${String(r[0])}` },
    {
      pg: 'SELECT host_id, generation, sha256 FROM host_seals', sqlite: 'SELECT 1 FROM host_seals WHERE host_id = ? AND generation = ? AND sha256 = ?',
      params: (r) => [r[0], Number(r[1]), r[2]], name: (r) => `a seal of host ${String(r[0])}`,
    },
    { pg: 'SELECT id FROM quarantine', sqlite: 'SELECT 1 FROM quarantine WHERE id = ?', params: (r) => [Number(r[0])], name: (r) => `quarantined row ${String(r[0])}` },
  ];
  // A collector that ran on the target logs its logins there; a source whose dashboard never ran has none.
  if (hasTable(src, 'audit_log')) {
    keyed.push({ pg: 'SELECT id, action FROM audit_log', sqlite: 'SELECT 1 FROM audit_log WHERE id = ?', params: (r) => [Number(r[0])], name: (r) => `audit entry ${String(r[0])} (${String(r[1])})` });
  } else {
    const { rows } = await c.query<{ n: string }>('SELECT count(*) AS n FROM audit_log');
    if (Number(rows[0]!.n) > 0) out.push(`${rows[0]!.n} audit entries`);
  }
  for (const k of keyed) {
    const has = src.prepare(k.sqlite);
    const { rows } = await c.query<unknown[]>({ text: k.pg, rowMode: 'array' });
    for (const r of rows) if (has.get(...k.params(r)) === undefined) out.push(k.name(r));
  }
  return out;
}

/** Rows of a small table per INSERT: bounded parameters however many agents a site has. */
const SMALL_CHUNK_ROWS = 2_000;

/**
 * The small tables: the source's SELECT and the target's INSERT of the same columns in the same
 * order (as unnest arrays), upserts so that a re-run writes the same rows again.
 */
const SMALL_TABLES: ReadonlyArray<{ select: string; insert: string; map?: (r: unknown[]) => unknown[]; onlyIf?: string }> = [
  {
    // Revoked rows first: a name's active token must never meet an older active one of its name.
    select: 'SELECT hash, name, role, created, revoked, agent_id FROM tokens ORDER BY revoked IS NULL, created, rowid',
    insert: `INSERT INTO tokens (hash, name, role, created, revoked, agent_id)
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])
      ON CONFLICT (hash) DO UPDATE SET name = excluded.name, role = excluded.role, created = excluded.created, revoked = excluded.revoked,
        agent_id = excluded.agent_id, rev = nextval('token_rev')`,
  },
  {
    // A lease as the store gives one (3 heartbeat periods, its default) from when the agent was
    // last heard: a lapsed one is marked offline by the first collector's sweep, as after a restart.
    select: `SELECT agent_id, hostname, version, token_name, heartbeat_ms, facts, health, spool_depth, events_lost, spool_overflow,
      first_seen, last_seen, online FROM agents ORDER BY agent_id`,
    insert: `INSERT INTO agents (agent_id, hostname, version, token_name, heartbeat_ms, facts, health, spool_depth, events_lost, spool_overflow,
        first_seen, last_seen, online, lease_until)
      SELECT *, l + coalesce(h, 10000) * 3 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[],
        $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::boolean[]) AS u(a, b, c, d, h, f, g, i, j, k, m, l, o)
      ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, token_name = excluded.token_name,
        heartbeat_ms = excluded.heartbeat_ms, facts = excluded.facts, health = excluded.health, spool_depth = excluded.spool_depth,
        events_lost = excluded.events_lost, spool_overflow = excluded.spool_overflow, first_seen = excluded.first_seen,
        last_seen = excluded.last_seen, online = excluded.online, lease_until = excluded.lease_until`,
    map: (r) => [...r.slice(0, 12), r[12] !== 0],
  },
  {
    select: 'SELECT host_id, generation, sha256, agent_id, first_seen, last_seen FROM host_seals',
    insert: `INSERT INTO host_seals (host_id, generation, sha256, agent_id, first_seen, last_seen)
      SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
      ON CONFLICT (host_id, generation, sha256) DO UPDATE SET agent_id = excluded.agent_id, first_seen = excluded.first_seen, last_seen = excluded.last_seen`,
  },
  {
    select: 'SELECT id, agent_id, token_name, seq, uuid, reason, text, size, received FROM quarantine ORDER BY id',
    insert: `INSERT INTO quarantine (id, agent_id, token_name, seq, uuid, reason, text, size, received)
      SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::integer[], $9::bigint[])
      ON CONFLICT (id) DO NOTHING`,
    map: (r) => r.map((v) => (typeof v === 'string' ? pgText(v) : v)),
  },
  // The dashboard's tables exist in a SQLite file only once its dashboard ran (credentials/sqlite.ts).
  {
    onlyIf: 'web_passwords',
    select: 'SELECT token_hash, hash, updated FROM web_passwords ORDER BY token_hash',
    insert: `INSERT INTO web_passwords (token_hash, hash, updated) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
      ON CONFLICT (token_hash) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`,
  },
  {
    onlyIf: 'web_prefs',
    select: 'SELECT name, time_zone, updated FROM web_prefs ORDER BY name',
    insert: `INSERT INTO web_prefs (name, time_zone, updated) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
      ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone, updated = excluded.updated`,
  },
  {
    onlyIf: 'audit_log',
    select: 'SELECT id, at, actor, action, token_name, detail FROM audit_log ORDER BY id',
    insert: `INSERT INTO audit_log (id, at, actor, action, token_name, detail)
      SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) ON CONFLICT (id) DO NOTHING`,
    map: (r) => r.map((v) => (typeof v === 'string' ? pgText(v) : v)),
  },
];

/** Whether the SQLite source has this table. */
export function hasTable(src: BetterSqlite3.Database, table: string): boolean {
  return src.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
}

/** Tokens, agents, host seals and the quarantine, in one transaction. */
async function copySmallTables(src: BetterSqlite3.Database, c: pg.Client): Promise<void> {
  await c.query('BEGIN');
  try {
    for (const t of SMALL_TABLES) {
      if (t.onlyIf && !hasTable(src, t.onlyIf)) continue;
      let chunk: unknown[][] = [];
      const flush = async () => {
        if (chunk.length === 0) return;
        await c.query(t.insert, chunk[0]!.map((_, i) => chunk.map((r) => r[i] ?? null)));
        chunk = [];
      };
      for (const r of src.prepare(t.select).raw(true).iterate() as IterableIterator<unknown[]>) {
        chunk.push(t.map ? t.map(r) : r);
        if (chunk.length >= SMALL_CHUNK_ROWS) await flush();
      }
      await flush();
    }
    // Ids given explicitly leave the sequence behind: the collector's next row takes the next id.
    await c.query("SELECT setval(pg_get_serial_sequence('quarantine', 'id'), greatest((SELECT max(id) FROM quarantine), 1))");
    await c.query("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), greatest((SELECT max(id) FROM audit_log), 1))");
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const ALERT_SELECT = `SELECT id, uuid, ts, ots, host, rule_id, rule_name, severity, status, status_by, status_at, agent_id, token_name, received,
  future, CAST(doc AS BLOB) AS doc, assignee FROM alerts WHERE id > ? ORDER BY id LIMIT ?`;
// The group keys are computed from the documents (groupKeyColumns), whatever schema the source has.
const ALERT_INSERT = `INSERT INTO alerts (id, uuid, ts, ots, host, rule_id, rule_name, severity, status, status_by, status_at, agent_id, token_name,
    received, future, doc, assignee, ${GROUP_KEY_COLUMNS})
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
    $11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::boolean[], $16::bytea[], $17::text[], ${groupKeyArrays(18)})`;
// In the order written (rowid), which the target's seq keeps.
const HISTORY_SELECT = 'SELECT alert_id, status, by, at, kind, value FROM alert_history WHERE alert_id > ? AND alert_id <= ? ORDER BY alert_id, rowid';
const HISTORY_INSERT = 'INSERT INTO alert_history (alert_id, status, by, at, kind, value) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])';

/** The alerts with ids in (lo, hi] and their history, or the history alone past the last alert, in the open transaction. */
async function writeHistory(src: BetterSqlite3.Database, c: pg.Client, lo: number, hi: number): Promise<void> {
  const h = src.prepare(HISTORY_SELECT).raw(true).all(lo, hi) as unknown[][];
  if (h.length > 0) await c.query(HISTORY_INSERT, [0, 1, 2, 3, 4, 5].map((i) => h.map((r) => r[i] ?? null)));
}

/** Copies `opts.from` into `opts.to` (see the top of this file) and checks it; the caller judges the checks. */
export async function copyToPostgres(opts: CopyOptions): Promise<CopyResult> {
  const t0 = performance.now();
  const batchRows = opts.batchRows ?? BATCH_ROWS;
  const src = openSource(opts.from);
  let c: pg.Client | undefined;
  try {
    // The store's migrations make or upgrade the schema; nothing here creates a table.
    const store = await PostgresStore.open(opts.to, { onMigrate: opts.onMigrate });
    await store.close();
    c = postgresClient(opts.to, 'ldguard-db-copy');
    try {
      await c.connect();
    } catch (err) {
      throw new LdgError('LDG_ERR_DB', `cannot connect to ${redactUrl(opts.to)}: ${errorMessage(err)}`, { cause: err });
    }
    // Two copies into one database would race for the same ids: the second waits for nothing and is refused.
    const locked = (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [BigInt(COPY_LOCK).toString()])).rows[0]!.ok;
    if (!locked) throw new LdgError('LDG_ERR_DB_COPY_TARGET', `another ldguard db copy is writing ${redactUrl(opts.to)}; let it finish (or stop it), then run this one again: it resumes or checks`);
    const target = (await c.query<{ n: string; m: string }>('SELECT count(*) AS n, coalesce(max(id), 0) AS m FROM alerts')).rows[0]!;
    const resumedAt = Number(target.n);
    const after = Number(target.m);
    const refuse = (what: string) => new LdgError('LDG_ERR_DB_COPY_TARGET', `${redactUrl(opts.to)} already holds ${what} that ${opts.from} does not: it is not empty, and not an earlier copy of this file. Copy into a new database (createdb), or drop this one's tables; a killed copy is resumed only into the database it started`);
    const foreign = await foreignRows(src, c);
    if (foreign.length > 0) throw refuse(`${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ` and ${foreign.length - 3} more rows` : ''}`);
    if (resumedAt > 0 && !(await targetIsPrefix(src, c, after))) throw refuse('alerts');

    await copySmallTables(src, c);

    const total = src.prepare('SELECT count(*) FROM alerts').pluck().get() as number;
    const select = src.prepare(ALERT_SELECT).raw(true);
    let lo = after;
    let copied = 0;
    const started = performance.now();
    for (;;) {
      const rows = select.all(lo, batchRows) as unknown[][];
      if (rows.length === 0) break;
      const hi = rows.at(-1)![0] as number;
      await c.query('BEGIN');
      try {
        const col = (i: number) => rows.map((r) => r[i] ?? null);
        await c.query(ALERT_INSERT, [...Array.from({ length: 14 }, (_, i) => col(i)), rows.map((r) => r[14] !== 0), col(15), col(16), ...groupKeyColumns(rows.map((r) => r[15] as Buffer))]);
        await writeHistory(src, c, lo, hi);
        await c.query("SELECT setval(pg_get_serial_sequence('alerts', 'id'), $1)", [hi]);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw new LdgError('LDG_ERR_DB', `PostgreSQL refused the alerts with ids ${lo + 1}-${hi}: ${errorMessage(err)}. Nothing of them was written; fix the cause and run the same command again (it resumes)`, { cause: err });
      }
      copied += rows.length;
      lo = hi;
      opts.onProgress?.({ done: resumedAt + copied, total, rowsPerSec: copied / Math.max((performance.now() - started) / 1000, 1e-3) });
    }
    // History of alerts past the last one (none unless rows were deleted by hand): replaced whole, so a re-run writes it once.
    const last = src.prepare('SELECT coalesce(max(id), 0) FROM alerts').pluck().get() as number;
    await c.query('BEGIN');
    try {
      await c.query('DELETE FROM alert_history WHERE alert_id > $1', [last]);
      await writeHistory(src, c, last, Number.MAX_SAFE_INTEGER);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }

    const checks = await checkCopy(src, c);
    return { from: opts.from, to: redactUrl(opts.to), resumedAt, copied, seconds: (performance.now() - t0) / 1000, checks, notCopied: NOT_COPIED };
  } finally {
    await c?.end().catch(() => undefined);
    src.close();
    ownLikeTheDatabase(opts.from);
  }
}

// Filling the group keys (group-keys.ts) of rows written before the columns existed: SQLite
// schema 6, PostgreSQL migration 7. A row not filled has held_back NULL (ingest and the copy always
// write 0 or 1), and the partial index alerts_unfilled holds exactly those rows: the fill walks it
// in batches of FILL_BATCH, one transaction each, so it resumes where it stopped if the process is
// killed, a commit never waits behind the whole table, and once done the check at each open costs
// one look into an empty index. Held-back records then take their summary's keys, as the insert
// trigger does for new ones.
//
// Cost at 100,000 alerts of ~2 kB (test/bench/group-reads.ts, this shared 2-core box): SQLite 9.0 s,
// PostgreSQL 59 s of which 44 s rebuild the search index (see fillGroupKeysPostgres; 129 s with
// the index kept). Linear in the rows: a million takes ~1.5 min on SQLite, ~10 min on PostgreSQL.
// The fill runs while the store opens, before the collector takes agents (SQLite), or under the
// migration lock (PostgreSQL: the other collectors wait for it), and logs what it does first.
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { groupKeysOf } from './group-keys.js';

/** The group key columns an insert into PostgreSQL writes, after the others (see groupKeyColumns). */
export const GROUP_KEY_COLUMNS = 'file_hash, executable, package, held_back, summary_id';

/** The unnest() arrays of GROUP_KEY_COLUMNS, numbered from parameter `from`. */
export function groupKeyArrays(from: number): string {
  return ['text', 'text', 'text', 'smallint', 'text'].map((t, i) => `$${from + i}::${t}[]`).join(', ');
}

/** The values of GROUP_KEY_COLUMNS for these documents, one array a column (groupKeysOf). */
export function groupKeyColumns(docs: Array<Buffer | string>): unknown[][] {
  const keys = docs.map(groupKeysOf);
  return [keys.map((k) => k.fileHash), keys.map((k) => k.executable), keys.map((k) => k.package), keys.map((k) => (k.heldBack ? 1 : 0)), keys.map((k) => k.summaryId)];
}

/** Rows filled per transaction. */
export const FILL_BATCH = 5_000;

/** Gives the held-back records that `cond` (SQL on alerts) selects their summary's keys, where the summary is stored (both dialects). */
export function heldGroupUpdate(cond: string): string {
  const summary = 'FROM alerts s WHERE s.summary_id = alerts.summary_id AND s.agent_id = alerts.agent_id AND s.held_back = 0';
  return `UPDATE alerts SET (file_hash, executable, package) = (SELECT s.file_hash, s.executable, s.package ${summary} ORDER BY s.id LIMIT 1)
    WHERE ${cond} AND EXISTS (SELECT 1 ${summary})`;
}

const HELD_AFTER_FILL = heldGroupUpdate('held_back = 1 AND summary_id IS NOT NULL AND id BETWEEN ? AND ?');

/** Fills what is not filled; a line for the log ("group keys of 100000 alerts in 2.1 s"), or null when nothing was. */
export function fillGroupKeysSqlite(db: Database.Database, onMigrate?: (message: string) => void): string | null {
  const first = db.prepare('SELECT id FROM alerts INDEXED BY alerts_unfilled WHERE held_back IS NULL ORDER BY id LIMIT 1').pluck().get() as number | undefined;
  if (first === undefined) return null;
  const t0 = performance.now();
  const last = db.prepare('SELECT max(id) FROM alerts').pluck().get() as number;
  onMigrate?.(`filling the group keys of the alerts with ids ${first}-${last} (${FILL_BATCH} a transaction)`);
  const batch = db.prepare(`SELECT id, doc FROM alerts INDEXED BY alerts_unfilled WHERE held_back IS NULL ORDER BY id LIMIT ${FILL_BATCH}`);
  const set = db.prepare('UPDATE alerts SET file_hash = ?, executable = ?, package = ?, held_back = ?, summary_id = ? WHERE id = ?');
  const held = db.prepare(HELD_AFTER_FILL);
  let n = 0;
  const step = db.transaction(() => {
    const rows = batch.all() as Array<{ id: number; doc: string }>;
    for (const r of rows) {
      const k = groupKeysOf(r.doc);
      set.run(k.fileHash, k.executable, k.package, k.heldBack ? 1 : 0, k.summaryId, r.id);
    }
    n += rows.length;
    return rows.length > 0;
  });
  while (step.immediate()) { /* one batch a transaction */ }
  // Records point back at summaries, stored before them: by now every summary is filled.
  db.transaction(() => held.run(first, last)).immediate();
  return `group keys of ${n} alerts in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
}

/** The search index (migration 1), as it is made again after a large fill. */
const TRGM_INDEX = 'CREATE INDEX IF NOT EXISTS alerts_doc_trgm ON alerts USING gin (ldguard_doc_text(doc) gin_trgm_ops)';
/** Unfilled rows from which the fill drops the search index and builds it again after (see below). */
const REBUILD_FROM = 20_000;

/**
 * As fillGroupKeysSqlite, on a PostgreSQL connection (the keys computed here, groupKeysOf).
 *
 * An UPDATE in PostgreSQL writes each row again, with an entry in every index, and the trigram
 * index's entries (a thousand trigrams per alert) are most of the cost: 100,000 rows took 129 s
 * here, as long as ingesting them. So from REBUILD_FROM rows the fill drops that index, fills,
 * and builds it again in one pass (the collectors wait on the migration lock meanwhile, so no
 * search runs without it). A fill killed half way leaves it dropped: the next open, finding no
 * index, builds it (with the rest of the fill, if any).
 */
export async function fillGroupKeysPostgres(c: pg.ClientBase, onMigrate?: (message: string) => void): Promise<string | null> {
  const probe = await c.query<{ id: string }>('SELECT id FROM alerts WHERE held_back IS NULL ORDER BY id LIMIT 1');
  const trgmGone = (await c.query("SELECT 1 FROM pg_indexes WHERE tablename = 'alerts' AND indexname = 'alerts_doc_trgm'")).rows.length === 0;
  if (probe.rows.length === 0) {
    if (trgmGone) await c.query(TRGM_INDEX);
    return trgmGone ? 'search index built again' : null;
  }
  const t0 = performance.now();
  const first = probe.rows[0]!.id;
  const unfilled = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM (SELECT 1 FROM alerts WHERE held_back IS NULL LIMIT ${REBUILD_FROM}) x`)).rows[0]!.n);
  const rebuild = trgmGone || unfilled >= REBUILD_FROM;
  onMigrate?.(`filling the group keys of the alerts from id ${first} (${FILL_BATCH} a transaction${rebuild ? '; the search index is built again after' : ''})`);
  if (rebuild) await c.query('DROP INDEX IF EXISTS alerts_doc_trgm');
  let n = 0;
  let last = first;
  for (;;) {
    await c.query('BEGIN');
    try {
      const { rows } = await c.query<{ id: string; doc: Buffer }>(`SELECT id, doc FROM alerts WHERE held_back IS NULL ORDER BY id LIMIT ${FILL_BATCH} FOR UPDATE`);
      if (rows.length === 0) {
        await c.query('COMMIT');
        break;
      }
      await c.query(`UPDATE alerts a SET file_hash = u.h, executable = u.e, package = u.p, held_back = u.b, summary_id = u.s
        FROM unnest($1::bigint[], ${groupKeyArrays(2)}) AS u(id, h, e, p, b, s) WHERE a.id = u.id`, [rows.map((r) => r.id), ...groupKeyColumns(rows.map((r) => r.doc))]);
      await c.query('COMMIT');
      n += rows.length;
      last = rows.at(-1)!.id;
    } catch (err) {
      await c.query('ROLLBACK');
      throw err;
    }
  }
  await c.query(heldGroupUpdate('held_back = 1 AND summary_id IS NOT NULL AND id BETWEEN $1 AND $2'), [first, last]);
  let built = '';
  if (rebuild) {
    const t1 = performance.now();
    // (maintenance_work_mem 256 MB instead of the default 64 made no difference here: 47 s against 44.)
    await c.query(TRGM_INDEX);
    built = ` (the search index built again in ${((performance.now() - t1) / 1000).toFixed(1)} s of it)`;
  }
  return `group keys of ${n} alerts in ${((performance.now() - t0) / 1000).toFixed(1)} s${built}`;
}

// How `ldguard db copy` proves a copy: each table read on both sides, every row made one canonical
// line (its columns as JSON, numbers and flags spelled alike whatever the engine returned), and
// per table a count and a sha256 over the lines.
//
// - alerts: in id order (ids are kept by the copy, so both sides have one order), a line per alert
//   of its columns and the sha256 of its document's bytes (PostgreSQL hashes its own bytea, so the
//   documents never cross the network twice). That covers the (original_time, uuid,
//   sha256 of the document) in key order, and the workflow columns and the sender with it.
// - the small tables (tokens, alert_history, agents, host_seals, quarantine): every row read, the
//   lines sorted, then hashed: their row order is not part of what they mean.
//
// The source is read inside the copy's read transaction (one snapshot); the target after the last
// commit. Both are called only by store/copy.ts.
import { createHash } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';

export interface Digest {
  rows: number;
  sha256: string;
}

export interface TableCheck {
  table: string;
  source: Digest;
  target: Digest;
  ok: boolean;
}

/** Rows of the target read per query when walking the alerts (keyset pages, never OFFSET). */
const PAGE_ROWS = 10_000;

/**
 * PostgreSQL text cannot hold NUL: the copy writes the quarantine's text with NUL escaped as the
 * PostgreSQL store does for its own refused rows (postgres.ts insertAlerts), and the check reads
 * the source through the same spelling.
 */
export function pgText(s: string): string {
  return s.includes('\u0000') ? s.replaceAll('\u0000', '\\u0000') : s;
}

/** Text longer than this stands in a line as its sha256: an agent's facts and health are kilobytes, and the small tables' lines are sorted in memory. */
const LONG_TEXT = 256;

/** One value as both engines' drivers give it back, spelled one way: SQLite's 1 and pg's true and '1' alike. */
function canon(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return v.toString('hex');
  const s = pgText(String(v));
  return s.length > LONG_TEXT ? `sha256:${createHash('sha256').update(s).digest('hex')}` : s;
}

function line(values: readonly unknown[]): string {
  return JSON.stringify(values.map(canon));
}

/** A running sha256 over lines, with their count. */
class LineDigest {
  private readonly h = createHash('sha256');
  private rows = 0;
  add(l: string): void {
    this.h.update(l).update('\n');
    this.rows++;
  }
  done(): Digest {
    return { rows: this.rows, sha256: this.h.digest('hex') };
  }
}

function digestOf(lines: Iterable<string>): Digest {
  const d = new LineDigest();
  for (const l of lines) d.add(l);
  return d.done();
}

const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The small tables' columns, in one order for both engines (names are the same in both schemas). */
const SMALL_TABLES: ReadonlyArray<{ table: string; columns: string; optional?: boolean }> = [
  { table: 'tokens', columns: 'hash, name, role, created, revoked, agent_id' },
  { table: 'alert_history', columns: 'alert_id, status, by, at, kind, value' },
  {
    table: 'agents',
    columns: 'agent_id, hostname, version, token_name, heartbeat_ms, facts, health, spool_depth, events_lost, spool_overflow, first_seen, last_seen, online',
  },
  { table: 'host_seals', columns: 'host_id, generation, sha256, agent_id, first_seen, last_seen' },
  { table: 'quarantine', columns: 'id, agent_id, token_name, seq, uuid, reason, text, size, received' },
  // The dashboard's: absent from a SQLite file whose dashboard never ran (then none on the target either).
  { table: 'web_passwords', columns: 'token_hash, hash, updated', optional: true },
  { table: 'web_prefs', columns: 'name, time_zone, updated', optional: true },
  { table: 'audit_log', columns: 'id, at, actor, action, token_name, detail', optional: true },
];

/** The alert columns in the line, before the document's hash. */
const ALERT_COLUMNS = 'id, ts, ots, uuid, host, rule_id, rule_name, severity, status, status_by, status_at, agent_id, token_name, received, future, assignee';

/** The alerts with id ≤ upTo (all when undefined), source side, in id order. */
function* sourceAlertLines(src: BetterSqlite3.Database, upTo: number | undefined, keysOnly: boolean): Generator<string> {
  const cols = keysOnly ? 'id, ots, uuid, agent_id' : `${ALERT_COLUMNS}, CAST(doc AS BLOB) AS doc`;
  const stmt = src.prepare(`SELECT ${cols} FROM alerts WHERE id <= ? ORDER BY id`).raw(true);
  for (const r of stmt.iterate(upTo ?? Number.MAX_SAFE_INTEGER) as IterableIterator<unknown[]>) {
    if (keysOnly) yield line(r);
    else yield line([...r.slice(0, -1), sha256Hex(r.at(-1) as Buffer)]);
  }
}

/** The same lines' digest from the target, read a page at a time (a million alerts never sit in memory). */
async function targetAlertDigest(c: pg.Client, upTo: number | undefined, keysOnly: boolean): Promise<Digest> {
  const cols = keysOnly ? 'id, ots, uuid, agent_id' : `${ALERT_COLUMNS}, encode(sha256(doc), 'hex') AS doc_sha256`;
  const d = new LineDigest();
  let after = '0';
  for (;;) {
    const r = await c.query<unknown[]>({
      text: `SELECT ${cols} FROM alerts WHERE id > $1 AND id <= $2 ORDER BY id LIMIT ${PAGE_ROWS}`,
      values: [after, upTo ?? Number.MAX_SAFE_INTEGER],
      rowMode: 'array',
    });
    for (const row of r.rows) d.add(line(row));
    if (r.rows.length < PAGE_ROWS) return d.done();
    after = String(r.rows.at(-1)![0]);
  }
}

/**
 * Whether the target's alerts are exactly the source's with id ≤ upTo (same ids, times, uuids and
 * senders): what a copy left there, killed or finished. Anything else is another site's data.
 */
export async function targetIsPrefix(src: BetterSqlite3.Database, c: pg.Client, upTo: number): Promise<boolean> {
  const source = digestOf(sourceAlertLines(src, upTo, true));
  const target = await targetAlertDigest(c, upTo, true);
  return source.rows === target.rows && source.sha256 === target.sha256;
}

/** Counts and digests of every copied table, on both sides. */
export async function checkCopy(src: BetterSqlite3.Database, c: pg.Client): Promise<TableCheck[]> {
  const out: TableCheck[] = [];
  const push = (table: string, source: Digest, target: Digest) =>
    out.push({ table, source, target, ok: source.rows === target.rows && source.sha256 === target.sha256 });
  push('alerts', digestOf(sourceAlertLines(src, undefined, false)), await targetAlertDigest(c, undefined, false));
  for (const t of SMALL_TABLES) {
    const present = !t.optional || src.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t.table) !== undefined;
    const s = present ? (src.prepare(`SELECT ${t.columns} FROM ${t.table}`).raw(true).all() as unknown[][]).map(line).sort() : [];
    const r = await c.query<unknown[]>({ text: `SELECT ${t.columns} FROM ${t.table}`, rowMode: 'array' });
    push(t.table, digestOf(s), digestOf(r.rows.map(line).sort()));
  }
  return out;
}

// Grouped reads (#22 item 2): for a grouping (group-keys.ts) and the list's filters, the groups
// with their count, first and last seen, newest last-seen first (or largest first), a page at a
// time; a group's members are the list filtered by its key (`of` and `key`, GroupFilters.of).
//
// Held-back records count in their summary's group (group-keys.ts says how they get its keys), in
// `count` and apart in `heldBack`: a flood of one decoy makes one group of 1 + N, not N groups.
//
// Cost: a group's count needs every row the filters select, so this reads them all, through the
// (key, ts) index where the filters leave the index enough (rule, hash, executable, package;
// PostgreSQL also host and sender), else the table (SQLite's host and sender: see
// sqlite.ts migrateTo6 for why they have no index there). test/bench/group-reads.ts, 100,000
// alerts from 1,000 hosts on this shared 2-core box (load 4-7), p50 of 5: SQLite by host 272 ms
// (a scan of the table), by rule 27 ms (the index alone); PostgreSQL by host 113-145 ms, by rule
// 37-49 ms; at 10,000 alerts all under 30 ms. SQLite's run off the event loop (sqlite.ts readOffLoop).
// Groups are paged by offset: there are few of them (at most one per host), the rows are not.
import type pg from 'pg';
import { GROUP_COLUMNS, type GroupBy } from './group-keys.js';

/** The members of one group: rows whose `by` key is `key` (null: rows without that key). */
export interface GroupMember {
  by: GroupBy;
  key: string | null;
}

/** The list's filters, as both the API and the dashboard give them. */
export interface GroupFilters {
  host?: string;
  rule?: string;
  severity?: string[];
  status?: string[];
  /** ms, inclusive */
  since?: number;
  /** ms, exclusive */
  until?: number;
  /** Each must be a substring of the document (case-insensitive): /api/alerts's q is one, the dashboard's words several. */
  text?: string[];
  of?: GroupMember;
}

export interface GroupQuery extends GroupFilters {
  by: GroupBy;
  /** 'last': newest last-seen first; 'count': largest first. */
  order: 'last' | 'count';
  limit: number;
  offset: number;
}

export interface AlertGroup {
  key: string | null;
  count: number;
  /** Of `count`, the held-back records (shared/throttle.ts). */
  heldBack: number;
  firstSeen: string;
  lastSeen: string;
}

export interface GroupPage {
  by: GroupBy;
  order: 'last' | 'count';
  groups: AlertGroup[];
  /** The offset of the next page, or null. */
  next: number | null;
}

export const GROUP_ORDERS = ['last', 'count'] as const;
export const MAX_GROUPS = 500;

/** The filters as SQL conditions; `p` adds a parameter and returns its placeholder. */
export function filterSql(f: GroupFilters, p: (v: unknown) => string, dialect: 'sqlite' | 'postgres'): string[] {
  const w: string[] = [];
  const big = dialect === 'postgres' ? '::bigint' : '';
  if (f.host !== undefined) w.push(`host = ${p(f.host)}`);
  if (f.rule !== undefined) w.push(`rule_id = ${p(f.rule)}`);
  if (f.severity?.length) w.push(`severity IN (${f.severity.map((s) => p(s)).join(', ')})`);
  if (f.status?.length) w.push(`status IN (${f.status.map((s) => p(s)).join(', ')})`);
  if (f.since !== undefined) w.push(`ts >= ${p(f.since)}${big}`);
  if (f.until !== undefined) w.push(`ts < ${p(f.until)}${big}`);
  for (const word of (f.text ?? []).slice(0, 8)) {
    // Substrings, case-insensitive, as /api/alerts's q; PostgreSQL's form is its trigram index's (reads-postgres.ts).
    if (dialect === 'sqlite') w.push(`instr(lower(doc), lower(${p(word)})) > 0`);
    else w.push(`ldguard_doc_text(doc) LIKE ('%' || replace(replace(replace(lower(${p(word)}), '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%')`);
  }
  if (f.of) {
    const col = GROUP_COLUMNS[f.of.by];
    w.push(f.of.key === null ? `${col} IS NULL` : `${col} = ${p(f.of.key)}`);
  }
  return w;
}

/** The grouped read as one statement and its parameters. */
export function groupStatement(q: GroupQuery, dialect: 'sqlite' | 'postgres'): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const sql = groupSql(q, (v) => {
    params.push(v);
    return dialect === 'sqlite' ? '?' : `$${params.length}`;
  }, dialect);
  return { sql, params };
}

type GroupRow = { key: string | null; n: number | string; held: number | string; first: number | string; last: number | string };

function groupSql(q: GroupQuery, p: (v: unknown) => string, dialect: 'sqlite' | 'postgres'): string {
  const col = GROUP_COLUMNS[q.by];
  const where = filterSql(q, p, dialect);
  const order = q.order === 'count' ? 'n DESC, last DESC' : 'last DESC, n DESC';
  // The key last in the order: pages are stable when counts or times tie.
  return `SELECT ${col} AS key, count(*) AS n, coalesce(sum(held_back), 0) AS held, min(ts) AS first, max(ts) AS last
    FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} GROUP BY ${col}
    ORDER BY ${order}, key ${dialect === 'postgres' ? 'NULLS FIRST' : ''} LIMIT ${p(q.limit + 1)} OFFSET ${p(q.offset)}`;
}

/** The page of groupStatement's rows. */
export function groupPage(q: GroupQuery, rows: GroupRow[]): GroupPage {
  const more = rows.length > q.limit;
  const groups = rows.slice(0, q.limit).map((r) => ({
    key: r.key, count: Number(r.n), heldBack: Number(r.held), firstSeen: new Date(Number(r.first)).toISOString(), lastSeen: new Date(Number(r.last)).toISOString(),
  }));
  return { by: q.by, order: q.order, groups, next: more ? q.offset + q.limit : null };
}

export async function groupsPostgres(pool: pg.Pool, q: GroupQuery): Promise<GroupPage> {
  const { sql, params } = groupStatement(q, 'postgres');
  return groupPage(q, (await pool.query<GroupRow>(sql, params)).rows);
}

// The dashboard's reads: its own connection to the collector's database with the search database
// attached (as `s`), so ingest's writer and the API's connection are never in its way. Every query
// here is bounded, whatever the store holds:
//
// - Lists use keyset paging on an index whose order is the list's order: (ts, id) on alerts_ts,
//   alerts_triaged or the host index (store/sqlite.ts: hostKeysSql, an index kept behind ingest
//   plus a scan of the newest alerts past it) for the time-ordered list; the FTS5 rowid
//   (= alerts.id, the order alerts were received) for search results. A page costs the same at
//   row 10 and row 10^6 (a host's page also the scan of the alerts the host index lags behind).
// - A filter no index covers (rule, severity, open, a time range on search results) is checked on
//   the rows the index walk yields, SCAN_BUDGET of them at most per request. If the page is not
//   full by then, the reply carries `next` where the walk stopped and `partial: true`, and the page
//   offers to look further: a rare value never turns one request into a walk over a million rows.
// - Counts come from the search database's per-minute and per-hour tables (small), and the
//   triaged counts from the partial alerts_triaged index; nothing reads the documents.
import Database from 'better-sqlite3';
import type { Severity, WorkflowStatus } from '../../../shared/ecs.js';
import { ftsQuery } from './indexer.js';
import { HISTORY_SQL, IDS_BY_UUID_SQL, docSql, hostKeysSql, hostsDbPath } from '../store/sqlite.js';
import type { Overview } from '../../web/src/api-types.js';
import { historyEntry, type HistoryEntry } from '../store/workflow.js';

export { historyEntry, type HistoryEntry };
import { GROUP_COLUMNS } from '../store/group-keys.js';
import type { GroupMember } from '../store/groups.js';

export type { Overview };

export const SCAN_BUDGET = 20_000;
export const MAX_PAGE = 200;
/** Search hits whose rows are read (and filtered) per statement. */
const SEARCH_CHUNK = 500;

export interface ListQuery {
  limit: number;
  q?: string;
  host?: string;
  rule?: string;
  severity?: Severity;
  status?: WorkflowStatus;
  /** ms since the epoch, inclusive */
  since?: number;
  /** ms since the epoch, exclusive */
  until?: number;
  /** `next` of the previous page */
  cursor?: string;
  /** The members of one group (store/groups.ts). */
  of?: GroupMember;
}

/**
 * The members of a host's or a rule's group are the host or rule filter, which the list walks an
 * index for; other groupings stay a filter on the rows (`of`).
 */
export function memberFilters(q: ListQuery): ListQuery {
  const key = q.of?.key;
  if (!q.of || key === null || key === undefined) return q;
  const { of, ...rest } = q;
  if (of.by === 'host' && (q.host === undefined || q.host === key)) return { ...rest, host: key };
  if (of.by === 'rule' && (q.rule === undefined || q.rule === key)) return { ...rest, rule: key };
  return q;
}

export interface ListPage {
  docs: string[];
  next: string | null;
  /** True when the page stopped at the scan budget rather than at the end or at `limit`. */
  partial: boolean;
  scanned: number;
  /** 'time' (newest @timestamp first) or 'received' (search: newest stored first). */
  order: 'time' | 'received';
}




type Cond = { sql: string; params: unknown[] };

export const iso = (ms: number) => new Date(ms).toISOString();

/** An overview's window at `now` (24h when unknown): whole buckets up to the next bucket edge. */
export function overviewWindow(window: string, now: number): { bucketMs: number; from: number; to: number; minuteFrom: number; hourFrom: number } {
  const w = WINDOWS[window] ?? WINDOWS['24h']!;
  const to = Math.ceil(now / w.bucketMs) * w.bucketMs;
  const from = to - w.ms;
  return { bucketMs: w.bucketMs, from, to, minuteFrom: Math.floor(from / 60_000), hourFrom: Math.floor(from / 3_600_000) };
}

/** Every bucket of the window from the counts per bucket (keyed time / bucketMs; absent: 0), and their total. */
export function fillBuckets(counts: ReadonlyMap<number, number>, win: { from: number; to: number; bucketMs: number }): { buckets: Overview['buckets']; total: number } {
  const buckets: Overview['buckets'] = [];
  let total = 0;
  for (let t = win.from; t < win.to; t += win.bucketMs) {
    const n = counts.get(t / win.bucketMs) ?? 0;
    total += n;
    buckets.push({ t: iso(t), n });
  }
  return { buckets, total };
}

/** Overview windows the page offers, with their chart's bucket size. */
export const WINDOWS: Record<string, { ms: number; bucketMs: number }> = {
  '1h': { ms: 3_600_000, bucketMs: 60_000 },
  '24h': { ms: 86_400_000, bucketMs: 1_800_000 },
  '7d': { ms: 7 * 86_400_000, bucketMs: 3 * 3_600_000 },
  '30d': { ms: 30 * 86_400_000, bucketMs: 12 * 3_600_000 },
};

export class DashboardQueries {
  readonly db: Database.Database;
  private readonly cache = new Map<string, Database.Statement>();
  private readonly stmts;

  /** `budget`: index entries one list request may look at (SCAN_BUDGET; tests make it small). */
  constructor(mainPath: string, searchPath: string, private readonly budget = SCAN_BUDGET) {
    this.db = new Database(mainPath);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('cache_size = -32768');
    this.db.prepare('ATTACH DATABASE ? AS s').run(searchPath);
    // The host index (store/sqlite.ts, HOSTS_SCHEMA); Store.open created it before this opens.
    this.db.prepare('ATTACH DATABASE ? AS hx').run(hostsDbPath(mainPath));
    this.stmts = {
      // The newest alert with that uuid (see IDS_BY_UUID_SQL), its document as the API shows it.
      byUuid: this.db.prepare(`SELECT a.id, ${docSql('a')} AS doc FROM (${IDS_BY_UUID_SQL}) k CROSS JOIN alerts a ON a.id = k.id ORDER BY a.ts DESC, a.id DESC LIMIT 1`),
      history: this.db.prepare(HISTORY_SQL),
      cursor: this.db.prepare("SELECT coalesce((SELECT value FROM s.state WHERE key = 'cursor'), 0) AS c"),
      maxId: this.db.prepare('SELECT coalesce(max(id), 0) AS id FROM alerts'),
      rules: this.db.prepare('SELECT rule_id AS ruleId, name FROM s.rules ORDER BY name, rule_id'),
      hosts: this.db.prepare(`SELECT host FROM (SELECT host, sum(n) AS n FROM s.by_hour WHERE hour >= ? AND host <> '' GROUP BY host
        UNION ALL SELECT hostname, 0 FROM agents WHERE hostname IS NOT NULL) GROUP BY host ORDER BY max(n) DESC, host LIMIT 1000`),
    };
  }

  private prep(sql: string): Database.Statement {
    let s = this.cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      // Filter combinations are few, but a bound keeps a long-lived process from growing.
      if (this.cache.size > 256) this.cache.clear();
      this.cache.set(sql, s);
    }
    return s;
  }

  /** Alerts stored but not yet searchable (the indexer's lag). */
  indexLag(): number {
    return Math.max(0, (this.stmts.maxId.get() as { id: number }).id - (this.stmts.cursor.get() as { c: number }).c);
  }

  list(query: ListQuery): ListPage {
    const q = memberFilters(query);
    const fts = q.q ? ftsQuery(q.q) : undefined;
    return fts ? this.search(q, fts) : this.byTime(q);
  }

  private residual(q: ListQuery, skip: Set<string>, alias: string): Cond {
    const parts: string[] = [];
    const params: unknown[] = [];
    const add = (key: string, sql: string, v: unknown) => {
      if (v === undefined || skip.has(key)) return;
      parts.push(`${alias}.${sql}`);
      params.push(v);
    };
    add('host', 'host = ?', q.host);
    add('rule', 'rule_id = ?', q.rule);
    add('severity', 'severity = ?', q.severity);
    add('status', 'status = ?', q.status);
    add('since', 'ts >= ?', q.since);
    add('until', 'ts < ?', q.until);
    if (q.of && !skip.has('of')) {
      const col = GROUP_COLUMNS[q.of.by];
      if (q.of.key === null) parts.push(`${alias}.${col} IS NULL`);
      else add('of', `${col} = ?`, q.of.key);
    }
    return { sql: parts.join(' AND '), params };
  }

  /** Newest @timestamp first, keyset on (ts, id) along the index that covers most of the filter. */
  private byTime(q: ListQuery): ListPage {
    let key: { ts: number; id: number } | undefined;
    if (q.cursor) {
      const m = /^(\d{1,16})\.(\d{1,16})$/.exec(q.cursor);
      if (!m) throw new RangeError('cursor is not one this page gave');
      key = { ts: Number(m[1]), id: Number(m[2]) };
    }
    let index: string | undefined;
    const idx: string[] = [];
    const idxParams: unknown[] = [];
    const covered = new Set<string>(['since', 'until']);
    if (q.status === 'acknowledged' || q.status === 'closed') {
      index = 'alerts_triaged';
      idx.push("status <> 'open'", 'status = ?');
      idxParams.push(q.status);
      covered.add('status');
    } else if (q.host !== undefined) {
      index = undefined; // the host index: hostKeysSql
      covered.add('host');
    } else {
      index = 'alerts_ts';
    }
    if (q.since !== undefined) {
      idx.push('ts >= ?');
      idxParams.push(q.since);
    }
    if (q.until !== undefined) {
      idx.push('ts < ?');
      idxParams.push(q.until);
    }
    const rest = this.residual(q, covered, 'a');
    const page: string[] = [];
    const ids: Array<{ ts: number; id: number }> = [];
    let scanned = 0;
    let chunk = Math.max(q.limit * 2, 100);
    for (;;) {
      const where = [...idx];
      const params = [...idxParams];
      if (key) {
        where.push('(ts, id) < (?, ?)');
        params.push(key.ts, key.id);
      }
      const inner = index
        ? `SELECT id, ts FROM alerts INDEXED BY ${index} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ?`
        : `${hostKeysSql(where)} ORDER BY ts DESC, id DESC LIMIT ?`;
      if (!index) params.splice(0, params.length, q.host, ...params, q.host, ...params);
      const want = rest.sql ? Math.min(chunk, this.budget - scanned) : q.limit + 1;
      const rows = this.prep(`SELECT a.id, a.ts, ${docSql('a')} AS doc FROM (${inner}) k CROSS JOIN alerts a ON a.id = k.id ${rest.sql ? `WHERE ${rest.sql}` : ''} ORDER BY k.ts DESC, k.id DESC`)
        .all(...params, want, ...rest.params) as Array<{ id: number; ts: number; doc: string }>;
      for (const r of rows) {
        if (page.length > q.limit) break;
        page.push(r.doc);
        ids.push({ ts: r.ts, id: r.id });
      }
      if (!rest.sql) {
        scanned += rows.length;
        break;
      }
      // Where this chunk of the index walk ended (the oldest key it looked at).
      const last = this.prep(`SELECT ts, id FROM (${inner}) ORDER BY ts, id LIMIT 1`).get(...params, want) as { ts: number; id: number } | undefined;
      const seen = last ? (this.prep(`SELECT count(*) AS n FROM (${inner})`).get(...params, want) as { n: number }).n : 0;
      scanned += seen;
      if (page.length > q.limit || seen < want || !last) break;
      key = last;
      if (scanned >= this.budget) {
        return { docs: page, next: `${last.ts}.${last.id}`, partial: true, scanned, order: 'time' };
      }
      chunk = Math.min(chunk * 2, 4000);
    }
    if (page.length > q.limit) {
      page.length = q.limit;
      const k = ids[q.limit - 1]!;
      return { docs: page, next: `${k.ts}.${k.id}`, partial: false, scanned, order: 'time' };
    }
    return { docs: page, next: null, partial: false, scanned, order: 'time' };
  }

  /**
   * Search results, newest received first: keyset on the FTS5 rowid (-alerts.id, so ascending is
   * newest first). The index is asked once per request, for at most `budget` rowids when filters
   * remain to check (a prefix query's cost is paid once, not per chunk), then the rows are read
   * by primary key in chunks until the page is full.
   */
  private search(q: ListQuery, fts: string): ListPage {
    let after = -Number.MAX_SAFE_INTEGER;
    if (q.cursor) {
      const m = /^s(\d{1,16})$/.exec(q.cursor);
      if (!m) throw new RangeError('cursor is not one this page gave');
      after = -Number(m[1]);
    }
    const rest = this.residual(q, new Set(), 'a');
    const want = rest.sql ? this.budget : q.limit + 1;
    const ids = (this.prep('SELECT -rowid AS id FROM s.alerts_fts WHERE alerts_fts MATCH ? AND rowid > ? ORDER BY rowid LIMIT ?')
      .all(fts, after, want) as Array<{ id: number }>).map((r) => r.id);
    // CROSS JOIN keeps the hits as the outer loop: left to itself the planner may walk an index
    // of alerts for a filter and search the JSON array once per row.
    const fetch = this.prep(`SELECT a.id, ${docSql('a')} AS doc FROM json_each(?) j CROSS JOIN alerts a ON a.id = j.value ${rest.sql ? `WHERE ${rest.sql}` : ''} ORDER BY j.key`);
    const page: string[] = [];
    const pageIds: number[] = [];
    let scanned = 0;
    for (let i = 0; i < ids.length && page.length <= q.limit; i += SEARCH_CHUNK) {
      const chunk = ids.slice(i, i + SEARCH_CHUNK);
      scanned += chunk.length;
      for (const r of fetch.all(JSON.stringify(chunk), ...rest.params) as Array<{ id: number; doc: string }>) {
        if (page.length > q.limit) break;
        page.push(r.doc);
        pageIds.push(r.id);
      }
    }
    if (page.length > q.limit) {
      page.length = q.limit;
      return { docs: page, next: `s${pageIds[q.limit - 1]}`, partial: false, scanned, order: 'received' };
    }
    if (rest.sql && ids.length === want) return { docs: page, next: `s${ids.at(-1)}`, partial: true, scanned, order: 'received' };
    return { docs: page, next: null, partial: false, scanned, order: 'received' };
  }

  /** One alert's document and its workflow history, or undefined. */
  alert(uuid: string): { doc: string; history: HistoryEntry[] } | undefined {
    const row = this.stmts.byUuid.get(uuid, uuid) as { id: number; doc: string } | undefined;
    if (!row) return undefined;
    const history = (this.stmts.history.all(row.id) as Array<Parameters<typeof historyEntry>[0]>).map(historyEntry);
    return { doc: row.doc, history };
  }

  overview(window: keyof typeof WINDOWS | string, now = Date.now()): Overview {
    const win = overviewWindow(window, now);
    const { from, to, minuteFrom, hourFrom } = win;
    const rows = this.prep('SELECT minute * 60000 / CAST(? AS INTEGER) AS b, sum(n) AS n FROM s.by_minute WHERE minute >= ? GROUP BY b')
      .all(win.bucketMs, minuteFrom) as Array<{ b: number; n: number }>;
    const { buckets, total } = fillBuckets(new Map(rows.map((r) => [r.b, r.n])), win);
    const byHost = this.prep(`SELECT host, sum(n) AS n FROM s.by_hour WHERE hour >= ? GROUP BY host ORDER BY n DESC, host LIMIT 10`)
      .all(hourFrom) as Array<{ host: string; n: number }>;
    const byRule = this.prep(`SELECT h.rule_id AS ruleId, r.name AS name, sum(h.n) AS n FROM s.by_hour h LEFT JOIN s.rules r ON r.rule_id = h.rule_id
      WHERE h.hour >= ? GROUP BY h.rule_id ORDER BY n DESC, h.rule_id LIMIT 10`).all(hourFrom) as Overview['byRule'];
    const bySeverity = Object.fromEntries((this.prep('SELECT severity, sum(n) AS n FROM s.by_hour WHERE hour >= ? GROUP BY severity').all(hourFrom) as Array<{ severity: string; n: number }>).map((r) => [r.severity, r.n]));
    // Triaged alerts in the window among those counted (id ≤ the indexer's cursor), so open = total − triaged holds.
    const cursor = (this.stmts.cursor.get() as { c: number }).c;
    const triaged = this.prep(`SELECT status, count(*) AS n FROM alerts INDEXED BY alerts_triaged
      WHERE status <> 'open' AND status IN ('acknowledged', 'closed') AND ts >= ? AND id <= ? GROUP BY status`).all(minuteFrom * 60_000, cursor) as Array<{ status: string; n: number }>;
    const t = Object.fromEntries(triaged.map((r) => [r.status, r.n])) as Record<string, number>;
    const acknowledged = t.acknowledged ?? 0;
    const closed = t.closed ?? 0;
    return {
      from: iso(from), to: iso(to), bucketMs: win.bucketMs, buckets,
      byHost: byHost.map((h) => ({ host: h.host || '(no host)', n: h.n })), byRule, bySeverity,
      status: { open: Math.max(0, total - acknowledged - closed), acknowledged, closed }, total,
      indexLag: this.indexLag(),
    };
  }

  /** Values for the filter menus: hosts (busiest of the last 30 days, and every known agent) and rules. */
  facets(now = Date.now()): { hosts: string[]; rules: Array<{ ruleId: string; name: string | null }> } {
    const hosts = (this.stmts.hosts.all(Math.floor((now - 30 * 86_400_000) / 3_600_000)) as Array<{ host: string }>).map((h) => h.host);
    return { hosts, rules: this.stmts.rules.all() as Array<{ ruleId: string; name: string | null }> };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

// The dashboard's reads on the PostgreSQL store, on a pool of its own (the store's commits never
// queue behind a dashboard query). Every query is bounded as query.ts explains for SQLite:
//
// - The time-ordered list is keyset-paged on (ts, id) along the index whose order is the list's:
//   alerts_triaged for acknowledged or closed, alerts_host_ts for a host, else alerts_ts. Filters
//   no index covers are checked on the keys the walk yields, SCAN_BUDGET at most per request; a
//   page not full by then carries `partial: true` and `next` where the walk stopped.
// - Free-text search (each word a case-insensitive substring of the document) shows the newest
//   stored first, keyset on id. The pg_trgm index alerts_doc_trgm is asked once per request for at
//   most SCAN_BUDGET / 4 matching ids below the cursor (a GIN index yields its matches unordered,
//   so all of them are needed to know the newest): fewer than that is every match, read newest
//   first in chunks. A word in more alerts than that is common, and the page walks the primary key
//   window by window of ids instead, testing each row, for the rest of the budget (`partial` after).
//   Measured over 100,000 alerts of 1.4 kB here: a rare word 4 ms, a common one 65-120 ms, one
//   whose trigrams are in most alerts but the word in a tenth 450 ms (the index's false matches).
// - Counts come from alert_minutes, alert_hours and alert_rules, which a trigger keeps in the
//   inserting transaction (store/postgres.ts, migration 4): they never lag, so indexLag is 0.
//   Triaged counts walk the partial index alerts_triaged, as SQLite's do.
//
// Search here matches anywhere in the document (SQLite's matches words of SEARCH_FIELDS, indexer.ts).
import type pg from 'pg';
import type { Overview } from '../../web/src/api-types.js';
import { ALERT_COLUMNS, HISTORY_SQL, shownDoc, type AlertDbRow } from '../store/postgres.js';
import { GROUP_COLUMNS } from '../store/group-keys.js';
import { SCAN_BUDGET, memberFilters, fillBuckets, iso, overviewWindow, historyEntry, type HistoryEntry, type ListPage, type ListQuery } from './query.js';
import type { DashboardReads, Facets } from './reads.js';
import { inTransaction } from '../store/pg-tx.js';

/** The first window of ids a search for a common word walks; each next one is twice as wide. */
const FIRST_WINDOW = 2_000;
/** The trigram index's question gives up after this long (see search). */
const INDEX_TIMEOUT_MS = 1_000;
/** Search hits whose rows are read (and filtered) per statement. */
const SEARCH_CHUNK = 500;


/**
 * What a person typed as LIKE patterns: each word must occur. Lowercased by the database (lower()
 * in the query), as the document is in the index (ldguard_doc_text): the same rules on both sides,
 * whatever the database's locale.
 */
export function likePatterns(input: string): string[] {
  return input.normalize('NFKC').split(/\s+/).filter(Boolean).slice(0, 8)
    .map((w) => `%${w.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`);
}

/** Numbered parameters: `p(v)` adds v and returns its placeholder. */
class Params {
  readonly values: unknown[] = [];
  p(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

export class PostgresDashboardReads implements DashboardReads {
  /** `budget`: index entries (ids, for search) one list request may look at (SCAN_BUDGET; tests make it small). */
  constructor(private readonly pool: pg.Pool, private readonly budget = SCAN_BUDGET) {}

  async indexLag(): Promise<number> {
    return 0;
  }

  list(query: ListQuery): Promise<ListPage> {
    const q = memberFilters(query);
    const words = q.q ? likePatterns(q.q) : [];
    return words.length > 0 ? this.search(q, words) : this.byTime(q);
  }

  /** The filters not in `covered`, as SQL over `alerts`. */
  private residual(q: ListQuery, covered: Set<string>, p: Params): string[] {
    const out: string[] = [];
    const add = (key: string, sql: (ph: string) => string, v: unknown) => {
      if (v !== undefined && !covered.has(key)) out.push(sql(p.p(v)));
    };
    add('host', (x) => `host = ${x}`, q.host);
    add('rule', (x) => `rule_id = ${x}`, q.rule);
    add('severity', (x) => `severity = ${x}`, q.severity);
    add('status', (x) => `status = ${x}`, q.status);
    add('since', (x) => `ts >= ${x}::bigint`, q.since);
    add('until', (x) => `ts < ${x}::bigint`, q.until);
    if (q.of && !covered.has('of')) {
      const col = GROUP_COLUMNS[q.of.by];
      out.push(q.of.key === null ? `${col} IS NULL` : `${col} = ${p.p(q.of.key)}`);
    }
    return out;
  }

  private async docs(ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const { rows } = await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE id = ANY($1::bigint[])`, [ids]);
    return new Map(rows.map((r) => [r.id, shownDoc(r)]));
  }

  private async byTime(q: ListQuery): Promise<ListPage> {
    let key: { ts: string; id: string } | undefined;
    if (q.cursor) {
      const m = /^(\d{1,16})\.(\d{1,16})$/.exec(q.cursor);
      if (!m) throw new RangeError('cursor is not one this page gave');
      key = { ts: m[1]!, id: m[2]! };
    }
    // The index the walk follows, and the filters it answers by itself.
    const covered = new Set<string>(['since', 'until']);
    const idx = (p: Params): string[] => {
      const w: string[] = [];
      if (q.status === 'acknowledged' || q.status === 'closed') w.push(`status <> 'open'`, `status = ${p.p(q.status)}`);
      else if (q.host !== undefined) w.push(`host = ${p.p(q.host)}`);
      if (q.since !== undefined) w.push(`ts >= ${p.p(q.since)}::bigint`);
      if (q.until !== undefined) w.push(`ts < ${p.p(q.until)}::bigint`);
      return w;
    };
    if (q.status === 'acknowledged' || q.status === 'closed') covered.add('status');
    else if (q.host !== undefined) covered.add('host');
    const page: Array<{ id: string; ts: string }> = [];
    let scanned = 0;
    let chunk = Math.max(q.limit * 2, 100);
    let partialAt: { ts: string; id: string } | undefined;
    for (;;) {
      const p = new Params();
      const where = idx(p);
      if (key) where.push(`(ts, id) < (${p.p(key.ts)}::bigint, ${p.p(key.id)}::bigint)`);
      const rest = this.residual(q, covered, p);
      const want = rest.length ? Math.min(chunk, this.budget - scanned) : q.limit + 1;
      const { rows } = await this.pool.query<{ id: string; ts: string; ok: boolean }>(
        `SELECT id, ts, ${rest.length ? rest.join(' AND ') : 'true'} AS ok FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY ts DESC, id DESC LIMIT ${p.p(want)}`, p.values);
      scanned += rows.length;
      for (const r of rows) if (r.ok && page.length <= q.limit) page.push(r);
      const last = rows.at(-1);
      if (!rest.length || page.length > q.limit || rows.length < want || !last) break;
      key = last;
      if (scanned >= this.budget) {
        partialAt = last;
        break;
      }
      chunk = Math.min(chunk * 2, 4000);
    }
    const full = page.length > q.limit;
    if (full) page.length = q.limit;
    const docs = await this.docs(page.map((r) => r.id));
    const out = page.map((r) => docs.get(r.id)).filter((d): d is string => d !== undefined);
    if (partialAt && !full) return { docs: out, next: `${partialAt.ts}.${partialAt.id}`, partial: true, scanned, order: 'time' };
    const k = page.at(-1);
    return { docs: out, next: full && k ? `${k.ts}.${k.id}` : null, partial: false, scanned, order: 'time' };
  }

  /** Runs `fn` on one connection in a read-only transaction with these planner settings (SET LOCAL). */
  private planned<T>(settings: string[], fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (c) => {
      for (const x of settings) await c.query(`SET LOCAL ${x}`);
      return fn(c);
    }, 'BEGIN READ ONLY');
  }

  /** Newest stored first (id descending), below the cursor: the trigram index, or id windows for a common word (see the top). */
  private async search(q: ListQuery, words: string[]): Promise<ListPage> {
    const bounds = (await this.pool.query<{ lo: string | null; hi: string | null }>('SELECT min(id) AS lo, max(id) AS hi FROM alerts')).rows[0]!;
    const first = Number(bounds.lo ?? 0);
    let hi = Number(bounds.hi ?? 0) + 1;
    if (q.cursor) {
      const m = /^s(\d{1,16})$/.exec(q.cursor);
      if (!m) throw new RangeError('cursor is not one this page gave');
      hi = Math.min(hi, Number(m[1]));
    }
    const like = (p: Params) => words.map((w) => `ldguard_doc_text(doc) LIKE lower(${p.p(w)})`);
    // The index, asked once for at most a quarter of the budget. The trigram index only: left to
    // itself, the planner (which guesses a LIKE's selectivity from the pattern, not from the data)
    // may walk the primary key and test every row, the whole table for a word no alert has; so
    // bitmap scans only, and `id + 0` keeps the primary key out of them.
    const asked = Math.max(1, Math.floor(this.budget / 4));
    const p = new Params();
    // Rows the index names but the recheck refuses (every trigram there, the words not) are not
    // counted by LIMIT: INDEX_TIMEOUT_MS bounds them, and a search past it is walked as a common one.
    const hits = await this.planned(['enable_seqscan = off', 'enable_indexscan = off', `statement_timeout = ${INDEX_TIMEOUT_MS}`], async (c) =>
      (await c.query<{ id: string }>(`SELECT id FROM alerts WHERE ${like(p).join(' AND ')} AND id + 0 < ${p.p(hi)}::bigint LIMIT ${p.p(asked)}`, p.values)).rows)
      .catch((err: unknown) => {
        if ((err as { code?: string }).code === '57014') return undefined; // query_canceled: the timeout
        throw err;
      });
    if (hits && hits.length < asked) {
      // Every match below the cursor: the newest first, their rows read and filtered in chunks.
      const ids = hits.map((h) => BigInt(h.id)).sort((x, y) => (x < y ? 1 : x > y ? -1 : 0)).map(String);
      const page: Array<{ id: string; doc: string }> = [];
      for (let i = 0; i < ids.length && page.length <= q.limit; i += SEARCH_CHUNK) {
        const f = new Params();
        const where = [`id = ANY(${f.p(ids.slice(i, i + SEARCH_CHUNK))}::bigint[])`, ...this.residual(q, new Set(), f)];
        const { rows } = await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${f.p(q.limit + 1 - page.length)}`, f.values);
        for (const r of rows) page.push({ id: r.id, doc: shownDoc(r) });
      }
      const full = page.length > q.limit;
      if (full) page.length = q.limit;
      return { docs: page.map((r) => r.doc), next: full ? `s${page.at(-1)!.id}` : null, partial: false, scanned: hits.length, order: 'received' };
    }
    // A common word: newest first along the primary key, window by window, each row tested (the
    // matches are dense, so a page fills early), for the rest of the budget.
    return this.planned(['enable_bitmapscan = off', 'enable_seqscan = off'], async (c) => {
      const page: Array<{ id: string; doc: string }> = [];
      let scanned = hits?.length ?? asked;
      let width = Math.min(FIRST_WINDOW, this.budget - scanned);
      while (page.length <= q.limit && hi > first && scanned < this.budget) {
        const lo = Math.max(first, hi - width);
        const w = new Params();
        const where = [`id >= ${w.p(lo)}::bigint`, `id < ${w.p(hi)}::bigint`, ...like(w), ...this.residual(q, new Set(), w)];
        const { rows } = await c.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ${w.p(q.limit + 1 - page.length)}`, w.values);
        for (const r of rows) page.push({ id: r.id, doc: shownDoc(r) });
        scanned += hi - lo;
        if (page.length > q.limit) break;
        hi = lo;
        width = Math.min(width * 2, this.budget - scanned);
      }
      if (page.length > q.limit) {
        page.length = q.limit;
        return { docs: page.map((r) => r.doc), next: `s${page.at(-1)!.id}`, partial: false, scanned, order: 'received' as const };
      }
      if (hi > first) return { docs: page.map((r) => r.doc), next: `s${hi}`, partial: true, scanned, order: 'received' as const };
      return { docs: page.map((r) => r.doc), next: null, partial: false, scanned, order: 'received' as const };
    });
  }

  async alert(uuid: string): Promise<{ doc: string; history: HistoryEntry[] } | undefined> {
    const { rows } = await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE uuid = $1 ORDER BY ts DESC, id DESC LIMIT 1`, [uuid]);
    const row = rows[0];
    if (!row) return undefined;
    const h = await this.pool.query<Parameters<typeof historyEntry>[0]>(HISTORY_SQL, [row.id]);
    return { doc: shownDoc(row), history: h.rows.map(historyEntry) };
  }

  async overview(window: string, now = Date.now()): Promise<Overview> {
    const win = overviewWindow(window, now);
    const { from, to, minuteFrom, hourFrom } = win;
    const [minutes, byHost, byRule, bySeverity, triaged] = await Promise.all([
      this.pool.query<{ b: string; n: string }>('SELECT minute * 60000 / $1::bigint AS b, sum(n) AS n FROM alert_minutes WHERE minute >= $2 GROUP BY 1', [win.bucketMs, minuteFrom]),
      this.pool.query<{ host: string; n: string }>('SELECT host, sum(n) AS n FROM alert_hours WHERE hour >= $1 GROUP BY host ORDER BY n DESC, host LIMIT 10', [hourFrom]),
      this.pool.query<{ ruleId: string; name: string | null; n: string }>(`SELECT h.rule_id AS "ruleId", r.name, sum(h.n) AS n FROM alert_hours h
        LEFT JOIN alert_rules r ON r.rule_id = h.rule_id WHERE h.hour >= $1 GROUP BY h.rule_id, r.name ORDER BY n DESC, h.rule_id LIMIT 10`, [hourFrom]),
      this.pool.query<{ severity: string; n: string }>('SELECT severity, sum(n) AS n FROM alert_hours WHERE hour >= $1 GROUP BY severity', [hourFrom]),
      this.pool.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM alerts WHERE status <> 'open' AND status IN ('acknowledged', 'closed')
        AND ts >= $1::bigint GROUP BY status`, [minuteFrom * 60_000]),
    ]);
    const { buckets, total } = fillBuckets(new Map(minutes.rows.map((r) => [Number(r.b), Number(r.n)])), win);
    const t = Object.fromEntries(triaged.rows.map((r) => [r.status, Number(r.n)])) as Record<string, number>;
    const acknowledged = t.acknowledged ?? 0;
    const closed = t.closed ?? 0;
    return {
      from: iso(from), to: iso(to), bucketMs: win.bucketMs, buckets,
      byHost: byHost.rows.map((h) => ({ host: h.host || '(no host)', n: Number(h.n) })),
      byRule: byRule.rows.map((r) => ({ ruleId: r.ruleId, name: r.name, n: Number(r.n) })),
      bySeverity: Object.fromEntries(bySeverity.rows.map((r) => [r.severity, Number(r.n)])),
      status: { open: Math.max(0, total - acknowledged - closed), acknowledged, closed }, total,
      indexLag: 0,
    };
  }

  async facets(now = Date.now()): Promise<Facets> {
    const [hosts, rules] = await Promise.all([
      this.pool.query<{ host: string }>(`SELECT host FROM (SELECT host, sum(n) AS n FROM alert_hours WHERE hour >= $1 AND host <> '' GROUP BY host
        UNION ALL SELECT hostname, 0 FROM agents WHERE hostname IS NOT NULL) x GROUP BY host ORDER BY max(n) DESC, host LIMIT 1000`,
      [Math.floor((now - 30 * 86_400_000) / 3_600_000)]),
      this.pool.query<{ ruleId: string; name: string | null }>('SELECT rule_id AS "ruleId", name FROM alert_rules ORDER BY name NULLS FIRST, rule_id LIMIT 1000'),
    ]);
    return { hosts: hosts.rows.map((h) => h.host), rules: rules.rows };
  }

  start(): void {
    // Nothing runs behind: counts and the search index are kept with the alerts.
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

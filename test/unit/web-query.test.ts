// The dashboard's search index and list queries on a real collector database: keyset pages that
// cover every alert once in order, filters that agree with a plain filter of all alerts, search
// through FTS5, the scan budget, counts, and plans that never walk the whole table.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore as Store } from '../../collector/src/store/sqlite.js';
import { Indexer, ftsQuery, searchDbPath, searchText } from '../../collector/src/web/indexer.js';
import { DashboardQueries, type ListQuery } from '../../collector/src/web/query.js';
import { parseListQuery } from '../../collector/src/web.js';
import { corpusAlert, makeAlert } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

describe('ftsQuery', () => {
  it('turns what a person types into a safe FTS5 query', () => {
    expect(ftsQuery('ld-lin')).toBe('"ld lin"*');
    expect(ftsQuery('/usr/lib64/ld-linux')).toBe('"usr lib64 ld linux"*');
    expect(ftsQuery('cp  root')).toBe('"cp" AND "root"*');
    expect(ftsQuery('x')).toBe('"x"'); // one letter: exact, not a prefix of everything
    expect(ftsQuery('" OR 1=1; DROP TABLE alerts --')).toBe('"or" AND "1 1" AND "drop" AND "table" AND "alerts"');
    expect(ftsQuery('  --- ')).toBeUndefined();
    // A trailing single character (still typing) is left out rather than made a prefix of everything.
    expect(ftsQuery('ld-l')).toBe('"ld"*');
    expect(ftsQuery('<img src=x onerror=alert(1)>')).toBe('"img" AND "src x" AND "onerror alert"*');
  });

  it('indexes the fields people search for', () => {
    const a = makeAlert({ host: 'web-9', path: '/lib64/ld-linux-x86-64.so.2', pid: 777 });
    const text = searchText(a);
    for (const s of ['web-9', '/lib64/ld-linux-x86-64.so.2', 'cp', '/usr/bin/cp', '777', 'bash', 'root', a.kibana.alert.uuid, 'live_proc']) expect(text).toContain(s);
    expect(searchText('not json')).toBe('');
  });
});

describe('DashboardQueries', () => {
  const N = 3000;
  let dir: string;
  let store: Store;
  let q: DashboardQueries;
  let all: Array<{ id: number; ts: number; uuid: string; host: string; rule: string; severity: string; status: string; path: string }> = [];
  const T0 = Date.parse('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    dir = tempDir('ldg-web-query-');
    store = Store.open(join(dir, 'c.db'));
    const w = new Database(store.path);
    const ins = w.prepare(`INSERT INTO alerts (uuid, ts, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
      VALUES (?, ?, ?, ?, ?, ?, 'open', 'a', 't', ?, ?)`);
    w.transaction(() => {
      for (let i = 0; i < N; i++) {
        const { alert: a, ts, host, ruleId, severity } = corpusAlert(i, T0);
        ins.run(a.kibana.alert.uuid, ts, host, ruleId, 'Rule', severity, T0, JSON.stringify(a));
      }
    })();
    w.close();
    const ix = new Indexer(store.path);
    while (ix.step(700) > 0);
    expect(ix.lag()).toBe(0);
    ix.close();
    q = new DashboardQueries(store.path, searchDbPath(store.path), 500);
    for (let i = 0; i < N; i += 37) await store.setStatus((await store.findAlerts(uuidAt(i)))[0]!.id, i % 2 ? 'acknowledged' : 'closed', 'alice', T0 + 10_000_000);
    all = (q.db.prepare('SELECT id, ts, uuid, host, rule_id AS rule, severity, status, doc FROM alerts').all() as Array<Record<string, any>>).map((r) => ({
      id: r.id, ts: r.ts, uuid: r.uuid, host: r.host, rule: r.rule, severity: r.severity, status: r.status, path: JSON.parse(r.doc).file.path,
    }));
  });

  afterAll(async () => {
    q?.close();
    await store?.close();
  });

  function uuidAt(i: number): string {
    return (store as any).db.prepare('SELECT uuid FROM alerts WHERE id = ?').get(i + 1).uuid;
  }

  function pages(query: Omit<ListQuery, 'cursor'>): { uuids: string[]; requests: number; partials: number } {
    const uuids: string[] = [];
    let cursor: string | undefined;
    let requests = 0;
    let partials = 0;
    for (;;) {
      const p = q.list({ ...query, ...(cursor ? { cursor } : {}) });
      requests++;
      if (p.partial) partials++;
      for (const d of p.docs) uuids.push(JSON.parse(d).kibana.alert.uuid);
      if (!p.next) return { uuids, requests, partials };
      cursor = p.next;
      if (requests > 1000) throw new Error('paging does not end');
    }
  }

  const byTime = (a: { ts: number; id: number }, b: { ts: number; id: number }) => b.ts - a.ts || b.id - a.id;

  it('pages through every alert once, newest @timestamp first', () => {
    const got = pages({ limit: 97 });
    expect(got.uuids).toEqual([...all].sort(byTime).map((a) => a.uuid));
  });

  it.each([
    ['host', { host: 'web-3' }, (a: any) => a.host === 'web-3'],
    ['status acknowledged', { status: 'acknowledged' as const }, (a: any) => a.status === 'acknowledged'],
    ['status open', { status: 'open' as const }, (a: any) => a.status === 'open'],
    ['rare rule (past the scan budget)', { rule: 'rare-rule' }, (a: any) => a.rule === 'rare-rule'],
    ['severity and host', { severity: 'high' as const, host: 'web-2' }, (a: any) => a.severity === 'high' && a.host === 'web-2'],
    ['time range', { since: T0 + 1_000_000, until: T0 + 1_500_000 }, (a: any) => a.ts >= T0 + 1_000_000 && a.ts < T0 + 1_500_000],
    ['closed on one host in a time range', { status: 'closed' as const, host: 'web-1', since: T0 + 100_000 }, (a: any) => a.status === 'closed' && a.host === 'web-1' && a.ts >= T0 + 100_000],
  ])('filters by %s like a plain filter of all alerts', (_name, filter, pred) => {
    const got = pages({ limit: 25, ...filter });
    expect(got.uuids).toEqual(all.filter(pred).sort(byTime).map((a) => a.uuid));
  });

  it('stops at the scan budget and says where to go on', () => {
    const got = pages({ limit: 50, rule: 'rare-rule' });
    expect(got.partials).toBeGreaterThan(0);
    const first = q.list({ limit: 50, rule: 'rare-rule' });
    expect(first.scanned).toBeLessThanOrEqual(500);
    expect(first.partial).toBe(true);
    expect(first.next).toMatch(/^\d+\.\d+$/);
  });

  it('searches with the index, newest received first, and pages the results', () => {
    const got = pages({ limit: 10, q: 'ld-linux-x86-64.so.12' });
    // Prefix on the last piece: .so.12, .so.120-129, .so.1200-1299
    const want = all.filter((a) => /\.so\.12\d*$/.test(a.path)).sort((a, b) => b.id - a.id).map((a) => a.uuid);
    expect(want.length).toBe(110); // .so.1234 is the HTML-named file
    expect(got.uuids).toEqual(want);
    expect(pages({ limit: 10, q: 'onerror' }).uuids).toEqual([all.find((a) => a.path.includes('onerror'))!.uuid]);
    expect(pages({ limit: 10, q: 'web-5 10005' }).uuids).toEqual([all.find((a) => a.path.endsWith('.so.5'))!.uuid]);
    expect(q.list({ limit: 10, q: 'nothing-like-this' }).docs).toEqual([]);
  });

  it('combines search with filters', () => {
    const got = pages({ limit: 10, q: 'ld-linux', host: 'web-4', status: 'closed' });
    expect(got.uuids).toEqual(all.filter((a) => a.host === 'web-4' && a.status === 'closed').sort((a, b) => b.id - a.id).map((a) => a.uuid));
  });

  it('refuses cursors it did not give', () => {
    expect(() => q.list({ limit: 10, cursor: "1; DROP TABLE alerts" })).toThrow(RangeError);
    expect(() => q.list({ limit: 10, q: 'x', cursor: '1.2' })).toThrow(RangeError);
  });

  it('counts by time, host, rule, severity and status from the small tables', () => {
    const o = q.overview('30d', T0 + N * 1000 + 60_000);
    expect(o.total).toBe(N);
    expect(o.buckets.reduce((s, b) => s + b.n, 0)).toBe(N);
    expect(o.byHost.reduce((s, h) => s + h.n, 0)).toBe(N);
    expect(o.byHost[0]).toEqual({ host: 'web-0', n: all.filter((a) => a.host === 'web-0').length });
    expect(o.byRule.find((r) => r.ruleId === 'rare-rule')?.n).toBe(30);
    expect(o.bySeverity).toEqual({ low: 750, medium: 750, high: 750, critical: 750 });
    const ack = all.filter((a) => a.status === 'acknowledged').length;
    const closed = all.filter((a) => a.status === 'closed').length;
    expect(o.status).toEqual({ open: N - ack - closed, acknowledged: ack, closed });
    expect(q.facets(T0 + N * 1000).hosts.sort()).toEqual(['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'web-6']);
  });

  it('keeps the workflow history of an alert', async () => {
    const a = q.alert(uuidAt(37))!;
    expect(a.history).toEqual([{ kind: 'status', status: 'acknowledged', by: 'alice', at: new Date(T0 + 10_000_000).toISOString() }]);
    await store.setStatus((await store.findAlerts(uuidAt(37)))[0]!.id, 'closed', 'bob', T0 + 20_000_000);
    expect(q.alert(uuidAt(37))!.history.map((h) => `${h.status} ${h.by}`)).toEqual(['acknowledged alice', 'closed bob']);
  });

  it('never plans a walk over the whole alerts table', () => {
    const plan = (sql: string, ...params: unknown[]) => (q.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
    const spy = q.db.prepare.bind(q.db);
    const seen: string[] = [];
    (q.db as any).prepare = (sql: string) => {
      seen.push(sql);
      return spy(sql);
    };
    try {
      for (const f of [{}, { host: 'web-1' }, { status: 'closed' }, { status: 'open' }, { rule: 'rule-a' }, { q: 'ld-linux' }, { q: 'cp', host: 'web-1' }, { since: T0 }] as Array<Partial<ListQuery>>) {
        (q as any).cache.clear();
        q.list({ limit: 10, ...f });
      }
      q.overview('24h');
    } finally {
      (q.db as any).prepare = spy;
    }
    expect(seen.length).toBeGreaterThan(8);
    for (const sql of seen) {
      const params = sql.split('?').length - 1;
      for (const line of plan(sql, ...Array.from({ length: params }, () => 1))) {
        // Walking an index in order (bounded by LIMIT) is fine; scanning the table itself is not.
        if (/^SCAN (alerts|a)\b/.test(line)) expect(line, sql).toMatch(/USING (COVERING )?INDEX|VIRTUAL TABLE/);
      }
    }
  });

  it('checks the list parameters', () => {
    expect(parseListQuery(new URLSearchParams('host=web-1&status=open&limit=20&since=2026-01-01T00:00:00Z'))).toEqual({ limit: 20, host: 'web-1', status: 'open', since: T0 });
    expect(() => parseListQuery(new URLSearchParams('status=done'))).toThrow(/status must be/);
    expect(() => parseListQuery(new URLSearchParams('limit=100000'))).toThrow(/limit/);
    expect(() => parseListQuery(new URLSearchParams('sort=1'))).toThrow(/unknown parameter/);
    expect(() => parseListQuery(new URLSearchParams('since=yesterday'))).toThrow(/ISO 8601/);
  });
});

// The dashboard's reads on PostgreSQL (web/reads-postgres.ts) against a throwaway cluster: the same
// alerts and the same questions as web-query.test.ts asks of SQLite. Keyset pages that cover every
// alert once in order, filters that agree with a plain filter of all alerts, free-text search
// through pg_trgm (or id windows for a common word), the scan budget, counts kept by the insert trigger, history.
// (No plan test here: on a table this small the planner rightly prefers a scan to an index, so a
// plan would say nothing about a large one; the bounds are the LIMITs and windows in the SQL.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { MIGRATIONS, PostgresStore } from '../../collector/src/store/postgres.js';
import type { ListQuery } from '../../collector/src/web/query.js';
import { PostgresDashboardReads, likePatterns } from '../../collector/src/web/reads-postgres.js';
import { corpusAlert } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';

const noPostgres = postgresUnavailable();

describe('likePatterns', () => {
  it('makes each word a substring pattern, wildcards of LIKE taken literally', () => {
    expect(likePatterns('  LD-Linux  100%_x\\ ')).toEqual(['%LD-Linux%', '%100\\%\\_x\\\\%']);
    expect(likePatterns('   ')).toEqual([]);
  });
});

describe.skipIf(noPostgres)('PostgresDashboardReads', () => {
  const N = 3000;
  const T0 = Date.parse('2026-01-01T00:00:00Z');
  let store: PostgresStore;
  let pool: pg.Pool;
  let q: PostgresDashboardReads;
  let all: Array<{ id: number; ts: number; uuid: string; host: string; rule: string; severity: string; status: string; path: string }> = [];

  let cluster: TestPostgres;

  beforeAll(async () => {
    cluster = await startPostgres();
    store = await PostgresStore.open(await cluster.createDb('reads'));
    pool = store.newPool('ldguard-test', 2);
    const rows: Array<[string, number, string, string, string, Buffer]> = [];
    for (let i = 0; i < N; i++) {
      const { alert: a, ts, host, ruleId, severity } = corpusAlert(i, T0);
      rows.push([a.kibana.alert.uuid, ts, host, ruleId, severity, Buffer.from(JSON.stringify(a))]);
    }
    // Two statements, so the counting trigger sums across them as across commits.
    for (const part of [rows.slice(0, 1000), rows.slice(1000)]) {
      await pool.query(`INSERT INTO alerts (uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
        SELECT u, t, t, h, r, 'Rule', s, 'open', 'a', 't', ${T0}, d FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[]) AS x(u, t, h, r, s, d)`, [0, 1, 2, 3, 4, 5].map((k) => part.map((r) => r[k])));
    }
    q = new PostgresDashboardReads(pool, 500);
    const ids = (await pool.query<{ id: string; uuid: string }>('SELECT id, uuid FROM alerts ORDER BY id')).rows;
    for (let i = 0; i < N; i += 37) await store.setStatus(Number(ids[i]!.id), i % 2 ? 'acknowledged' : 'closed', 'alice', T0 + 10_000_000);
    all = (await pool.query<Record<string, any>>('SELECT id, ts, uuid, host, rule_id AS rule, severity, status, convert_from(doc, \'UTF8\') AS doc FROM alerts')).rows.map((r) => ({
      id: Number(r.id), ts: Number(r.ts), uuid: r.uuid, host: r.host, rule: r.rule, severity: r.severity, status: r.status, path: JSON.parse(r.doc).file.path,
    }));
  }, 120_000);

  afterAll(async () => {
    await pool?.end();
    await store?.close();
  });

  const uuidAt = (i: number) => [...all].sort((a, b) => a.id - b.id)[i]!.uuid;

  async function pages(query: Omit<ListQuery, 'cursor'>): Promise<{ uuids: string[]; requests: number; partials: number }> {
    const uuids: string[] = [];
    let cursor: string | undefined;
    let requests = 0;
    let partials = 0;
    for (;;) {
      const p = await q.list({ ...query, ...(cursor ? { cursor } : {}) });
      requests++;
      if (p.partial) partials++;
      expect(p.scanned).toBeLessThanOrEqual(Math.max(500, query.limit + 1));
      for (const d of p.docs) uuids.push(JSON.parse(d).kibana.alert.uuid);
      if (!p.next) return { uuids, requests, partials };
      cursor = p.next;
      if (requests > 1000) throw new Error('paging does not end');
    }
  }

  const byTime = (a: { ts: number; id: number }, b: { ts: number; id: number }) => b.ts - a.ts || b.id - a.id;
  const newestStored = (a: { id: number }, b: { id: number }) => b.id - a.id;

  it('pages through every alert once, newest @timestamp first, stamped with the sender', async () => {
    const got = await pages({ limit: 97 });
    expect(got.uuids).toEqual([...all].sort(byTime).map((a) => a.uuid));
    const first = await q.list({ limit: 1 });
    expect(JSON.parse(first.docs[0]!).ldguard.received_from).toEqual({ agent_id: 'a', token_name: 't' });
  });

  it.each([
    ['host', { host: 'web-3' }, (a: any) => a.host === 'web-3'],
    ['status acknowledged', { status: 'acknowledged' as const }, (a: any) => a.status === 'acknowledged'],
    ['status open', { status: 'open' as const }, (a: any) => a.status === 'open'],
    ['rare rule (past the scan budget)', { rule: 'rare-rule' }, (a: any) => a.rule === 'rare-rule'],
    ['severity and host', { severity: 'high' as const, host: 'web-2' }, (a: any) => a.severity === 'high' && a.host === 'web-2'],
    ['time range', { since: T0 + 1_000_000, until: T0 + 1_500_000 }, (a: any) => a.ts >= T0 + 1_000_000 && a.ts < T0 + 1_500_000],
    ['closed on one host in a time range', { status: 'closed' as const, host: 'web-1', since: T0 + 100_000 }, (a: any) => a.status === 'closed' && a.host === 'web-1' && a.ts >= T0 + 100_000],
  ])('filters by %s like a plain filter of all alerts', async (_name, filter, pred) => {
    const got = await pages({ limit: 25, ...filter });
    expect(got.uuids).toEqual(all.filter(pred).sort(byTime).map((a) => a.uuid));
  });

  it('stops at the scan budget and says where to go on', async () => {
    const got = await pages({ limit: 50, rule: 'rare-rule' });
    expect(got.partials).toBeGreaterThan(0);
    const first = await q.list({ limit: 50, rule: 'rare-rule' });
    expect(first.scanned).toBeLessThanOrEqual(500);
    expect(first.partial).toBe(true);
    expect(first.next).toMatch(/^\d+\.\d+$/);
  });

  it('searches substrings through the trigram index, newest stored first: every match at once when they are few', async () => {
    const got = await pages({ limit: 10, q: 'LD-linux-x86-64.so.12' });
    // .so.12, .so.120-129, .so.1200-1299 (.so.1234 is the HTML-named file)
    const want = all.filter((a) => /\.so\.12\d*$/.test(a.path)).sort(newestStored).map((a) => a.uuid);
    expect(want.length).toBe(110);
    expect(got.uuids).toEqual(want);
    expect(got.partials).toBe(0);
    // A word found in no alert: one request says so, whole (the index answered for every row).
    expect(await q.list({ limit: 10, q: 'nothing-like-this' })).toMatchObject({ docs: [], next: null, partial: false });
    expect((await pages({ limit: 10, q: 'onerror' })).uuids).toEqual([all.find((a) => a.path.includes('onerror'))!.uuid]);
    expect((await pages({ limit: 10, q: 'web-5 10005' })).uuids).toEqual([all.find((a) => a.path.endsWith('.so.5'))!.uuid]);
  });

  it('searches a word in more alerts than the budget window by window of ids, newest stored first', async () => {
    // In every alert: more matches than the 500 the index may be asked for.
    const first = await q.list({ limit: 50, q: 'ld-linux' });
    expect(first.docs).toHaveLength(50);
    expect(first.scanned).toBeLessThanOrEqual(500);
    const got = await pages({ limit: 200, q: 'ld-linux' });
    expect(got.uuids).toEqual([...all].sort(newestStored).map((a) => a.uuid));
    // With a filter few alerts pass: pages stop at the budget and say so.
    const rare = await pages({ limit: 50, q: 'ld-linux', rule: 'rare-rule' });
    expect(rare.uuids).toEqual(all.filter((a) => a.rule === 'rare-rule').sort(newestStored).map((a) => a.uuid));
    expect(rare.partials).toBeGreaterThan(0);
  });

  it('combines search with filters', async () => {
    const got = await pages({ limit: 10, q: 'ld-linux', host: 'web-4', status: 'closed' });
    expect(got.uuids).toEqual(all.filter((a) => a.host === 'web-4' && a.status === 'closed').sort(newestStored).map((a) => a.uuid));
  });

  it('refuses cursors it did not give', async () => {
    await expect(q.list({ limit: 10, cursor: '1; DROP TABLE alerts' })).rejects.toThrow(RangeError);
    await expect(q.list({ limit: 10, q: 'x', cursor: '1.2' })).rejects.toThrow(RangeError);
  });

  it('counts by time, host, rule, severity and status from the tables the trigger keeps', async () => {
    const o = await q.overview('30d', T0 + N * 1000 + 60_000);
    expect(o.total).toBe(N);
    expect(o.buckets.reduce((s, b) => s + b.n, 0)).toBe(N);
    expect(o.byHost.reduce((s, h) => s + h.n, 0)).toBe(N);
    expect(o.byHost[0]).toEqual({ host: 'web-0', n: all.filter((a) => a.host === 'web-0').length });
    expect(o.byRule.find((r) => r.ruleId === 'rare-rule')).toEqual({ ruleId: 'rare-rule', name: 'Rule', n: 30 });
    expect(o.bySeverity).toEqual({ low: 750, medium: 750, high: 750, critical: 750 });
    const ack = all.filter((a) => a.status === 'acknowledged').length;
    const closed = all.filter((a) => a.status === 'closed').length;
    expect(o.status).toEqual({ open: N - ack - closed, acknowledged: ack, closed });
    expect(o.indexLag).toBe(0);
    const f = await q.facets(T0 + N * 1000);
    expect(f.hosts.sort()).toEqual(['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'web-6']);
    expect(f.rules).toEqual([{ ruleId: 'rare-rule', name: 'Rule' }, { ruleId: 'rule-a', name: 'Rule' }]);
  });

  it('keeps the workflow history of an alert', async () => {
    const a = (await q.alert(uuidAt(37)))!;
    expect(a.history).toEqual([{ kind: 'status', status: 'acknowledged', by: 'alice', at: new Date(T0 + 10_000_000).toISOString() }]);
    expect(JSON.parse(a.doc).kibana.alert.workflow_status).toBe('acknowledged');
    await store.setStatus((await store.findAlerts(uuidAt(37)))[0]!.id, 'closed', 'bob', T0 + 20_000_000);
    expect((await q.alert(uuidAt(37)))!.history.map((h) => `${h.status} ${h.by}`)).toEqual(['acknowledged alice', 'closed bob']);
    expect(await q.alert('no-such-uuid')).toBeUndefined();
  });

  it('counts the alerts a database held before the counts existed when it upgrades (migration 4)', async () => {
    const url = await cluster.createDb('upgrade');
    const old = await PostgresStore.open(url);
    const c = old.newPool('ldguard-test', 1);
    await c.query(`INSERT INTO alerts (uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
      SELECT 'u' || i, ${T0} + i * 90000, ${T0} + i * 90000, CASE WHEN i % 2 = 0 THEN 'even' END, 'r' || (i % 3), NULL, 'low', 'open', 'a', 't', 0, '\\x7b7d'::bytea
      FROM generate_series(1, 100) i`);
    // Back to schema 3, alerts kept: what an older collector left (later migrations undone too).
    await c.query(`DROP TRIGGER alerts_count ON alerts; DROP FUNCTION ldguard_count_alerts(); DROP TABLE alert_minutes, alert_hours, alert_rules, web_prefs;
      ALTER TABLE alerts DROP COLUMN assignee; ALTER TABLE alert_history DROP COLUMN kind, DROP COLUMN value, DROP COLUMN seq;
      DROP TRIGGER alerts_held_group ON alerts; DROP FUNCTION ldguard_held_group(); DROP INDEX alerts_g_rule, alerts_g_sender;
      ALTER TABLE alerts DROP COLUMN file_hash, DROP COLUMN executable, DROP COLUMN package, DROP COLUMN held_back, DROP COLUMN summary_id;
      DELETE FROM ldguard_schema WHERE version >= 4`);
    await c.end();
    await old.close();
    const upgraded = await PostgresStore.open(url);
    const pool2 = upgraded.newPool('ldguard-test', 2);
    try {
      expect(upgraded.upgraded).toMatch(new RegExp(`^schema 3 to ${MIGRATIONS.length}; group keys of 100 alerts in `));
      const reads = new PostgresDashboardReads(pool2, 500);
      const o = await reads.overview('30d', T0 + 100 * 90_000 + 60_000);
      expect(o.total).toBe(100);
      expect(o.byHost).toEqual([{ host: '(no host)', n: 50 }, { host: 'even', n: 50 }]);
      expect(o.byRule.map((r) => [r.ruleId, r.n]).sort()).toEqual([['r0', 33], ['r1', 34], ['r2', 33]]);
      // And the trigger counts what comes after.
      await pool2.query(`INSERT INTO alerts (uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
        VALUES ('later', ${T0}, ${T0}, 'even', 'r0', 'Named later', 'high', 'open', 'a', 't', 0, '\\x7b7d'::bytea)`);
      expect((await reads.overview('30d', T0 + 100 * 90_000 + 60_000)).total).toBe(101);
      expect((await reads.facets(T0)).rules).toContainEqual({ ruleId: 'r0', name: 'Named later' });
    } finally {
      await pool2.end();
      await upgraded.close();
    }
  });
});

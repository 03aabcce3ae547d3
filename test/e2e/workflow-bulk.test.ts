// The bulk workflow, notes and assignee (#22 items 1, 3, 8) through the admin API, against the real
// collector (a child process) on SQLite and on a throwaway PostgreSQL cluster, fed by a real agent
// sink over the real protocol. The history is read where the dashboard reads it (a session's
// GET /ui/api/alerts/:uuid), so both readers of the history tables are the shipped ones.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { BULK_CHUNK, BULK_MAX_IDS, NOTE_MAX_CHARS } from '../../collector/src/store/workflow.js';
import { callApi, createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-bulk-');
const noPostgres = postgresUnavailable();
/** More than two transactions' worth: the filter's change must cross chunk ends. */
const MANY = 2 * BULK_CHUNK + 500;

interface History {
  kind: string;
  status: string;
  by: string | null;
  at: string;
  value?: string | null;
}

describe.each(['sqlite', 'postgres'] as const)('bulk workflow, notes and assignee on %s', (kind) => {
  const skip = kind === 'postgres' ? noPostgres : undefined;
  let db: string;
  let c: TestCollector;
  let alice: string;
  let bob: string;
  let sink: WebSocketSink;
  let cookie: string;
  let csrf: string;
  const few: Alert[] = [];

  async function history(uuid: string): Promise<History[]> {
    const res = await fetch(`http://127.0.0.1:${c.port}/ui/api/alerts/${uuid}`, { headers: { cookie } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { history: History[] }).history;
  }
  const doc = async (id: string) => (await callApi(c.port, `/api/alerts/${encodeURIComponent(id)}`, alice)).body.alert as Alert & { ldguard: { assignee?: string } };
  const stored = (a: Alert) => waitFor(async () => (await callApi(c.port, `/api/alerts/${a.kibana.alert.uuid}`, alice)).status === 200 || undefined, 60_000, `alert ${a.kibana.alert.uuid} stored`);

  beforeAll(async () => {
    if (skip) return;
    db = kind === 'sqlite' ? join(work, `bulk-${randomUUID()}`, 'collector.db') : await (await startPostgres()).createDb('bulk');
    alice = await createToken(db, 'alice', 'admin');
    bob = await createToken(db, 'bob', 'admin');
    const agentToken = await createToken(db, 'agent-1');
    c = await startTestCollector(work, db);
    sink = await WebSocketSink.open({
      url: `ws://127.0.0.1:${c.port}`, token: agentToken, spoolDir: join(work, `spool-${kind}`), spoolMaxBytes: 64 * 1024 * 1024,
      facts: () => makeFacts('agent-bulk', 'web-1'), heartbeatMs: 500, backoffInitialMs: 50, backoffMaxMs: 400,
    });
    await waitFor(() => sink.health().connected, 5000, 'the agent to connect');
    const t0 = Date.parse('2026-11-01T00:00:00Z');
    for (let i = 0; i < 6; i++) {
      const a = makeAlert({ agentId: 'agent-bulk', host: 'few-1', time: new Date(t0 + i * 1000).toISOString() });
      few.push(a);
      await sink.send(a);
    }
    let last: Alert | undefined;
    for (let i = 0; i < MANY; i++) await sink.send((last = makeAlert({ agentId: 'agent-bulk', host: 'many-1', time: new Date(t0 + 10_000 + i * 1000).toISOString() })));
    await stored(few.at(-1)!);
    await stored(last!);
    const login = await fetch(`http://127.0.0.1:${c.port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: alice }) });
    expect(login.status).toBe(200);
    cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    csrf = ((await login.json()) as { csrf: string }).csrf;
  }, 240_000);

  afterAll(async () => {
    await sink?.close();
  });

  it.skipIf(skip)('acknowledges a list of ids (uuids or keys), counts those already so and names those that are not there', async () => {
    const [a, b, d] = few;
    const key = (await callApi(c.port, `/api/alerts/${d!.kibana.alert.uuid}`, alice)).body.key as string;
    const ids = [a!.kibana.alert.uuid, b!.kibana.alert.uuid, key, 'no-such-alert'];
    const first = await callApi(c.port, '/api/alerts/bulk', alice, { method: 'POST', body: { action: 'acknowledge', ids } });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ changed: 3, unchanged: 0, missing: ['no-such-alert'] });
    const again = await callApi(c.port, '/api/alerts/bulk', bob, { method: 'POST', body: { action: 'acknowledge', ids } });
    expect(again.body).toEqual({ changed: 0, unchanged: 3, missing: ['no-such-alert'] });
    for (const x of [a!, b!, d!]) {
      const shown = await doc(x.kibana.alert.uuid);
      expect(shown.kibana.alert.workflow_status).toBe('acknowledged');
      expect((shown.kibana.alert as { workflow_user?: string }).workflow_user).toBe('alice');
      // One entry: the second call changed nothing, so it recorded nothing.
      const h = await history(x.kibana.alert.uuid);
      expect(h).toHaveLength(1);
      expect(h[0]).toMatchObject({ kind: 'status', status: 'acknowledged', by: 'alice' });
      expect(Date.now() - Date.parse(h[0]!.at)).toBeLessThan(10 * 60_000);
    }
    // Untouched: not in the list.
    expect((await doc(few[3]!.kibana.alert.uuid)).kibana.alert.workflow_status).toBe('open');
    const reopen = await callApi(c.port, '/api/alerts/bulk', bob, { method: 'POST', body: { action: 'reopen', ids: [a!.kibana.alert.uuid] } });
    expect(reopen.body).toMatchObject({ changed: 1, unchanged: 0 });
    expect((await history(a!.kibana.alert.uuid)).map((h) => [h.status, h.by])).toEqual([['acknowledged', 'alice'], ['open', 'bob']]);
    // The API shows the same history as the dashboard.
    expect((await callApi(c.port, `/api/alerts/${a!.kibana.alert.uuid}`, alice)).body.history).toEqual(await history(a!.kibana.alert.uuid));
  });

  it.skipIf(skip)(`closes every alert a filter selected at the preview (${MANY}, in transactions of ${BULK_CHUNK} at most), not one that arrived after`, async () => {
    const filter = { host: 'many-1', status: 'open' };
    const preview = await callApi(c.port, '/api/alerts/bulk/preview', bob, { method: 'POST', body: { filter } });
    expect(preview.status).toBe(200);
    expect(preview.body.count).toBe(MANY);
    // Arrives after the count was shown: must stay open.
    const late = makeAlert({ agentId: 'agent-bulk', host: 'many-1', time: new Date(Date.parse('2026-11-02T00:00:00Z')).toISOString() });
    await sink.send(late);
    await stored(late);
    const applied = await callApi(c.port, '/api/alerts/bulk', bob, { method: 'POST', body: { action: 'close', filter, upTo: preview.body.upTo } });
    expect(applied.status).toBe(200);
    expect(applied.body).toEqual({ changed: MANY, unchanged: 0, missing: [] });
    expect((await doc(late.kibana.alert.uuid)).kibana.alert.workflow_status).toBe('open');
    expect((await callApi(c.port, '/api/alerts/bulk/preview', bob, { method: 'POST', body: { filter } })).body.count).toBe(1);
    expect((await callApi(c.port, '/api/alerts/bulk/preview', bob, { method: 'POST', body: { filter: { host: 'many-1', status: 'closed' } } })).body.count).toBe(MANY);
    // The same selection without the status filter: every row already closed, none changed again.
    const again = await callApi(c.port, '/api/alerts/bulk', alice, { method: 'POST', body: { action: 'close', filter: { host: 'many-1' }, upTo: preview.body.upTo } });
    expect(again.body).toEqual({ changed: 0, unchanged: MANY, missing: [] });
    const sample = (await callApi(c.port, '/api/alerts?host=many-1&status=closed&limit=3', alice)).body.alerts as Alert[];
    expect(sample).toHaveLength(3);
    for (const s of sample) expect(await history(s.kibana.alert.uuid)).toEqual([expect.objectContaining({ kind: 'status', status: 'closed', by: 'bob' })]);
    if (kind === 'postgres') {
      // Each transaction leaves its id on the rows it wrote (xmin): the change took several, none over the chunk.
      const client = new pg.Client({ connectionString: db });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>("SELECT count(*) AS n FROM alerts WHERE host = 'many-1' AND status = 'closed' GROUP BY xmin::text");
        expect(rows.length).toBe(Math.ceil(MANY / BULK_CHUNK));
        expect(Math.max(...rows.map((r) => Number(r.n)))).toBeLessThanOrEqual(BULK_CHUNK);
      } finally {
        await client.end();
      }
    }
  });

  it.skipIf(skip)('selects by a group\'s members (of/key) and by a time range\'s end (until), as the list does', async () => {
    const count = async (filter: Record<string, string>) => {
      const r = await callApi(c.port, '/api/alerts/bulk/preview', alice, { method: 'POST', body: { filter } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.count as number;
    };
    const everything = await count({});
    expect(everything).toBeGreaterThan(few.length);
    // "All matching" in a group's members view: that group only, not everything its other filters match.
    expect(await count({ of: 'host', key: 'few-1' })).toBe(few.length);
    expect(await count({ of: 'hash', key: 'no-such-hash' })).toBe(0);
    // A custom range's end: the few alerts are a second apart from 2026-11-01T00:00:00Z.
    expect(await count({ until: '2026-11-01T00:00:03Z' })).toBe(3);
    // The same through the dashboard's filter reader.
    const res = await fetch(`http://127.0.0.1:${c.port}/ui/api/alerts/bulk/preview`, {
      method: 'POST', headers: { cookie, 'content-type': 'application/json', 'x-ldguard-csrf': csrf, origin: `http://127.0.0.1:${c.port}` }, body: JSON.stringify({ filter: { of: 'host', key: 'few-1' } }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { count: number }).count).toBe(few.length);
  });

  it.skipIf(skip)('keeps notes in the history as text, and refuses one over the limit', async () => {
    const uuid = few[4]!.kibana.alert.uuid;
    const long = await callApi(c.port, `/api/alerts/${uuid}/notes`, alice, { method: 'POST', body: { text: 'x'.repeat(NOTE_MAX_CHARS + 1) } });
    expect(long.status).toBe(400);
    expect(long.body.error.code).toBe('LDG_ERR_WORKFLOW_NOTE_LENGTH');
    const text = `<img src=x onerror=alert(1)> checked with dpkg -V: ${'y'.repeat(NOTE_MAX_CHARS - 60)}`;
    const ok = await callApi(c.port, `/api/alerts/${uuid}/notes`, alice, { method: 'POST', body: { text } });
    expect(ok.status).toBe(201);
    expect(await history(uuid)).toEqual([expect.objectContaining({ kind: 'note', status: 'open', by: 'alice', value: text })]);
  });

  it.skipIf(skip)('sets the assignee: of two concurrent edits the last wins, the history keeps both; bulk and clear too', async () => {
    const uuid = few[5]!.kibana.alert.uuid;
    const [r1, r2] = await Promise.all([
      callApi(c.port, `/api/alerts/${uuid}`, alice, { method: 'PATCH', body: { assignee: 'alice' } }),
      callApi(c.port, `/api/alerts/${uuid}`, bob, { method: 'PATCH', body: { assignee: 'bob' } }),
    ]);
    expect([r1.status, r2.status]).toEqual([200, 200]);
    const h = (await history(uuid)).filter((e) => e.kind === 'assignee');
    expect(h.map((e) => [e.by, e.value]).sort()).toEqual([['alice', 'alice'], ['bob', 'bob']]);
    // Whoever wrote last is the assignee shown.
    expect((await doc(uuid)).ldguard.assignee).toBe(h.at(-1)!.value);
    const bulk = await callApi(c.port, '/api/alerts/bulk', alice, { method: 'POST', body: { action: 'assign', assignee: 'carol', ids: [uuid, few[4]!.kibana.alert.uuid] } });
    expect(bulk.body).toEqual({ changed: 2, unchanged: 0, missing: [] });
    expect((await doc(few[4]!.kibana.alert.uuid)).ldguard.assignee).toBe('carol');
    const cleared = await callApi(c.port, `/api/alerts/${uuid}`, bob, { method: 'PATCH', body: { assignee: null } });
    expect(cleared.status).toBe(200);
    expect(cleared.body.alert.ldguard.assignee).toBeUndefined();
    expect((await history(uuid)).filter((e) => e.kind === 'assignee').map((e) => e.value)).toEqual([...h.map((e) => e.value), 'carol', null]);
  });

  it.skipIf(skip)('shows no assignee an agent wrote into its alert, nested or dotted', async () => {
    const nested = makeAlert({ agentId: 'agent-bulk', host: 'few-1' });
    (nested.ldguard as Record<string, unknown>).assignee = 'mallory';
    const dotted = { ...makeAlert({ agentId: 'agent-bulk', host: 'few-1' }), 'ldguard.assignee': 'mallory' } as unknown as Alert;
    for (const a of [nested, dotted]) {
      await sink.send(a);
      await stored(a);
      const shown = (await doc(a.kibana.alert.uuid)) as unknown as Record<string, unknown> & { ldguard: Record<string, unknown> };
      expect(shown.ldguard.assignee).toBeUndefined();
      expect(shown['ldguard.assignee']).toBeUndefined();
    }
  });

  it.skipIf(skip)('refuses bad input with 400 and a code, and keeps serving', async () => {
    const post = (body: unknown, path = '/api/alerts/bulk') => callApi(c.port, path, alice, { method: 'POST', body });
    const cases: Array<[unknown, string]> = [
      [{ action: 'delete', ids: ['x'] }, 'LDG_ERR_WORKFLOW_ACTION'],
      [{ action: 'close', ids: Array.from({ length: BULK_MAX_IDS + 1 }, (_, i) => `id-${i}`) }, 'LDG_ERR_WORKFLOW_TOO_MANY'],
      [{ action: 'close', filter: { host: 'many-1' } }, 'LDG_ERR_WORKFLOW_PREVIEW'],
      [{ action: 'close', filter: { q: 'ld-linux' }, upTo: 5 }, 'LDG_ERR_WORKFLOW_FILTER'],
      [{ action: 'close' }, 'LDG_ERR_WORKFLOW_BODY'],
      [{ action: 'close', ids: [1, 2] }, 'LDG_ERR_WORKFLOW_BODY'],
      [{ action: 'assign', ids: ['x'] }, 'LDG_ERR_WORKFLOW_ASSIGNEE'],
      [{ action: 'assign', assignee: 'a'.repeat(200), ids: ['x'] }, 'LDG_ERR_WORKFLOW_ASSIGNEE'],
      [{ action: 'close', filter: { severity: 'dire' }, upTo: 1 }, 'LDG_ERR_API_QUERY'],
      [[1, 2], 'LDG_ERR_API_BODY'],
    ];
    for (const [body, code] of cases) {
      const r = await post(body);
      expect({ body, status: r.status, code: r.body.error?.code }).toEqual({ body, status: 400, code });
    }
    const malformed = await fetch(`http://127.0.0.1:${c.port}/api/alerts/bulk`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: '{"action": "close", ' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('LDG_ERR_API_BODY');
    const status = await callApi(c.port, `/api/alerts/${few[0]!.kibana.alert.uuid}`, alice, { method: 'PATCH', body: { status: 'resolved' } });
    expect(status.status).toBe(400);
    expect((await callApi(c.port, `/api/alerts/${few[0]!.kibana.alert.uuid}/notes`, alice, { method: 'POST', body: { text: '' } })).body.error.code).toBe('LDG_ERR_WORKFLOW_BODY');
    expect((await post({ filter: {} }, '/api/alerts/bulk/preview')).status).toBe(200);
    // No token, no change.
    expect((await callApi(c.port, '/api/alerts/bulk', undefined, { method: 'POST', body: { action: 'close', ids: ['x'] } })).status).toBe(401);
    // The dashboard's bulk needs the session's CSRF token.
    const csrfless = await fetch(`http://127.0.0.1:${c.port}/ui/api/alerts/bulk`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ action: 'close', ids: [few[3]!.kibana.alert.uuid] }) });
    expect(csrfless.status).toBe(403);
    expect((await doc(few[3]!.kibana.alert.uuid)).kibana.alert.workflow_status).toBe('open');
    expect((await callApi(c.port, '/healthz')).status).toBe(200);
  });
});

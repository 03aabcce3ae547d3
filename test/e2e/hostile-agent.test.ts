// The collector against a hostile agent (issue 16's findings, each tried as the attacker did): the
// real collector as a child process, real WebSocket connections on loopback, a real honest agent
// (WebSocketSink with its spool) delivering beside the attacker. After each attack the collector is
// up, the honest agent undisturbed, and every view answers.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { alertsFrame } from '../../shared/protocol.js';
import { callApi, createToken, rawAgent, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-hostile-');
const db = join(work, 'db', 'collector.db');
let c: TestCollector;
let admin: string;
let honest: WebSocketSink;
let honestToken: string;
const HONEST_ID = 'agent-honest';
const sent: string[] = [];

const deep = (n: number, leaf = '1') => `${'{"a":'.repeat(n)}${leaf}${'}'.repeat(n)}`;
const helloText = (agentId: string, extra = '') => `{"type":"hello","v":1,"heartbeatMs":10000,"agent":${JSON.stringify(makeFacts(agentId, `${agentId}-host`)).replace('"host":{', `"host":{${extra}`)}}`;

async function sendHonest(): Promise<Alert> {
  const a = makeAlert({ agentId: HONEST_ID, host: 'honest-host' });
  await honest.send(a);
  sent.push(a.kibana.alert.uuid);
  return a;
}

/** The collector is up, every view answers, and the honest agent's alerts are all stored, once each. */
async function stillServing(): Promise<void> {
  expect(c.proc.exitCode).toBeNull();
  for (const path of ['/healthz', '/metrics', '/api/agents', '/api/alerts?limit=5', '/api/quarantine']) {
    expect((await callApi(c.port, path, admin)).status, path).toBe(200);
  }
  await sendHonest();
  await waitFor(async () => honest.health().spool.depth === 0, 10_000, 'the honest agent\'s spool to drain');
  for (const uuid of sent) {
    const r = await callApi(c.port, `/api/alerts/${uuid}`, admin);
    expect(r.status, uuid).toBe(200);
    expect(r.body.matches, uuid).toHaveLength(1);
  }
  expect(honest.health().connected).toBe(true);
}

beforeAll(async () => {
  admin = await createToken(db, 'ops', 'admin');
  honestToken = await createToken(db, 'honest');
  c = await startTestCollector(work, db);
  honest = await WebSocketSink.open({
    url: `ws://127.0.0.1:${c.port}`, token: honestToken, spoolDir: join(work, 'spool'), spoolMaxBytes: 64 * 1024 * 1024,
    facts: () => makeFacts(HONEST_ID, 'honest-host'), heartbeatMs: 500, backoffInitialMs: 50, backoffMaxMs: 400,
  });
  await waitFor(() => honest.health().connected, 5000, 'the honest agent to connect');
});

afterAll(async () => {
  await honest?.close();
});

describe('a hostile agent', () => {
  it('F1: one deeply nested hello, heartbeat or escaped-key batch is refused (1008); the collector stays up', async () => {
    const frames = [
      helloText(`deep-${randomUUID()}`, `"x":${deep(5000)},`),
      `{"type":"alerts","v":1,"seq":1,"\\u0061lerts":[${deep(5000)}]}`,
    ];
    for (const f of frames) {
      const a = await rawAgent(c.port, await createToken(db, `f1-${randomUUID().slice(0, 8)}`));
      a.ws.send(f);
      const closed = await a.closed;
      expect(closed.code, f.slice(0, 40)).toBe(1008);
      expect(a.messages[0]).toMatchObject({ type: 'error', code: 'LDG_ERR_PROTO_BOUNDS' });
    }
    const beat = await rawAgent(c.port, await createToken(db, 'f1-beat'));
    beat.ws.send(helloText('agent-f1-beat'));
    beat.ws.send(`{"type":"heartbeat","v":1,"health":${deep(5000)}}`);
    expect((await beat.closed).code).toBe(1008);
    await stillServing();
  });

  it('F2: a heartbeat nested 1,500 deep is never stored: /metrics and the fleet answer 200, after a restart too', async () => {
    const a = await rawAgent(c.port, await createToken(db, 'f2'));
    a.ws.send(helloText('agent-f2'));
    a.ws.send(`{"type":"heartbeat","v":1,"health":{"spoolDepth":0,"spoolBytes":0,"spoolOverflow":0,"spoolTorn":0,"eventsLost":0,"source":{"name":"x","degraded":false,"reason":"r"},"x":${deep(1500)}}}`);
    expect((await a.closed).code).toBe(1008);
    await stillServing();
    await c.stop('SIGTERM');
    c = await startTestCollector(work, db, '', c.port);
    await waitFor(() => honest.health().connected, 10_000, 'the honest agent to reconnect');
    await stillServing();
  });

  it('F3: a never-used token cannot take over a connected agent\'s id (4003); the agent is undisturbed and its row keeps its host', async () => {
    const thief = await rawAgent(c.port, await createToken(db, 'thief'));
    thief.ws.send(helloText(HONEST_ID));
    const closed = await thief.closed;
    expect(closed.code).toBe(4003);
    expect(thief.messages[0]).toMatchObject({ code: 'LDG_ERR_AGENT_CLAIMED' });
    const agents = (await callApi(c.port, '/api/agents', admin)).body.agents as Array<Record<string, unknown>>;
    expect(agents.find((x) => x.agentId === HONEST_ID)).toMatchObject({ hostname: 'honest-host', tokenName: 'honest', connected: true });
    // Shown to analysts as an alert of the collector's own, naming the token.
    await waitFor(async () => {
      const list = (await callApi(c.port, '/api/alerts?limit=50', admin)).body.alerts as Array<Record<string, any>>;
      return list.find((x) => x.rule?.id === 'ldguard-collector-identity-refused' && x.ldguard?.notice?.token_name === 'thief');
    }, 5000, 'the identity notice');
    await stillServing();
  });

  it('F4: an alert naming another agent is quarantined; every stored alert carries its authenticated sender, never the document\'s claim', async () => {
    const token = await createToken(db, 'liar');
    const liar = await rawAgent(c.port, token);
    liar.ws.send(helloText('agent-liar'));
    const forged = makeAlert({ agentId: HONEST_ID, host: 'honest-host' });
    const own = { ...makeAlert({ agentId: 'agent-liar', host: 'liar-host' }), ldguard: { received_from: { agent_id: HONEST_ID, token_name: 'honest' }, future_timestamp: false } };
    // Dotted, as Elasticsearch reads the same field: dropped too.
    const dotted = { ...makeAlert({ agentId: 'agent-liar', host: 'liar-host' }), 'ldguard.received_from.agent_id': HONEST_ID };
    liar.ws.send(alertsFrame(1, [JSON.stringify(forged), JSON.stringify(own), JSON.stringify(dotted)]));
    await waitFor(() => liar.messages.find((m) => m.type === 'ack'), 5000, 'the ack');
    expect(liar.messages.find((m) => m.type === 'ack')).toMatchObject({ upTo: 3, rejected: [{ seq: 1, errors: [expect.stringContaining('is not the sending agent\'s id')] }] });
    expect((await callApi(c.port, `/api/alerts/${forged.kibana.alert.uuid}`, admin)).status).toBe(404);
    const q = (await callApi(c.port, '/api/quarantine?agent=agent-liar', admin)).body;
    expect(JSON.stringify(q)).toContain(forged.kibana.alert.uuid);
    const got = await callApi(c.port, `/api/alerts/${own.kibana.alert.uuid}`, admin);
    expect(got.status, got.text).toBe(200);
    const stored = got.body.alert;
    expect(stored.ldguard.received_from).toEqual({ agent_id: 'agent-liar', token_name: 'liar' });
    expect(stored.ldguard).not.toHaveProperty('future_timestamp');
    const flat = (await callApi(c.port, `/api/alerts/${dotted.kibana.alert.uuid}`, admin)).body.alert;
    expect(Object.keys(flat).filter((k) => k.startsWith('ldguard.'))).toEqual([]);
    expect(flat.ldguard.received_from).toEqual({ agent_id: 'agent-liar', token_name: 'liar' });
    // Analysts see the quarantine as an alert of the collector's own, naming the token.
    await waitFor(async () => ((await callApi(c.port, '/api/alerts?limit=50', admin)).body.alerts as Array<Record<string, any>>)
      .find((x) => x.rule?.id === 'ldguard-collector-alerts-quarantined' && x.ldguard?.notice?.token_name === 'liar'), 5000, 'the quarantine notice');
    const honestAlert = await sendHonest();
    await waitFor(async () => honest.health().spool.depth === 0, 10_000, 'the honest alert');
    const mine = (await callApi(c.port, `/api/alerts/${honestAlert.kibana.alert.uuid}`, admin)).body.alert;
    expect(mine.ldguard.received_from).toEqual({ agent_id: HONEST_ID, token_name: 'honest' });
    const metrics = (await callApi(c.port, '/metrics', admin)).text;
    expect(metrics).toMatch(/^ldguard_collector_received_from_dropped_total [1-9]/m);
    liar.ws.close();
    await stillServing();
  });

  it('F5: one token holds at most 2 connections, an address at most its pre-hello share, and a connection at most its unfinished bytes', async () => {
    const token = await createToken(db, 'greedy');
    await rawAgent(c.port, token);
    await rawAgent(c.port, token);
    await expect(rawAgent(c.port, token)).rejects.toMatchObject({ status: 429 });
    // Pre-hello sockets per address: a collector allowing 3.
    const small = await startTestCollector(work, join(work, 'db2', 'c.db'), 'max_pre_hello_per_address = 3\nmax_connections_per_token = 10\nmax_partial_bytes_per_connection = 65536\n');
    const t2 = await createToken(join(work, 'db2', 'c.db'), 'many');
    const silent = [await rawAgent(small.port, t2), await rawAgent(small.port, t2), await rawAgent(small.port, t2)];
    await expect(rawAgent(small.port, t2)).rejects.toMatchObject({ status: 429 });
    // One says hello: its place is free again.
    silent[0]!.ws.send(helloText('agent-many'));
    await waitFor(() => small.logs.some((l) => l.msg === 'agent connected' && l.agentId === 'agent-many'), 5000, 'the hello');
    // A frame left unfinished past the connection's share: closed (4004), the process unharmed.
    const t3 = await createToken(join(work, 'db2', 'c.db'), 'partial');
    const p = await rawAgent(small.port, t3);
    const sock = (p.ws as unknown as { _socket: import('node:net').Socket })._socket;
    // A text frame header announcing 1 MB (masked, as a client must), then 100 kB of it.
    const header = Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]);
    sock.write(Buffer.concat([header, Buffer.alloc(100_000, 0x20)]));
    expect((await p.closed).code).toBe(4004);
    expect(small.proc.exitCode).toBeNull();
    await small.stop('SIGTERM');
  });

  it('F7: an alert nested too deep is quarantined alone; the rest of its batch is stored and can be triaged', async () => {
    const a = await rawAgent(c.port, await createToken(db, 'f7'));
    a.ws.send(helloText('agent-f7'));
    const ok = makeAlert({ agentId: 'agent-f7', host: 'f7-host' });
    a.ws.send(alertsFrame(1, [`{"kibana":${deep(3000)}}`, JSON.stringify(ok)]));
    await waitFor(() => a.messages.find((m) => m.type === 'ack'), 5000, 'the ack');
    expect(a.messages.find((m) => m.type === 'ack')).toMatchObject({ upTo: 2, rejected: [{ seq: 1 }] });
    const patched = await callApi(c.port, `/api/alerts/${ok.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { status: 'acknowledged' } });
    expect(patched.status).toBe(200);
    expect(patched.body.alert.kibana.alert.workflow_status).toBe('acknowledged');
    await stillServing();
  });

  it('F9: a uuid two events share lists both, through an index; each is reachable by its key', async () => {
    const a = await rawAgent(c.port, await createToken(db, 'f9'));
    a.ws.send(helloText('agent-f9'));
    const uuid = randomUUID();
    const one = makeAlert({ agentId: 'agent-f9', uuid, time: '2026-01-01T00:00:00.000Z' });
    const two = makeAlert({ agentId: 'agent-f9', uuid, time: '2026-01-02T00:00:00.000Z' });
    a.ws.send(alertsFrame(1, [JSON.stringify(one), JSON.stringify(two)]));
    await waitFor(() => a.messages.find((m) => m.type === 'ack'), 5000, 'the ack');
    const r = await callApi(c.port, `/api/alerts/${uuid}`, admin);
    expect(r.body.matches).toEqual([`${Date.parse('2026-01-02T00:00:00.000Z')}~${uuid}`, `${Date.parse('2026-01-01T00:00:00.000Z')}~${uuid}`]);
    expect((await callApi(c.port, `/api/alerts/${uuid}`, admin, { method: 'PATCH', body: { status: 'closed' } })).status).toBe(409);
    const older = await callApi(c.port, `/api/alerts/${encodeURIComponent(r.body.matches[1])}`, admin, { method: 'PATCH', body: { status: 'closed' } });
    expect(older.status).toBe(200);
    expect(older.body.alert['@timestamp']).toBe('2026-01-01T00:00:00.000Z');
  });

  it('F10: an alert dated 9999-12-31 is flagged and listed by its receipt, never on top for good; its document keeps its date', async () => {
    const a = await rawAgent(c.port, await createToken(db, 'f10'));
    a.ws.send(helloText('agent-f10'));
    const future = makeAlert({ agentId: 'agent-f10', time: '9999-12-31T00:00:00.000Z' });
    a.ws.send(alertsFrame(1, [JSON.stringify(future)]));
    await waitFor(() => a.messages.find((m) => m.type === 'ack'), 5000, 'the ack');
    const later = await sendHonest();
    await waitFor(async () => (await callApi(c.port, `/api/alerts/${later.kibana.alert.uuid}`, admin)).status === 200, 5000, 'the later alert');
    const list = (await callApi(c.port, '/api/alerts?limit=10', admin)).body.alerts as Array<Record<string, any>>;
    const at = (u: string) => list.findIndex((x) => x.kibana.alert.uuid === u);
    expect(at(later.kibana.alert.uuid)).toBeLessThan(at(future.kibana.alert.uuid));
    expect(list[at(future.kibana.alert.uuid)]!.ldguard.future_timestamp).toBe(true);
    expect(list[at(future.kibana.alert.uuid)]!['@timestamp']).toBe('9999-12-31T00:00:00.000Z');
  });

  it('a revoked token is cut within a second, and nothing it sends after the revoke returns is acked or stored', async () => {
    const token = await createToken(db, 'revokee');
    const a = await rawAgent(c.port, token);
    a.ws.send(helloText('agent-revokee'));
    const { runCli } = await import('../helpers/collector.js');
    const t0 = Date.now();
    expect((await runCli(['token', 'revoke', '--db', db, '--name', 'revokee'])).status).toBe(0);
    const late = makeAlert({ agentId: 'agent-revokee' });
    if (a.ws.readyState === a.ws.OPEN) a.ws.send(alertsFrame(1, [JSON.stringify(late)]));
    const closed = await a.closed;
    expect(closed.code).toBe(4001);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(a.messages.filter((m) => m.type === 'ack')).toEqual([]);
    expect((await callApi(c.port, `/api/alerts/${late.kibana.alert.uuid}`, admin)).status).toBe(404);
  });

  it('headers too large get 431, not a reset', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: c.port, path: '/healthz', headers: { 'x-big': 'a'.repeat(20_000) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(431);
  });
});

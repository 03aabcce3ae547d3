// Delivery end to end: the real collector as a child process (the built CLI, port 0 on 127.0.0.1,
// SQLite in a temp dir), real WebSocketSinks and raw WebSocket clients in this process, the real
// `ldguard tail` against a LocalSink. Every server here listens on loopback only.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, truncateSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION } from '../../collector/src/store/sqlite.js';
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AlertsFile } from '../../agent/src/sink/alerts-file.js';
import { LocalSink } from '../../agent/src/sink/local.js';
import { Spool } from '../../agent/src/sink/spool.js';
import { WebSocketSink, type WebSocketSinkOptions } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { findRepoRoot } from '../../shared/paths.js';
import { MAX_ALERT_BYTES, MAX_FRAME_BYTES, alertsFrame } from '../../shared/protocol.js';
import { cliPath } from '../helpers/cli.js';
import { createToken, rawAgent, runCli as cli, type RawAgent as Raw } from '../helpers/collector.js';
import { startDaemon } from '../helpers/daemon.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { captureLog, makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

const CLI = cliPath();
const noPostgres = postgresUnavailable();
const work = tempDir('ldg-delivery-');
const procs = new Set<ChildProcess>();
const sinks = new Set<{ close(): Promise<void> }>();

afterAll(async () => {
  for (const s of sinks) await s.close().catch(() => undefined);
  for (const p of procs) p.kill('SIGKILL');
});

// Documents read back from the API and the logs are checked by path, as plain JSON.
 
type Json = any;
type Log = Record<string, Json>;

interface Collector {
  proc: ChildProcess;
  port: number;
  logs: Log[];
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

const TEST_CONFIG = `# short timers so the tests see pings, sweeps and timeouts happen
ping_interval_ms = 300
sweep_interval_ms = 150
hello_timeout_ms = 1500
rate_messages_per_sec = 1000
rate_messages_burst = 500
`;

/** TEST_CONFIG plus `extra`; a setting in `extra` replaces TEST_CONFIG's (TOML refuses a key twice). */
function writeConfig(name: string, extra = ''): string {
  const file = join(work, `${name}.toml`);
  const keys = new Set(extra.match(/^\w+(?= =)/gm));
  writeFileSync(file, TEST_CONFIG.split('\n').filter((l) => !keys.has(l.split(' = ')[0]!)).join('\n') + extra);
  return file;
}

async function startCollector(o: { db: string; port?: number; config?: string }): Promise<Collector> {
  const d = await startDaemon(['collector', '--listen', `127.0.0.1:${o.port ?? 0}`, '--db', o.db, '--config', o.config ?? writeConfig('default')], { readyMs: 15_000 });
  procs.add(d.proc);
  void d.exited.then(() => procs.delete(d.proc));
  return { proc: d.proc, port: d.ready.port as number, logs: d.logs, stop: d.stop };
}

async function api(port: number, path: string, token?: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text (metrics)
  }
  return { status: res.status, body, headers: res.headers };
}

/**
 * A sink for agent `o.agentId` (a random one by default). Its send() stamps the alert with that
 * agent id, as the real agent's alerts carry its own: the collector quarantines any other.
 */
async function openSink(port: number, token: string, o: Partial<WebSocketSinkOptions> & { agentId?: string; host?: string; scheme?: string } = {}): Promise<WebSocketSink> {
  const agentId = o.agentId ?? `agent-${randomUUID().slice(0, 8)}`;
  const sink = await WebSocketSink.open({
    url: `${o.scheme ?? 'ws'}://${o.scheme === 'wss' ? 'localhost' : '127.0.0.1'}:${port}`,
    token,
    spoolDir: o.spoolDir ?? join(work, `spool-${randomUUID()}`),
    spoolMaxBytes: 64 * 1024 * 1024,
    facts: () => makeFacts(agentId, o.host ?? 'web-1'),
    heartbeatMs: 500,
    backoffInitialMs: 50,
    backoffMaxMs: 400,
    ...o,
  });
  const send = sink.send.bind(sink);
  sink.send = (a) => send({ ...a, agent: { ...a.agent, id: agentId } });
  sinks.add(sink);
  return sink;
}

async function closeSink(sink: WebSocketSink): Promise<void> {
  sinks.delete(sink);
  await sink.close();
}

function hello(agentId: string) {
  return JSON.stringify({ type: 'hello', v: 1, agent: makeFacts(agentId, 'raw-host'), heartbeatMs: 10_000 });
}

/** Status of the upgrade response, and whether the server then closed the socket. */
function upgradeStatus(port: number, headers: Record<string, string>): Promise<{ status: number; socketClosed: Promise<boolean> }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/agent`, { headers });
    ws.on('error', () => undefined);
    ws.once('open', () => {
      resolve({ status: 101, socketClosed: Promise.resolve(false) });
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => {
      const socketClosed = new Promise<boolean>((r) => {
        res.socket.once('close', () => r(true));
        setTimeout(() => r(false), 2000);
      });
      res.resume();
      resolve({ status: res.statusCode ?? 0, socketClosed });
    });
  });
}

function storedCount(db: string): { count: number; distinct: number } {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const r = d.prepare('SELECT count(*) AS count, count(DISTINCT uuid) AS distinct_ FROM alerts').get() as { count: number; distinct_: number };
    return { count: r.count, distinct: r.distinct_ };
  } finally {
    d.close();
  }
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

// On both stores (PostgreSQL: a throwaway cluster, helpers/postgres.ts); the few checks of
// SQLite's own files are marked.
describe.skipIf(!noPostgres)('ldguard collector and the WebSocket sink (postgres)', () => {
  it.skip(`not run: ${noPostgres}`, () => undefined);
});
describe.each(noPostgres ? ['sqlite' as const] : (['sqlite', 'postgres'] as const))('ldguard collector and the WebSocket sink (%s)', (kind) => {
  const dbDir = join(work, `db-${kind}`);
  let db = join(dbDir, 'collector.db');
  let c: Collector;
  let agentToken: string;
  let agent2Token: string;
  let adminToken: string;

  beforeAll(async () => {
    if (kind === 'postgres') db = await (await startPostgres()).createDb('collector');
    agentToken = await createToken(db, 'web-1');
    agent2Token = await createToken(db, 'web-2');
    adminToken = await createToken(db, 'ops', 'admin');
    c = await startCollector({ db });
  });

  afterAll(async () => {
    if (c.proc.exitCode === null) await c.stop('SIGKILL');
  });

  it('ldguard token: prints the token on stdout only, lists without it, revokes; the db is 0600 in a 0700 folder', async () => {
    const r = await cli(['token', 'create', '--db', db, '--name', 'tmp-1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ldg_[A-Za-z0-9_-]{43}\n$/);
    const token = r.stdout.trim();
    const list = await cli(['token', 'list', '--db', db]);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+ROLE\s+CREATED\s+REVOKED/);
    expect(list.stdout).toMatch(/tmp-1\s+agent\s+\d{4}-\d\d-\d\dT\S+\s+-/);
    expect(list.stdout).toMatch(/ops\s+admin/);
    expect(list.stdout).not.toContain(token);
    if (kind === 'sqlite') expect(readFileSync(db).includes(Buffer.from(token))).toBe(false);
    else expect(await queryOne(db, `SELECT count(*)::int AS n FROM tokens WHERE strpos(hash || name, '${token}') > 0`)).toEqual({ n: 0 });
    const dup = await cli(['token', 'create', '--db', db, '--name', 'tmp-1']);
    expect(dup.status).toBe(2);
    expect(dup.stderr).toMatch(/LDG_ERR_TOKEN_EXISTS.*ldguard token revoke --name tmp-1/);
    expect((await cli(['token', 'revoke', '--db', db, '--name', 'tmp-1'])).status).toBe(0);
    const json = (await cli(['token', 'list', '--db', db, '--json'])).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Log);
    expect(json.find((t) => t.name === 'tmp-1')!.revoked).toMatch(/^\d{4}-/);
    const again = await cli(['token', 'revoke', '--db', db, '--name', 'tmp-1']);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/LDG_ERR_TOKEN_UNKNOWN/);
    // The file's and its folder's modes: SQLite's (PostgreSQL keeps its own files).
    if (kind === 'sqlite') {
      expect(statSync(db).mode & 0o777).toBe(0o600);
      expect(statSync(dbDir).mode & 0o777).toBe(0o700);
    }
  });

  it('refuses unknown, revoked, admin or missing tokens at the upgrade with 401 and closes the socket', async () => {
    const revoked = await createToken(db, 'gone');
    await cli(['token', 'revoke', '--db', db, '--name', 'gone']);
    const before = c.logs.filter((l) => l.msg === 'agent refused at the upgrade (401)').length;
    const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer ldg_unknown' }, { authorization: `Bearer ${adminToken}` }, { authorization: `Bearer ${revoked}` }, { authorization: `Basic ${agentToken}` }];
    for (const headers of attempts) {
      const r = await upgradeStatus(c.port, headers);
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(await r.socketClosed).toBe(true);
    }
    await waitFor(() => c.logs.filter((l) => l.msg === 'agent refused at the upgrade (401)').length === before + 5, 2000, 'five refusal log lines');
    expect(c.logs.some((l) => l.reason === 'revoked token "gone"')).toBe(true);
    expect((await upgradeStatus(c.port, { authorization: `Bearer ${agentToken}` })).status).toBe(101);
  });

  it('delivers alerts through the spool and stores each once; acks empty the spool', async () => {
    const sink = await openSink(c.port, await createToken(db, 'basic-host'), { agentId: 'agent-basic', host: 'basic-host' });
    const alerts = Array.from({ length: 300 }, () => makeAlert({ host: 'basic-host' }));
    await Promise.all(alerts.map((a) => sink.send(a)));
    expect(await sink.drained(10_000)).toBe(true);
    const h = sink.health();
    expect(h).toMatchObject({ connected: true, overflow: 0, lastError: null });
    expect(h.spool.depth).toBe(0);
    expect(h.lastAckSeq).toBe(300);
    const got = await api(c.port, '/api/alerts?host=basic-host&limit=1000', adminToken);
    expect(got.status).toBe(200);
    expect(got.body.alerts).toHaveLength(300);
    expect(new Set(got.body.alerts.map((a: Alert) => a.kibana.alert.uuid))).toEqual(new Set(alerts.map((a) => a.kibana.alert.uuid)));
    // The stored document is the ECS document the agent sent, with its authenticated sender merged in.
    const one = got.body.alerts.find((a: Alert) => a.kibana.alert.uuid === alerts[0]!.kibana.alert.uuid);
    const sent = alerts[0]!;
    expect(one).toEqual({ ...sent, agent: { ...sent.agent, id: 'agent-basic' }, ldguard: { ...sent.ldguard, received_from: { agent_id: 'agent-basic', token_name: 'basic-host' } } });
    await closeSink(sink);
  });

  describe('bad input from one agent: right close code, a log line, nothing stored, others unaffected', () => {
    let good: WebSocketSink;
    beforeAll(async () => {
      good = await openSink(c.port, agent2Token, { agentId: 'agent-good', host: 'good-host' });
    });
    afterAll(async () => {
      await closeSink(good);
    });

    async function goodStillServed(): Promise<void> {
      const a = makeAlert({ host: 'good-host' });
      await good.send(a);
      expect(await good.drained(5_000)).toBe(true);
      expect((await api(c.port, `/api/alerts/${a.kibana.alert.uuid}`, adminToken)).status).toBe(200);
    }

    const cases: Array<[string, (raw: Raw, uuids: string[]) => void, number, string | null, boolean]> = [
      ['a frame that is not JSON', (r) => r.ws.send('{"type":"alerts","v":1,"seq":1,"alerts":['), 1007, 'LDG_ERR_PROTO_JSON', true],
      ['a batch with a wrong envelope (an unknown field)', (r, u) => {
        r.ws.send(JSON.stringify({ type: 'alerts', v: 1, seq: 1, alerts: [makeAlert({ uuid: u[0] })], extra: 1 }));
      }, 1008, 'LDG_ERR_PROTO_SCHEMA', true],
      ['alerts before hello', (r, u) => r.ws.send(alertsFrame(1, [JSON.stringify(makeAlert({ uuid: u[0] }))])), 1008, 'LDG_ERR_PROTO_ORDER', false],
      ['a binary frame', (r) => r.ws.send(Buffer.from([1, 2, 3])), 1003, 'LDG_ERR_PROTO_BINARY', true],
      ['a frame over the size bound', (r, u) => {
        const big = makeAlert({ uuid: u[0] });
        big.process.command_line = 'x'.repeat(MAX_FRAME_BYTES);
        r.ws.send(alertsFrame(1, [JSON.stringify(big)]));
      }, 1009, null, true],
    ];

    it.each(cases)('%s', async (_name, sendBad, closeCode, errorCode, sayHello) => {
      const id = `raw-${randomUUID().slice(0, 6)}`;
      const raw = await rawAgent(c.port, await createToken(db, id));
      if (sayHello) raw.ws.send(hello(id));
      const uuids = [randomUUID(), randomUUID()];
      sendBad(raw, uuids);
      const closed = await raw.closed;
      expect(closed.code).toBe(closeCode);
      if (errorCode) {
        expect(raw.messages.at(-1)).toMatchObject({ type: 'error', v: 1, code: errorCode });
        await waitFor(() => c.logs.find((l) => l.code === errorCode && l.msg.startsWith('refused a message from an agent')), 2000, `log line for ${errorCode}`);
      } else {
        await waitFor(() => c.logs.find((l) => l.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'), 2000, 'log line for the oversized frame');
      }
      for (const u of uuids) expect((await api(c.port, `/api/alerts/${u}`, adminToken)).status).toBe(404);
      await goodStillServed();
    });

    it('closes a connection that never says hello (1008)', async () => {
      const raw = await rawAgent(c.port, agentToken);
      expect((await raw.closed).code).toBe(1008);
      expect(raw.messages.at(-1)).toMatchObject({ type: 'error', code: 'LDG_ERR_PROTO_ORDER' });
    });

    it('drops a half-open client that stops answering pings', async () => {
      const raw = await rawAgent(c.port, await createToken(db, 'raw-half-open'), { autoPong: false });
      raw.ws.send(hello('raw-half-open'));
      expect((await raw.closed).code).toBe(1006); // terminated, no close frame
      await waitFor(() => c.logs.find((l) => l.msg.startsWith('agent did not answer a ping')), 2000, 'half-open log line');
      await goodStillServed();
    });

    it('slows a flooding client down (rate limit) without dropping it or delaying others', async () => {
      const raw = await rawAgent(c.port, await createToken(db, 'raw-flood'));
      raw.ws.send(hello('raw-flood'));
      const hb = JSON.stringify({ type: 'heartbeat', v: 1, health: { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false } } });
      for (let i = 0; i < 3000; i++) raw.ws.send(hb);
      await goodStillServed();
      const m = await api(c.port, '/metrics');
      expect(metric(m.body as string, 'ldguard_collector_rate_limited_total')).toBeGreaterThan(0);
      expect(raw.ws.readyState).toBe(WebSocket.OPEN);
      raw.ws.close();
    });

    it('closes the connections of a token revoked while connected (4001)', async () => {
      const token = await createToken(db, 'doomed');
      const raw = await rawAgent(c.port, token);
      raw.ws.send(hello('raw-doomed'));
      await new Promise((r) => setTimeout(r, 200));
      expect((await cli(['token', 'revoke', '--db', db, '--name', 'doomed'])).status).toBe(0);
      const closed = await raw.closed;
      expect(closed.code).toBe(4001);
      expect(raw.messages.at(-1)).toMatchObject({ type: 'error', code: 'LDG_ERR_TOKEN_REVOKED' });
    });
  });


  describe('invalid alerts inside a valid batch: quarantined and acked, delivery goes on', () => {
    it('stores the valid ones, keeps the invalid and the oversized ones apart, names them in the ack, keeps the connection', async () => {
      const raw = await rawAgent(c.port, await createToken(db, 'raw-quarantine'));
      raw.ws.send(hello('raw-quarantine'));
      const good = makeAlert({ host: 'q-host', agentId: 'raw-quarantine' });
      const bad = makeAlert({ host: 'q-host', agentId: 'raw-quarantine' }) as unknown as Log;
      bad.kibana.alert.severity = 'urgent';
      const big = makeAlert({ host: 'q-host', agentId: 'raw-quarantine' });
      big.process.command_line = 'x'.repeat(MAX_ALERT_BYTES);
      raw.ws.send(alertsFrame(1, [JSON.stringify(good), JSON.stringify(bad), JSON.stringify(big)]));
      const ack = await waitFor(() => raw.messages.find((m) => m.type === 'ack'), 5_000, 'the ack');
      expect(ack.upTo).toBe(3);
      expect(ack.rejected).toEqual([
        { seq: 2, errors: [expect.stringMatching(/^alerts\[1\]\.kibana\.alert\.severity: expected one of low, medium, high, critical/)] },
        { seq: 3, errors: [expect.stringMatching(/^alert: \d+ bytes, over the 65536/)] },
      ]);
      expect(raw.ws.readyState).toBe(WebSocket.OPEN);
      expect((await api(c.port, `/api/alerts/${good.kibana.alert.uuid}`, adminToken)).status).toBe(200);
      for (const a of [bad, big] as Alert[]) expect((await api(c.port, `/api/alerts/${a.kibana.alert.uuid}`, adminToken)).status).toBe(404);
      // What follows on the same connection is stored as usual.
      const next = makeAlert({ host: 'q-host', agentId: 'raw-quarantine' });
      raw.ws.send(alertsFrame(4, [JSON.stringify(next)]));
      await waitFor(() => raw.messages.find((m) => m.type === 'ack' && m.upTo === 4), 5_000, 'the second ack');
      expect((await api(c.port, `/api/alerts/${next.kibana.alert.uuid}`, adminToken)).status).toBe(200);
      // The operator sees them: API (admin only), metrics, a log line.
      expect((await api(c.port, '/api/quarantine', agentToken)).status).toBe(401);
      const q = await api(c.port, '/api/quarantine?agent=raw-quarantine', adminToken);
      expect(q.status).toBe(200);
      expect(q.body.quarantine).toHaveLength(2);
      const b2 = (q.body.quarantine as Log[])[0]!;
      const b1 = (q.body.quarantine as Log[])[1]!;
      expect(b1).toMatchObject({ agentId: 'raw-quarantine', tokenName: 'raw-quarantine', seq: 2, uuid: bad.kibana.alert.uuid, truncated: false });
      expect(b1.reason).toMatch(/severity: expected one of/);
      expect(JSON.parse(b1.text)).toEqual(bad);
      expect(b2).toMatchObject({ seq: 3, uuid: big.kibana.alert.uuid, truncated: true });
      expect(b2.text.length).toBe(16 * 1024);
      expect(b2.size).toBeGreaterThan(MAX_ALERT_BYTES);
      const m = (await api(c.port, '/metrics')).body as string;
      expect(metric(m, 'ldguard_collector_alerts_quarantined_total')).toBeGreaterThanOrEqual(2);
      expect(metric(m, 'ldguard_collector_quarantine_alerts')).toBeGreaterThanOrEqual(2);
      expect(c.logs.some((l) => l.agentId === 'raw-quarantine' && String(l.msg).startsWith('invalid alerts in a batch: quarantined'))).toBe(true);
      raw.ws.close();
    });

    it('an invalid record in an agent\'s spool no longer stalls it: acked, counted in its health, the alerts after it delivered', async () => {
      const spoolDir = join(work, `spool-invalid-${kind}`);
      const spool = await Spool.open({ dir: spoolDir, maxBytes: 1 << 20 });
      const before = makeAlert({ host: 'stall-host', agentId: 'agent-stall' });
      const broken = makeAlert({ host: 'stall-host', agentId: 'agent-stall' }) as unknown as Log;
      delete broken.kibana.alert.rule.rule_id; // as an older or buggy agent might have spooled it
      const after = Array.from({ length: 5 }, () => makeAlert({ host: 'stall-host', agentId: 'agent-stall' }));
      for (const a of [before, broken, ...after]) await spool.append(JSON.stringify(a));
      await spool.close();
      const { logger, lines } = captureLog();
      const sink = await openSink(c.port, await createToken(db, 'stall-host'), { spoolDir, agentId: 'agent-stall', logger, heartbeatMs: 200 });
      expect(await sink.drained(5_000)).toBe(true);
      expect(sink.health()).toMatchObject({ rejected: 1, lastAckSeq: 7 });
      expect(lines.some((l) => String(l.msg).startsWith('the collector quarantined invalid alerts'))).toBe(true);
      const stored = ((await api(c.port, '/api/alerts?host=stall-host', adminToken)).body.alerts as Alert[]).map((a) => a.kibana.alert.uuid);
      expect(new Set(stored)).toEqual(new Set([before, ...after].map((a) => a.kibana.alert.uuid)));
      const q = (await api(c.port, '/api/quarantine?agent=agent-stall', adminToken)).body.quarantine as Log[];
      expect(q).toMatchObject([{ seq: 2, uuid: broken.kibana.alert.uuid }]);
      expect(q[0]!.reason).toMatch(/rule_id: expected a string/);
      // The count reaches the collector in the agent's heartbeats.
      await waitFor(async () => {
        const agents = (await api(c.port, '/api/agents', adminToken)).body.agents as Log[];
        return agents.find((a) => a.agentId === 'agent-stall')?.health?.alertsRejected === 1;
      }, 5_000, 'a heartbeat reporting alertsRejected = 1');
      await closeSink(sink);
    });
  });

  describe('one token per agent id', () => {
    it('binds a token to the first agent id that says hello with it and refuses another id (4002), naming the fix', async () => {
      const token = await createToken(db, 'bound-host');
      const first = await openSink(c.port, token, { agentId: 'agent-bound', host: 'bound-host' });
      await first.send(makeAlert({ host: 'bound-host' }));
      expect(await first.drained(5_000)).toBe(true);
      expect(await queryOne(db, "SELECT agent_id AS a FROM tokens WHERE name = 'bound-host'")).toEqual({ a: 'agent-bound' });

      const impostor = await rawAgent(c.port, token);
      impostor.ws.send(hello('agent-impostor'));
      const uuid = randomUUID();
      impostor.ws.send(alertsFrame(1, [JSON.stringify(makeAlert({ uuid, host: 'bound-host' }))]));
      const closed = await impostor.closed;
      expect(closed.code).toBe(4002);
      const err = impostor.messages.find((m) => m.type === 'error')!;
      expect(err).toMatchObject({ code: 'LDG_ERR_TOKEN_AGENT' });
      expect(err.message).toMatch(/token "bound-host" belongs to agent agent-bound, not agent-impostor.*ldguard token create --name HOST --role agent/);
      expect((await api(c.port, `/api/alerts/${uuid}`, adminToken)).status).toBe(404);
      const agents = (await api(c.port, '/api/agents', adminToken)).body.agents as Log[];
      expect(agents.some((a) => a.agentId === 'agent-impostor')).toBe(false);
      await waitFor(() => c.logs.find((l) => l.code === 'LDG_ERR_TOKEN_AGENT'), 2_000, 'a log line naming LDG_ERR_TOKEN_AGENT');
      expect(metric((await api(c.port, '/metrics')).body as string, 'ldguard_collector_agent_id_mismatch_total')).toBeGreaterThanOrEqual(1);

      // The agent the token belongs to is served as before, on a new connection too.
      await closeSink(first);
      const again = await openSink(c.port, token, { agentId: 'agent-bound', host: 'bound-host' });
      await again.send(makeAlert({ host: 'bound-host' }));
      expect(await again.drained(5_000)).toBe(true);
      await closeSink(again);

      // Two fresh-token hellos with different ids at once: the first binds, the second is refused.
      const fresh = await createToken(db, 'race-host');
      const racers = await Promise.all([rawAgent(c.port, fresh), rawAgent(c.port, fresh)]);
      racers.forEach((r, i) => r.ws.send(hello(`agent-race-${i}`)));
      const loser = await Promise.race(racers.map((r) => r.closed.then((cl) => ({ r, cl }))));
      expect(loser.cl.code).toBe(4002);
      await new Promise((r) => setTimeout(r, 300));
      const winner = racers.find((r) => r !== loser.r)!;
      expect(winner.ws.readyState).toBe(WebSocket.OPEN);
      winner.ws.close();
    });
  });

  describe('HTTP API', () => {
    const t0 = Date.now();
    const seeded: Alert[] = [
      makeAlert({ host: 'api-a', severity: 'low', time: new Date(t0 - 5 * 3600e3).toISOString() }),
      makeAlert({ host: 'api-a', severity: 'high', time: new Date(t0 - 3 * 3600e3).toISOString(), ruleId: 'rule-x' }),
      makeAlert({ host: 'api-b', severity: 'critical', time: new Date(t0 - 3600e3).toISOString() }),
      makeAlert({ host: 'api-b', severity: 'medium', time: new Date(t0 - 1800e3).toISOString(), ruleId: 'rule-x' }),
      makeAlert({ host: 'api-a', severity: 'low', time: new Date(t0 - 600e3).toISOString() }),
      makeAlert({ host: 'api-b', severity: 'high', time: new Date(t0 - 1e3).toISOString() }),
    ];
    const ids = (body: { alerts: Alert[] }) => body.alerts.map((a) => a.kibana.alert.uuid);
    const uuid = (i: number) => seeded[i]!.kibana.alert.uuid;
    let sink: WebSocketSink;

    beforeAll(async () => {
      sink = await openSink(c.port, await createToken(db, 'api-host'), { agentId: 'agent-api', host: 'api-host', heartbeatMs: 200 });
      for (const a of seeded) await sink.send(a);
      expect(await sink.drained(5_000)).toBe(true);
    });

    it('needs an admin token on /api (401 otherwise), not on /healthz and /metrics', async () => {
      for (const token of [undefined, 'ldg_nope', agentToken]) {
        const r = await api(c.port, '/api/alerts', token);
        expect(r.status).toBe(401);
        expect(r.body.error.code).toBe('LDG_ERR_AUTH');
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      }
      expect((await api(c.port, '/api/agents')).status).toBe(401);
      expect((await api(c.port, '/api/alerts', adminToken)).status).toBe(200);
      const hz = await api(c.port, '/healthz');
      expect(hz).toMatchObject({ status: 200, body: { status: 'ok', db: 'ok' } });
      const m = await api(c.port, '/metrics');
      expect(m.status).toBe(200);
      expect(m.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(metric(m.body as string, 'ldguard_collector_alerts_stored_total')).toBeGreaterThanOrEqual(seeded.length);
      expect(metric(m.body as string, 'ldguard_collector_auth_failures_total')).toBeGreaterThan(0);
      expect(m.body).toMatch(/^ldguard_collector_messages_rejected_total\{reason="schema"\} [1-9]/m);
    });

    it('lists newest first with filters and keyset paging', async () => {
      const q = async (query: string) => {
        const r = await api(c.port, `/api/alerts?${query}`, adminToken);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        return r.body as { alerts: Alert[]; next: string | null };
      };
      expect(ids(await q('host=api-a'))).toEqual([uuid(4), uuid(1), uuid(0)]);
      expect(ids(await q('host=api-b&severity=high,critical'))).toEqual([uuid(5), uuid(2)]);
      expect(ids(await q('rule=rule-x'))).toEqual([uuid(3), uuid(1)]);
      expect(ids(await q('host=api-a&since=2h'))).toEqual([uuid(4)]);
      expect(ids(await q(`host=api-b&since=${encodeURIComponent(new Date(t0 - 7200e3).toISOString())}`))).toEqual([uuid(5), uuid(3), uuid(2)]);
      expect(ids(await q('host=api-a&status=open'))).toEqual([uuid(4), uuid(1), uuid(0)]);
      // Keyset paging, two at a time, by "next".
      for (const [host, order] of [['api-a', [4, 1, 0]], ['api-b', [5, 3, 2]]] as const) {
        const p1 = await q(`host=${host}&limit=2`);
        expect(ids(p1)).toEqual([uuid(order[0]), uuid(order[1])]);
        expect(p1.next).toMatch(/^\d+\.\d+$/);
        const p2 = await q(`host=${host}&limit=2&before=${p1.next}`);
        expect(ids(p2)).toEqual([uuid(order[2])]);
        expect(p2.next).toBeNull();
        // The uuid of a page's last alert, as schema 1 gave for "next", is still taken.
        expect(ids(await q(`host=${host}&limit=2&before=${uuid(order[1])}`))).toEqual([uuid(order[2])]);
      }
    });

    // The host index is SQLite's (collector.hosts.db, kept behind ingest); PostgreSQL indexes (host, ts) in the table.
    it.skipIf(kind === 'postgres')('filters by host the same whether the host index has caught up or not, merging across its cursor', async () => {
      const q = async (query: string) => ((await api(c.port, `/api/alerts?${query}`, adminToken)).body as { alerts: Alert[]; next: string | null });
      // The host index (collector.hosts.db) is filled behind ingest; the newest alerts past its
      // cursor are found by a scan of the alerts table. Walk all pages of one at a time.
      const walk = async (host: string) => {
        const out: string[] = [];
        let next: string | null = null;
        do {
          const p = await q(`host=${host}&limit=1${next ? `&before=${next}` : ''}`);
          out.push(...ids(p));
          next = p.next;
        } while (next);
        return out;
      };
      const caughtUp = () => {
        const main = new Database(db, { readonly: true });
        const hx = new Database(join(dbDir, 'collector.hosts.db'), { readonly: true });
        try {
          const max = (main.prepare('SELECT max(id) AS m FROM alerts').get() as { m: number }).m;
          const cur = (hx.prepare("SELECT coalesce(max(value), 0) AS c FROM state WHERE key = 'cursor'").get() as { c: number }).c;
          return cur >= max;
        } finally {
          main.close();
          hx.close();
        }
      };
      await waitFor(caughtUp, 5000, 'the host index to catch up');
      expect(await walk('api-a')).toEqual([uuid(4), uuid(1), uuid(0)]);
      // One newer than all and one older than all (a late sender), past the index's cursor for now.
      const late = [makeAlert({ host: 'api-a', time: new Date(t0 - 100e3).toISOString() }), makeAlert({ host: 'api-a', time: new Date(t0 - 9 * 3600e3).toISOString() })];
      for (const a of late) await sink.send(a);
      expect(await sink.drained(5_000)).toBe(true);
      const want = [late[0]!.kibana.alert.uuid, uuid(4), uuid(1), uuid(0), late[1]!.kibana.alert.uuid];
      expect(await walk('api-a')).toEqual(want);
      await waitFor(caughtUp, 5000, 'the host index to catch up');
      expect(await walk('api-a')).toEqual(want);
      expect(ids(await q('host=api-a&since=2h'))).toEqual([late[0]!.kibana.alert.uuid, uuid(4)]);
    });

    it('refuses bad queries with 400 and a message that says what to send', async () => {
      for (const [query, pattern] of [['limit=0', /limit=0/], ['severity=urgent', /severity=urgent is not one of/], ['colour=red', /unknown parameter colour/], ['since=yesterday', /since=yesterday/]] as const) {
        const r = await api(c.port, `/api/alerts?${query}`, adminToken);
        expect(r.status, query).toBe(400);
        expect(r.body.error.message).toMatch(pattern);
      }
      expect((await api(c.port, '/api/alerts?before=no-such-alert', adminToken)).status).toBe(404);
    });

    it('changes an alert\'s workflow status, recording who and when', async () => {
      const r = await api(c.port, `/api/alerts/${uuid(2)}`, adminToken, { method: 'PATCH', body: { status: 'acknowledged' } });
      expect(r.status).toBe(200);
      expect(r.body.alert.kibana.alert).toMatchObject({ workflow_status: 'acknowledged', workflow_user: 'ops' });
      expect(Date.now() - Date.parse(r.body.alert.kibana.alert.workflow_status_updated_at)).toBeLessThan(60_000);
      expect(ids((await api(c.port, '/api/alerts?status=acknowledged', adminToken)).body)).toEqual([uuid(2)]);
      expect((await api(c.port, `/api/alerts/${uuid(2)}`, adminToken)).body.alert.kibana.alert.workflow_status).toBe('acknowledged');
      expect((await api(c.port, `/api/alerts/${uuid(2)}`, adminToken, { method: 'PATCH', body: { status: 'done' } })).status).toBe(400);
      expect((await api(c.port, `/api/alerts/${uuid(2)}`, adminToken, { method: 'PATCH', body: '{nope' })).status).toBe(400);
      expect((await api(c.port, '/api/alerts/nope', adminToken, { method: 'PATCH', body: { status: 'closed' } })).status).toBe(404);
      expect((await api(c.port, `/api/alerts/${uuid(2)}`, agentToken, { method: 'PATCH', body: { status: 'closed' } })).status).toBe(401);
    });

    it('lists agents with their facts and health, and marks one offline after missed heartbeats', async () => {
      const agentView = async (id: string) => ((await api(c.port, '/api/agents', adminToken)).body.agents as Log[]).find((a) => a.agentId === id);
      // The alerts of the tests above may still be in flight at the first heartbeat: wait for one
      // that reports the spool drained.
      const a = await waitFor(async () => {
        const v = await agentView('agent-api');
        return v?.health && v.spoolDepth === 0 ? v : undefined;
      }, 5000, 'a heartbeat from agent-api with its spool drained');
      expect(a).toMatchObject({ hostname: 'api-host', version: '0.1.0', tokenName: 'api-host', online: true, connected: true, spoolDepth: 0, heartbeatMs: 200 });
      expect(a.facts.source).toEqual({ name: 'fanotify', degraded: false });
      expect(a.health).toMatchObject({ spoolDepth: 0, spoolOverflow: 0, eventsLost: 0 });
      await closeSink(sink);
      const off = await waitFor(async () => {
        const v = await agentView('agent-api');
        return v && !v.online ? v : undefined;
      }, 5000, 'agent-api marked offline');
      expect(off.connected).toBe(false);
      // Alone, or in one line with other agents that went in the same sweep.
      const named = (l: Log) =>
        (l.msg === 'agent offline: missed its heartbeats' && l.agentId === 'agent-api') ||
        (typeof l.msg === 'string' && l.msg.startsWith('agent offline: several') && (l.sample as Log[]).some((s) => s.agentId === 'agent-api'));
      expect(c.logs.some(named)).toBe(true);
    });
  });

  it('resumes from the spool after its torn last record is cut, delivering the rest', async () => {
    const spoolDir = join(work, `spool-torn-${kind}`);
    const nowhere = await freePort();
    const tornToken = await createToken(db, 'torn-host');
    const offline = await openSink(nowhere, tornToken, { spoolDir, agentId: 'agent-torn' });
    const alerts = Array.from({ length: 10 }, () => makeAlert({ host: 'torn-host' }));
    for (const a of alerts) await offline.send(a);
    expect(offline.health().connected).toBe(false);
    await closeSink(offline);
    const seg = readdirSync(spoolDir).filter((n) => n.endsWith('.seg')).sort().at(-1)!;
    truncateSync(join(spoolDir, seg), statSync(join(spoolDir, seg)).size - 5);
    const { logger, lines } = captureLog();
    const sink = await openSink(c.port, tornToken, { spoolDir, agentId: 'agent-torn', logger });
    expect(await sink.drained(5_000)).toBe(true);
    expect(sink.health().spool.torn).toBe(1);
    expect(lines.some((l) => String(l.msg).startsWith('torn spool record skipped'))).toBe(true);
    const stored = ids((await api(c.port, '/api/alerts?host=torn-host', adminToken)).body);
    expect(new Set(stored)).toEqual(new Set(alerts.slice(0, 9).map((a) => a.kibana.alert.uuid)));
    await closeSink(sink);

    function ids(body: { alerts: Alert[] }) {
      return body.alerts.map((a) => a.kibana.alert.uuid);
    }
  });

  it('stops cleanly on SIGTERM: exit 0, "stopped" logged', async () => {
    const code = await c.stop('SIGTERM');
    expect(code).toBe(0);
    expect(c.logs.at(-1)?.msg).toBe('stopped');
  });
});

/** One row of a query on either store. */
async function queryOne(db: string, sql: string): Promise<unknown> {
  if (db.startsWith('postgres://')) {
    const c = new pg.Client({ connectionString: db });
    await c.connect();
    try {
      return (await c.query(sql)).rows[0];
    } finally {
      await c.end();
    }
  }
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).get();
  } finally {
    d.close();
  }
}

/** Every stored alert's uuid, from either store. */
async function storedUuids(db: string): Promise<string[]> {
  if (db.startsWith('postgres://')) {
    const c = new pg.Client({ connectionString: db });
    await c.connect();
    try {
      return (await c.query<{ uuid: string }>('SELECT uuid FROM alerts')).rows.map((r) => r.uuid);
    } finally {
      await c.end();
    }
  }
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('SELECT uuid FROM alerts').all() as Array<{ uuid: string }>).map((r) => r.uuid);
  } finally {
    d.close();
  }
}

// On both stores (PostgreSQL: a throwaway cluster, helpers/postgres.ts): exactly-once is each
// store's constraint, and a restarted collector must find what its predecessor committed.
describe.each(['sqlite', 'postgres'] as const)('exactly once across kill -9 of the collector (%s)', (kind) => {
  let pgc: TestPostgres | undefined;
  beforeAll(async () => {
    if (kind === 'postgres' && !noPostgres) pgc = await startPostgres();
  }, 60_000);

  it.skipIf(kind === 'postgres' && noPostgres)('mid-stream: the sink keeps sending, the restarted collector stores every alert once', async () => {
    const db = kind === 'sqlite' ? join(work, 'kill-collector', 'c.db') : await pgc!.createDb('kill_collector');
    const token = await createToken(db, 'k1');
    let col = await startCollector({ db });
    const port = col.port;
    const sink = await openSink(port, token, { agentId: 'agent-k1' });
    const N = 3000;
    const sent: string[] = [];
    let killed = false;
    for (let i = 0; i < N; i++) {
      const a = makeAlert({ host: 'kill-host' });
      sent.push(a.kibana.alert.uuid);
      await sink.send(a);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
      if (i === 1000) {
        expect(await col.stop('SIGKILL')).toBeNull();
        killed = true;
      }
      if (i === 1800) col = await startCollector({ db, port });
    }
    expect(killed).toBe(true);
    expect(await sink.drained(20_000)).toBe(true);
    expect(sink.health().reconnects).toBeGreaterThan(0);
    const got = await storedUuids(db);
    expect({ count: got.length, distinct: new Set(got).size }).toEqual({ count: N, distinct: N });
    const stored = new Set(got);
    expect(sent.every((u) => stored.has(u))).toBe(true);
    await closeSink(sink);
    await col.stop();
  });
});

describe('exactly once across kill -9', () => {
  it('of the agent (a child process using the sink) mid-stream: the restarted agent resends, every alert stored once', async () => {
    const db = join(work, 'kill-agent', 'c.db');
    const token = await createToken(db, 'k2');
    const col = await startCollector({ db });
    const spoolDir = join(work, 'kill-agent', 'spool');
    const script = join(work, 'agent-child.mjs');
    const root = findRepoRoot();
    writeFileSync(script, `
      import { WebSocketSink } from '${root}/dist/agent/src/sink/websocket.js';
      const [url, token, spoolDir, from, to] = process.argv.slice(2);
      const facts = () => ({ agentId: 'agent-k2', version: '0.1.0', hostname: 'k2', host: {}, rules: { count: 1, ids: ['r'] },
        source: { name: 'fanotify', degraded: false }, attribution: { degraded: false } });
      const sink = await WebSocketSink.open({ url, token, spoolDir, spoolMaxBytes: 64 << 20, facts, backoffInitialMs: 50, backoffMaxMs: 300 });
      const alert = JSON.parse(process.env.ALERT);
      for (let i = Number(from); i < Number(to); i++) {
        const id = '00000000-0000-5000-8000-' + String(i).padStart(12, '0');
        await sink.send({ ...alert, kibana: { alert: { ...alert.kibana.alert, uuid: id } } });
        process.stdout.write(i + '\\n');
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 5));
      }
      const ok = await sink.drained(20000);
      await sink.close();
      process.stdout.write(ok ? 'drained\\n' : 'not drained\\n');
    `);
    const N = 2000;
    // Both runs build alert i from the same template: a resend is the same alert (same event time).
    const template = JSON.stringify(makeAlert({ host: 'k2', agentId: 'agent-k2' }));
    const run = (from: number) => {
      const p = spawn(process.execPath, [script, `ws://127.0.0.1:${col.port}`, token, spoolDir, String(from), String(N)], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, ALERT: template },
      });
      procs.add(p);
      const out: string[] = [];
      let buf = '';
      p.stdout!.on('data', (d) => {
        buf += String(d);
        const parts = buf.split('\n');
        buf = parts.pop()!;
        out.push(...parts);
      });
      const exit = new Promise<number | null>((r) => p.on('exit', (code) => {
        procs.delete(p);
        r(code);
      }));
      return { p, out, exit };
    };
    const first = run(0);
    await waitFor(() => first.out.length >= 700, 20_000, 'the first agent to spool 700 alerts');
    first.p.kill('SIGKILL');
    await first.exit;
    // Everything it printed was fsync'd in its spool; what it did after may or may not be: the
    // second run sends from the next one on, and the collector ignores duplicates.
    const last = Number(first.out.filter((l) => /^\d+$/.test(l)).at(-1));
    const second = run(last + 1);
    expect(await second.exit).toBe(0);
    expect(second.out.at(-1)).toBe('drained');
    expect(storedCount(db)).toEqual({ count: N, distinct: N });
    await col.stop();
  });
});

describe('agents going offline together', () => {
  it('are logged in one line per sweep with a count and a few names, not one line each', async () => {
    const db = join(work, 'offline', 'c.db');
    // A slow sweep, so that all of them are found overdue by the same one.
    const col = await startCollector({ db, config: writeConfig('offline', 'sweep_interval_ms = 1500\n') });
    const n = 8;
    // Every token first: each is a CLI run, and a connection made while the others are still being
    // created could pass hello_timeout_ms (1.5 s) before the hellos below are sent.
    const tokens = await Promise.all(Array.from({ length: n }, (_, i) => createToken(db, `off-${i}`)));
    const raws = await Promise.all(tokens.map((t) => rawAgent(col.port, t)));
    raws.forEach((r, i) => r.ws.send(JSON.stringify({ type: 'hello', v: 1, agent: makeFacts(`agent-off-${i}`, `off-host-${i}`), heartbeatMs: 100 })));
    await new Promise((r) => setTimeout(r, 200));
    for (const r of raws) r.ws.close();
    const line = await waitFor(() => col.logs.find((l) => String(l.msg).startsWith('agent offline')), 5_000, 'an offline line');
    expect(line).toMatchObject({ msg: 'agent offline: several agents missed their heartbeats (GET /api/agents lists them)', count: n, more: n - 5 });
    expect(line.sample).toHaveLength(5);
    expect(line.sample[0]).toMatchObject({ agentId: expect.stringMatching(/^agent-off-\d$/), hostname: expect.stringMatching(/^off-host-\d$/) });
    await new Promise((r) => setTimeout(r, 1_600)); // one more sweep: nothing is logged twice
    expect(col.logs.filter((l) => String(l.msg).startsWith('agent offline'))).toHaveLength(1);
    const admin = await createToken(db, 'off-admin', 'admin');
    const agents = (await api(col.port, '/api/agents', admin)).body.agents as Log[];
    expect(agents.filter((a) => a.agentId.startsWith('agent-off-') && !a.online)).toHaveLength(n);
    await col.stop();
  });
});

describe('pings', () => {
  it('reach each agent once per ping interval, however few the agents', async () => {
    const db = join(work, 'pings', 'c.db');
    // 3 s: three ticks of a second a round. A round that ended once every agent had been pinged
    // pinged a lone agent every tick.
    const col = await startCollector({ db, config: writeConfig('pings', 'ping_interval_ms = 3000\n') });
    const raw = await rawAgent(col.port, await createToken(db, 'pinged'));
    let pings = 0;
    raw.ws.on('ping', () => (pings += 1));
    raw.ws.send(hello('pinged'));
    await new Promise((r) => setTimeout(r, 3_600));
    expect(pings).toBeGreaterThanOrEqual(1);
    expect(pings).toBeLessThanOrEqual(2);
    raw.ws.close();
    await col.stop();
  });
});

describe('a database written by schema 1', () => {
  it('is upgraded in place at start: alerts, ids, history and tokens kept; a resend of an old alert is still stored once', async () => {
    const dir = join(work, 'schema1');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const db = join(dir, 'c.db');
    const token = `ldg_${randomUUID().replace(/-/g, '')}`;
    const old = Array.from({ length: 3 }, (_, i) => makeAlert({ host: 'old-host', agentId: 'agent-old', time: new Date(Date.now() - (3 - i) * 60_000).toISOString() }));
    const d = new Database(db);
    d.pragma('page_size = 16384');
    d.pragma('journal_mode = WAL');
    // Schema 1 as shipped: alerts unique by uuid, tokens without agent_id.
    d.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES ('schema', '1');
      CREATE TABLE alerts (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, host TEXT, rule_id TEXT NOT NULL,
        rule_name TEXT, severity TEXT NOT NULL, status TEXT NOT NULL, status_by TEXT, status_at INTEGER, agent_id TEXT NOT NULL,
        token_name TEXT NOT NULL, received INTEGER NOT NULL, doc TEXT NOT NULL);
      CREATE INDEX alerts_ts ON alerts (ts DESC, id DESC);
      CREATE INDEX alerts_host_ts ON alerts (host, ts DESC, id DESC);
      CREATE TABLE agents (agent_id TEXT PRIMARY KEY, hostname TEXT, version TEXT, token_name TEXT, heartbeat_ms INTEGER, facts TEXT,
        health TEXT, spool_depth INTEGER, events_lost INTEGER, spool_overflow INTEGER, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 1);
      CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('agent', 'admin')), created INTEGER NOT NULL, revoked INTEGER);
      CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked IS NULL;
      CREATE INDEX alerts_triaged ON alerts (status, ts DESC, id DESC) WHERE status <> 'open';
      CREATE TABLE alert_history (alert_id INTEGER NOT NULL, status TEXT NOT NULL, by TEXT, at INTEGER NOT NULL);
      CREATE INDEX alert_history_alert ON alert_history (alert_id, at);
      CREATE TRIGGER alerts_status_history AFTER UPDATE OF status ON alerts WHEN old.status IS NOT new.status
      BEGIN INSERT INTO alert_history (alert_id, status, by, at) VALUES (new.id, new.status, new.status_by, new.status_at); END;
    `);
    d.prepare("INSERT INTO tokens (hash, name, role, created) VALUES (?, 'old-host', 'agent', ?)").run(createHash('sha256').update(token).digest('hex'), Date.now());
    const ins = d.prepare(`INSERT INTO alerts (id, uuid, ts, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
      VALUES (?, ?, ?, 'old-host', ?, 'Rule', 'low', 'open', 'agent-old', 'old-host', ?, ?)`);
    old.forEach((a, i) => ins.run(100 + i, a.kibana.alert.uuid, Date.parse(a['@timestamp']), a.kibana.alert.rule.rule_id, Date.now(), JSON.stringify(a)));
    d.prepare("UPDATE alerts SET status = 'closed', status_by = 'ops', status_at = 1 WHERE id = 100").run();
    d.close();

    const col = await startCollector({ db });
    expect(col.logs.some((l) => String(l.msg).startsWith(`database upgraded from schema 1 to ${SCHEMA_VERSION}`))).toBe(true);
    // The old agent resends its last alert (as after a crash) and sends a new one.
    const sink = await openSink(col.port, token, { agentId: 'agent-old', host: 'old-host' });
    await sink.send(old[2]!);
    const fresh = makeAlert({ host: 'old-host' });
    await sink.send(fresh);
    expect(await sink.drained(5_000)).toBe(true);
    await closeSink(sink);
    expect(storedCount(db)).toEqual({ count: 4, distinct: 4 });
    const r = new Database(db, { readonly: true });
    expect(r.prepare("SELECT value FROM meta WHERE key = 'schema'").get()).toEqual({ value: String(SCHEMA_VERSION) });
    expect(r.prepare('SELECT id FROM alerts WHERE uuid = ?').get(old[0]!.kibana.alert.uuid)).toEqual({ id: 100 });
    expect(r.prepare('SELECT status FROM alert_history WHERE alert_id = 100').all()).toEqual([{ status: 'closed' }]);
    expect(r.prepare("SELECT agent_id AS a FROM tokens WHERE name = 'old-host'").get()).toEqual({ a: 'agent-old' });
    expect(r.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' AND sql LIKE '%UNIQUE%' AND tbl_name = 'alerts'").get()).toEqual({ n: 1 });
    r.close();
    // The workflow trigger still records changes after the rebuild.
    const admin = await createToken(db, 'old-admin', 'admin');
    expect((await api(col.port, `/api/alerts/${old[1]!.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { status: 'acknowledged' } })).status).toBe(200);
    const h = new Database(db, { readonly: true });
    expect(h.prepare('SELECT status, by FROM alert_history WHERE alert_id = 101').all()).toEqual([{ status: 'acknowledged', by: 'old-admin' }]);
    h.close();
    await col.stop();
  });
});

describe('past capacity', () => {
  it('pushes back (stops reading, acks later) instead of falling over, and delivers everything', async () => {
    const db = join(work, 'pushback', 'c.db');
    // A tiny ingest queue: nearly every batch pauses its connection until a commit drains it; and
    // a rate limit each agent passes (1500 alerts at once against 300/s with a burst of 1000).
    // The agents spool their alerts before the collector is up, so each arrives with a backlog.
    const port = await freePort();
    const agents = await Promise.all([1, 2, 3].map(async (i) => openSink(port, await createToken(db, `pb-${i}`), { agentId: `agent-pb-${i}` })));
    const N = 1500;
    await Promise.all(agents.flatMap((s) => Array.from({ length: N }, () => s.send(makeAlert({ host: 'pb-host' })))));
    const col = await startCollector({ db, port, config: writeConfig('pushback', 'ingest_high_water = 30\nrate_alerts_per_sec = 300\nrate_alerts_burst = 1000\n') });
    for (const s of agents) expect(await s.drained(20_000)).toBe(true);
    expect(storedCount(db)).toEqual({ count: 3 * N, distinct: 3 * N });
    const m = (await api(col.port, '/metrics')).body as string;
    expect(metric(m, 'ldguard_collector_rate_limited_total')).toBeGreaterThan(0);
    expect(metric(m, 'ldguard_collector_ingest_paused_total')).toBeGreaterThan(0);
    for (const s of agents) await closeSink(s);
    expect(await col.stop()).toBe(0);
  });
});

describe('wss:// with a private CA and client certificates', () => {
  const dir = join(work, 'pki');
  const ok = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!ok)('delivers with ca_file and a client certificate; names the fix without them', async () => {
    mkdirSync(dir, { recursive: true });
    const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    sh(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ldguard test CA']);
    const leaf = (name: string, ext: string) => {
      sh(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
      writeFileSync(join(dir, `${name}.ext`), ext);
      sh(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
    };
    leaf('server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    leaf('client', 'extendedKeyUsage=clientAuth\n');
    const db = join(work, 'tls', 'c.db');
    const token = await createToken(db, 'tls-agent');
    const config = writeConfig('tls', `tls_cert = "${dir}/server.pem"\ntls_key = "${dir}/server.key"\ntls_client_ca = "${dir}/ca.pem"\ntls_require_client_cert = true\n`);
    const col = await startCollector({ db, config });
    expect(col.logs.find((l) => l.msg === 'ready')).toMatchObject({ tls: true });

    const good = await openSink(col.port, token, { scheme: 'wss', caFile: `${dir}/ca.pem`, certFile: `${dir}/client.pem`, keyFile: `${dir}/client.key` });
    const a = makeAlert({ host: 'tls-host' });
    await good.send(a);
    expect(await good.drained(5_000)).toBe(true);
    expect(storedCount(db).count).toBe(1);
    await closeSink(good);

    const noCa = await openSink(col.port, token, { scheme: 'wss' });
    await waitFor(() => noCa.health().lastError, 5_000, 'a certificate error');
    expect(noCa.health().lastError).toMatch(/not trusted; set ca_file/);
    await closeSink(noCa);

    const noCert = await openSink(col.port, token, { scheme: 'wss', caFile: `${dir}/ca.pem` });
    await noCert.send(makeAlert({ host: 'tls-host' }));
    await waitFor(() => noCert.health().lastError, 5_000, 'a handshake error');
    expect(noCert.health().connected).toBe(false);
    await closeSink(noCert);
    expect(storedCount(db).count).toBe(1);
    // Forward-secret suites only: a TLS 1.2 client offering static RSA (AES128-SHA, which Node's
    // default list offered) gets no handshake; the same client with ECDHE gets one.
    const handshake = (ciphers: string) => new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: col.port, ca: readFileSync(`${dir}/ca.pem`), cert: readFileSync(`${dir}/client.pem`), key: readFileSync(`${dir}/client.key`), servername: 'localhost', maxVersion: 'TLSv1.2', ciphers });
      s.once('secureConnect', () => { resolve(s.getCipher().name); s.destroy(); });
      s.once('error', (e: Error & { code?: string }) => resolve(`error ${e.code ?? e.message}`));
    });
    expect(await handshake('AES128-SHA')).toMatch(/^error /);
    expect(await handshake('ECDHE-RSA-AES128-GCM-SHA256')).toBe('ECDHE-RSA-AES128-GCM-SHA256');
    await col.stop();
  });
});

describe('ldguard tail and the local socket', () => {
  const run = join(work, 'run');
  const socket = join(run, 'agent.sock');
  let local: LocalSink;

  const tails = new Set<ChildProcess>();

  beforeAll(async () => {
    local = await LocalSink.open({ path: socket });
    sinks.add(local);
  });

  // Each test starts with no client, so "clientCount === 1" means its own tail is connected.
  afterEach(async () => {
    for (const p of tails) p.kill('SIGKILL');
    tails.clear();
    await waitFor(() => local.clientCount === 0, 5_000, 'tail clients to go');
  });

  function startTail(args: string[]) {
    const p = spawn(process.execPath, [CLI, 'tail', '--socket', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(p);
    tails.add(p);
    const lines: string[] = [];
    const err = { text: '' };
    p.stderr!.on('data', (d) => (err.text += String(d)));
    let buf = '';
    p.stdout!.on('data', (d) => {
      buf += String(d);
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
    });
    const exit = new Promise<number | null>((r) => p.on('exit', (code) => {
      procs.delete(p);
      r(code);
    }));
    return { p, lines, err, exit };
  }

  it('creates the socket 0600 in a 0700 folder and refuses a second listener', async () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(run).mode & 0o777).toBe(0o700);
    await expect(LocalSink.open({ path: socket })).rejects.toThrow(/LDG_ERR_SOCKET_IN_USE/);
  });

  it('prints one readable line per alert pushed through the LocalSink, without colour when not a TTY', async () => {
    const t = startTail([]);
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    const a = makeAlert({ severity: 'high', pid: 31337, path: '/usr/lib64/ld-linux-x86-64.so.2' });
    await local.send(a);
    const line = await waitFor(() => t.lines[0], 5_000, 'a line from tail');
    expect(line).toBe(`${a['@timestamp']}  HIGH      Dynamic Linker Creation  /usr/lib64/ld-linux-x86-64.so.2  process=cp exe=/usr/bin/cp pid=31337 user=root writer=running`);
    // A crafted file name cannot drive the terminal.
    const evil = makeAlert({ path: '/usr/lib/\x1b[2J\x1b[31mld.so\nfake line' });
    await local.send(evil);
    const second = await waitFor(() => t.lines[1], 5_000, 'a second line');
    expect(second).toContain('/usr/lib/<U+001B>[2J<U+001B>[31mld.so<U+000A>fake line');
    expect(t.lines.join('\n')).not.toContain('\x1b');
    t.p.kill('SIGINT');
    expect(await t.exit).toBe(130);
  });

  it('stops quietly on Ctrl-C with the shell\'s status for it (130), without saying the agent closed the stream', async () => {
    const t = startTail([]);
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    t.p.kill('SIGINT');
    expect(await t.exit).toBe(130);
    expect(t.err.text).toBe('');
  });

  it('shows bidirectional controls and invisible characters in a name escaped, in the order they are on disk', async () => {
    const t = startTail([]);
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    // Displayed as written, the override makes this name read "…so.2exe.txt".
    const a = makeAlert({ path: '/usr/lib64/ld-linux-x86-64.so.2\u202Etxt.exe' });
    a.process.name = 'c\u200Bp\u2066';
    a.user = { ...a.user, name: '\uFEFFroot\u200F' };
    await local.send(a);
    const line = await waitFor(() => t.lines[0], 5_000, 'a line from tail');
    expect(line).toContain('  /usr/lib64/ld-linux-x86-64.so.2<U+202E>txt.exe  ');
    expect(line).toContain('process=c<U+200B>p<U+2066> ');
    expect(line).toContain('user=<U+FEFF>root<U+200F> ');
    expect(line).not.toMatch(/[\u200B-\u200F\u202A-\u202E\u2060\u2066-\u2069\uFEFF\u061C]/);
    t.p.kill('SIGTERM');
    await t.exit;
  });

  it('--json keeps such a name exact', async () => {
    const t = startTail(['--json']);
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    const a = makeAlert({ path: '/usr/lib64/ld-linux-x86-64.so.2\u202Etxt.exe' });
    await local.send(a);
    const line = await waitFor(() => t.lines[0], 5_000, 'a line from tail');
    expect((JSON.parse(line) as Alert).file.path).toBe('/usr/lib64/ld-linux-x86-64.so.2\u202Etxt.exe');
    t.p.kill('SIGTERM');
    await t.exit;
  });

  it.skipIf(!existsSync('/usr/bin/script'))('colours the severity on a terminal (a pty from script(1)), not with NO_COLOR', async () => {
    for (const noColor of [false, true]) {
      const cmd = `${noColor ? 'NO_COLOR=1 ' : ''}exec '${process.execPath}' '${CLI}' tail --socket '${socket}'`;
      const p = spawn('/usr/bin/script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
      procs.add(p);
      tails.add(p);
      let out = '';
      p.stdout!.on('data', (d) => (out += String(d)));
      await waitFor(() => local.clientCount === 1, 5_000, 'tail on a pty to connect');
      await local.send(makeAlert({ severity: 'critical' }));
      await waitFor(() => out.includes('Dynamic Linker Creation'), 5_000, 'a line on the pty');
      if (noColor) expect(out).not.toContain('\x1b[');
      else expect(out).toContain('\x1b[1;35mCRITICAL');
      p.kill('SIGKILL');
      tails.delete(p);
      await waitFor(() => local.clientCount === 0, 5_000, 'tail to go');
    }
  });

  it('--json prints each alert as it came, one JSON line each', async () => {
    const t = startTail(['--json']);
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    const a = makeAlert();
    await local.send(a);
    const line = await waitFor(() => t.lines[0], 5_000, 'a line from tail');
    expect(JSON.parse(line)).toEqual(a);
    t.p.kill('SIGTERM');
    await t.exit;
  });

  it('--since prints recent alerts from the rotated alerts files first, then live ones', async () => {
    const file = join(work, 'log', 'alerts.ndjson');
    const af = await AlertsFile.open({ path: file, maxBytes: 8 * 1024, keep: 3 });
    const old = makeAlert({ time: new Date(Date.now() - 3 * 3600e3).toISOString() });
    const recent = Array.from({ length: 6 }, (_, i) => makeAlert({ time: new Date(Date.now() - (6 - i) * 60e3).toISOString() }));
    for (const a of [old, ...recent]) await af.send(a);
    await af.close();
    expect(existsSync(`${file}.1`)).toBe(true);
    const t = startTail(['--json', '--since', '1h', '--alerts-file', file]);
    await waitFor(() => t.lines.length >= recent.length, 5_000, 'the backlog');
    await waitFor(() => local.clientCount === 1, 5_000, 'tail to connect');
    const live = makeAlert();
    await local.send(live);
    await waitFor(() => t.lines.length >= recent.length + 1, 5_000, 'the live alert');
    expect(t.lines.map((l) => (JSON.parse(l) as Alert).kibana.alert.uuid)).toEqual([...recent, live].map((a) => a.kibana.alert.uuid));
    t.p.kill('SIGTERM');
    await t.exit;
  });

  it('misses no alert sent after its connect completed but before the agent registered it (it reads the file after the agent says it follows)', async () => {
    const file = join(work, 'log-gap', 'alerts.ndjson');
    const af = await AlertsFile.open({ path: file, maxBytes: 1024 * 1024, keep: 1 });
    const t = startTail(['--json', '--since', '1h', '--alerts-file', file]);
    // The event loop is held, as an agent busy with its start rescan holds it: tail's connect is
    // completed by the kernel meanwhile, but the sink has not registered it when the alert goes.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3_000);
    const a = makeAlert();
    await Promise.all([af.send(a), local.send(a)]);
    expect(local.clientCount).toBe(0);
    const line = await waitFor(() => t.lines[0], 5_000, 'the alert, from the file');
    expect((JSON.parse(line) as Alert).kibana.alert.uuid).toBe(a.kibana.alert.uuid);
    await local.send(makeAlert());
    await waitFor(() => t.lines.length >= 2, 5_000, 'a live alert after it');
    await af.close();
    t.p.kill('SIGTERM');
    await t.exit;
  });

  it('says the agent is not running, and how to start it, when nothing listens', () => {
    const r = spawnSync(process.execPath, [CLI, 'tail', '--socket', join(work, 'no-such.sock')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/LDG_ERR_AGENT_NOT_RUNNING: the agent is not running: nothing listens on \S+no-such\.sock \(ENOENT\)\. Start it with 'systemctl start ldguard-agent'/);
    expect(r.stdout).toBe('');
  });

  it('drops a client that stops reading instead of waiting for it', async () => {
    const { logger, lines } = captureLog();
    const path = join(work, 'run2', 'agent.sock');
    const sink = await LocalSink.open({ path, maxClientBufferBytes: 64 * 1024, logger });
    sinks.add(sink);
    const stuck = connect(path);
    await new Promise((r) => stuck.once('connect', r));
    stuck.pause();
    await waitFor(() => sink.clientCount === 1, 2_000, 'the client');
    const t = performance.now();
    for (let i = 0; i < 3000 && sink.clientCount > 0; i++) await sink.send(makeAlert());
    expect(performance.now() - t).toBeLessThan(5_000);
    expect(sink.clientCount).toBe(0);
    expect(lines.some((l) => String(l.msg).startsWith('tail client too slow'))).toBe(true);
    stuck.destroy();
  });
});

describe('alerts file', () => {
  it('rotates by size and keeps the configured count, files 0600', async () => {
    const file = join(work, 'rot', 'alerts.ndjson');
    const af = await AlertsFile.open({ path: file, maxBytes: 16 * 1024, keep: 2 });
    const all = Array.from({ length: 60 }, () => makeAlert());
    await Promise.all(all.map((a) => af.send(a)));
    await af.close();
    const names = readdirSync(join(work, 'rot')).sort();
    expect(names).toEqual(['alerts.ndjson', 'alerts.ndjson.1', 'alerts.ndjson.2']);
    for (const n of names) {
      const st = statSync(join(work, 'rot', n));
      expect(st.size).toBeLessThanOrEqual(16 * 1024);
      expect(st.mode & 0o777).toBe(0o600);
    }
    // The newest alerts are in the current file, in order, whole lines only.
    const tail = readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as Alert).kibana.alert.uuid);
    expect(tail).toEqual(all.slice(-tail.length).map((a) => a.kibana.alert.uuid));
  });
});

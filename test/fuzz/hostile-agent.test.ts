// The hostile-agent suite: fast-check generates what a compromised or buggy agent could send, real
// WebSocket connections send it to the real collector (the built CLI as a child process, SQLite in
// a temp folder, loopback only), and an honest agent (the real WebSocketSink and its Spool) keeps
// delivering alerts all along. After every case the collector must still be up and answering, and
// the honest agent must have been left alone: every alert it sent stored exactly once and under
// its own name, its connection never closed, its agent row not overwritten.
//
// One property per family of attacks (size and shape, malformed envelopes, forged identities,
// floods); a case is one to three attacks of its family, each on connections of its own.
//
// The arena (collector + honest agent) is shared by the cases of a property while they pass. A
// failing case can leave it poisoned for good (a dead process, a database row that breaks /metrics
// at every scrape), and shrinking is only meaningful when each candidate meets a healthy
// collector: so after a failure the next case gets a new arena, from a copy of a template database
// that already holds the tokens (creating them with the CLI costs 0.3 s each).
//
// Replay: every failure prints its seed and path; `LDGUARD_FUZZ_SEED=… LDGUARD_FUZZ_PATH=…` with
// `-t '<property>'` runs that counterexample again. `npm run fuzz` runs many more cases from a
// random seed (printed first); see RUNS and TIME_MS below.
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import { alertsFrame } from '../../shared/protocol.js';
import { createToken } from '../helpers/collector.js';
import { startDaemon, type Daemon, type Log } from '../helpers/daemon.js';
import { captureLog, makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';
import {
  HONEST_HOST, HONEST_ID, HONEST_TOKEN_NAME, OPCODE, OWNED_TOKENS, type Attack, alertsObject, attackerAlert, attackerId, clientFrame, envelopeAttack, envelopeFrame,
  escapeKeys, floodAttack, forgeryAttack, heartbeatObject, helloObject, nested, shapeAttack, shapeFrame,
} from './hostile.js';

type Json = any;

// ---------------------------------------------------------------------------------------------
// Budget. `npm test` runs a fixed seed and a few cases per property; `npm run fuzz` sets
// LDGUARD_FUZZ_RUNS, which also switches to a random seed unless LDGUARD_FUZZ_SEED is given.

const LONG = process.env.LDGUARD_FUZZ_RUNS !== undefined;
const FIXED_SEED = 1_602_416;
const SEED = process.env.LDGUARD_FUZZ_SEED !== undefined ? Number(process.env.LDGUARD_FUZZ_SEED) : LONG ? (Math.random() * 2 ** 31) | 0 : FIXED_SEED;
const PATH = process.env.LDGUARD_FUZZ_PATH;
/** Cases per property: LDGUARD_FUZZ_RUNS for all, else each property's own (the cheap ones run more). */
const RUNS = process.env.LDGUARD_FUZZ_RUNS !== undefined ? Number(process.env.LDGUARD_FUZZ_RUNS) : undefined;
/**
 * Time per property, shrinking included: past it fast-check stops (a case in flight is awaited).
 * In `npm test` it is a safety net that the fixed seed stays well inside (the longest property,
 * shrinking a failure on today's collector, takes about 20 s), so the outcome does not depend on
 * the machine's speed.
 */
const TIME_MS = Number(process.env.LDGUARD_FUZZ_MS ?? (LONG ? 600_000 : 40_000));
/** Never-used tokens an arena holds for the forged-identity attacks (a new arena when they run out). */
const FRESH_TOKENS = 12;
/** Cases an arena serves at most: in a long run, floods would otherwise grow one database by gigabytes. */
const ARENA_CASES = 200;

const COLLECTOR_CONFIG = `# the hostile-agent suite: connections that never say hello are closed soon; pings are rare so
# that a loaded 2-core machine does not drop anyone for a late pong
ping_interval_ms = 5000
sweep_interval_ms = 1000
hello_timeout_ms = 1000
`;

const work = tempDir('ldg-fuzz-');

// ---------------------------------------------------------------------------------------------
// Tokens: made once with the CLI in a template database that each arena copies.

interface Template {
  db: string;
  honest: string;
  admin: string;
  owned: string[];
  fresh: string[];
}


async function makeTemplate(): Promise<Template> {
  const dir = join(work, 'template');
  const db = join(dir, 'collector.db');
  // The first call makes the database; the rest can run side by side (the store waits on its lock).
  const honest = await createToken(db, HONEST_TOKEN_NAME);
  const names = [...Array.from({ length: OWNED_TOKENS }, (_, i) => attackerId(i)), ...Array.from({ length: FRESH_TOKENS }, (_, i) => `fresh-${i}`)];
  const tokens: string[] = [];
  for (let i = 0; i < names.length; i += 4) tokens.push(...(await Promise.all(names.slice(i, i + 4).map((n) => createToken(db, n)))));
  const admin = await createToken(db, 'ops', 'admin');
  return { db, honest, admin, owned: tokens.slice(0, OWNED_TOKENS), fresh: tokens.slice(OWNED_TOKENS) };
}

// ---------------------------------------------------------------------------------------------
// The arena: a running collector with the honest agent connected to it.

interface Arena {
  n: number;
  dir: string;
  db: string;
  port: number;
  daemon: Daemon;
  stderr: () => string;
  sink: WebSocketSink;
  sinkLog: Log[];
  /** uuids of every alert the honest agent handed to its sink in this arena. */
  honestSent: string[];
  /** Never-used tokens left; each forged-identity attack that needs one takes it. */
  fresh: string[];
  /** A case failed here: the next one gets a new arena. */
  poisoned: boolean;
  cases: number;
}

let template: Template;
let arena: Arena | undefined;
/** The next arena, started in the background once a case has failed: shrinking then waits less for each new one. */
let spare: Promise<Arena> | undefined;
let arenas = 0;
/** Every attacker socket not closed yet, whatever the case: closed after each case and at the end. */
const attackerSockets = new Set<WebSocket | Socket>();

async function api(port: number, path: string, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
}

async function buildArena(): Promise<Arena> {
  const n = ++arenas;
  const dir = join(work, `arena-${n}`);
  mkdirSync(dir, { mode: 0o700 });
  const db = join(dir, 'collector.db');
  for (const suffix of ['', '-wal', '.hosts.db']) if (existsSync(template.db + suffix)) copyFileSync(template.db + suffix, db + suffix);
  const config = join(dir, 'collector.toml');
  writeFileSync(config, COLLECTOR_CONFIG);
  const daemon = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db, '--config', config], { readyMs: 15_000 });
  let stderr = '';
  daemon.proc.stderr!.on('data', (d) => (stderr += String(d)));
  const port = daemon.ready.port as number;
  // Nobody else gets a handle on an arena that failed to start: stop what it started here.
  let sink: WebSocketSink | undefined;
  // Bind each owned token to its attacker id, so that in the attacks it is "the attacker's own
  // token". These sockets are not the attackers' (a spare arena is built while a case runs, and
  // the case closes its attackers' sockets).
  const mine = new Set<WebSocket | Socket>();
  try {
    for (let k = 0; k < OWNED_TOKENS; k++) {
      const p = await open(port, template.owned[k], {}, mine);
      if (!('ws' in p)) throw new Error(`binding attacker token ${k}: upgrade refused (${p.refused})`);
      p.ws.send(JSON.stringify(helloObject(attackerId(k))));
      await settle(p);
      p.ws.terminate();
    }
    const { logger, lines } = captureLog();
    sink = await WebSocketSink.open({
      url: `ws://127.0.0.1:${port}`,
      token: template.honest,
      spoolDir: join(dir, 'spool'),
      spoolMaxBytes: 64 * 1024 * 1024,
      facts: () => makeFacts(HONEST_ID, HONEST_HOST),
      // Long enough that a collector busy with a 1 MiB frame on a loaded machine is not taken for
      // half-open: a disconnection seen here is the collector's doing.
      heartbeatMs: 5000,
      backoffInitialMs: 50,
      backoffMaxMs: 400,
      closeTimeoutMs: 200,
      logger,
    });
    await waitFor(async () => {
      const r = await api(port, '/api/agents', template.admin);
      return r.status === 200 && (JSON.parse(r.text).agents as Json[]).some((x) => x.agentId === HONEST_ID && x.connected && x.hostname === HONEST_HOST);
    }, 10_000, 'the honest agent connected');
    return { n, dir, db, port, daemon, stderr: () => stderr, sink, sinkLog: lines, honestSent: [], fresh: [...template.fresh], poisoned: false, cases: 0 };
  } catch (err) {
    for (const s of mine) if (s instanceof WebSocket) s.terminate();
    await sink?.close().catch(() => undefined);
    await daemon.stop('SIGKILL');
    throw err;
  }
}

async function dropArena(a: Arena): Promise<void> {
  await a.sink.close().catch(() => undefined);
  await a.daemon.stop('SIGKILL');
  rmSync(a.dir, { recursive: true, force: true, maxRetries: 5 });
}

/** The arena for the next case: the current one, unless a case poisoned it or its fresh tokens ran low. */
async function arenaForCase(): Promise<Arena> {
  if (arena && (arena.poisoned || arena.fresh.length < 3 || arena.cases >= ARENA_CASES)) {
    const poisoned = arena.poisoned;
    await dropArena(arena);
    arena = undefined;
    const next = spare;
    // A failure is usually followed by more (shrinking): have the next arena ready by then.
    spare = poisoned ? buildArena() : undefined;
    spare?.catch(() => undefined); // a spare that failed to start is built again below, when taken
    arena = await next?.catch(() => undefined);
  }
  arena ??= await buildArena();
  arena.cases += 1;
  return arena;
}

// ---------------------------------------------------------------------------------------------
// Attacker connections.

interface Peer {
  ws: WebSocket;
  messages: Json[];
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * Opens /agent with `token` (none: no Authorization); resolves with the peer or the refusal. The
 * socket joins `owner` until it closes: the attackers' set by default, which each case empties.
 */
function open(port: number, token: string | undefined, headers: Record<string, string> = {}, owner: Set<WebSocket | Socket> = attackerSockets): Promise<Peer | { refused: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/agent`, {
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers }, handshakeTimeout: 5000, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024,
    });
    owner.add(ws);
    const messages: Json[] = [];
    ws.on('message', (d) => {
      try {
        messages.push(JSON.parse(String(d)));
      } catch {
        messages.push(String(d));
      }
    });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => {
      owner.delete(ws);
      r({ code, reason: String(reason) });
    }));
    ws.on('error', () => undefined);
    ws.once('open', () => resolve({ ws, messages, closed }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      resolve({ refused: String(res.statusCode) });
    });
    void closed.then(() => resolve({ refused: 'closed before open' }));
  });
}

/** Waits until the collector has read everything sent so far (a ping's pong comes after it), the connection closes, or `ms` pass. */
async function settle(p: Peer, ms = 1500): Promise<void> {
  if (p.ws.readyState !== WebSocket.OPEN) return void (await Promise.race([p.closed, sleep(ms)]));
  const pong = new Promise<void>((r) => p.ws.once('pong', () => r()));
  p.ws.ping();
  await Promise.race([pong, p.closed, sleep(ms)]);
}

/** Waits for an ack or an error from the collector (or the close), up to `ms`. */
async function answer(p: Peer, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && p.ws.readyState === WebSocket.OPEN && !p.messages.some((m) => m?.type === 'ack' || m?.type === 'error')) await sleep(10);
}

/** A raw TCP connection upgraded to /agent by hand, for frames no WebSocket library would send. */
function rawUpgrade(port: number, token: string, complete = true): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    attackerSockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      attackerSockets.delete(s);
      resolve(undefined);
    });
    const request = `GET /agent HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${Buffer.from(randomUUID().slice(0, 16)).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`;
    s.once('connect', () => {
      if (!complete) {
        // Half the headers, then silence (slowloris at the upgrade).
        s.write(request.slice(0, request.length >> 1));
        return resolve(s);
      }
      s.write(request);
    });
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (head.startsWith('HTTP/1.1 101')) resolve(s);
      else {
        s.destroy();
        resolve(undefined);
      }
    };
    s.on('data', onData);
    setTimeout(() => resolve(undefined), 5000).unref();
  });
}

function closeAttackers(): void {
  for (const s of attackerSockets) {
    if (s instanceof WebSocket) s.terminate();
    else s.destroy();
  }
  attackerSockets.clear();
}

// ---------------------------------------------------------------------------------------------
// Running an attack. Network errors are not failures here (a collector that died shows in the
// checks that follow, with its exit code and stderr); the attack only has to end in bounded time.

interface CaseContext {
  arena: Arena;
  /** uuids for the attackers' alerts: their own, unique in the arena, never the honest agent's. */
  uuid: () => string;
  /** The owned token (and its attacker id) this attack uses. */
  owned: number;
}

async function ownPeer(c: CaseContext, helloFirst: boolean): Promise<Peer | undefined> {
  const p = await open(c.arena.port, template.owned[c.owned]);
  if (!('ws' in p)) return undefined;
  if (helloFirst) p.ws.send(JSON.stringify(helloObject(attackerId(c.owned))));
  return p;
}

async function sendAndSettle(p: Peer, data: string | Buffer, binary = false, expectAnswer = false): Promise<void> {
  if (p.ws.readyState !== WebSocket.OPEN) return;
  p.ws.send(data, { binary });
  await settle(p);
  if (expectAnswer) await answer(p);
}

async function perform(c: CaseContext, a: Attack): Promise<void> {
  const { port } = c.arena;
  const self = attackerId(c.owned);
  const uuids = new Map<number, string>();
  const uuid = (i: number) => uuids.get(i) ?? (uuids.set(i, c.uuid()), uuids.get(i)!);
  switch (a.kind) {
    case 'deep':
    case 'wide':
    case 'longArray':
    case 'longString': {
      const f = shapeFrame(a, self, uuid);
      const p = await ownPeer(c, f.helloFirst);
      if (p) await sendAndSettle(p, f.text, false, a.target.startsWith('alerts.'));
      return;
    }
    case 'wrongType':
    case 'number':
    case 'escapedKeys':
    case 'duplicateKey':
    case 'binary':
    case 'invalidUtf8': {
      const f = envelopeFrame(a, self, uuid);
      const p = await ownPeer(c, f.helloFirst);
      if (p) await sendAndSettle(p, f.data, f.binary, a.kind !== 'binary' && 'message' in a && a.message === 'alerts');
      return;
    }
    case 'helloAsHonest': {
      const token = a.token === 'fresh' ? c.arena.fresh.shift()! : template.owned[c.owned]!;
      const p = await open(port, token);
      if (!('ws' in p)) return;
      await sendAndSettle(p, JSON.stringify(helloObject(HONEST_ID, a.hostname)));
      if (a.then === 'alerts') await sendAndSettle(p, JSON.stringify(alertsObject(1, [uuid(0), uuid(1)], HONEST_HOST)), false, true);
      if (a.then === 'heartbeat') await sendAndSettle(p, JSON.stringify(heartbeatObject()));
      return;
    }
    case 'alertsNamingHonest': {
      const p = await ownPeer(c, true);
      if (!p) return;
      const alerts = Array.from({ length: a.count }, (_, i) => {
        const doc = attackerAlert(uuid(i), a.hostField ? HONEST_HOST : 'attacker-host');
        if (a.agentIdField) doc.agent = { ...doc.agent, id: HONEST_ID, name: HONEST_ID };
        if (a.receivedFrom === 'none') return JSON.stringify(doc);
        const forged = { honest: `{"agentId":${JSON.stringify(HONEST_ID)},"token":${JSON.stringify(HONEST_TOKEN_NAME)},"remote":"127.0.0.1"}`, string: JSON.stringify(HONEST_ID), deep: nested(2000, 'object'), array: `[${JSON.stringify(HONEST_ID)}]` }[a.receivedFrom];
        doc.ldguard = { ...doc.ldguard, received_from: '@@RF@@' };
        return JSON.stringify(doc).replace('"@@RF@@"', () => forged);
      });
      await sendAndSettle(p, alertsFrame(1, alerts), false, true);
      return;
    }
    case 'smuggledId': {
      const token = a.token === 'fresh' ? c.arena.fresh.shift()! : template.owned[c.owned]!;
      const p = await open(port, token);
      if (!('ws' in p)) return;
      const text = JSON.stringify(helloObject(self));
      const honest = JSON.stringify(HONEST_ID);
      const own = `"agentId":${JSON.stringify(self)}`;
      const data = a.how === 'duplicate-after' ? text.replace(own, () => `${own},"agentId":${honest}`)
        : a.how === 'duplicate-before' ? text.replace(own, () => `"agentId":${honest},${own}`)
          : text.replace(own, () => `${own},${escapeKeys('"agentId"', ['agentId'])}:${honest}`);
      await sendAndSettle(p, data);
      await sendAndSettle(p, JSON.stringify(alertsObject(1, [uuid(0)])), false, true);
      return;
    }
    case 'heartbeatFlood': {
      const p = await ownPeer(c, true);
      if (!p) return;
      const hb = JSON.stringify(heartbeatObject());
      for (let i = 0; i < a.count && p.ws.readyState === WebSocket.OPEN; i++) p.ws.send(hb);
      await settle(p, 1000);
      return;
    }
    case 'alertsFlood': {
      const p = await ownPeer(c, true);
      if (!p) return;
      let seq = 1;
      for (let b = 0; b < a.batches && p.ws.readyState === WebSocket.OPEN; b++) {
        p.ws.send(JSON.stringify(alertsObject(seq, Array.from({ length: a.perBatch }, () => c.uuid()))));
        seq += a.perBatch;
      }
      await settle(p, 1000);
      return;
    }
    case 'connectionFlood': {
      const peers = await Promise.all(Array.from({ length: a.count }, () => open(port, template.owned[c.owned])));
      for (const [i, p] of peers.entries()) {
        if (!('ws' in p)) continue;
        if (a.say === 'hello') p.ws.send(JSON.stringify(helloObject(self)));
        if (a.say === 'hello-other-id') p.ws.send(JSON.stringify(helloObject(`${self}-${i}`)));
      }
      const last = peers.filter((p): p is Peer => 'ws' in p).at(-1);
      if (last) await settle(last, 1000);
      return;
    }
    case 'upgradeFlood': {
      const headers: Record<string, string> = a.auth === 'none' ? {} : { authorization: `Bearer ${a.auth === 'admin' ? template.admin : 'ldg_not_a_token'}` };
      await Promise.all(Array.from({ length: a.count }, () => open(port, undefined, headers)));
      return;
    }
    case 'partialFrame':
    case 'unfinishedFragments':
    case 'hugeDeclaredLength':
    case 'oversizedControl': {
      const s = await rawUpgrade(port, template.owned[c.owned]!);
      if (!s) return;
      const hello = JSON.stringify(helloObject(self));
      if (a.kind === 'partialFrame') {
        if (a.afterHello) s.write(clientFrame(OPCODE.text, Buffer.from(hello)));
        s.write(clientFrame(OPCODE.text, Buffer.alloc(a.sent, 0x20), { declared: a.declared }));
      } else if (a.kind === 'unfinishedFragments') {
        if (a.afterHello) s.write(clientFrame(OPCODE.text, Buffer.from(hello)));
        s.write(clientFrame(OPCODE.text, Buffer.from('{"type":"alerts",'), { fin: false }));
        for (let i = 1; i < a.fragments; i++) s.write(clientFrame(OPCODE.continuation, Buffer.from(' '), { fin: false }));
      } else if (a.kind === 'hugeDeclaredLength') {
        s.write(clientFrame(OPCODE.text, Buffer.from(hello)));
        s.write(clientFrame(OPCODE.text, Buffer.from('{'), { declared: 2n ** BigInt(a.exponent) - 1n }));
      } else {
        s.write(clientFrame(OPCODE[a.opcode], Buffer.alloc(a.length, 0x41)));
      }
      await Promise.race([new Promise((r) => s.once('close', r)), sleep(500)]);
      return;
    }
    case 'partialUpgrade': {
      await Promise.all(Array.from({ length: a.count }, () => rawUpgrade(port, template.owned[c.owned]!, false)));
      await sleep(100);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What must hold after every case.

const SINK_CLOSED = 'collector connection closed; unacked alerts stay spooled and will be resent';

function excerpt(text: string, max = 600): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}… (${t.length} chars)` : t;
}

/** Every honest uuid stored once, and nothing else stored in the honest agent's name. */
function storedHonest(a: Arena): string[] {
  const problems: string[] = [];
  const db = new Database(a.db, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT uuid, agent_id, token_name FROM alerts WHERE agent_id = ? OR token_name = ?').all(HONEST_ID, HONEST_TOKEN_NAME) as Array<{ uuid: string; agent_id: string; token_name: string }>;
    const count = new Map<string, number>();
    const count1 = db.prepare('SELECT count(*) AS n FROM alerts WHERE uuid = ?');
    for (const u of a.honestSent) count.set(u, (count1.get(u) as { n: number }).n);
    const missing = a.honestSent.filter((u) => count.get(u) === 0);
    const twice = a.honestSent.filter((u) => (count.get(u) ?? 0) > 1);
    if (missing.length > 0) problems.push(`honest alerts not stored: ${missing.length} of ${a.honestSent.length} (first ${missing[0]})`);
    if (twice.length > 0) problems.push(`honest alerts stored more than once: ${twice.length} (first ${twice[0]}, ${count.get(twice[0]!)} times)`);
    const honestSet = new Set(a.honestSent);
    const foreign = rows.filter((r) => !honestSet.has(r.uuid));
    if (foreign.length > 0) {
      problems.push(`alerts the honest agent never sent are stored in its name: ${foreign.length} (first ${foreign[0]!.uuid} as agent ${foreign[0]!.agent_id}, token ${foreign[0]!.token_name})`);
    }
    const elsewhere = (db.prepare(`SELECT count(*) AS n FROM alerts WHERE uuid IN (SELECT value FROM json_each(?)) AND (agent_id <> ? OR token_name <> ?)`)
      .get(JSON.stringify(a.honestSent), HONEST_ID, HONEST_TOKEN_NAME) as { n: number }).n;
    if (elsewhere > 0) problems.push(`honest alerts stored under another agent or token: ${elsewhere}`);
  } finally {
    db.close();
  }
  return problems;
}

async function verify(a: Arena): Promise<void> {
  const problems: string[] = [];
  const dead = async (): Promise<string | undefined> => {
    const code = await Promise.race([a.daemon.exited.then((c) => ({ c })), sleep(2000).then(() => undefined)]);
    if (!code) return undefined;
    return `collector process exited (code ${code.c}, signal ${a.daemon.proc.signalCode}); stderr: ${excerpt(a.stderr()) || '(empty)'}`;
  };
  if (a.daemon.proc.exitCode !== null || a.daemon.proc.signalCode !== null) throw new Error((await dead())!);
  for (const [path, token] of [['/healthz', undefined], ['/metrics', undefined], ['/api/agents', template.admin], ['/api/alerts', template.admin], ['/api/quarantine', template.admin]] as const) {
    try {
      const r = await api(a.port, path, token);
      if (r.status !== 200) problems.push(`GET ${path}: ${r.status} ${excerpt(r.text, 300)}`);
    } catch (err) {
      const gone = await dead();
      if (gone) throw new Error(gone);
      problems.push(`GET ${path}: ${(err as Error).message}`);
    }
  }
  if (!(await a.sink.drained(10_000))) problems.push(`honest agent: ${a.sink.health().spool.depth} alerts not acked within 10 s`);
  const closes = a.sinkLog.filter((l) => l.msg === SINK_CLOSED);
  if (closes.length > 0 || a.sink.health().reconnects > 0) {
    problems.push(`honest agent disconnected ${closes.length} time(s): ${closes.map((l) => `${String(l.code)} "${String(l.reason)}"`).join(', ') || `${a.sink.health().reconnects} reconnects`}`);
  }
  try {
    const r = await api(a.port, '/api/agents', template.admin);
    const row = r.status === 200 ? (JSON.parse(r.text).agents as Json[]).find((x) => x.agentId === HONEST_ID) : undefined;
    if (r.status === 200 && !row) problems.push('honest agent missing from /api/agents');
    if (row && (!row.connected || row.hostname !== HONEST_HOST || row.tokenName !== HONEST_TOKEN_NAME)) {
      problems.push(`honest agent's row overwritten or not connected: connected=${row.connected} hostname=${row.hostname} tokenName=${row.tokenName}`);
    }
  } catch {
    // already reported above
  }
  problems.push(...storedHonest(a));
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

// ---------------------------------------------------------------------------------------------
// One case: the attacks in order, the honest agent sending all along, then the checks.

let uuids = 0;

async function runCase(attacks: Attack[]): Promise<void> {
  const a = await arenaForCase();
  let passed = false;
  let sending = true;
  const honestSend = async () => {
    const alert = makeAlert({ host: HONEST_HOST, agentId: HONEST_ID });
    a.honestSent.push(alert.kibana.alert.uuid);
    await a.sink.send(alert);
  };
  const honestLoop = (async () => {
    while (sending) {
      await honestSend();
      await sleep(40);
    }
  })();
  try {
    for (const [i, attack] of attacks.entries()) {
      await perform({ arena: a, owned: i % OWNED_TOKENS, uuid: () => `atk-${a.n}-${++uuids}` }, attack);
      closeAttackers();
    }
    sending = false;
    await honestLoop;
    await honestSend(); // one more after the last attack, so every case ends with a delivery to check
    await verify(a);
    passed = true;
  } finally {
    sending = false;
    await honestLoop.catch(() => undefined);
    closeAttackers();
    if (!passed) a.poisoned = true;
  }
}

async function fuzz(name: string, attack: fc.Arbitrary<Attack>, runs: number): Promise<void> {
  let inFlight: Promise<unknown> = Promise.resolve();
  // The case that failed first, before shrinking: shrinking may end on another failure (the
  // smallest input that breaks anything), and the first one is often the worst (a crash).
  let first: { attacks: Attack[]; error: string } | undefined;
  // Copied into plain objects: fast-check may build records without a prototype, which it then
  // prints as `__proto__:null` in the counterexample.
  const plain = attack.map((a) => ({ ...a }) as Attack);
  const property = fc.asyncProperty(fc.array(plain, { minLength: 1, maxLength: 3 }), (attacks) => {
    const run = runCase(attacks);
    inFlight = run.catch((err: unknown) => {
      first ??= { attacks, error: (err as Error).message };
    });
    return run;
  });
  const started = Date.now();
  const details = await fc.check(property, {
    seed: SEED, numRuns: RUNS ?? runs, ...(PATH ? { path: PATH } : {}), plugins: [fc.interruptAfterTimeLimit(TIME_MS) as fc.Plugin<[Attack[]]>],
  });
  // A case still running when the time limit struck: let it end before the next property starts.
  await inFlight;
  const took = ((Date.now() - started) / 1000).toFixed(1);
  if (details.failed) {
    const replay = `LDGUARD_FUZZ_SEED=${details.seed} LDGUARD_FUZZ_PATH=${details.counterexamplePath} npx vitest run test/fuzz/hostile-agent.test.ts -t '${name}'`;
    throw new Error(`${name}: failed after ${details.numRuns} case(s) and ${details.numShrinks} shrink(s) in ${took} s\n` +
      `${fc.defaultReportMessage(details) ?? ''}\n\nWhat broke:\n${(details.errorInstance as Error | null)?.message ?? String(details.errorInstance)}\n\n` +
      (first ? `The first failing case, before shrinking: ${fc.stringify(first.attacks)}\n${first.error}\n\n` : '') +
      `Replay with: ${replay}`);
  }
  console.log(`${name}: ${details.numRuns} case(s) passed in ${took} s${details.interrupted ? ` (stopped by the ${TIME_MS} ms limit)` : ''} (seed ${SEED})`);
  expect(details.numRuns).toBeGreaterThan(0);
}

// ---------------------------------------------------------------------------------------------

describe('hostile agents against a running collector, an honest agent delivering all along', () => {
  beforeAll(async () => {
    console.log(`hostile-agent fuzz: seed ${SEED}${PATH ? `, path ${PATH}` : ''}, ${RUNS ?? 'a few'} case(s) per property, ${TIME_MS} ms per property at most`);
    template = await makeTemplate();
  });

  afterAll(async () => {
    closeAttackers();
    const spareArena = await spare?.catch(() => undefined);
    for (const a of [arena, spareArena]) if (a) await dropArena(a);
    arena = undefined;
    spare = undefined;
  });

  const timeout = TIME_MS + 60_000;

  // Each title starts with the property's name: the replay line selects it with -t.
  it('size and shape: deep, wide and huge documents in hello, heartbeat and alerts never take the collector down nor touch the honest agent', () => fuzz('size and shape', shapeAttack, 25), timeout);

  it('malformed envelopes: escaped and duplicated keys, wrong types, odd numbers, binary frames and invalid UTF-8 are refused without harm', () => fuzz('malformed envelopes', envelopeAttack, 40), timeout);

  it('forged identities: the honest agent id said with another token, alerts naming it, a forged received_from neither displace nor impersonate it', () => fuzz('forged identities', forgeryAttack, 30), timeout);

  it('floods: many messages, many connections of one token, no hello, partial frames and half upgrades leave the honest agent delivering', () => fuzz('floods', floodAttack, 15), timeout);
});

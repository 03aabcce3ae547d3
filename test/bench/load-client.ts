// Child process of the collector load test: N simulated agents as real `ws` WebSocket clients
// speaking shared/protocol.ts to a collector on loopback. Bounded in count (the config) and in time
// (a hard deadline after which it reports what it has and exits). Run it through a shell that
// raises RLIMIT_NOFILE: `sh -c 'ulimit -n 20000 && exec node load-client.js CONFIG_JSON'`.
//
// Sequence: ramp up `connections` (each says hello, then heartbeats every heartbeatMs from its own
// connect, as the agent does) → hold → light: some agents send a small batch a second each (ack
// latency when the collector keeps up) → rated: `ratedAgents` more agents together offer `ratedPerSec`
// alerts a second in batches of `ratedBatch`, on a fixed schedule whatever the acks do, but, as the
// agent, never more than AGENT_MAX_INFLIGHT batches unacked (ack latency and what is stored at the
// rate the capacity target names; they run in a worker thread of their own, see ratedPhase) → heavy: `burstAgents` agents each keep
// 2 batches unacked (throughput; ack latency then is queueing) → one agent sends more than its
// rate-limit burst at once → `extra` more connections try to get past max_connections → report.
// Each simulated agent has a token of its own (the collector binds a token to one agent id).
// Progress and the result are JSON lines on stdout ({"event": ...}).
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../../shared/protocol.js';
import { alert, SEED } from './alert-doc.js';

export interface LoadConfig {
  /** Collectors' base URLs: agent i connects to urls[i % urls.length], as a fleet spread over several. */
  urls: string[];
  /** A file with one agent token per line: agent i uses line i. */
  tokensFile: string;
  connections: number;
  extra: number;
  rampConcurrency: number;
  heartbeatMs: number;
  holdMs: number;
  lightAgents: number;
  lightMs: number;
  ratedAgents: number;
  ratedPerSec: number;
  ratedBatch: number;
  ratedMs: number;
  burstAgents: number;
  burstMs: number;
  batchSize: number;
  inflight: number;
  floodAlerts: number;
  deadlineMs: number;
  /** Loopback source addresses to spread the connections over (ephemeral ports per address). */
  localAddresses: string[];
  /**
   * Added to each agent's number in its id (load-agent-N) and alerts, not in its token's line: a
   * run on a database where load-agent-0… are already bound to other tokens (the triage bench's
   * second size) gives its agents ids of their own.
   */
  idBase?: number;
}

const cfg = (isMainThread ? JSON.parse(process.argv[2] ?? '{}') : workerData) as LoadConfig;
const tokens = readFileSync(cfg.tokensFile, 'utf8').split('\n').filter(Boolean);
const t0 = performance.now();
const emit = (event: string, data: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ event, t: Math.round(performance.now() - t0), ...data })}\n`);

// The alerts of a batch are written into a pre-rendered frame body rather than built and
// serialised: building the objects, JSON.stringify and the UTF-8 encoding of its result cost
// 10 µs an alert (2 µs this way), a fifth of a core at 20,000 alerts/s, on the 2 cores the
// collector under test needs. Each alert still differs where a real one does (its times, its uuid and event
// id, its process, its file's name), so every alert is new to the collector and its document as
// long as before; only the field widths are fixed (the counter in the file name is zero-padded,
// the pid and inode stay 4 digits), so that the values can be written in place.
const TS = 'T'.repeat(24); // new Date().toISOString()
const UUID = 'U'.repeat(36);
const EVENT_ID = 'E'.repeat(36);
const ENTITY = 'N'.repeat(32);
const COUNTER = 'C'.repeat(8);
const PID = 'P'.repeat(4); // inside a string placeholder, then the quotes are dropped: a number
const INODE = 'I'.repeat(4);

class AlertTemplate {
  /** One alert's JSON, and where each placeholder is in it. */
  private readonly bytes: Buffer;
  private readonly at: Record<'ts' | 'uuid' | 'eventId' | 'entity' | 'counter' | 'pid' | 'inode', number[]>;
  private readonly body: Buffer;

  constructor(agent: number, readonly batch: number) {
    const doc = alert(agent, 0, { now: TS, uuid: UUID, eventId: EVENT_ID, entity: ENTITY, counter: COUNTER, pid: PID, inode: INODE });
    const text = JSON.stringify(doc).replace(`"${PID}"`, PID);
    this.bytes = Buffer.from(text);
    // The placeholders are found in the text and written in the bytes: the same offsets only in ASCII.
    if (this.bytes.length !== text.length) throw new Error('load client: the alert template must be ASCII');
    const find = (p: string) => {
      const out: number[] = [];
      for (let i = text.indexOf(p); i >= 0; i = text.indexOf(p, i + p.length)) out.push(i);
      if (out.length === 0) throw new Error(`load client: placeholder ${p.slice(0, 4)} not in the alert template`);
      return out;
    };
    this.at = { ts: find(TS), uuid: find(UUID), eventId: find(EVENT_ID), entity: find(ENTITY), counter: find(COUNTER), pid: find(PID), inode: find(INODE) };
    // The batch's alerts side by side, comma-separated, then the end of the frame.
    this.body = Buffer.alloc(batch * (this.bytes.length + 1) + 1);
    for (let k = 0; k < batch; k++) {
      this.bytes.copy(this.body, k * (this.bytes.length + 1));
      this.body[k * (this.bytes.length + 1) + this.bytes.length] = 0x2c; // ','
    }
    this.body.write(']}', this.body.length - 2, 'latin1');
  }

  /** A frame of `batch` new alerts, numbered from `first` (the agent's alert counter). */
  frame(seq: number, first: number): Buffer {
    const body = this.body;
    const now = Buffer.from(new Date().toISOString(), 'latin1');
    const stride = this.bytes.length + 1;
    for (let k = 0; k < this.batch; k++) {
      const base = k * stride;
      const i = first + k;
      for (const p of this.at.ts) for (let j = 0; j < now.length; j++) body[base + p + j] = now[j]!;
      for (const p of this.at.uuid) putHex(body, base + p, true);
      for (const p of this.at.eventId) putHex(body, base + p, true);
      for (const p of this.at.entity) putHex(body, base + p, false);
      for (const p of this.at.counter) putDigits(body, base + p, i % 1e8, 8);
      for (const p of this.at.pid) putDigits(body, base + p, 4242 + (i % 5000), 4);
      for (const p of this.at.inode) putDigits(body, base + p, 1000 + (i % 9000), 4);
    }
    const head = Buffer.from(`{"type":"alerts","v":${PROTOCOL_VERSION},"seq":${seq},"alerts":[`, 'latin1');
    const frame = Buffer.allocUnsafe(head.length + body.length);
    head.copy(frame, 0);
    body.copy(frame, head.length);
    return frame;
  }
}

const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Random bytes, drawn 16 at a time for the ids. */
const pool = Buffer.alloc(64 * 1024);
let poolAt = pool.length;

/** 16 random bytes as 32 hex digits at `at`, as a UUID's 36 characters (8-4-4-4-12) when `dashes`. */
function putHex(buf: Buffer, at: number, dashes: boolean): void {
  if (poolAt + 16 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  let o = at;
  for (let k = 0; k < 16; k++) {
    if (dashes && (k === 4 || k === 6 || k === 8 || k === 10)) buf[o++] = 0x2d;
    const b = pool[poolAt++]!;
    buf[o++] = HEX[b >> 4]!;
    buf[o++] = HEX[b & 15]!;
  }
}

/** `value` as `width` decimal digits (zero-padded) at `at`. */
function putDigits(buf: Buffer, at: number, value: number, width: number): void {
  for (let k = width - 1; k >= 0; k--) {
    buf[at + k] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  }
}

interface Agent {
  id: number;
  ws: WebSocket;
  open: boolean;
  closedCode?: number;
  seq: number;
  sent: number;
  /** Batches on the wire: last seq of the batch → send time and size. */
  pending: Map<number, { sentAt: number; size: number }>;
  /** Where this agent's ack latencies go. */
  lat: number[];
  heartbeat?: NodeJS.Timeout;
  lastBeat: number;
  onAck?: () => void;
  /** Renders this agent's batches (of template.batch alerts). */
  template?: AlertTemplate;
}

const agents: Agent[] = [];
const lightAckMs: number[] = [];
const ratedAckMs: number[] = [];
/** When each batch of ratedAckMs was sent (same order). */
const ratedSentAt: number[] = [];
const heavyAckMs: number[] = [];
const floodAckMs: number[] = [];
let acked = 0;
/** The longest gap between two heartbeats of one agent as this client sent them. */
let maxBeatGapMs = 0;
const refused = new Map<string, number>();
const closes = new Map<number, number>();
const bump = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);

function heartbeat(a: Agent): void {
  if (!a.open) return;
  const now = performance.now();
  maxBeatGapMs = Math.max(maxBeatGapMs, now - a.lastBeat);
  a.lastBeat = now;
  a.ws.send(JSON.stringify({
    type: 'heartbeat',
    v: PROTOCOL_VERSION,
    health: { spoolDepth: a.pending.size, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false }, uptimeSec: Math.round((now - t0) / 1000) },
  }));
}

function connect(id: number): Promise<Agent | null> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${cfg.urls[id % cfg.urls.length]}/agent`, {
      headers: { Authorization: `Bearer ${tokens[id % tokens.length]}` },
      perMessageDeflate: false,
      handshakeTimeout: 20_000,
      localAddress: cfg.localAddresses[id % cfg.localAddresses.length],
    });
    const a: Agent = { id: (cfg.idBase ?? 0) + id, ws, open: false, seq: 1, sent: 0, pending: new Map(), lat: heavyAckMs, lastBeat: performance.now() };
    let settled = false;
    const done = (v: Agent | null) => {
      if (!settled) {
        settled = true;
        resolve(v);
      }
    };
    ws.on('unexpected-response', (_req, res) => {
      bump(refused, `HTTP ${res.statusCode}`);
      res.resume();
      ws.terminate();
      done(null);
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (!a.open && !settled) {
        bump(refused, err.code ?? err.message.slice(0, 40));
        done(null);
      }
    });
    ws.on('open', () => {
      a.open = true;
      ws.send(JSON.stringify({
        type: 'hello',
        v: PROTOCOL_VERSION,
        heartbeatMs: cfg.heartbeatMs,
        agent: {
          agentId: `load-agent-${a.id}`, version: '0.1.0', hostname: `load-agent-${a.id}`,
          host: { architecture: 'x86_64', ip: ['127.0.0.1'], os: { name: 'Debian GNU/Linux', version: '12', kernel: '6.1.0' } },
          rules: { count: 1, ids: [SEED] }, source: { name: 'fanotify', degraded: false }, attribution: { degraded: false },
        },
      }));
      a.lastBeat = performance.now();
      a.heartbeat = setInterval(() => heartbeat(a), cfg.heartbeatMs);
      done(a);
    });
    ws.on('message', (data) => {
      let m: { type?: string; upTo?: number };
      try {
        m = JSON.parse(String(data)) as typeof m;
      } catch {
        return;
      }
      if (m.type !== 'ack' || typeof m.upTo !== 'number') return;
      const now = performance.now();
      for (const [last, b] of a.pending) {
        if (last > m.upTo) continue;
        a.pending.delete(last);
        a.lat.push(now - b.sentAt);
        if (a.lat === ratedAckMs) ratedSentAt.push(b.sentAt);
        acked += b.size;
      }
      a.onAck?.();
    });
    ws.on('close', (code) => {
      if (a.open) bump(closes, code);
      a.open = false;
      a.closedCode = code;
      clearInterval(a.heartbeat);
      a.onAck?.();
    });
  });
}

function sendBatch(a: Agent, size: number): void {
  const seq = a.seq;
  a.seq += size;
  let frame: Buffer;
  if (a.template?.batch !== size && size <= 100) a.template = new AlertTemplate(a.id, size);
  if (a.template?.batch === size) {
    frame = a.template.frame(seq, a.sent);
    a.sent += size;
  } else {
    // Big one-off batches (the flood): built the plain way.
    const alerts = Array.from({ length: size }, () => alert(a.id, a.sent++));
    frame = Buffer.from(`{"type":"alerts","v":${PROTOCOL_VERSION},"seq":${seq},"alerts":${JSON.stringify(alerts)}}`);
  }
  a.pending.set(seq + size - 1, { sentAt: performance.now(), size });
  a.ws.send(frame, { binary: false });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Keeps `inflight` batches unacked until `until`. */
async function saturate(a: Agent, until: number): Promise<void> {
  while (a.open && performance.now() < until) {
    while (a.open && a.pending.size < cfg.inflight && performance.now() < until) sendBatch(a, cfg.batchSize);
    await new Promise<void>((r) => {
      a.onAck = r;
      setTimeout(r, 1_000);
    });
  }
}

async function drain(list: Agent[], ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (list.some((a) => a.open && a.pending.size > 0) && performance.now() < end) await sleep(20);
}

function q(values: number[]): { p50: number | null; p99: number | null; max: number | null } {
  const s = [...values].sort((x, y) => x - y);
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : null);
  return { p50: at(50), p99: at(99), max: s.length ? s[s.length - 1]! : null };
}

const result: Record<string, unknown> = {};

function summary(): Record<string, unknown> {
  return {
    ...result,
    stillOpen: agents.filter((a) => a.open).length,
    closes: Object.fromEntries(closes),
    refused: Object.fromEntries(refused),
    maxBeatGapMs: Math.round(maxBeatGapMs),
  };
}

async function main(): Promise<void> {
  const deadline = t0 + cfg.deadlineMs;
  const hardStop = setTimeout(() => {
    emit('result', { ...summary(), timedOut: true });
    process.exit(0);
  }, cfg.deadlineMs + 15_000);
  hardStop.unref();

  // Ramp: a bounded number of handshakes at once, as agents reconnecting after a collector restart.
  let next = 0;
  const rampStart = performance.now();
  await Promise.all(Array.from({ length: cfg.rampConcurrency }, async () => {
    while (next < cfg.connections && performance.now() < deadline) {
      const a = await connect(next++);
      if (a) agents.push(a);
    }
  }));
  result.rampMs = Math.round(performance.now() - rampStart);
  result.held = agents.filter((a) => a.open).length;
  emit('held', { held: result.held, rampMs: result.rampMs });

  // Hold: everyone connected and heartbeating, nothing else, so memory per connection can be read.
  await sleep(Math.min(cfg.holdMs, deadline - performance.now()));
  emit('holding', { open: agents.filter((a) => a.open).length });

  // Light: a batch of 5 alerts a second from each of lightAgents agents.
  const light = agents.filter((a) => a.open).slice(0, cfg.lightAgents);
  for (const a of light) a.lat = lightAckMs;
  const lStart = performance.now();
  const lEnd = Math.min(lStart + cfg.lightMs, deadline);
  await Promise.all(light.map(async (a) => {
    await sleep(Math.random() * 1000);
    while (a.open && performance.now() < lEnd) {
      sendBatch(a, 5);
      await sleep(1000);
    }
  }));
  await drain(light, 10_000);
  result.light = { agents: light.length, offeredPerSec: light.length * 5, ackMs: q(lightAckMs) };
  emit('light', result.light as Record<string, unknown>);

  // Rated: in a worker thread (see ratedPhase); its agents stay connected until the end, so that
  // max_connections still refuses every one of the `extra` connections below.
  let ratedWorker: Worker | undefined;
  if (cfg.ratedAgents > 0 && cfg.ratedMs > 0 && performance.now() < deadline) {
    const w = new Worker(new URL(import.meta.url), { workerData: cfg });
    ratedWorker = w;
    const rated = await new Promise<Record<string, unknown>>((resolve, reject) => {
      w.on('message', (m: Record<string, unknown>) => {
        if (m.event === 'start') emit('rated-start');
        else if (typeof m.error === 'string') reject(new Error(`rated phase: ${m.error}`));
        else resolve(m);
      });
      w.once('error', reject);
    });
    result.rated = rated;
    emit('rated', rated);
  }

  // Heavy: burstAgents agents each keep `inflight` batches unacked, all others heartbeating.
  const heavy = agents.filter((a) => a.open).slice(0, cfg.burstAgents);
  for (const a of heavy) a.lat = heavyAckMs;
  const ackedBefore = acked;
  const hStart = performance.now();
  await Promise.all(heavy.map((a) => saturate(a, Math.min(hStart + cfg.burstMs, deadline))));
  await drain(heavy, 20_000);
  result.heavy = { agents: heavy.length, ms: Math.round(performance.now() - hStart), alertsAcked: acked - ackedBefore, ackMs: q(heavyAckMs) };
  emit('heavy', result.heavy as Record<string, unknown>);

  // Flood: one agent sends more than its rate-limit burst at once, in frames under the size limit.
  const f = agents.find((a) => a.open && !heavy.includes(a) && !light.includes(a));
  if (f && cfg.floodAlerts > 0 && performance.now() < deadline) {
    f.lat = floodAckMs;
    const per = Math.max(1, Math.floor((MAX_FRAME_BYTES * 0.8) / JSON.stringify(alert(f.id, 0)).length));
    const fStart = performance.now();
    const ackedAtStart = acked;
    for (let n = 0; n < cfg.floodAlerts; n += per) sendBatch(f, Math.min(per, cfg.floodAlerts - n));
    const fEnd = Math.min(performance.now() + 30_000, deadline + 10_000);
    while (f.open && f.pending.size > 0 && performance.now() < fEnd) await sleep(20);
    result.flood = { alerts: cfg.floodAlerts, perFrame: per, ackedAlerts: acked - ackedAtStart, ms: Math.round(performance.now() - fStart), lastAckMs: q(floodAckMs).max, stillOpen: f.open, closeCode: f.closedCode ?? null };
  }

  // Past max_connections: the collector should refuse with 503 and keep serving the others.
  const refusedBefore = new Map(refused);
  let extraHeld = 0;
  for (let i = 0; i < cfg.extra && performance.now() < deadline + 5_000; i++) {
    const a = await connect(cfg.connections + i);
    if (a) {
      extraHeld++;
      agents.push(a);
    }
  }
  const extraRefused: Record<string, number> = {};
  for (const [k, v] of refused) if (v - (refusedBefore.get(k) ?? 0) > 0) extraRefused[k] = v - (refusedBefore.get(k) ?? 0);
  result.extra = { tried: cfg.extra, held: extraHeld, refused: extraRefused };

  emit('result', summary());
  ratedWorker?.postMessage('stop');
  for (const a of agents) {
    clearInterval(a.heartbeat);
    a.ws.terminate();
  }
  clearTimeout(hardStop);
  setTimeout(() => process.exit(0), 200);
}

/**
 * The agent's bound on batches on the wire (agent/src/sink/websocket.ts, maxInflightBatches): past
 * it a real agent keeps new alerts in its spool. Without it, a store slower than the offered rate
 * (PostgreSQL here) had the client queue every batch of the phase in its sockets, and the phases
 * after it measured that backlog draining.
 */
const AGENT_MAX_INFLIGHT = 8;

/**
 * `perSec` alerts a second from `agents` for `ms`, each agent sending a batch on its own fixed
 * schedule (spread over the period) whatever the acks do, except that a batch due while the agent
 * has AGENT_MAX_INFLIGHT unacked is held back (counted: the agent would spool it).
 */
async function offer(agents: Agent[], perSec: number, ms: number): Promise<{ offered: number; late: number; heldBack: number }> {
  const periodMs = (1000 * cfg.ratedBatch * agents.length) / perSec;
  let offered = 0;
  let late = 0;
  let heldBack = 0;
  const start = performance.now();
  await Promise.all(agents.map(async (a, i) => {
    let next = start + (periodMs * i) / agents.length;
    while (a.open && next < start + ms) {
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      else if (wait < -periodMs) late += 1; // this client fell behind its own schedule
      if (a.pending.size < AGENT_MAX_INFLIGHT) sendBatch(a, cfg.ratedBatch);
      else heldBack += cfg.ratedBatch;
      offered += cfg.ratedBatch;
      next += periodMs;
    }
  }));
  return { offered, late, heldBack };
}

/**
 * The rated phase's agents, in a worker thread: an isolate and an event loop of their own, apart
 * from the main thread's 15,000 connections. In the main thread, the sends and the ack times were
 * held up by its garbage collection (mark-compacts of a heap that holds every connection) and by
 * its heartbeats: its event loop lagged 11-45 ms (p99 a second) in this phase, against 1-6 ms while
 * only holding the connections, and that lag went into every ack time measured. As separate
 * agents would, these connect with their own tokens (after the main thread's and the extras').
 * Replies with the phase's result; stays connected until told 'stop'.
 */
async function ratedPhase(): Promise<void> {
  const first = cfg.connections + cfg.extra;
  const connected = await Promise.all(Array.from({ length: cfg.ratedAgents }, (_, i) => connect(first + i)));
  const rated = connected.filter((a): a is Agent => a !== null);
  // Rendered now, not at each agent's first send: that would be this client's work inside the measured window.
  for (const a of rated) a.template = new AlertTemplate(a.id, cfg.ratedBatch);
  // This thread's code starts cold (a new isolate): a tenth of the rate for two seconds compiles
  // it, unmeasured, and leaves the collector's surge to the phase itself.
  const warmup: number[] = [];
  for (const a of rated) a.lat = warmup;
  await offer(rated, cfg.ratedPerSec / 10, 2_000);
  await drain(rated, 10_000);
  for (const a of rated) a.lat = ratedAckMs;
  parentPort!.postMessage({ event: 'start' });
  const ackedBefore = acked;
  const rStart = performance.now();
  const { offered, late, heldBack } = await offer(rated, cfg.ratedPerSec, cfg.ratedMs);
  const sentMs = performance.now() - rStart;
  // Up to 8 batches an agent are on the wire: 32,000 alerts, most of a minute where the store
  // commits a thousand a second; the phases after this one start once they are acked.
  await drain(rated, 30_000);
  parentPort!.postMessage({
    agents: rated.length, batch: cfg.ratedBatch, offeredPerSec: cfg.ratedPerSec, offered, heldBack, sentPerSec: Math.round(((offered - heldBack) * 1000) / sentMs),
    ackedPerSec: Math.round(((acked - ackedBefore) * 1000) / (performance.now() - rStart)), acked: acked - ackedBefore, lateSends: late,
    ackMs: q(ratedAckMs),
    // By second of the phase (when the batch was sent): where in the phase the slow acks were.
    ackMsBySecond: Array.from({ length: Math.ceil(sentMs / 1000) }, (_, sec) => q(ratedAckMs.filter((_, k) => Math.floor((ratedSentAt[k]! - rStart) / 1000) === sec))),
    refused: Object.fromEntries(refused),
  });
  parentPort!.once('message', () => {
    for (const a of rated) {
      clearInterval(a.heartbeat);
      a.ws.terminate();
    }
    parentPort!.close();
  });
}

if (isMainThread) {
  main().catch((err: unknown) => {
    emit('error', { message: (err as Error).message });
    process.exit(1);
  });
} else {
  ratedPhase().catch((err: unknown) => {
    parentPort!.postMessage({ error: (err as Error).message });
  });
}

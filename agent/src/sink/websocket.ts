// Delivers alerts to the collector with nothing lost: each alert is spooled and fsync'd first, then
// sent from the spool over one WebSocket to ws(s)://HOST:PORT/agent, and leaves the spool only
// when the collector acks it (the collector acks after its store has committed).
//
// Back-pressure: `send` waits only for the local fsync, never for the network. Up to
// `maxInflightBatches` batches are on the wire unacked; while they are, new alerts wait in the spool
// and go out in bigger batches (so a sink that falls behind catches up with fewer, larger frames).
// When the spool is full the newest alert is refused and counted (see spool.ts).
//
// After any disconnect, everything after the last ack is resent; the collector stores each alert
// once (keyed by its original event time and uuid), so a resend is harmless. Reconnects back off exponentially
// with jitter. An alert the collector finds invalid is quarantined there and still acked (the ack
// lists it in `rejected`): it leaves the spool like the others, is logged and counted in health
// (`rejected`), and never blocks what follows it.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import type WebSocketType from 'ws';
import type { Alert } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import { checkJsonBounds } from '../../../shared/json-bounds.js';
import {
  AGENT_PATH, ALERTS_FRAME_OVERHEAD, ALERT_BOUNDS, DEFAULT_HEARTBEAT_MS, MAX_ALERT_BYTES, MAX_BATCH_ALERTS, MAX_FRAME_BYTES,
  MAX_EXCEPTION_COUNTS, PROTOCOL_VERSION, alertsFrame, parseCollectorMessage, validateAlert,
  type AgentFacts, type AgentHealth, type AttributionHealth, type BaselineSeal, type ExceptionCount, type HeartbeatMessage, type HelloMessage, type SourceHealth,
} from '../../../shared/protocol.js';
import type { Sink } from './sink.js';
import { Spool, type SpoolHealth } from './spool.js';
import { alertJson } from './alert-json.js';

// ws is CommonJS: required, not imported, so Node's ESM loader does not run its CommonJS export
// lexer over ws's eight files (the lexer, once optimized by V8, cost the agent ~4 MB; see log.ts).
const WebSocket = createRequire(import.meta.url)('ws') as typeof WebSocketType;
type WebSocket = WebSocketType;

export interface WebSocketSinkOptions {
  /**
   * The collector's base URL, ws(s)://HOST:PORT (`/agent` is appended when it has no path), or
   * several: the first is preferred, the next ones are used in turn while it is unreachable, and
   * the first is tried again every retryFirstMs. One connection at a time, whichever it is.
   */
  url: string | readonly string[];
  /** This agent's token (`ldguard token create --role agent`), sent as `Authorization: Bearer`. */
  token: string;
  /** Spool folder, normally `<state_dir>/spool`. */
  spoolDir: string;
  /** spool_max_bytes: bound of the spool on disk. */
  spoolMaxBytes: number;
  /** Spool segment size (tests use small ones); default from spool.ts. */
  spoolSegmentBytes?: number;
  /** Facts sent in the hello of every connection (read at each connect, so they can change). */
  facts: () => AgentFacts;
  /** The pipeline's own health, sent with every heartbeat beside the spool's. */
  health?: () => { eventsLost: number; source: SourceHealth; attribution?: AttributionHealth; exceptions?: ExceptionCount[]; rulesDigest?: string; baseline?: BaselineSeal };
  /** PEM CA bundle to trust for wss:// (ca_file); default: the system's CAs. */
  caFile?: string | null;
  /** Client certificate and key for wss:// when the collector asks for one (cert_file, key_file). */
  certFile?: string | null;
  keyFile?: string | null;
  /** Allow plain ws:// to a host that is not loopback (allow_insecure). */
  allowInsecure?: boolean;
  heartbeatMs?: number; // heartbeat + ping period; a missing pong by the next one drops the connection
  ackTimeoutMs?: number; // a batch unacked this long means a stuck collector: reconnect and resend
  backoffInitialMs?: number; // first reconnect delay
  backoffMaxMs?: number; // reconnect delay ceiling
  retryFirstMs?: number; // connected to a fallback collector: go back to the first this often (±25%)
  maxInflightBatches?: number; // batches on the wire before waiting for an ack
  maxBatchAlerts?: number; // alerts per batch at most
  /** How long close() waits for the collector to ack what was already sent. */
  closeTimeoutMs?: number;
  logger?: Logger;
}

export interface WebSocketSinkHealth {
  connected: boolean;
  url: string;
  spool: SpoolHealth;
  /** Alerts refused because the spool was full (same as spool.overflow). */
  overflow: number;
  lastAckAt: string | null;
  lastAckSeq: number;
  /** Send-to-ack time of the last acked batch. */
  lastAckLatencyMs: number | null;
  inflightBatches: number;
  reconnects: number;
  lastError: string | null;
  /** Alerts the collector quarantined as invalid (acked, dropped from the spool) since start. */
  rejected: number;
}

const DEFAULTS = {
  heartbeatMs: DEFAULT_HEARTBEAT_MS,
  ackTimeoutMs: 30_000,
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  retryFirstMs: 60_000,
  maxInflightBatches: 8,
  maxBatchAlerts: MAX_BATCH_ALERTS,
  closeTimeoutMs: 2_000,
};

/** The least time between two heartbeats pushed out of turn (pushHealth). */
const PUSH_MIN_MS = 1_000;

/** A connection that stayed up this long resets the back-off even without an ack. */
const STABLE_MS = 30_000;

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h);
  return false;
}

/** Normalises the collector URL and refuses plain text to a remote host unless allowed. */
export function collectorUrl(raw: string, allowInsecure = false): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new LdgError('LDG_ERR_COLLECTOR_URL', `collector URL ${JSON.stringify(raw)} is not a URL; write it as wss://HOST:PORT (or ws://127.0.0.1:PORT)`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new LdgError('LDG_ERR_COLLECTOR_URL', `collector URL ${raw} must start with wss:// or ws://, not ${url.protocol}//`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = AGENT_PATH;
  if (url.protocol === 'ws:' && !isLoopback(url.hostname) && !allowInsecure) {
    throw new LdgError('LDG_ERR_INSECURE_COLLECTOR', `refusing plain ws:// to ${url.host}: the token and the alerts would cross the network unencrypted. Use wss:// (with ca_file if the collector's certificate is private), or set allow_insecure = true in the agent config (allowInsecure) to accept that risk`);
  }
  return url;
}

/** Each collector URL normalised and checked (collectorUrl); at least one. */
export function collectorUrls(raw: string | readonly string[], allowInsecure = false): URL[] {
  const list = typeof raw === 'string' ? [raw] : raw;
  if (list.length === 0) throw new LdgError('LDG_ERR_COLLECTOR_URL', 'no collector URL; set collector = "wss://HOST:PORT" (or a list of them)');
  return list.map((u) => collectorUrl(u, allowInsecure));
}

/** Serialises an alert for the spool, shortening huge strings so that it fits in one frame. */
export function serialiseAlert(a: Alert): string {
  const problems = validateAlert(a);
  if (problems.length > 0) {
    throw new LdgError('LDG_ERR_ALERT_INVALID', `the pipeline built an alert the collector would refuse: ${problems.join('; ')}. This is a bug in ldguard; please report it with the alert`);
  }
  // Within the protocol's size and shape (an honest `cp` with 15,000 empty arguments is 60 kB but
  // 15,000 list items): the collector quarantines an alert past either.
  const fits = (text: string) => Buffer.byteLength(text) <= MAX_ALERT_BYTES && checkJsonBounds(text, ALERT_BOUNDS).ok;
  let json = alertJson(a);
  for (const cut of [4096, 512, 64]) {
    if (fits(json)) return json;
    // Command lines and args can be megabytes; the alert stays valid and says it was shortened.
    const short = shorten(a, cut) as Alert & { ldguard: Record<string, unknown> };
    short.ldguard = { ...short.ldguard, truncated: true };
    json = JSON.stringify(short);
  }
  if (fits(json)) return json;
  throw new LdgError('LDG_ERR_ALERT_TOO_BIG', `alert ${a.kibana.alert.uuid} is over ${MAX_ALERT_BYTES} bytes even shortened; this is a bug in ldguard, please report it`);
}

function shorten(v: unknown, cut: number): unknown {
  if (typeof v === 'string') return v.length > cut ? `${v.slice(0, cut)}…` : v;
  if (Array.isArray(v)) return v.slice(0, Math.max(8, cut / 64)).map((x) => shorten(x, cut));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = k === 'kibana' || k === 'rule' ? x : shorten(x, cut);
    return out;
  }
  return v;
}

function readPem(file: string | null | undefined, what: string): Buffer | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (err) {
    throw new LdgError('LDG_ERR_TLS_FILE', `cannot read the ${what} ${file}: ${errorMessage(err)}; fix the path in the agent config`);
  }
}

interface Inflight {
  first: number;
  last: number;
  sentAt: number;
}

/** The settings of the collector link that a reload (SIGHUP) may change. */
export type CollectorLink = Pick<WebSocketSinkOptions, 'url' | 'token' | 'caFile' | 'certFile' | 'keyFile' | 'allowInsecure'>;

type Tls = { ca?: Buffer; cert?: Buffer; key?: Buffer };

function readTls(link: CollectorLink): Tls {
  const tls = {
    ca: readPem(link.caFile, 'CA bundle (ca_file)'),
    cert: readPem(link.certFile, 'client certificate (cert_file)'),
    key: readPem(link.keyFile, 'client key (key_file)'),
  };
  if (!tls.cert !== !tls.key) {
    throw new LdgError('LDG_ERR_TLS_FILE', 'cert_file and key_file go together: set both for a client certificate, or neither');
  }
  return tls;
}

function sameTls(a: Tls, b: Tls): boolean {
  const eq = (x?: Buffer, y?: Buffer) => (x && y ? x.equals(y) : x === y);
  return eq(a.ca, b.ca) && eq(a.cert, b.cert) && eq(a.key, b.key);
}

export class WebSocketSink implements Sink {
  /** The collectors, in order of preference; `current` indexes the one in use or being tried. */
  urls: URL[];
  private current = 0;
  /** Set when this side closes a fallback's connection to go back to the first collector. */
  private returning = false;
  private retryFirstTimer: NodeJS.Timeout | undefined;
  private readonly opts: WebSocketSinkOptions & typeof DEFAULTS;
  private readonly log: Logger | undefined;
  private tls: Tls;
  private ws: WebSocket | undefined;
  private connected = false;
  private connectedAt = 0;
  private closing = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private pongPending = false;
  /** Next spool sequence to put on the wire on this connection. */
  private sendSeq = 1;
  private inflight: Inflight[] = [];
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private lastAckAt: number | null = null;
  private lastAckSeq = 0;
  private lastAckLatencyMs: number | null = null;
  private reconnects = 0;
  private rejected = 0;
  private lastError: string | null = null;
  private readonly startedAt = Date.now();
  private idleWaiters: Array<() => void> = [];

  /** The collector in use (or being tried). */
  get url(): URL {
    return this.urls[this.current]!;
  }

  private constructor(private readonly spool: Spool, opts: WebSocketSinkOptions, urls: URL[]) {
    this.opts = { ...opts, ...DEFAULTS, ...stripUndefined(opts) } as WebSocketSinkOptions & typeof DEFAULTS;
    this.log = opts.logger;
    this.urls = urls;
    this.tls = readTls(opts);
    spool.onAppend(() => void this.pump());
  }

  /** Opens the spool (recovering what a crash left) and starts connecting in the background. */
  static async open(opts: WebSocketSinkOptions): Promise<WebSocketSink> {
    const urls = collectorUrls(opts.url, opts.allowInsecure);
    if (!opts.token) throw new LdgError('LDG_ERR_TOKEN', 'no collector token: create one with `ldguard token create --name HOST --role agent` on the collector and put it in token_file');
    const spool = await Spool.open({ dir: opts.spoolDir, maxBytes: opts.spoolMaxBytes, segmentBytes: opts.spoolSegmentBytes, logger: opts.logger });
    let sink: WebSocketSink;
    try {
      sink = new WebSocketSink(spool, opts, urls);
    } catch (err) {
      await spool.close();
      throw err;
    }
    sink.connect();
    return sink;
  }

  /**
   * A reload's link settings: all checked before any is taken (a bad file keeps the old link), then
   * the connection is made again with them; the spool carries on, so nothing unacked is lost.
   * Returns false when nothing changed (no reconnect).
   */
  relink(link: CollectorLink): boolean {
    const urls = collectorUrls(link.url, link.allowInsecure);
    if (!link.token) throw new LdgError('LDG_ERR_TOKEN', 'no collector token: put the agent\'s token in token_file');
    const tls = readTls(link);
    const hrefs = (l: URL[]) => l.map((u) => u.href).join(' ');
    if (hrefs(urls) === hrefs(this.urls) && link.token === this.opts.token && sameTls(tls, this.tls)) return false;
    this.urls = urls;
    this.current = 0;
    this.returning = false;
    clearTimeout(this.retryFirstTimer);
    this.tls = tls;
    Object.assign(this.opts, stripUndefined(link));
    this.log?.info({ urls: urls.map((u) => u.href) }, 'collector settings changed: reconnecting with them');
    this.attempt = 0;
    if (this.ws) {
      this.ws.terminate(); // onClose reconnects, with the new settings
    } else if (!this.closing) {
      clearTimeout(this.reconnectTimer);
      this.connect();
    }
    return true;
  }

  async send(a: Alert): Promise<void> {
    if (this.closing) throw new LdgError('LDG_ERR_SINK_CLOSED', 'send after close; the agent must stop its pipeline before closing its sinks');
    // null means the spool was full: counted there and reported in health and heartbeats.
    await this.spool.append(serialiseAlert(a));
  }

  health(): WebSocketSinkHealth {
    const spool = this.spool.health();
    return {
      connected: this.connected,
      url: this.url.href,
      spool,
      overflow: spool.overflow,
      lastAckAt: this.lastAckAt === null ? null : new Date(this.lastAckAt).toISOString(),
      lastAckSeq: this.lastAckSeq,
      lastAckLatencyMs: this.lastAckLatencyMs,
      inflightBatches: this.inflight.length,
      reconnects: this.reconnects,
      lastError: this.lastError,
      rejected: this.rejected,
    };
  }

  /** Resolves when everything spooled so far has been acked (tests and a graceful stop use it). */
  async drained(timeoutMs: number): Promise<boolean> {
    const done = () => this.spool.health().depth === 0;
    if (done()) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== check);
        resolve(done());
      }, timeoutMs);
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.idleWaiters = this.idleWaiters.filter((w) => w !== check);
        resolve(true);
      };
      this.idleWaiters.push(check);
    });
  }

  private connect(): void {
    if (this.closing) return;
    const ws = new WebSocket(this.url, {
      headers: { Authorization: `Bearer ${this.opts.token}` },
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
      perMessageDeflate: false,
      ...this.tls,
    });
    this.ws = ws;
    ws.on('open', () => this.onOpen(ws));
    ws.on('message', (data, isBinary) => this.onMessage(ws, data as Buffer, isBinary));
    ws.on('pong', () => {
      this.pongPending = false;
    });
    ws.on('error', (err) => {
      if (ws !== this.ws || this.closing) return;
      this.lastError = this.explain(err);
      this.log?.warn({ url: this.url.href, err: this.lastError, attempt: this.attempt }, 'collector connection failed');
    });
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString()));
  }

  private explain(err: Error): string {
    const status = /Unexpected server response: (\d+)/.exec(err.message)?.[1];
    if (status === '401') {
      return 'LDG_ERR_AUTH: the collector refused this agent\'s token (HTTP 401: unknown or revoked). Create a new one with `ldguard token create --name HOST --role agent` on the collector and put it in token_file';
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') return `${code}: nothing listens at ${this.url.host}; start the collector or fix the collector URL`;
    if (code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY') {
      return `${code}: the collector's certificate is not trusted; set ca_file to the CA that signed it`;
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `${code}: the collector's certificate does not name ${this.url.hostname}; connect by a name it lists`;
    return code ? `${code}: ${err.message}` : err.message;
  }

  private onOpen(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.connected = true;
    this.connectedAt = Date.now();
    this.lastError = null;
    this.pongPending = false;
    this.inflight = [];
    this.sendSeq = this.spool.ackedSeq + 1;
    const facts = this.opts.facts();
    const hello: HelloMessage = { type: 'hello', v: PROTOCOL_VERSION, agent: facts, heartbeatMs: this.opts.heartbeatMs };
    ws.send(JSON.stringify(hello));
    this.log?.info({ url: this.url.href, depth: this.spool.health().depth, ...(this.current > 0 ? { fallback: this.current } : {}) }, 'connected to the collector');
    clearTimeout(this.retryFirstTimer);
    if (this.current > 0) this.scheduleRetryFirst();
    this.heartbeatTimer = setInterval(() => this.heartbeat(ws), this.opts.heartbeatMs);
    this.heartbeatTimer.unref();
    void this.pump();
  }

  private heartbeat(ws: WebSocket): void {
    if (ws !== this.ws || !this.connected) return;
    if (this.pongPending) {
      this.log?.warn({ url: this.url.href }, 'collector did not answer a ping within a heartbeat: dropping the connection and reconnecting');
      ws.terminate();
      return;
    }
    const oldest = this.inflight[0];
    if (oldest && Date.now() - oldest.sentAt > this.opts.ackTimeoutMs) {
      this.log?.warn({ url: this.url.href, seq: oldest.first, waitedMs: Date.now() - oldest.sentAt }, 'collector did not ack a batch in time: reconnecting to resend');
      ws.terminate();
      return;
    }
    this.pongPending = true;
    ws.ping();
    const msg: HeartbeatMessage = { type: 'heartbeat', v: PROTOCOL_VERSION, health: this.agentHealth() };
    ws.send(JSON.stringify(msg));
  }

  private agentHealth(): AgentHealth {
    const s = this.spool.health();
    const p = this.opts.health?.() ?? { eventsLost: 0, source: { name: 'none', degraded: false } };
    return {
      spoolDepth: s.depth,
      spoolBytes: s.bytes,
      spoolOverflow: s.overflow,
      spoolTorn: s.torn,
      alertsRejected: this.rejected,
      eventsLost: p.eventsLost,
      source: p.source,
      ...(p.attribution ? { attribution: p.attribution } : {}),
      ...(p.exceptions?.length ? { exceptions: p.exceptions.slice(0, MAX_EXCEPTION_COUNTS) } : {}),
      uptimeSec: Math.floor((Date.now() - this.startedAt) / 1000),
      ...(p.rulesDigest ? { rulesDigest: p.rulesDigest } : {}),
      ...(p.baseline ? { baseline: p.baseline } : {}),
    };
  }

  /**
   * A heartbeat now, out of turn: the baseline was just saved, and the collector records every
   * seal it is told (a seal it never heard of is an alert there). Best effort: when not connected,
   * the next hello carries the seal instead.
   */
  pushHealth(): void {
    // At most one a second, the last state: a burst of alerts saves the baseline many times, and
    // one heartbeat per save would be a message per alert on the collector's rate limit.
    if (this.pushTimer) return;
    const wait = Math.max(0, this.lastPushAt + PUSH_MIN_MS - Date.now());
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      const ws = this.ws;
      if (!ws || !this.connected) return;
      this.lastPushAt = Date.now();
      const msg: HeartbeatMessage = { type: 'heartbeat', v: PROTOCOL_VERSION, health: this.agentHealth() };
      ws.send(JSON.stringify(msg));
    }, wait);
    this.pushTimer.unref();
  }

  private pushTimer: NodeJS.Timeout | undefined;
  private lastPushAt = 0;

  private onMessage(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    if (ws !== this.ws) return;
    const parsed = isBinary ? { ok: false as const, errors: ['binary frame'] } : parseCollectorMessage(data);
    if (!parsed.ok) {
      this.log?.error({ errors: parsed.errors }, 'collector sent a message this agent does not understand: reconnecting; run the same ldguard version on both');
      ws.terminate();
      return;
    }
    const msg = parsed.value;
    if (msg.type === 'error') {
      this.lastError = `${msg.code}: ${msg.message}`;
      this.log?.error({ code: msg.code, message: msg.message }, 'collector refused a message');
      return;
    }
    if (msg.rejected && msg.rejected.length > 0) {
      this.rejected += msg.rejected.length;
      // One line per ack, not per alert: a broken build could have every alert refused.
      this.log?.error({ count: msg.rejected.length, first: msg.rejected[0], total: this.rejected },
        'the collector quarantined invalid alerts (see its GET /api/quarantine) and acked them; run the same ldguard version on agent and collector');
    }
    const now = Date.now();
    let latency: number | null = null;
    while (this.inflight.length > 0 && this.inflight[0]!.last <= msg.upTo) latency = now - this.inflight.shift()!.sentAt;
    if (latency !== null) this.lastAckLatencyMs = latency;
    this.lastAckAt = now;
    this.lastAckSeq = Math.max(this.lastAckSeq, msg.upTo);
    this.attempt = 0;
    this.spool.ack(msg.upTo).then(
      () => {
        for (const w of [...this.idleWaiters]) w();
      },
      (err: unknown) => this.log?.error({ err: errorMessage(err) }, 'cannot record the ack in the spool; those alerts will be resent (the collector ignores duplicates)'),
    );
    void this.pump();
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    const wasConnected = this.connected;
    this.connected = false;
    this.ws = undefined;
    this.inflight = [];
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.retryFirstTimer);
    if (this.returning) {
      // This side closed a fallback's connection to try the first collector again: at once.
      this.returning = false;
      this.current = 0;
      if (!this.closing) this.connect();
      return;
    }
    if (wasConnected) {
      this.log?.warn({ url: this.url.href, code, reason, depth: this.spool.health().depth }, 'collector connection closed; unacked alerts stay spooled and will be resent');
      if (Date.now() - this.connectedAt >= STABLE_MS) this.attempt = 0;
    } else if (this.urls.length > 1) {
      // Unreachable (or refused): the next collector in the list gets the next attempt.
      const from = this.url.href;
      this.current = (this.current + 1) % this.urls.length;
      this.log?.info({ from, to: this.url.href }, 'collector unreachable: trying the next one');
    }
    if (this.closing) return;
    // Exponential back-off with "equal jitter": half fixed, half random, so a fleet that lost the
    // collector at the same moment does not come back at the same moment.
    const ceiling = Math.min(this.opts.backoffMaxMs, this.opts.backoffInitialMs * 2 ** Math.min(this.attempt, 30));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.reconnects += 1;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * On a fallback collector: go back to the first after retryFirstMs (±25%, so a fleet that failed
   * over together does not return together), once nothing is in flight (what is acked here is not
   * sent again there).
   */
  private scheduleRetryFirst(delayMs = this.opts.retryFirstMs * (0.75 + Math.random() / 2)): void {
    this.retryFirstTimer = setTimeout(() => {
      const ws = this.ws;
      if (!ws || !this.connected || this.current === 0 || this.closing) return;
      if (this.inflight.length > 0) {
        this.scheduleRetryFirst(1_000);
        return;
      }
      this.log?.info({ from: this.url.href, to: this.urls[0]!.href }, 'trying the first collector again');
      this.returning = true;
      ws.close(1000, 'agent returning to its first collector');
    }, delayMs);
    this.retryFirstTimer.unref();
  }

  /** Puts spooled alerts on the wire while the window has room. Only one pump runs at a time. */
  private pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    this.pumping = this.pumpLoop().finally(() => {
      this.pumping = undefined;
    });
    return this.pumping;
  }

  private async pumpLoop(): Promise<void> {
    try {
      do {
        this.pumpAgain = false;
        const maxBytes = MAX_FRAME_BYTES - ALERTS_FRAME_OVERHEAD - this.opts.maxBatchAlerts;
        while (this.connected && this.ws && this.inflight.length < this.opts.maxInflightBatches && this.ws.bufferedAmount < 2 * MAX_FRAME_BYTES) {
          const ws = this.ws;
          const records = await this.spool.read(this.sendSeq, this.opts.maxBatchAlerts, maxBytes);
          // The connection may have changed while reading; the new one restarts from the ack.
          if (ws !== this.ws || !this.connected || records.length === 0) break;
          let n = 1;
          while (n < records.length && records[n]!.seq === records[n - 1]!.seq + 1) n += 1;
          const first = records[0]!.seq;
          const last = records[n - 1]!.seq;
          ws.send(alertsFrame(first, records.slice(0, n).map((r) => r.data.toString('utf8'))));
          this.inflight.push({ first, last, sentAt: Date.now() });
          this.sendSeq = last + 1;
        }
      } while (this.pumpAgain);
    } catch (err) {
      if (this.closing) return;
      this.log?.error({ err: errorMessage(err) }, 'cannot read the spool; reconnecting to start again from the last ack');
      this.ws?.terminate();
    }
  }

  /** Stops delivery: waits up to closeTimeoutMs for acks of what is on the wire, then closes. */
  async close(): Promise<void> {
    if (this.closing) return;
    if (this.connected && this.spool.health().depth > 0) await this.drained(this.opts.closeTimeoutMs);
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.retryFirstTimer);
    clearTimeout(this.pushTimer);
    clearInterval(this.heartbeatTimer);
    const ws = this.ws;
    if (ws) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1_000);
        ws.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else ws.close(1000, 'agent stopping');
      });
    }
    this.connected = false;
    // A read of the spool may be under way: let it end before the spool closes its files.
    await this.pumping;
    await this.spool.close();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// The collector's network side: one HTTP(S) server on one port for the API (api.ts), the agents'
// WebSocket at /agent, and whatever the dashboard adds (Api.extra, addUpgradeHandler).
//
// Agents authenticate at the upgrade, before any WebSocket exists: a missing, unknown, revoked or
// non-agent token gets HTTP 401 and the socket is destroyed, so nothing such a client sends is
// ever read. After the upgrade every message is validated (shared/protocol.ts); a bad one gets an
// error message, a log line and a close (1007 not JSON, 1008 wrong schema or order, 1003 binary,
// 1009 frame too big, by `ws` itself), and nothing of it is stored. One connection's misconduct never
// touches another's: each has its own state, its own rate limit and its own acks. An alert that fails
// validation inside an otherwise valid batch is the exception: it is quarantined and acked (see
// shared/protocol.ts), so one bad record cannot stall an agent's delivery for ever.
//
// One token, one agent, both ways: an agent token is bound to the agent id of the first hello that
// uses it (stored with the token); a hello with another id is refused (4002, LDG_ERR_TOKEN_AGENT),
// and so is a hello from another token claiming a bound agent id (4003, LDG_ERR_AGENT_CLAIMED),
// while the agent that holds it is left undisturbed. So a copied token cannot speak as, kick, or
// overwrite the state of another host. Every stored alert carries its authenticated sender (the
// agent_id and token_name columns, shown as ldguard.received_from), never what the document says.
//
// Every agent may be hostile. Each message's bounds are checked on its bytes before anything else
// (frame.ts); a handler that throws closes that one connection (1011) and the collector carries on;
// each token, each address and each connection gets a bounded share (connections, pre-hello
// sockets, bytes of unfinished messages: see the fair-share options in config.ts).
//
// Back-pressure instead of falling over: a connection past its rate limit, or any alert sender while
// the ingest queue is past its high-water mark, is simply not read for a while (its TCP window
// fills, its acks come later). Half-open peers are found by ping/pong and dropped.
import { STATUS_CODES, createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import {
  AGENT_PATH, CLOSE, DEFAULT_HEARTBEAT_MS, MAX_FRAME_BYTES, MESSAGE_BOUNDS, PROTOCOL_VERSION, ackMessage, errorMessageFrame, type AgentMessage, type BaselineSeal, type RejectedAlert,
} from '../../shared/protocol.js';
import { VERSION } from '../../shared/version.js';
import { Api } from './api.js';
import { readAgentFrame, scanAlertsFrame } from './frame.js';
import { parseListen, type CollectorConfig } from './config.js';
import { Ingest } from './ingest.js';
import { Metrics } from './metrics.js';
import { Notices, type Notice } from './notices.js';
import { judgeSeal } from './continuity.js';
import { HeldBackQuota, isHeldBack } from './quota.js';
import type { Store, TokenInfo } from './store/store.js';
import { Dashboard } from './web.js';

export type UpgradeHandler = (req: IncomingMessage, socket: Socket, head: Buffer) => void;

/** A client that stopped reading our acks: past this we drop it rather than buffer for it. */
const MAX_OUTBOUND_BUFFER = 1024 * 1024;

/** Pings go out a share at a time, about this often (see pingSome). */
const PING_SLICE_MS = 1000;

/** Agent names an "agent offline" line gives as examples; the rest are counted. */
const OFFLINE_SAMPLE = 5;

/** A connection's quarantined alerts are logged at most this often (with a count): a broken build can send nothing else. */
const QUARANTINE_LOG_EVERY_MS = 10_000;

/**
 * How often the tokens table is looked at for revocations (one indexed count over a small table):
 * a revoked token's connections close within this, and its batches are not acked meanwhile (the
 * writer refuses them in the commit itself, see Store.commit).
 */
const TOKEN_CHECK_MS = 250;

type PauseReason = 'rate' | 'ingest' | 'closing';

class Conn {
  agentId: string | undefined;
  alive = true;
  closed = false;
  helloTimer: NodeJS.Timeout | undefined;
  /** The host this agent said it watches (hello hostId), for the continuity checks (continuity.ts). */
  host?: { id: string; name: string };
  /** The last baseline seal judged on this connection ("generation sha256"): heartbeats repeat it. */
  sealSeen?: string;
  resumeTimer: NodeJS.Timeout | undefined;
  readonly paused = new Set<PauseReason>();
  msgTokens: number;
  alertTokens: number;
  lastRefill = performance.now();
  /** Quarantined alerts not logged yet, and when the last line was. */
  quarantinedUnlogged = 0;
  quarantineLoggedAt = -Infinity;
  /** socket.bytesRead at its last whole message: what came after is held unfinished (see checkShares). */
  readAtMessage = 0;

  constructor(readonly ws: WebSocket, readonly socket: Socket, readonly remote: string, readonly address: string, readonly token: TokenInfo, cfg: CollectorConfig) {
    this.msgTokens = cfg.rateMessagesBurst;
    this.alertTokens = cfg.rateAlertsBurst;
  }

  pause(reason: PauseReason): void {
    this.paused.add(reason);
    this.ws.pause();
  }

  resume(reason: PauseReason): void {
    this.paused.delete(reason);
    if (this.paused.size === 0) this.ws.resume();
  }
}

function rejectUpgrade(socket: Socket, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  // Written then destroyed, as ws's own abortHandshake does: the client gets the status line.
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n${status === 401 ? 'WWW-Authenticate: Bearer realm="ldguard"\r\n' : ''}\r\n${body}`,
  );
}

function bearer(h: string | undefined): string | undefined {
  const m = h && /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}

export interface CollectorServerOptions {
  config: Readonly<CollectorConfig>;
  store: Store;
  log: Logger;
}

export class CollectorServer {
  readonly metrics = new Metrics();
  readonly ingest: Ingest;
  readonly api: Api;
  readonly http: Server;
  /** The web dashboard (collector/src/web.ts); undefined if it could not start (logged). */
  readonly dashboard: Dashboard | undefined;
  private readonly cfg: Readonly<CollectorConfig>;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly wss: WebSocketServer;
  private readonly conns = new Set<Conn>();
  private readonly byAgent = new Map<string, Conn>();
  /** When this process started: a silence that began before it may be the collector's own outage. */
  private readonly startedAt = Date.now();
  /** Agents marked offline whose silence began before this process started: judged once the grace is over (see noticeSilence). */
  private readonly silentSinceBefore = new Map<string, { hostname: string | null; lastSeen: number }>();
  private readonly upgradeHandlers = new Map<string, UpgradeHandler>();
  /** Per host, the last continuity judgement queued (continuity()): one host's seals in turn. */
  private readonly hostTurns = new Map<string, Promise<void>>();
  private readonly pausedForIngest = new Set<Conn>();
  /**
   * Token hash → the agent id it is bound to, for bindings made by this process and not yet read
   * back from the store (the writer thread commits them). With SQLite this process is the only one
   * that binds, so this and the tokens table together are the truth; over PostgreSQL other
   * collectors' bindings reach the store's token view within a second (store/postgres.ts).
   */
  private readonly bound = new Map<string, string>();
  /** The same bindings the other way (agent id → token hash), for the hellos that claim an id. */
  private readonly boundAgents = new Map<string, string>();
  /** Connections per token hash, and connections per address that have not said hello. */
  private readonly perToken = new Map<string, number>();
  private readonly preHello = new Map<string, number>();
  private readonly notices = new Notices();
  private readonly heldBackQuota: HeldBackQuota;
  private tokenTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  /** The connections of the ping round in progress (see pingSome), and which of its slices is next. */
  private pingRound: Conn[] = [];
  private pingSlice = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private tokensVersion = '';
  /** A sweep is running (its scan is asynchronous): the next tick skips rather than overlaps it. */
  private sweeping = false;
  private closing = false;
  private readonly tlsClientCa: boolean;

  constructor(opts: CollectorServerOptions) {
    this.cfg = opts.config;
    this.heldBackQuota = new HeldBackQuota(this.cfg.heldBackQuotaPerToken);
    this.store = opts.store;
    this.log = opts.log;
    if (this.store.upgraded) this.log.info({ db: this.store.location, upgrade: this.store.upgraded }, `database upgraded from ${this.store.upgraded}`);
    this.ingest = new Ingest(this.store, this.metrics, this.log, {
      maxCommitAlerts: this.cfg.maxCommitAlerts, highWater: this.cfg.ingestHighWater, highWaterBytes: this.cfg.ingestHighWaterBytes,
      offlineAfterMissedHeartbeats: this.cfg.offlineAfterMissedHeartbeats,
    });
    this.ingest.on('drain', () => {
      for (const c of this.pausedForIngest) c.resume('ingest');
      this.pausedForIngest.clear();
    });
    this.api = new Api({
      store: this.store,
      metrics: this.metrics,
      ingest: this.ingest,
      log: this.log,
      version: VERSION,
      connectedAgents: () => new Set(this.byAgent.keys()),
      connections: () => this.conns.size,
    });
    // Alerts other collectors over the same database stored: on this one's feeds too.
    this.store.onRemoteAlerts((rows) => this.ingest.storedElsewhere(rows));
    // The dashboard is an extra: if its storage cannot be opened, agents and the API work without it.
    try {
      this.dashboard = new Dashboard({
        store: this.store, ingest: this.ingest, log: this.log, version: VERSION, tls: Boolean(this.cfg.tlsCert && this.cfg.tlsKey),
        connectedAgents: () => new Set(this.byAgent.keys()),
      });
      this.dashboard.mount(this.api, (path, handler) => this.addUpgradeHandler(path, handler));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'the dashboard could not start; agents and the API are served without it');
    }
    this.tlsClientCa = Boolean(this.cfg.tlsClientCa);
    if (this.cfg.tlsCert && this.cfg.tlsKey) {
      const read = (p: string, what: string) => {
        try {
          return readFileSync(p);
        } catch (err) {
          throw new LdgError('LDG_ERR_TLS_FILE', `cannot read ${what} ${p}: ${errorMessage(err)}; fix the path in the collector config`);
        }
      };
      this.http = createHttpsServer({
        cert: read(this.cfg.tlsCert, 'tls_cert'),
        key: read(this.cfg.tlsKey, 'tls_key'),
        ciphers: this.cfg.tlsCiphers,
        minVersion: 'TLSv1.2',
        honorCipherOrder: true,
        ...(this.cfg.tlsClientCa ? { ca: read(this.cfg.tlsClientCa, 'tls_client_ca'), requestCert: true, rejectUnauthorized: this.cfg.tlsRequireClientCert } : {}),
      });
    } else {
      this.http = createHttpServer();
    }
    // Slow or silent HTTP clients (slowloris) are cut off; upgraded sockets leave these timers.
    this.http.headersTimeout = 10_000;
    this.http.requestTimeout = 30_000;
    this.http.keepAliveTimeout = 5_000;
    this.http.maxHeadersCount = 64;
    this.http.on('request', (req, res) => this.api.handle(req, res));
    this.http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
      // Headers past Node's limit get their status, not a reset the client cannot explain.
      if (err.code === 'HPE_HEADER_OVERFLOW' && socket.writable) {
        socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        socket.once('finish', () => socket.destroy());
        return;
      }
      socket.destroy();
    });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
  }

  /** Extra WebSocket endpoints (the dashboard's live feed); they do their own authentication. */
  addUpgradeHandler(path: string, handler: UpgradeHandler): void {
    if (path === AGENT_PATH) throw new Error(`${AGENT_PATH} is the agents' endpoint`);
    this.upgradeHandlers.set(path, handler);
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Listens on config.listen; resolves with the bound address (port 0 becomes a real port). */
  async listen(): Promise<AddressInfo> {
    const where = parseListen(this.cfg.listen)!;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new LdgError('LDG_ERR_LISTEN', `cannot listen on ${this.cfg.listen}: ${err.code ?? err.message}; ${err.code === 'EADDRINUSE' ? 'another process uses that port: stop it or choose another --listen' : 'check --listen'}`, { cause: err }));
      };
      this.http.once('error', onError);
      this.http.listen(where.port, where.host, () => {
        this.http.off('error', onError);
        resolve();
      });
    });
    this.tokensVersion = this.store.tokensVersion();
    this.dashboard?.start();
    this.pingTimer = setInterval(() => this.pingSome(), this.cfg.pingIntervalMs / this.pingSlices());
    this.sweepTimer = setInterval(() => void this.sweep(), this.cfg.sweepIntervalMs);
    this.tokenTimer = setInterval(() => {
      this.checkTokens();
      this.checkShares();
    }, TOKEN_CHECK_MS);
    const addr = this.http.address() as AddressInfo;
    if (!this.cfg.tlsCert && !['127.0.0.1', '::1', 'localhost'].includes(where.host) && !where.host.startsWith('127.')) {
      this.log.warn({ listen: this.cfg.listen }, 'listening without TLS on a non-loopback address: tokens and alerts cross the network in clear; set tls_cert and tls_key');
    }
    return addr;
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    if (this.closing) return rejectUpgrade(socket, 503, 'LDG_ERR_STOPPING', 'the collector is stopping; reconnect shortly');
    const path = (req.url ?? '/').split('?')[0]!;
    const extra = this.upgradeHandlers.get(path);
    if (extra) return extra(req, socket, head);
    if (path !== AGENT_PATH) return rejectUpgrade(socket, 404, 'LDG_ERR_API_NOT_FOUND', `no WebSocket endpoint at ${path}; agents connect to ${AGENT_PATH}`);
    const token = bearer(req.headers.authorization);
    const info = token ? this.store.lookupToken(token) : undefined;
    // A token created on another collector (or by `ldguard token` against a shared database) may
    // be newer than this collector's token view: read the view up to date before refusing it.
    if (token && !info && this.store.catchUpTokens) {
      this.store.catchUpTokens().then(
        () => this.admit(req, socket, head, remote, token, this.store.lookupToken(token)),
        (err: unknown) => {
          this.log.warn({ remote, err: errorMessage(err) }, 'reading the tokens failed; judging the agent on the token view as it is');
          this.admit(req, socket, head, remote, token, undefined);
        },
      );
      return;
    }
    this.admit(req, socket, head, remote, token, info);
  }

  /** The rest of the upgrade, once the token is looked up. */
  private admit(req: IncomingMessage, socket: Socket, head: Buffer, remote: string, token: string | undefined, info: TokenInfo | undefined): void {
    if (this.closing) return rejectUpgrade(socket, 503, 'LDG_ERR_STOPPING', 'the collector is stopping; reconnect shortly');
    if (socket.destroyed) return;
    let refusal: string | undefined;
    if (!token) refusal = 'no bearer token';
    else if (!info) refusal = 'unknown token';
    else if (info.revoked !== null) refusal = `revoked token "${info.name}"`;
    else if (info.role !== 'agent') refusal = `token "${info.name}" has role ${info.role}, not agent`;
    else if (this.tlsClientCa) {
      const tls = req.socket as TLSSocket;
      const presented = Object.keys(tls.getPeerCertificate?.() ?? {}).length > 0;
      if (presented && !tls.authorized) refusal = `client certificate not signed by tls_client_ca (${String(tls.authorizationError)})`;
    }
    if (refusal || !info) {
      this.metrics.authFailures += 1;
      this.log.warn({ remote, reason: refusal }, 'agent refused at the upgrade (401)');
      return rejectUpgrade(socket, 401, 'LDG_ERR_AUTH', 'unknown or revoked agent token; create one with `ldguard token create --name HOST --role agent`');
    }
    if (this.conns.size >= this.cfg.maxConnections) {
      this.log.warn({ remote, max: this.cfg.maxConnections }, 'agent refused: max_connections reached (503); it will retry');
      return rejectUpgrade(socket, 503, 'LDG_ERR_BUSY', 'the collector is at max_connections; retry later');
    }
    const address = req.socket.remoteAddress ?? '?';
    const share = (this.perToken.get(info.hash) ?? 0) >= this.cfg.maxConnectionsPerToken
      ? `token "${info.name}" already holds ${this.cfg.maxConnectionsPerToken} connections (max_connections_per_token)`
      : (this.preHello.get(address) ?? 0) >= this.cfg.maxPreHelloPerAddress
        ? `${address} already holds ${this.cfg.maxPreHelloPerAddress} connections that have not said hello (max_pre_hello_per_address)`
        : undefined;
    if (share) {
      this.metrics.reject('over_share');
      this.log.warn({ remote, token: info.name, reason: share }, 'agent refused at the upgrade (429): over its share');
      return rejectUpgrade(socket, 429, 'LDG_ERR_OVER_SHARE', `${share}; an agent needs one connection: wait for the old one to close, and give each host its own token`);
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, socket, remote, address, info));
  }

  private onConnection(ws: WebSocket, socket: Socket, remote: string, address: string, token: TokenInfo): void {
    const c = new Conn(ws, socket, remote, address, token, this.cfg);
    this.conns.add(c);
    this.perToken.set(token.hash, (this.perToken.get(token.hash) ?? 0) + 1);
    this.preHello.set(address, (this.preHello.get(address) ?? 0) + 1);
    this.metrics.connectionsAccepted += 1;
    c.helloTimer = setTimeout(() => {
      if (!c.agentId) this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_ORDER', `no hello within ${this.cfg.helloTimeoutMs} ms of connecting; an agent must say hello first`, 'no_hello');
    }, this.cfg.helloTimeoutMs);
    ws.on('message', (data, isBinary) => {
      c.readAtMessage = socket.bytesRead;
      try {
        this.onMessage(c, data as Buffer, isBinary);
      } catch (err) {
        // A bug must cost one connection, never the process and every other agent with it.
        this.metrics.handlerErrors += 1;
        this.log.error({ agentId: c.agentId, token: c.token.name, remote: c.remote, err: errorMessage(err) }, 'handling an agent message failed: closed that connection (1011); the collector carries on');
        this.refuse(c, CLOSE.internal, 'LDG_ERR_INTERNAL', 'the collector failed handling this message; it was not stored. Reconnect; if it recurs, report it with the collector log', 'internal');
      }
    });
    ws.on('pong', () => {
      c.alive = true;
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws has already closed the connection (1009 for an oversized frame, 1007 for bad UTF-8...).
      const reason = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'too_big' : err.code === 'WS_ERR_INVALID_UTF8' ? 'json' : 'ws_error';
      if (reason !== 'ws_error') this.metrics.reject(reason);
      c.closed = true;
      this.log.warn({ agentId: c.agentId, token: token.name, remote, code: err.code, err: err.message }, 'agent connection error: closed it; nothing of the offending frame was stored');
    });
    ws.on('close', (code, reason) => {
      this.conns.delete(c);
      this.pausedForIngest.delete(c);
      this.release(this.perToken, c.token.hash);
      if (!c.agentId) this.release(this.preHello, c.address);
      clearTimeout(c.helloTimer);
      clearTimeout(c.resumeTimer);
      if (c.agentId && this.byAgent.get(c.agentId) === c) {
        this.byAgent.delete(c.agentId);
        this.ingest.disconnected(c.agentId);
      }
      this.log.info({ agentId: c.agentId, token: token.name, remote, code, reason: reason.toString() }, 'agent disconnected');
    });
  }

  private onMessage(c: Conn, data: Buffer, isBinary: boolean): void {
    if (c.closed) return;
    c.alive = true;
    if (isBinary) {
      return this.refuse(c, CLOSE.unsupportedData, 'LDG_ERR_PROTO_BINARY', 'binary frames are not part of the protocol; send JSON text frames', 'binary');
    }
    const sender = { agentId: c.agentId ?? '', tokenName: c.token.name, tokenHash: c.token.hash };
    // Alert batches, nearly all the traffic, are read without building their objects when they
    // are entirely valid and the sender's own (frame.ts); anything else takes the general way
    // below, which checks the bounds first and words every problem.
    // A batch with held-back records takes the fast way only when all of them fit the token's
    // quota (quota.ts); otherwise the general way below stores those that fit.
    const scanned = c.agentId ? scanAlertsFrame(data, c.agentId) : undefined;
    if (scanned && (scanned.heldBack === 0 || this.heldBackQuota.takeAll(c.token.name, scanned.heldBack))) {
      this.metrics.heldBackReceived += scanned.heldBack;
      this.charge(c, scanned.count);
      this.ingest.submitScanned(sender, scanned, (upTo, rejected) => this.sendAck(c, upTo, rejected), () => this.refuseRevoked(c));
      this.pauseIfCongested(c);
      return;
    }
    const parsed = readAgentFrame(data);
    if (!parsed.ok) {
      if (parsed.kind === 'json') return this.refuse(c, CLOSE.invalidData, 'LDG_ERR_PROTO_JSON', `frame is not JSON: ${parsed.errors.join('; ')}`, 'json');
      if (parsed.kind === 'bounds') {
        return this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_BOUNDS',
          `message out of the protocol's bounds: ${parsed.errors.join('; ')}; a message nests at most ${MESSAGE_BOUNDS.maxDepth} deep, with at most ${MESSAGE_BOUNDS.maxKeys} keys per object, ${MESSAGE_BOUNDS.maxItems} items per list, and numbers within ±(2^53−1)`,
          'bounds', parsed.errors);
      }
      return this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_SCHEMA', `message does not follow protocol v${PROTOCOL_VERSION}: ${parsed.errors.join('; ')}`, 'schema', parsed.errors);
    }
    const m: AgentMessage = parsed.value;
    this.charge(c, m.type === 'alerts' ? m.alerts.length : 0);
    const now = Date.now();
    switch (m.type) {
      case 'hello': {
        if (c.agentId) return this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_ORDER', 'hello sent twice on one connection', 'order');
        const boundTo = this.bound.get(c.token.hash) ?? c.token.agentId;
        if (boundTo !== null && boundTo !== m.agent.agentId) {
          this.metrics.agentIdMismatches += 1;
          this.notice(c, 'identity_refused', m.agent.agentId, `the token is bound to agent ${boundTo}, and this connection said it is agent ${m.agent.agentId}`);
          return this.refuse(c, CLOSE.agentMismatch, 'LDG_ERR_TOKEN_AGENT',
            `token "${c.token.name}" belongs to agent ${boundTo}, not ${m.agent.agentId}: each host needs a token of its own. ` +
            `Create one for this host with \`ldguard token create --name HOST --role agent\`; if this host was reinstalled and its agent id changed, revoke the old token and create a new one`,
            'agent_mismatch');
        }
        // The other way: the id must not be bound to another token that is still active.
        const holder = this.boundAgents.get(m.agent.agentId) ?? this.store.tokenOfAgent(m.agent.agentId)?.hash;
        if (holder !== undefined && holder !== c.token.hash) {
          this.metrics.agentIdClaims += 1;
          this.notice(c, 'identity_refused', m.agent.agentId, `agent id ${m.agent.agentId} belongs to another token; this token tried to speak as it`);
          return this.refuse(c, CLOSE.agentClaimed, 'LDG_ERR_AGENT_CLAIMED',
            `agent id ${m.agent.agentId} is bound to another token: a token speaks only for its own host. ` +
            'If this host was reinstalled with the same agent id, revoke the old token first (`ldguard token revoke --name OLD`)', 'agent_claimed');
        }
        if (boundTo === null) {
          this.bound.set(c.token.hash, m.agent.agentId);
          this.boundAgents.set(m.agent.agentId, c.token.hash);
          this.ingest.submitBinding({ hash: c.token.hash, agentId: m.agent.agentId });
          this.log.info({ token: c.token.name, agentId: m.agent.agentId }, 'agent token bound to its first agent id');
        }
        c.agentId = m.agent.agentId;
        this.release(this.preHello, c.address);
        clearTimeout(c.helloTimer);
        const older = this.byAgent.get(c.agentId);
        if (older && older !== c) {
          // The agent reconnected before its old connection was found dead: the newest one wins.
          older.closed = true;
          older.ws.close(CLOSE.replaced, 'replaced by a newer connection');
        }
        this.byAgent.set(c.agentId, c);
        this.ingest.submitHello({
          agentId: c.agentId, hostname: m.agent.hostname, version: m.agent.version, tokenName: c.token.name,
          heartbeatMs: m.heartbeatMs, facts: JSON.stringify(m.agent), at: now,
        });
        this.log.info({ agentId: c.agentId, hostname: m.agent.hostname, version: m.agent.version, token: c.token.name, remote: c.remote, source: m.agent.source.name }, 'agent connected');
        if (m.agent.hostId) {
          c.host = { id: m.agent.hostId, name: m.agent.hostname };
          void this.continuity(c, m.agent.baseline, true);
        }
        return;
      }
      case 'alerts': {
        if (!c.agentId) return this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_ORDER', 'alerts before hello; an agent must say hello first', 'order');
        if (parsed.invalid.length > 0) {
          // Logged here (one line per 10 s); ingest finds the others (agent.id not the sender's).
          c.quarantinedUnlogged += parsed.invalid.length;
          if (performance.now() - c.quarantineLoggedAt >= QUARANTINE_LOG_EVERY_MS) {
            this.log.warn({ agentId: c.agentId, token: c.token.name, remote: c.remote, seq: m.seq, alerts: c.quarantinedUnlogged, errors: parsed.invalid[0]!.errors.slice(0, 5) },
              'invalid alerts in a batch: quarantined (GET /api/quarantine) and acked so the agent goes on; the agent built something this collector does not accept (run the same ldguard version on both)');
            c.quarantinedUnlogged = 0;
            c.quarantineLoggedAt = performance.now();
          }
        }
        const invalid = new Set(parsed.invalid.map((x) => x.index));
        const over = new Set<number>();
        m.alerts.forEach((a, i) => {
          if (invalid.has(i) || !isHeldBack(a)) return;
          if (this.heldBackQuota.take(c.token.name)) this.metrics.heldBackReceived += 1;
          else over.add(i);
        });
        if (over.size > 0) {
          this.metrics.heldBackOverQuota += over.size;
          this.notice(c, 'held_back_quota', c.agentId, `token ${c.token.name} sent more than held_back_quota_per_token (${this.cfg.heldBackQuotaPerToken}) held-back records; ` +
            `${over.size} more acked and not stored (ldguard_collector_held_back_over_quota_total counts them all). The agent's alerts file keeps every record; look at the host, or raise held_back_quota_per_token.`);
        }
        const quarantined = this.ingest.submitAlerts(sender, m, parsed.invalid, parsed.raw,
          (upTo, rejected) => this.sendAck(c, upTo, rejected), () => this.refuseRevoked(c), over);
        if (quarantined) this.notice(c, 'alerts_quarantined', c.agentId, quarantined);
        this.pauseIfCongested(c);
        return;
      }
      case 'heartbeat': {
        if (!c.agentId) return this.refuse(c, CLOSE.policy, 'LDG_ERR_PROTO_ORDER', 'heartbeat before hello; an agent must say hello first', 'order');
        const h = m.health;
        if (c.host && h.baseline) void this.continuity(c, h.baseline, false);
        const { uptimeSec: _uptime, ...rest } = h;
        this.ingest.submitHeartbeat({
          agentId: c.agentId, health: JSON.stringify(h), spoolDepth: h.spoolDepth, eventsLost: h.eventsLost,
          spoolOverflow: h.spoolOverflow, at: now,
        }, JSON.stringify(rest));
        return;
      }
    }
  }

  /**
   * Another process (ldguard token revoke, rotate) changed the tokens: recheck the connected
   * ones. Each revoked one is closed, and the bindings this process keeps for it are dropped (a
   * revoked token's agent id may be claimed by the token that replaces it).
   */
  private checkTokens(): void {
    let v: string;
    try {
      v = this.store.tokensVersion();
    } catch (err) {
      if (!this.closing) this.log.error({ err: errorMessage(err) }, 'reading the tokens failed; will retry');
      return;
    }
    if (v === this.tokensVersion) return;
    this.tokensVersion = v;
    for (const [hash, agentId] of this.bound) {
      const t = this.store.lookupTokenHash(hash);
      if (!t || t.revoked !== null) {
        this.bound.delete(hash);
        if (this.boundAgents.get(agentId) === hash) this.boundAgents.delete(agentId);
      }
    }
    for (const c of this.conns) {
      const t = this.store.lookupTokenHash(c.token.hash);
      if (!t || t.revoked !== null) this.refuseRevoked(c);
    }
  }

  private refuseRevoked(c: Conn): void {
    if (c.closed) return;
    this.log.warn({ agentId: c.agentId, token: c.token.name }, 'token revoked: closed its connection; nothing it sent since is acked');
    this.refuse(c, CLOSE.revoked, 'LDG_ERR_TOKEN_REVOKED', `token "${c.token.name}" was revoked or rotated; use its new secret (after \`ldguard token rotate\`) or create a new token with \`ldguard token create\``, 'revoked');
  }

  /**
   * What ws holds of unfinished messages is bounded per connection (maxPayload) but not in all: 400
   * sockets each 1 MB into a frame were 400 MB. Each connection's share is the bytes it sent since
   * its last whole message (socket.bytesRead, no listener per chunk: one of those cost 0.7 kB per
   * connection and a call per read); past the per-connection bound that connection, and past the
   * overall one the largest holders, are closed. Looked at every TOKEN_CHECK_MS: ws's own
   * maxPayload bounds what one connection adds meanwhile.
   */
  private checkShares(): void {
    let total = 0;
    const over: Conn[] = [];
    for (const c of this.conns) {
      if (c.closed) continue;
      const held = c.socket.bytesRead - c.readAtMessage;
      total += held;
      if (held > this.cfg.maxPartialBytesPerConnection) over.push(c);
    }
    // The sort is for the rare tick past the overall bound (pongs leave every idle connection a few bytes).
    if (total > this.cfg.maxPartialBytes) {
      const byHeld = [...this.conns].filter((c) => !c.closed && !over.includes(c)).sort((x, y) => (y.socket.bytesRead - y.readAtMessage) - (x.socket.bytesRead - x.readAtMessage));
      for (const c of over) total -= c.socket.bytesRead - c.readAtMessage;
      for (const c of byHeld) {
        if (total <= this.cfg.maxPartialBytes) break;
        total -= c.socket.bytesRead - c.readAtMessage;
        over.push(c);
      }
    }
    for (const c of over) {
      this.metrics.partialBytesDropped += 1;
      this.refuse(c, CLOSE.overShare, 'LDG_ERR_OVER_SHARE',
        `this connection held ${c.socket.bytesRead - c.readAtMessage} bytes of unfinished messages (max_partial_bytes_per_connection ${this.cfg.maxPartialBytesPerConnection}, all connections together at most max_partial_bytes ${this.cfg.maxPartialBytes}); send whole messages, smaller than ${MAX_FRAME_BYTES} bytes`,
        'over_share');
      // Its bytes are freed with it, whether or not the peer reads the close.
      c.ws.terminate();
    }
  }

  private release(counts: Map<string, number>, key: string): void {
    const n = (counts.get(key) ?? 0) - 1;
    if (n > 0) counts.set(key, n);
    else counts.delete(key);
  }

  /**
   * Judges a host's baseline seal against what was recorded of that host (continuity.ts), records
   * a notice for each finding, then records the seal. A store error is logged: the agent's
   * connection is not the place to pay for it.
   */
  private continuity(c: Conn, baseline: BaselineSeal | undefined, hello: boolean): Promise<void> {
    const host = c.host!;
    // Every heartbeat carries the seal; only a new one is judged and written (a write per beat per
    // agent, on this thread, would be the ingest's whole budget at fleet scale).
    const seen = baseline ? `${baseline.generation} ${baseline.sha256}` : undefined;
    if (!hello && seen === c.sealSeen) return Promise.resolve();
    c.sealSeen = seen;
    // One host's seals are judged one after another, each once the one before is stored: an agent
    // that saves (generation 5) and at once comes back with an older copy (4) is judged against 5,
    // however far behind the writer is.
    const next = (this.hostTurns.get(host.id) ?? Promise.resolve()).then(() => this.judgeContinuity(c, host, c.agentId!, baseline, hello));
    this.hostTurns.set(host.id, next);
    void next.then(() => {
      if (this.hostTurns.get(host.id) === next) this.hostTurns.delete(host.id);
    });
    return next;
  }

  private async judgeContinuity(c: Conn, host: NonNullable<Conn['host']>, agentId: string, baseline: BaselineSeal | undefined, hello: boolean): Promise<void> {
    try {
      const history = await this.store.hostHistory(host.id, baseline);
      for (const f of judgeSeal(history, { hostId: host.id, agentId, ...(baseline ? { baseline } : {}) }, hello)) {
        this.log.warn({ agentId, hostId: host.id, kind: f.kind, reason: f.reason }, 'host continuity broken');
        const key = `${host.id}|${agentId}|${baseline ? `${baseline.generation}|${baseline.sha256}` : '-'}`;
        this.notice(c, f.kind, agentId, f.reason, { key, host });
      }
      // Written by the store's writer with the next commit: a write here, on the event loop, waited
      // for the writer's lock (up to a second per seal: every ack behind it waited too).
      if (baseline) await this.ingest.submitSeal({ hostId: host.id, agentId, generation: baseline.generation, sha256: baseline.sha256, at: Date.now() });
    } catch (err) {
      this.log.error({ err: errorMessage(err), agentId, hostId: host.id }, 'recording a baseline seal failed; its continuity is not judged');
    }
  }

  /** Records a collector notice (an alert of the collector's own, see notices.ts), at most one per kind and token per window. */
  private notice(c: Conn, kind: Notice['kind'], claimedAgentId: string | null, reason: string, about: Pick<Notice, 'key' | 'host'> = {}): void {
    const row = this.notices.take({ kind, tokenName: c.token.name, claimedAgentId, remote: c.remote, reason, ...about });
    if (row) this.ingest.submitNotice(row);
    else this.metrics.noticesSuppressed += 1;
  }

  /** Past the ingest queue's high-water mark, alert senders are not read until it drains. */
  private pauseIfCongested(c: Conn): void {
    if (this.ingest.congested && !c.paused.has('ingest')) {
      this.metrics.ingestPaused += 1;
      c.pause('ingest');
      this.pausedForIngest.add(c);
    }
  }

  /** Token buckets per connection; overdrawn → stop reading it until they refill. */
  private charge(c: Conn, alerts: number): void {
    const now = performance.now();
    const dt = (now - c.lastRefill) / 1000;
    c.lastRefill = now;
    c.msgTokens = Math.min(this.cfg.rateMessagesBurst, c.msgTokens + dt * this.cfg.rateMessagesPerSec) - 1;
    c.alertTokens = Math.min(this.cfg.rateAlertsBurst, c.alertTokens + dt * this.cfg.rateAlertsPerSec) - alerts;
    if ((c.msgTokens < 0 || c.alertTokens < 0) && !c.paused.has('rate')) {
      const waitMs = Math.ceil(1000 * Math.max(-c.msgTokens / this.cfg.rateMessagesPerSec, -c.alertTokens / this.cfg.rateAlertsPerSec));
      this.metrics.rateLimited += 1;
      this.log.debug({ agentId: c.agentId, remote: c.remote, waitMs }, 'agent past its rate limit: not reading it for a while');
      c.pause('rate');
      c.resumeTimer = setTimeout(() => c.resume('rate'), waitMs);
    }
  }

  private sendAck(c: Conn, upTo: number, rejected: RejectedAlert[]): void {
    if (c.ws.readyState !== WebSocket.OPEN) return; // it will resend after reconnecting; we dedup
    if (c.ws.bufferedAmount > MAX_OUTBOUND_BUFFER) {
      this.metrics.slowClientsDropped += 1;
      this.log.warn({ agentId: c.agentId, remote: c.remote, buffered: c.ws.bufferedAmount }, 'agent does not read its acks: dropped the connection');
      c.ws.terminate();
      return;
    }
    // The common ack (nothing rejected) is written out directly: it is one per batch.
    c.ws.send(rejected.length === 0 ? `{"type":"ack","v":${PROTOCOL_VERSION},"upTo":${upTo}}` : JSON.stringify(ackMessage(upTo, rejected)));
  }

  /** Tells the peer why, logs it, and closes: nothing of the refused message is stored. */
  private refuse(c: Conn, closeCode: number, code: string, message: string, reason: string, errors?: string[]): void {
    if (c.closed) return;
    c.closed = true;
    this.metrics.reject(reason);
    this.log.warn({ agentId: c.agentId, token: c.token.name, remote: c.remote, code, closeCode, errors: errors ?? [message] }, 'refused a message from an agent: closed its connection; nothing of that message was stored');
    if (c.ws.readyState !== WebSocket.OPEN) return;
    c.ws.send(JSON.stringify(errorMessageFrame(code, message.slice(0, 4000))));
    c.ws.close(closeCode, code);
    // A hostile peer need not answer the close: its socket (and its share) goes after a second.
    setTimeout(() => c.ws.terminate(), 1000).unref();
  }

  /** Ticks per ping interval: a round of pings is spread over them. */
  private pingSlices(): number {
    return Math.max(1, Math.floor(this.cfg.pingIntervalMs / PING_SLICE_MS));
  }

  /**
   * Pings the next of the round's slices, so that each connection is pinged once per ping
   * interval. All at once, 15,000 agents were 15,000 frames written (and as many pongs read) in
   * one turn of the event loop, every interval: ~100 ms in which no ack went out. A round is a
   * fixed number of ticks, however few the connections: when it ended as soon as each had been
   * pinged, a collector with fewer agents than slices pinged each of them every second, woke
   * idle agents 30 times as often, and dropped as half-open one that did not answer within a
   * second instead of a ping interval.
   */
  private pingSome(): void {
    const slices = this.pingSlices();
    if (this.pingSlice === 0) this.pingRound = [...this.conns];
    const n = this.pingRound.length;
    const some = this.pingRound.slice(Math.floor((n * this.pingSlice) / slices), Math.floor((n * (this.pingSlice + 1)) / slices));
    this.pingSlice = (this.pingSlice + 1) % slices;
    if (this.pingSlice === 0) this.pingRound = [];
    this.ping(some);
  }

  private ping(conns: Iterable<Conn>): void {
    for (const c of conns) {
      // Closed since the round began (a new connection waits for the next round).
      if (!this.conns.has(c)) continue;
      // A connection we stopped reading cannot show us its pongs: it is not half-open.
      if (c.paused.size > 0) continue;
      if (!c.alive) {
        this.metrics.halfOpenDropped += 1;
        this.log.warn({ agentId: c.agentId, remote: c.remote }, 'agent did not answer a ping: dropped the half-open connection');
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      // One line per sweep, not per agent: when a network cut takes thousands of agents away at
      // once, a line each would bury everything else in the log. The API lists them all.
      const gone = await this.store.markOffline(Date.now(), this.cfg.offlineAfterMissedHeartbeats);
      if (this.closing) return;
      this.ingest.forget(gone.map((a) => a.agentId));
      const view = (a: (typeof gone)[number]) => ({ agentId: a.agentId, hostname: a.hostname, lastSeen: new Date(a.lastSeen).toISOString() });
      this.noticeSilence(gone);
      if (gone.length === 1) this.log.warn(view(gone[0]!), 'agent offline: missed its heartbeats');
      else if (gone.length > 1) {
        this.log.warn({ count: gone.length, sample: gone.slice(0, OFFLINE_SAMPLE).map(view), more: gone.length - Math.min(gone.length, OFFLINE_SAMPLE) },
          'agent offline: several agents missed their heartbeats (GET /api/agents lists them)');
      }
    } catch (err) {
      if (!this.closing) this.log.error({ err: errorMessage(err) }, 'agent sweep failed; will retry');
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * One alert per silence: an agent is marked offline once, until it is heard from again. A silence
   * that began before this process started may be the collector's own outage (agents reconnect
   * after it with backoff): judged only once a grace of offline_after_missed_heartbeats default
   * heartbeat periods has passed since the start, and dropped if the agent is back by then.
   */
  private noticeSilence(gone: ReadonlyArray<{ agentId: string; hostname: string | null; lastSeen: number }>): void {
    const now = Date.now();
    for (const a of gone) {
      if (a.lastSeen < this.startedAt) this.silentSinceBefore.set(a.agentId, a);
      else this.silent(a.agentId, a);
    }
    if (this.silentSinceBefore.size === 0 || now - this.startedAt < this.cfg.offlineAfterMissedHeartbeats * DEFAULT_HEARTBEAT_MS) return;
    for (const [agentId, a] of this.silentSinceBefore) if (!this.byAgent.has(agentId)) this.silent(agentId, a);
    this.silentSinceBefore.clear();
  }

  private silent(agentId: string, a: { hostname: string | null; lastSeen: number }): void {
    const row = this.notices.take({
      kind: 'agent_silent', tokenName: this.store.tokenOfAgent(agentId)?.name ?? 'unknown', claimedAgentId: agentId, remote: '-',
      reason: `agent ${agentId} (${a.hostname ?? 'unknown host'}) has sent nothing since ${new Date(a.lastSeen).toISOString()}, past its heartbeat period`,
      key: `${agentId}|${a.lastSeen}`, host: { name: a.hostname ?? undefined },
    });
    if (row) this.ingest.submitNotice(row);
  }

  /**
   * Stops cleanly: no new connections, stop reading, commit and ack what was received, close the
   * agents' connections (1001: they reconnect to the next collector), then stop listening. The
   * caller closes the store afterwards.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.pingTimer);
    clearInterval(this.sweepTimer);
    clearInterval(this.tokenTimer);
    const stopped = new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.dashboard?.close();
    for (const c of this.conns) c.pause('closing');
    await Promise.race([this.ingest.flush(), new Promise((r) => setTimeout(r, 10_000).unref())]);
    const closed = [...this.conns].map((c) => new Promise<void>((resolve) => {
      // Read again, but only to see the peer's close frame: further messages are ignored.
      c.closed = true;
      c.resume('closing');
      if (c.ws.readyState === WebSocket.CLOSED) return resolve();
      c.ws.once('close', () => resolve());
      c.ws.close(CLOSE.goingAway, 'collector stopping');
    }));
    await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 2_000).unref())]);
    for (const c of this.conns) c.ws.terminate();
    this.http.closeAllConnections();
    await stopped;
  }
}

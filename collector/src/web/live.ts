// The dashboard's live feed: a WebSocket at /ui/live that pushes each alert the store newly
// committed (Ingest 'stored'), and a fleet summary every few seconds. Browsers never poll.
//
// Contracts:
// - Authentication happens at the upgrade, before any WebSocket exists: a live session cookie and
//   an Origin equal to this server's own (a page elsewhere cannot open the feed with the user's
//   cookie). Anything else gets 401/403 and the socket is destroyed.
// - The feed listens to 'stored' only while someone is connected: with no dashboard open, ingest
//   does no work for it at all.
// - Back-pressure: alerts are gathered and sent at most every FLUSH_MS, at most MAX_PER_FLUSH per
//   message (the newest; the rest are counted as `skipped`, and the page offers to reload). A
//   client that does not read (more than MAX_BUFFERED waiting) gets nothing more until it has
//   caught up, then one `resync`. One slow browser never holds memory or time of the collector.
// - The sessions of open feeds are re-checked every SESSION_CHECK_MS (each session once, however
//   many tabs share it); an ended session closes its sockets (4401). Sessions are read from the
//   database (auth.ts), so a logout or a revocation through another collector over the same
//   PostgreSQL database closes the feeds here too, within that second.
// - Fair shares: one login session holds at most MAX_PER_SESSION feeds and one admin name (all its
//   sessions) MAX_PER_NAME, so a script with one cookie cannot take the MAX_CLIENTS slots that
//   everyone shares. Past either, the feed is accepted and closed at once with CLOSE_TOO_MANY and
//   a reason that says which limit and what to do: a refused upgrade would reach the page only as
//   a bare failure (1006) with nothing to tell it from a network error.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import type { Logger } from '../../../shared/log.js';
import type { Ingest } from '../ingest.js';
import { stampedDoc, type AlertRow } from '../store/store.js';

const FLUSH_MS = 200;
const FLEET_MS = 5_000;
const SESSION_CHECK_MS = 1_000;
const PING_MS = 30_000;
const MAX_PER_FLUSH = 200;
const MAX_BUFFERED = 2 * 1024 * 1024;
const MAX_CLIENTS = 200;
/** Feeds one login session may hold: a person's few open tabs (each tab holds one). */
const MAX_PER_SESSION = 4;
/** Feeds one admin name may hold over all its sessions: a few people or browsers sharing it. */
const MAX_PER_NAME = 16;
/** Close code for a feed past MAX_PER_SESSION or MAX_PER_NAME (4000-4999: the application's own). */
export const CLOSE_TOO_MANY = 4429;

export const LIVE_PATH = '/ui/live';

interface Client {
  ws: WebSocket;
  cookie: string;
  /** The session's admin name, for MAX_PER_NAME. */
  name: string;
  lagging: boolean;
  alive: boolean;
}

export interface LiveFeedOptions {
  ingest: Ingest;
  log: Logger;
  /** The session cookie of a request and its admin name, if its session is live. */
  session: (req: IncomingMessage) => Promise<{ cookie: string; name: string } | undefined>;
  stillValid: (cookie: string) => Promise<boolean>;
  sameOrigin: (req: IncomingMessage) => boolean;
  /** A small JSON-able summary of the fleet, pushed every FLEET_MS (read off the event loop). */
  fleet: () => Promise<unknown>;
}

function refuse(socket: Socket, status: number, text: string): void {
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

export class LiveFeed {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false, clientTracking: false });
  private readonly clients = new Set<Client>();
  private pending: string[] = [];
  private skipped = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private fleetTimer: NodeJS.Timeout | undefined;
  private sessionTimer: NodeJS.Timeout | undefined;
  /** A session check is running: a slow database makes the next tick skip, not pile up. */
  private checking = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly onStored = (rows: AlertRow[]) => this.stored(rows);

  constructor(private readonly o: LiveFeedOptions) {}

  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (!this.o.sameOrigin(req)) {
      this.o.log.warn({ origin: req.headers.origin, remote: req.socket.remoteAddress }, 'dashboard live feed refused: foreign Origin (403)');
      return refuse(socket, 403, 'Forbidden');
    }
    void this.o.session(req).then(
      (session) => this.upgrade(req, socket, head, session),
      (err: unknown) => {
        this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'dashboard live feed refused: the session could not be read (503)');
        refuse(socket, 503, 'Service Unavailable');
      },
    );
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer, session: { cookie: string; name: string } | undefined): void {
    // The client may have gone while the session was read.
    if (socket.destroyed) return;
    if (!session) return refuse(socket, 401, 'Unauthorized');
    if (this.clients.size >= MAX_CLIENTS) return refuse(socket, 503, 'Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws, session.cookie, session.name));
  }

  /** Why this session or name may not open one more feed, or undefined when it may. */
  private overLimit(cookie: string, name: string): string | undefined {
    let bySession = 0;
    let byName = 0;
    for (const c of this.clients) {
      if (c.cookie === cookie) bySession++;
      if (c.name === name) byName++;
    }
    // Close reasons are at most 123 bytes; the name is cut to keep within them.
    if (bySession >= MAX_PER_SESSION) return `too many live feeds for this session (${MAX_PER_SESSION}); close another dashboard tab`;
    if (byName >= MAX_PER_NAME) return `too many live feeds for ${name.slice(0, 32)} (${MAX_PER_NAME}); close dashboards or log out elsewhere`;
    return undefined;
  }

  get size(): number {
    return this.clients.size;
  }

  private connected(ws: WebSocket, cookie: string, name: string): void {
    // Counted here, not at the upgrade: upgrades complete asynchronously, and only clients that
    // are in the set can be counted without a race.
    const over = this.overLimit(cookie, name);
    if (over) {
      this.o.log.warn({ user: name, reason: over }, `dashboard live feed refused (${CLOSE_TOO_MANY})`);
      ws.on('error', () => ws.terminate());
      ws.close(CLOSE_TOO_MANY, over);
      return;
    }
    const c: Client = { ws, cookie, name, lagging: false, alive: true };
    this.clients.add(c);
    if (this.clients.size === 1) this.start();
    ws.on('pong', () => (c.alive = true));
    // The page sends nothing; whatever arrives is ignored (and bounded by maxPayload).
    ws.on('message', () => undefined);
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      this.clients.delete(c);
      if (this.clients.size === 0) this.stop();
    });
    this.send(c, JSON.stringify({ type: 'hello', flushMs: FLUSH_MS }));
    void this.o.fleet().then((fleet) => this.send(c, JSON.stringify({ type: 'fleet', fleet })), (err: unknown) => this.fleetFailed(err));
  }

  private start(): void {
    this.o.ingest.on('stored', this.onStored);
    this.fleetTimer = setInterval(() => void this.fleetTick(), FLEET_MS);
    this.sessionTimer = setInterval(() => void this.checkSessions(), SESSION_CHECK_MS);
    this.pingTimer = setInterval(() => {
      for (const c of this.clients) {
        if (!c.alive) {
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        c.ws.ping();
      }
    }, PING_MS);
  }

  private stop(): void {
    this.o.ingest.off('stored', this.onStored);
    clearInterval(this.fleetTimer);
    clearInterval(this.sessionTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.pending = [];
    this.skipped = 0;
  }

  private stored(rows: AlertRow[]): void {
    // Stamped with the sender as the API shows it (docSql); only while a page is open.
    for (const r of rows) this.pending.push(stampedDoc(r));
    if (this.pending.length > MAX_PER_FLUSH) {
      this.skipped += this.pending.length - MAX_PER_FLUSH;
      this.pending = this.pending.slice(-MAX_PER_FLUSH);
    }
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    this.flushTimer = undefined;
    if (this.pending.length === 0) return;
    // Documents are stored JSON text: joined, not parsed and serialised again.
    const frame = `{"type":"alerts","skipped":${this.skipped},"alerts":[${this.pending.join(',')}]}`;
    this.pending = [];
    this.skipped = 0;
    for (const c of this.clients) this.send(c, frame);
  }

  private send(c: Client, frame: string): void {
    if (c.ws.readyState !== WebSocket.OPEN) return;
    if (c.ws.bufferedAmount > MAX_BUFFERED) {
      c.lagging = true;
      return;
    }
    if (c.lagging) {
      c.lagging = false;
      c.ws.send('{"type":"resync"}');
    }
    c.ws.send(frame);
  }

  private fleetFailed(err: unknown): void {
    this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'dashboard fleet summary failed; will retry');
  }

  private async fleetTick(): Promise<void> {
    let fleet: unknown;
    try {
      fleet = await this.o.fleet();
    } catch (err) {
      return this.fleetFailed(err);
    }
    const frame = JSON.stringify({ type: 'fleet', fleet });
    for (const c of this.clients) this.send(c, frame);
  }

  /** Closes (4401) the feeds whose session ended; a failed read keeps them (the next tick retries). */
  private async checkSessions(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const valid = new Map<string, Promise<boolean>>();
      for (const c of [...this.clients]) {
        let v = valid.get(c.cookie);
        if (!v) valid.set(c.cookie, (v = this.o.stillValid(c.cookie).catch(() => true)));
        if (!(await v)) c.ws.close(4401, 'session ended');
      }
    } finally {
      this.checking = false;
    }
  }

  /** Closes every feed (1001) and stops listening to ingest. */
  close(): void {
    for (const c of this.clients) {
      c.ws.close(1001, 'collector stopping');
      setTimeout(() => c.ws.terminate(), 1_000).unref();
    }
    this.stop();
  }
}

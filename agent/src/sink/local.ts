// The agent's local stream for `ldguard tail`: a Unix socket (mode 0600, so root only) that sends
// every alert as one NDJSON line to each connected client.
//
// Back-pressure: none reaches the agent. `send` hands the line to each client's socket buffer and
// returns at once; a client whose buffer passes `maxClientBufferBytes` (it stopped reading: a
// paused terminal, a stuck pipe) is disconnected with a log line, and the others carry on.
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { chmodSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Alert } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { Sink } from './sink.js';
import { alertJson } from './alert-json.js';

export const DEFAULT_SOCKET = '/run/ldguard/agent.sock';

/**
 * The first line each client gets, written once it is registered. A client's connect completes in
 * the kernel before the agent's event loop registers it, and an alert sent in between reaches the
 * alerts file but not the client; from this line on every alert reaches it, so a backlog read
 * after it misses none (`ldguard tail` waits for it before reading the alerts file).
 */
export const STREAM_FOLLOWING = '{"ldguard_tail":"following"}';

export interface LocalSinkOptions {
  /** Socket path (socket in the agent config); its folder is created 0700 when missing. */
  path: string;
  /** A client with more than this unsent is dropped (default 1 MiB, a few hundred alerts). */
  maxClientBufferBytes?: number;
  logger?: Logger;
}

/** Is something answering on this Unix socket? (A stale file from a crashed agent answers nothing.) */
function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class LocalSink implements Sink {
  private readonly clients = new Set<Socket>();
  private readonly maxBuffer: number;
  private closed = false;

  private constructor(private readonly server: Server, readonly path: string, opts: LocalSinkOptions) {
    this.maxBuffer = opts.maxClientBufferBytes ?? 1024 * 1024;
    const log = opts.logger;
    server.on('connection', (sock) => {
      if (this.closed) {
        sock.destroy();
        return;
      }
      this.clients.add(sock);
      sock.write(`${STREAM_FOLLOWING}\n`);
      log?.info({ clients: this.clients.size }, 'tail client connected');
      sock.on('error', () => sock.destroy());
      sock.on('close', () => {
        this.clients.delete(sock);
      });
      // Clients have nothing to say; whatever they send is read and ignored so it cannot pile up.
      sock.on('data', () => undefined);
    });
    this.log = log;
  }

  private readonly log: Logger | undefined;

  /** Listens on `path`, replacing a stale socket a crashed agent left; refuses a live one. */
  static async open(opts: LocalSinkOptions): Promise<LocalSink> {
    const path = opts.path;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const st = await lstat(path).catch(() => undefined);
    if (st) {
      if (!st.isSocket()) {
        throw new LdgError('LDG_ERR_SOCKET_PATH', `${path} exists and is not a socket; remove it or set socket to another path in the agent config`);
      }
      if (await probe(path)) {
        throw new LdgError('LDG_ERR_SOCKET_IN_USE', `another process (an agent already running?) listens on ${path}; stop it (systemctl stop ldguard-agent) or set socket to another path`);
      }
      await unlink(path);
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The umask makes the socket 0600 from the moment it exists (listen binds synchronously);
      // chmod afterwards is a second lock on the same door.
      const old = process.umask(0o177);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    }).catch((err: unknown) => {
      throw new LdgError('LDG_ERR_SOCKET_LISTEN', `cannot listen on ${path}: ${errorMessage(err)}; check that its folder is writable by the agent (root)`, { cause: err });
    });
    chmodSync(path, 0o600);
    return new LocalSink(server, path, opts);
  }

  /** Sends to every client without waiting for any of them. */
  send(a: Alert): Promise<void> {
    if (this.clients.size === 0) return Promise.resolve();
    const line = `${alertJson(a)}\n`;
    for (const sock of this.clients) {
      if (sock.writableLength > this.maxBuffer) {
        this.log?.warn({ buffered: sock.writableLength, limit: this.maxBuffer }, 'tail client too slow (not reading): disconnected it so the agent does not wait');
        this.clients.delete(sock);
        sock.destroy();
        continue;
      }
      sock.write(line);
    }
    return Promise.resolve();
  }

  get clientCount(): number {
    return this.clients.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sock of this.clients) sock.end();
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Give clients a moment to read what was sent, then cut them so close() cannot hang.
    const cut = setTimeout(() => {
      for (const sock of this.clients) sock.destroy();
    }, 500);
    await done;
    clearTimeout(cut);
    await unlink(this.path).catch(() => undefined);
  }
}

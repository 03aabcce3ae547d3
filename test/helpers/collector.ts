// The real collector for end-to-end tests: the built CLI as a child process (port 0 on loopback,
// SQLite in the test's folder), its tokens made by the CLI, its API over fetch, raw agents over ws.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import WebSocket from 'ws';
import { CLI, initDb } from './cli.js';
import { startDaemon, type Log } from './daemon.js';
import { whenDone } from './temp.js';

// Collectors live until their file ends, even one started (or restarted) inside a test: the next
// test may use it. Registered after temp.ts's hook, so it runs before the folders go.
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
});

export interface TestCollector {
  proc: ChildProcess;
  port: number;
  logs: Log[];
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Short timers, so the tests see pings, sweeps and timeouts happen. */
export const TEST_COLLECTOR_CONFIG = `ping_interval_ms = 300
sweep_interval_ms = 150
hello_timeout_ms = 1500
rate_messages_per_sec = 1000
rate_messages_burst = 500
`;

/**
 * Starts a collector on `db` with TEST_COLLECTOR_CONFIG plus `extra` (a key in `extra` replaces the
 * default's), on `port` (0: any); killed when the test file ends.
 */
export async function startTestCollector(dir: string, db: string, extra = '', port = 0): Promise<TestCollector> {
  const keys = new Set(extra.match(/^\w+(?= =)/gm));
  const config = join(dir, `collector-${Date.now()}-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(config, TEST_COLLECTOR_CONFIG.split('\n').filter((l) => !keys.has(l.split(' = ')[0]!)).join('\n') + extra);
  const d = await startDaemon(['collector', '--listen', `127.0.0.1:${port}`, '--db', db, '--config', config], { readyMs: 15_000 });
  running.add(d.proc);
  return { proc: d.proc, port: d.ready.port as number, logs: d.logs, stop: d.stop };
}

/** Runs the CLI without blocking this process (its WebSocket clients must keep answering pings); `env` for PG* variables. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += String(d)));
    p.stderr!.on('data', (d) => (stderr += String(d)));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

export async function createToken(db: string, name: string, role: 'agent' | 'admin' = 'agent'): Promise<string> {
  initDb(db);
  const r = await runCli(['token', 'create', '--db', db, '--name', name, '--role', role]);
  if (r.status !== 0) throw new Error(`token create failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** A request to the collector's HTTP side; the body parsed as JSON when it is. */
export async function callApi(port: number, path: string, token?: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text (metrics)
  }
  return { status: res.status, body, text };
}

export interface RawAgent {
  ws: WebSocket;
  messages: Log[];
  closed: Promise<{ code: number; reason: string }>;
}

/** A WebSocket at /agent with `token` (and ws options); rejects with the status when the upgrade is refused. */
export async function rawAgent(port: number, token: string, opts: WebSocket.ClientOptions = {}): Promise<RawAgent> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/agent`, { headers: { authorization: `Bearer ${token}` }, ...opts });
  const messages: Log[] = [];
  ws.on('message', (d) => {
    try {
      messages.push(JSON.parse(String(d)) as Log);
    } catch {
      messages.push({ text: String(d) });
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  ws.on('error', () => undefined);
  whenDone(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += String(d)));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode })));
    });
  });
  return { ws, messages, closed };
}

export interface LiveStream {
  docs: Array<Record<string, any>>;
  close: () => void;
}

/** GET /api/alerts/live, its documents gathered as they come (resolves once the stream is open). */
export async function liveStream(port: number, admin: string): Promise<LiveStream> {
  const docs: Array<Record<string, any>> = [];
  let close = () => undefined as void;
  await new Promise<void>((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/api/alerts/live', headers: { authorization: `Bearer ${admin}` } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`live stream: ${res.statusCode}`));
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (event.startsWith('data: ')) docs.push(JSON.parse(event.slice(6)) as Record<string, any>);
        }
      });
      resolve();
    });
    req.on('error', () => undefined);
    close = () => req.destroy();
  });
  return { docs, close };
}

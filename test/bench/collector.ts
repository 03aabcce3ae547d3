// The real collector as a child process (the built CLI), on a loopback port picked by the system,
// with an admin token, a new agent token for each agent run on request, and one agent token per simulated agent (the
// collector binds a token to the first agent id that uses it). Its file limit is raised in a shell wrapper, as a service unit
// would, so the load test can hold thousands of agents. Its store is a SQLite file of its own, or a
// PostgreSQL database given by URL (opts.db), which several collectors may share.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import pg from 'pg';
import { isDbUrl } from '../../collector/src/store/open.js';
import { CLI } from '../helpers/agent.js';
import { onInterrupt } from './cleanup.js';

export interface CollectorHandle {
  proc: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** The SQLite file, or the PostgreSQL URL. */
  db: string;
  /**
   * A new agent token in a 0600 file, for --token-file: one per agent run, as one per host in use
   * (the collector binds a token to the first agent id that uses it and refuses any other: with one
   * token for every tool, the second tool's agent was refused and none of its alerts stored).
   */
  newAgentTokenFile(name: string): string;
  adminToken: string;
  /** One agent token per line (opts.agentTokens of them), for the load client. */
  agentTokensFile: string;
  logs: () => Array<Record<string, unknown>>;
  exited: () => boolean;
  /** SIGTERM, then `afterExit` (e.g. measuring the SQLite file the collector left), then the folder goes. */
  stop(afterExit?: () => unknown): Promise<number | null>;
}

/**
 * Adds `n` agent tokens to the database in one transaction (as `ldguard token create` would, one
 * process and one fsync each, it would take minutes for 15,000) and writes them to `file`.
 */
async function addAgentTokens(db: string, n: number, file: string, prefix: string): Promise<void> {
  const tokens = Array.from({ length: n }, () => `ldg_${randomBytes(32).toString('base64url')}`);
  const hashes = tokens.map((t) => createHash('sha256').update(t, 'utf8').digest('hex'));
  const names = tokens.map((_, i) => `${prefix}-${i}`);
  if (isDbUrl(db)) {
    if (n > 0) {
      const c = new pg.Client({ connectionString: db });
      await c.connect();
      try {
        await c.query("INSERT INTO tokens (hash, name, role, created) SELECT h, n, 'agent', $3 FROM unnest($1::text[], $2::text[]) AS t(h, n)", [hashes, names, Date.now()]);
      } finally {
        await c.end();
      }
    }
  } else {
    const d = new Database(db);
    const ins = d.prepare("INSERT INTO tokens (hash, name, role, created) VALUES (?, ?, 'agent', ?)");
    d.transaction(() => hashes.forEach((h, i) => ins.run(h, names[i], Date.now())))();
    d.close();
  }
  writeFileSync(file, `${tokens.join('\n')}\n`, { mode: 0o600 });
}

/** Calls `onLine` with each line of `stream` that is a JSON object (logs, the load client's events); others are skipped. */
export function onJsonLines(stream: Readable, onLine: (j: Record<string, unknown>) => void): void {
  let buf = '';
  stream.on('data', (d) => {
    buf += String(d);
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let j: unknown;
      try {
        j = JSON.parse(line);
      } catch {
        continue;
      }
      if (j && typeof j === 'object') onLine(j as Record<string, unknown>);
    }
  });
}

/**
 * `db`: a PostgreSQL URL to use instead of a new SQLite file (several collectors may share one; the
 * agent tokens are then added by one of them only, and each has an admin token of its own).
 * `tokenPrefix`: the agent tokens' names (default load-agent-N); another prefix for each start on a
 * database that already holds some (names are unique among active tokens).
 */
export async function startCollector(opts: { config?: Record<string, number | string>; nofile?: number; agentTokens?: number; tokenPrefix?: string; db?: string } = {}): Promise<CollectorHandle> {
  const work = mkdtempSync(join(tmpdir(), 'ldg-bench-collector-'));
  const db = opts.db ?? join(work, 'collector.db');
  const token = (name: string, role: string) =>
    execFileSync(process.execPath, [CLI, 'token', 'create', '--db', db, '--name', name, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  // The collector makes its database at its first start; tokens come before it here.
  execFileSync(process.execPath, [CLI, 'db', 'init', '--db', db], { stdio: 'ignore' });
  // Token names are unique among the active ones: one admin per collector on a shared database.
  const adminToken = token(`bench-admin-${randomBytes(4).toString('hex')}`, 'admin');
  const agentTokensFile = join(work, 'agents.tokens');
  await addAgentTokens(db, opts.agentTokens ?? 0, agentTokensFile, opts.tokenPrefix ?? 'load-agent');
  const args = [CLI, 'collector', '--listen', '127.0.0.1:0', '--db', db];
  if (opts.config) {
    const file = join(work, 'collector.toml');
    writeFileSync(file, Object.entries(opts.config).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n') + '\n');
    args.push('--config', file);
  }
  // LDG_BENCH_COLLECTOR_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the collector:
  // Node refuses --cpu-prof in NODE_OPTIONS, and that would profile the load client too.
  const nodeArgs = (process.env.LDG_BENCH_COLLECTOR_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // exec keeps the pid: the shell becomes the collector, with the raised limit.
  const quoted = [process.execPath, ...nodeArgs, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const proc = spawn('/bin/sh', ['-c', `ulimit -n ${opts.nofile ?? 20000} && exec ${quoted}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onInterrupt(() => proc.kill('SIGTERM'));
  proc.once('exit', unregister);
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  const ready = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`collector not ready in 15 s: ${stderr}`)), 15_000);
    onJsonLines(proc.stdout!, (j) => {
      // Keep warnings and errors, not the line per agent connection of the load test.
      if (j.msg === 'ready' || (typeof j.level === 'number' && j.level >= 40)) lines.push(j);
      if (j.msg === 'ready') {
        clearTimeout(timer);
        resolve(Number(j.port));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`collector exited (${code}) before ready: ${stderr}`));
    });
  });
  // A collector that never became ready leaves neither a process nor its folder behind.
  const port = await ready.catch((err: unknown) => {
    proc.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
    throw err;
  });
  return {
    proc,
    pid: proc.pid!,
    port,
    url: `ws://127.0.0.1:${port}`,
    db,
    newAgentTokenFile(name) {
      const file = join(work, `${name}.token`);
      writeFileSync(file, `${token(name, 'agent')}\n`, { mode: 0o600 });
      return file;
    },
    adminToken,
    agentTokensFile,
    logs: () => lines,
    exited: () => proc.exitCode !== null || proc.signalCode !== null,
    stop(afterExit) {
      return new Promise((resolve, reject) => {
        const done = (code: number | null) => {
          Promise.resolve()
            .then(afterExit)
            .finally(() => rmSync(work, { recursive: true, force: true }))
            .then(() => resolve(code), reject);
        };
        if (proc.exitCode !== null || proc.signalCode !== null) return done(proc.exitCode);
        const kill = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        proc.once('exit', (code) => {
          clearTimeout(kill);
          done(code);
        });
        proc.kill('SIGTERM');
      });
    },
  };
}

// The real collector as a child process (the built CLI), on a loopback port picked by the system,
// with an admin token, a new agent token for each agent run on request, and one agent token per simulated agent (the
// collector binds a token to the first agent id that uses it). Its file limit is raised in a shell wrapper, as a service unit
// would, so the load test can hold thousands of agents.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { CLI } from '../helpers/agent.js';
import { onInterrupt } from './cleanup.js';

export interface CollectorHandle {
  proc: ChildProcess;
  pid: number;
  port: number;
  url: string;
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
  stop(): Promise<number | null>;
}

/**
 * Adds `n` agent tokens to the database in one transaction (as `ldguard token create` would, one
 * process and one fsync each, it would take minutes for 15,000) and writes them to `file`.
 */
function addAgentTokens(db: string, n: number, file: string): void {
  const d = new Database(db);
  const ins = d.prepare("INSERT INTO tokens (hash, name, role, created) VALUES (?, ?, 'agent', ?)");
  const tokens: string[] = [];
  d.transaction(() => {
    for (let i = 0; i < n; i++) {
      const token = `ldg_${randomBytes(32).toString('base64url')}`;
      ins.run(createHash('sha256').update(token, 'utf8').digest('hex'), `load-agent-${i}`, Date.now());
      tokens.push(token);
    }
  })();
  d.close();
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

export async function startCollector(opts: { config?: Record<string, number | string>; nofile?: number; agentTokens?: number } = {}): Promise<CollectorHandle> {
  const work = mkdtempSync(join(tmpdir(), 'ldg-bench-collector-'));
  const db = join(work, 'collector.db');
  const token = (name: string, role: string) =>
    execFileSync(process.execPath, [CLI, 'token', 'create', '--db', db, '--name', name, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  // The collector makes its database at its first start; tokens come before it here.
  execFileSync(process.execPath, [CLI, 'db', 'init', '--db', db], { stdio: 'ignore' });
  const adminToken = token('bench-admin', 'admin');
  const agentTokensFile = join(work, 'agents.tokens');
  addAgentTokens(db, opts.agentTokens ?? 0, agentTokensFile);
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
    stop() {
      return new Promise((resolve) => {
        const done = (code: number | null) => {
          rmSync(work, { recursive: true, force: true });
          resolve(code);
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

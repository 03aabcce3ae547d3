// The real collector as a child process (the built CLI), on a loopback port picked by the system,
// with an agent and an admin token. Its file limit is raised in a shell wrapper, as a service unit
// would, so the load test can hold thousands of agents.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../helpers/agent.js';
import { onInterrupt } from './cleanup.js';

export interface CollectorHandle {
  proc: ChildProcess;
  pid: number;
  port: number;
  url: string;
  db: string;
  agentToken: string;
  /** The agent token in a 0600 file, for --token-file. */
  agentTokenFile: string;
  adminToken: string;
  logs: () => Array<Record<string, unknown>>;
  exited: () => boolean;
  stop(): Promise<number | null>;
}

export async function startCollector(opts: { config?: Record<string, number | string>; nofile?: number } = {}): Promise<CollectorHandle> {
  const work = mkdtempSync(join(tmpdir(), 'ldg-bench-collector-'));
  const db = join(work, 'collector.db');
  const token = (name: string, role: string) =>
    execFileSync(process.execPath, [CLI, 'token', 'create', '--db', db, '--name', name, '--role', role], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const agentToken = token('bench-agent', 'agent');
  const adminToken = token('bench-admin', 'admin');
  const agentTokenFile = join(work, 'agent.token');
  writeFileSync(agentTokenFile, `${agentToken}\n`, { mode: 0o600 });
  const args = [CLI, 'collector', '--listen', '127.0.0.1:0', '--db', db];
  if (opts.config) {
    const file = join(work, 'collector.toml');
    writeFileSync(file, Object.entries(opts.config).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n') + '\n');
    args.push('--config', file);
  }
  // exec keeps the pid: the shell becomes the collector, with the raised limit.
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const proc = spawn('/bin/sh', ['-c', `ulimit -n ${opts.nofile ?? 20000} && exec ${quoted}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onInterrupt(() => proc.kill('SIGTERM'));
  proc.once('exit', unregister);
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`collector not ready in 15 s: ${stderr}`)), 15_000);
    proc.stdout!.on('data', (d) => {
      buf += String(d);
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          // Keep warnings and errors, not the line per agent connection of the load test.
          if (j.msg === 'ready' || (typeof j.level === 'number' && j.level >= 40)) lines.push(j);
          if (j.msg === 'ready') {
            clearTimeout(timer);
            resolve(Number(j.port));
          }
        } catch {
          // not JSON: ignore
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`collector exited (${code}) before ready: ${stderr}`));
    });
  });
  return {
    proc,
    pid: proc.pid!,
    port,
    url: `ws://127.0.0.1:${port}`,
    db,
    agentToken,
    agentTokenFile,
    adminToken,
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

// Start the real agent as a child process (the built CLI, as installed) against a scratch host
// root, wait for its ready line, and read the alerts it writes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findRepoRoot } from '../../shared/paths.js';

export const CLI = join(findRepoRoot(), 'dist/agent/src/cli.js');

/** A scratch host root shaped like a merged-/usr Debian: lib -> usr/lib, lib64 -> usr/lib64. */
export function scratchRoot(prefix = 'ldg-root-'): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  mkdirSync(join(root, 'usr/lib64'), { recursive: true });
  mkdirSync(join(root, 'usr/lib/x86_64-linux-gnu'), { recursive: true });
  symlinkSync('usr/lib', join(root, 'lib'));
  symlinkSync('usr/lib64', join(root, 'lib64'));
  return root;
}

export interface RunningAgent {
  proc: ChildProcess;
  root: string;
  stateDir: string;
  alertsFile: string;
  socket: string;
  logs: () => Array<Record<string, unknown>>;
  ready: Record<string, unknown>;
  alerts: () => Array<Record<string, any>>;
  waitForAlerts: (pred: (alerts: Array<Record<string, any>>) => boolean, ms?: number) => Promise<Array<Record<string, any>>>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export async function startAgent(opts: { root?: string; stateDir?: string; source?: string; extra?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<RunningAgent> {
  const root = opts.root ?? scratchRoot();
  const work = mkdtempSync(join(tmpdir(), 'ldg-agent-'));
  const stateDir = opts.stateDir ?? join(work, 'state');
  const alertsFile = join(work, 'alerts.ndjson');
  const socket = join(work, 'agent.sock');
  const args = [CLI, 'agent', '--root', root, '--state-dir', stateDir, '--alerts-file', alertsFile, '--socket', socket, '--source', opts.source ?? 'fanotify', ...(opts.extra ?? [])];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buf = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent not ready in 20 s; logs:\n${buf}${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`)), 20_000);
    proc.stdout!.on('data', (d) => {
      buf += String(d);
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          lines.push(j);
          if (j.msg === 'ready') {
            clearTimeout(timer);
            resolve(j);
          }
        } catch {
          lines.push({ raw: line });
        }
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code}) before ready:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`));
    });
  });
  const alerts = () => (existsSync(alertsFile) ? readFileSync(alertsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>) : []);
  return {
    proc,
    root,
    stateDir,
    alertsFile,
    socket,
    ready,
    logs: () => lines,
    alerts,
    async waitForAlerts(pred, ms = 10_000) {
      const end = Date.now() + ms;
      for (;;) {
        const a = alerts();
        if (pred(a)) return a;
        if (Date.now() > end) return a;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop(signal = 'SIGTERM') {
      return new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => {
          rmSync(work, { recursive: true, force: true });
          resolve(code);
        });
        proc.kill(signal);
      });
    },
  };
}

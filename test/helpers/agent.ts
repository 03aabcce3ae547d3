// Start the real agent as a child process (the built CLI, as installed) against a scratch host
// root, wait for its ready line, and read the alerts it writes.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './cli.js';
import { startDaemon, type Daemon } from './daemon.js';

export { CLI };

/**
 * A scratch host root shaped like a merged-/usr Debian: lib -> usr/lib, lib64 -> usr/lib64. The
 * caller removes it (a test: removeWhenDone(scratchRoot()), from temp.ts).
 */
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

/**
 * Starts the agent and waits for its ready line. The folders it makes (its work folder, and the
 * scratch root when none is given) are removed by stop(), or at once when it does not start; a
 * caller's own root and state folder are the caller's to remove.
 */
export async function startAgent(opts: { root?: string; stateDir?: string; source?: string; extra?: string[]; env?: NodeJS.ProcessEnv; nice?: number; wrap?: string[] } = {}): Promise<RunningAgent> {
  const root = opts.root ?? scratchRoot();
  const work = mkdtempSync(join(tmpdir(), 'ldg-agent-'));
  const remove = () => {
    rmSync(work, { recursive: true, force: true, maxRetries: 5 });
    if (!opts.root) rmSync(root, { recursive: true, force: true, maxRetries: 5 });
  };
  const stateDir = opts.stateDir ?? join(work, 'state');
  const alertsFile = join(work, 'alerts.ndjson');
  const socket = join(work, 'agent.sock');
  let d: Daemon;
  try {
    d = await startDaemon(
      ['agent', '--root', root, '--state-dir', stateDir, '--alerts-file', alertsFile, '--socket', socket, '--source', opts.source ?? 'fanotify', ...(opts.extra ?? [])],
      { env: opts.env, nice: opts.nice, wrap: opts.wrap },
    );
  } catch (err) {
    remove();
    throw err;
  }
  // The agent may be writing a line as it is read: only whole lines (ended by \n) are alerts yet.
  const alerts = () => (existsSync(alertsFile) ? readFileSync(alertsFile, 'utf8').split('\n').slice(0, -1).filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>) : []);
  return {
    proc: d.proc,
    root,
    stateDir,
    alertsFile,
    socket,
    ready: d.ready,
    logs: () => d.logs,
    alerts,
    async waitForAlerts(pred, ms = 10_000) {
      const end = Date.now() + ms;
      for (;;) {
        const a = alerts();
        if (pred(a) || Date.now() > end) return a;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop(signal = 'SIGTERM') {
      const code = await d.stop(signal);
      remove();
      return code;
    },
  };
}

// Start one of ldguard's daemons (agent, collector) from the built CLI as a child process and wait
// for its JSON "ready" log line; every log line is kept for the test to inspect.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI } from './cli.js';

export type Log = Record<string, unknown>;

export interface Daemon {
  proc: ChildProcess;
  ready: Log;
  logs: Log[];
  exited: Promise<number | null>;
  /** Send the signal (SIGTERM by default) and wait for the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * `nice`: start it at this nice value (nice(1) execs it, so the pid is the daemon's), as a unit's
 * Nice= does. `umask`: start it with this umask (a shell sets it and execs, so the pid is the
 * daemon's), as a login shell outside systemd would, rather than inheriting the test runner's.
 * `wrap`: a command that runs the daemon (its argv is appended), e.g. unshare(1) to start it in a
 * pid namespace of its own; the pid is then the wrapper's, which must pass SIGTERM on.
 */
export async function startDaemon(args: string[], opts: { env?: NodeJS.ProcessEnv; readyMs?: number; nice?: number; umask?: number; wrap?: string[]; bin?: string } = {}): Promise<Daemon> {
  // bin: another `ldguard` to start (a release bundle's launcher) instead of this checkout's build.
  const argv = opts.bin ? [opts.bin, ...args] : [process.execPath, CLI, ...args];
  if (opts.wrap) argv.unshift(...opts.wrap);
  if (opts.nice !== undefined) argv.unshift('nice', '-n', String(opts.nice));
  if (opts.umask !== undefined) argv.unshift('/bin/sh', '-c', `umask ${opts.umask.toString(8).padStart(3, '0')} && exec "$@"`, 'sh');
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const logs: Log[] = [];
  let stderr = '';
  let buf = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  // The exit code, or null when a signal ended it (as child_process reports).
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const dump = () => `${logs.map((l) => JSON.stringify(l)).join('\n')}\n${buf}\n${stderr}`;
  const ready = await new Promise<Log>((resolve, reject) => {
    const ms = opts.readyMs ?? 20_000;
    const timer = setTimeout(() => {
      // Nobody gets a handle on a daemon that never became ready: end it here, or it outlives the
      // test and keeps writing into folders the test is removing.
      proc.kill('SIGKILL');
      reject(new Error(`${args[0]} not ready in ${ms} ms:\n${dump()}`));
    }, ms);
    proc.stdout!.on('data', (d) => {
      buf += String(d);
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let j: Log;
        try {
          j = JSON.parse(line) as Log;
        } catch {
          j = { raw: line };
        }
        logs.push(j);
        if (j.msg === 'ready') {
          clearTimeout(timer);
          resolve(j);
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${args[0]} exited (${code}) before ready:\n${dump()}`));
    });
  });
  return {
    proc,
    ready,
    logs,
    exited,
    stop: (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Stops a process (all its threads: SIGSTOP) and waits until the kernel shows it stopped. */
export async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  for (let i = 0; i < 200; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`pid ${pid} did not stop`);
}

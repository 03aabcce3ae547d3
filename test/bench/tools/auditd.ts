// auditd with `-w DIR -p wa` watch rules on the scratch directories, as a user would set it up
// (Debian's auditd.conf, with the log in the bench's folder and no rotation so the tailer keeps
// its file). Attribution is the SYSCALL record's pid= and exe=, joined to the PATH record of the
// created name by the event's serial.
//
// The host's audit setup is put back exactly: the state (enabled, backlog_limit,
// backlog_wait_time) and the rule list are saved first; stop() deletes only the rules it added,
// stops only the auditd it started, restores the state and checks the rule list is as it was.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { onInterrupt } from '../cleanup.js';
import { pidsByComm } from '../stats.js';
import { Observer, type Observation } from '../workload.js';
import type { RunContext, Tool, ToolRun } from './tool.js';

const KEY = 'ldgbench';

function auditctl(...args: string[]): string {
  return execFileSync('auditctl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `auditctl -s` as numbers: enabled, pid, lost, backlog_limit, backlog_wait_time… */
function status(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of auditctl('-s').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** Audit fields before the ENRICHED format's 0x1d separator; unquoted values may be hex-encoded. */
function field(line: string, key: string): string | undefined {
  const raw = line.split('\x1d')[0]!;
  const m = new RegExp(`(?:^|\\s)${key}=("[^"]*"|\\S+)`).exec(raw);
  if (!m) return undefined;
  const v = m[1]!;
  if (v.startsWith('"')) return v.slice(1, -1);
  if (/^[0-9A-F]+$/.test(v) && v.length % 2 === 0 && key !== 'pid') return Buffer.from(v, 'hex').toString('utf8');
  return v;
}

export const auditdTool: Tool = {
  key: 'auditd',
  label: 'auditd -w DIR -p wa',
  exclusionRule: 'names dnf as the writer (a rule on process.executable can exclude it)',
  excluded: (o) => o.some((x) => x.exe !== undefined && basename(x.exe) === 'dnf'),
  async skipReason() {
    if (process.getuid?.() !== 0) return 'needs root (CAP_AUDIT_CONTROL)';
    if (!has('auditd') || !has('auditctl')) return 'not installed: apt-get install -y auditd';
    let s: Record<string, number>;
    try {
      s = status();
    } catch (err) {
      return `auditctl -s failed (kernel without audit, or no CAP_AUDIT_CONTROL): ${(err as Error).message.split('\n')[0]}`;
    }
    if (s.pid) return `an audit daemon already runs (pid ${s.pid}); the bench leaves a live audit setup alone`;
    if (s.enabled === 2) return 'the audit configuration is locked (enabled 2) until reboot';
    return undefined;
  },
  async start(ctx: RunContext): Promise<ToolRun> {
    const before = status();
    const rulesBefore = auditctl('-l');
    const notes: string[] = [];
    const conf = join(ctx.work, 'audit-conf');
    mkdirSync(join(conf, 'plugins.d'), { recursive: true, mode: 0o750 });
    const log = join(ctx.work, 'audit.log');
    // Debian's auditd.conf, but: the log here, never rotated (the tailer follows one file), no
    // plugins, and no suspend on low disk (a bench must not stop auditing the host's other work).
    const cfg = {
      local_events: 'yes', write_logs: 'yes', log_file: log, log_group: 'root', log_format: 'ENRICHED', flush: 'INCREMENTAL_ASYNC', freq: '50',
      max_log_file: '100000', num_logs: '1', priority_boost: '4', name_format: 'NONE', max_log_file_action: 'IGNORE', space_left: '75',
      space_left_action: 'IGNORE', admin_space_left: '50', admin_space_left_action: 'IGNORE', disk_full_action: 'IGNORE', disk_error_action: 'IGNORE',
      q_depth: '2000', overflow_action: 'SYSLOG', max_restarts: '10', plugin_dir: join(conf, 'plugins.d'), end_of_event_timeout: '2',
    };
    writeFileSync(join(conf, 'auditd.conf'), Object.entries(cfg).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n', { mode: 0o640 });
    chmodSync(conf, 0o750);
    writeFileSync(log, '', { mode: 0o600 });
    const tail = await Observer.tail(ctx.native, log, ctx.work, 'audit');

    let daemon: ChildProcess | undefined;
    const added: string[][] = [];
    let stopped = false;
    let stderr = '';
    const restoreState = () => {
      auditctl('-b', String(before.backlog_limit ?? 64));
      if (before.backlog_wait_time !== undefined) auditctl('--backlog_wait_time', String(before.backlog_wait_time));
      auditctl('-e', String(before.enabled ?? 0));
    };
    // On Ctrl-C: the same undo, synchronously.
    const unregister = onInterrupt(() => {
      for (const r of added) auditctl('-W', ...r);
      if (daemon?.pid && daemon.exitCode === null) {
        daemon.kill('SIGTERM');
        execFileSync('sh', ['-c', `for i in $(seq 100); do kill -0 ${daemon.pid} 2>/dev/null || exit 0; sleep 0.1; done`]);
      }
      restoreState();
    });
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      unregister();
      // Exactly the rules we added, then our daemon, then the state as it was.
      for (const r of added) {
        try {
          auditctl('-W', ...r);
        } catch (err) {
          notes.push(`auditctl -W ${r.join(' ')}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
        const exited = new Promise((r) => daemon!.once('exit', r));
        daemon.kill('SIGTERM');
        await Promise.race([exited, sleep(10_000)]);
        if (daemon.exitCode === null && daemon.signalCode === null) {
          daemon.kill('SIGKILL');
          await exited;
        }
      }
      try {
        restoreState();
      } catch (err) {
        notes.push(`restoring the audit state: ${(err as Error).message.split('\n')[0]}`);
      }
      const rulesAfter = auditctl('-l');
      if (rulesAfter !== rulesBefore) notes.push(`WARNING: audit rules differ from before the bench:\n${rulesAfter}`);
      await tail.stop();
    };

    try {
      daemon = spawn('auditd', ['-n', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      daemon.stderr!.on('data', (d) => (stderr += String(d)));
      for (let i = 0; ; i++) {
        if (daemon.exitCode !== null) throw new Error(`auditd exited ${daemon.exitCode}: ${stderr.trim()}`);
        if (status().pid === daemon.pid) break;
        if (i > 100) throw new Error(`auditd did not register with the kernel in 5 s: ${stderr.trim()}`);
        await sleep(50);
      }
      // Debian's audit.rules sets these; a user following it gets them.
      auditctl('-b', '8192');
      auditctl('--backlog_wait_time', '60000');
      for (const dir of ctx.host.dirs) {
        const r = [dir, '-p', 'wa', '-k', KEY];
        auditctl('-w', ...r);
        added.push(r);
      }
    } catch (err) {
      await stop();
      throw err;
    }
    const lostAtStart = status().lost ?? 0;
    const kauditd = pidsByComm('kauditd');
    if (kauditd.length === 0) notes.push('kauditd thread not found: its CPU is not counted');

    // serial → the SYSCALL record's writer, until the event's PATH records have been read.
    const syscalls = new Map<string, { pid?: number; exe?: string }>();
    let churn = 0;
    return {
      notes,
      pids: () => [...(daemon?.pid ? [daemon.pid] : []), ...kauditd],
      mainPid: () => daemon?.pid,
      poll() {
        const out: Observation[] = [];
        for (const [at, line] of tail.lines()) {
          const serial = /msg=audit\(\d+\.\d+:(\d+)\)/.exec(line)?.[1];
          if (!serial) continue;
          if (line.startsWith('type=SYSCALL')) {
            const pid = field(line, 'pid');
            syscalls.set(serial, { pid: pid ? Number(pid) : undefined, exe: field(line, 'exe') });
            if (syscalls.size > 100_000) syscalls.delete(syscalls.keys().next().value!);
          } else if (line.startsWith('type=PATH') && field(line, 'nametype') === 'CREATE') {
            const name = basename(field(line, 'name') ?? '');
            if (!name.includes('ld-linux')) {
              churn++;
              continue;
            }
            const w = syscalls.get(serial);
            out.push({ name, at, pid: w?.pid, exe: w?.exe });
          } else if (line.startsWith('type=PROCTITLE') || line.startsWith('type=EOE')) {
            syscalls.delete(serial);
          }
        }
        return out;
      },
      churnSeen: () => churn,
      lost() {
        try {
          const lost = (status().lost ?? 0) - lostAtStart;
          return { count: lost, detail: `kernel audit records lost (auditctl -s lost): ${lost}` };
        } catch {
          return { count: null, detail: 'auditctl -s failed' };
        }
      },
      stop,
    };
  },
};

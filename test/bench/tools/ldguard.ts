// ldguard itself, as installed: the built CLI started by the test helper against the scratch root,
// with one source forced (fanotify, or the inotify fallback). Its alerts file is followed by the C
// tailer; when a collector runs, the agent delivers to it and a worker thread notices each alert as
// the collector commits it.
import { appendFileSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { findRepoRoot } from '../../../shared/paths.js';
import { startAgent } from '../../helpers/agent.js';
import { prepareTools } from '../../helpers/writers.js';
import { onInterrupt } from '../cleanup.js';
import { Observer, SEED_RULE, type Observation } from '../workload.js';
import type { RunContext, Tool, ToolRun } from './tool.js';

interface AlertLine {
  '@timestamp'?: string;
  event?: { created?: string };
  kibana?: { alert?: { original_time?: string } };
  file?: { path?: string };
  process?: { pid?: number; executable?: string };
  rule?: { id?: string; name?: string };
  ldguard?: { attribution?: string };
}

/**
 * What the agent's systemd unit sets for its process (`Environment=` lines such as
 * MALLOC_ARENA_MAX, and `Nice=`), read from the unit itself so the bench measures the agent as installed.
 */
function unitSettings(): { env: Record<string, string>; nice?: number } {
  const unit = readFileSync(join(findRepoRoot(), 'systemd/ldguard-agent.service'), 'utf8');
  const env: Record<string, string> = {};
  for (const m of unit.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/gm)) env[m[1]!] = m[2]!;
  const nice = /^Nice=(-?\d+)$/m.exec(unit)?.[1];
  return { env, ...(nice === undefined ? {} : { nice: Number(nice) }) };
}

function eventTime(iso: string | undefined): bigint | undefined {
  const ms = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(ms) ? undefined : BigInt(ms) * 1_000_000n;
}

export function ldguardTool(source: 'fanotify' | 'inotify'): Tool {
  return {
    key: source,
    label: source === 'fanotify' ? 'ldguard (fanotify)' : 'ldguard (inotify fallback)',
    async skipReason() {
      if (process.getuid?.() !== 0) return 'needs root (fanotify marks, and the scratch tree as the agent sees it)';
      return undefined;
    },
    exclusionRule: 'no alert of the creation rule for a file dnf wrote',
    excluded: (o) => !o.some((x) => x.ruleId === SEED_RULE),
    async start(ctx: RunContext): Promise<ToolRun> {
      prepareTools();
      const extra = ['--rule', ctx.rules];
      if (ctx.collector) extra.push('--collector', ctx.collector.url, '--token-file', ctx.collector.newAgentTokenFile(`bench-${source}`));
      const agent = await startAgent({ source, root: ctx.host.root, extra, ...unitSettings() });
      const unregister = onInterrupt(() => agent.proc.kill('SIGKILL'));
      agent.proc.once('exit', unregister);
      // The alerts file is opened at start; make sure it exists before the tailer follows it.
      appendFileSync(agent.alertsFile, '');
      const tail = await Observer.tail(ctx.native, agent.alertsFile, ctx.work, `${source}-alerts`);
      const notes: string[] = [];

      let worker: Worker | undefined;
      const stored: Observation[] = [];
      if (ctx.collector) {
        worker = new Worker(new URL('../collector-poll.js', import.meta.url), { workerData: { db: ctx.collector.db, intervalMs: 1 } });
        worker.on('message', (m: { path?: string; at?: string; error?: string }) => {
          if (m.error) notes.push(`collector poll failed: ${m.error}`);
          else if (m.path && m.at) stored.push({ name: basename(m.path), at: BigInt(m.at) });
        });
        worker.on('error', (err) => notes.push(`collector poll worker: ${err.message}`));
      }

      let stopped = false;
      return {
        notes,
        pids: () => (agent.proc.exitCode === null ? [agent.proc.pid!] : []),
        mainPid: () => agent.proc.pid,
        poll() {
          const out: Observation[] = [];
          for (const [at, line] of tail.lines()) {
            let a: AlertLine;
            try {
              a = JSON.parse(line) as AlertLine;
            } catch {
              notes.push(`alerts file: a line that is not JSON: ${line.slice(0, 80)}`);
              continue;
            }
            if (!a.file?.path) continue; // a max_signals summary: none expected with the bench's rules
            const name = basename(a.file.path);
            out.push({ name, at, pid: a.process?.pid, exe: a.process?.executable, ruleId: a.rule?.id, ruleName: a.rule?.name, attribution: a.ldguard?.attribution, eventAt: eventTime(a.kibana?.alert?.original_time ?? a.event?.created), builtAt: eventTime(a['@timestamp']) });
          }
          return out;
        },
        pollStored: ctx.collector ? () => stored.splice(0) : undefined,
        churnSeen: () => null,
        lost() {
          const overflows = agent.logs().filter((l) => typeof l.msg === 'string' && l.msg.includes('overflowed')).length;
          const unobserved = agent.logs().filter((l) => typeof l.msg === 'string' && l.msg.includes('appeared while unobserved')).length;
          return { count: overflows, detail: `${overflows} kernel queue overflow(s) logged${unobserved ? `, ${unobserved} rescan(s) found files` : ''}` };
        },
        async stop() {
          if (stopped) return;
          stopped = true;
          await tail.stop().catch(() => undefined);
          if (worker) {
            worker.postMessage('stop');
            await worker.terminate().catch(() => undefined);
          }
          const code = await agent.stop();
          if (code !== 0) notes.push(`agent exited ${code} on SIGTERM`);
          const errors = agent.logs().filter((l) => typeof l.level === 'number' && l.level >= 50);
          for (const e of errors.slice(0, 3)) notes.push(`agent logged: ${String(e.msg)}${e.err ? `: ${String(e.err)}` : ''}`);
        },
      };
    },
  };
}

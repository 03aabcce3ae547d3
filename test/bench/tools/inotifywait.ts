// inotifywait from inotify-tools, recursive, on the scratch directories: what a user scripting
// this job with standard tools would run. inotify carries no pid, so it never names a writer and
// cannot tell dnf from anyone else; it does report every creation, so its lost events are counted
// directly (creations made minus creations reported) and from its Q_OVERFLOW lines.
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { onInterrupt } from '../cleanup.js';
import { Observer, type Observation } from '../workload.js';
import type { RunContext, Tool, ToolRun } from './tool.js';

export const inotifywaitTool: Tool = {
  key: 'inotifywait',
  label: 'inotifywait -m -r',
  exclusionRule: 'cannot tell (inotify carries no writer)',
  excluded: () => false,
  async skipReason() {
    try {
      execFileSync('sh', ['-c', 'command -v inotifywait'], { stdio: 'ignore' });
    } catch {
      return 'not installed: apt-get install -y inotify-tools';
    }
    return undefined;
  },
  async start(ctx: RunContext): Promise<ToolRun> {
    const out = join(ctx.work, 'inotifywait.out');
    writeFileSync(out, '');
    const tail = await Observer.tail(ctx.native, out, ctx.work, 'inotifywait');
    // -o: it writes and flushes each event line itself; stderr says when the watches are set.
    const proc = spawn('inotifywait', ['-m', '-r', '-e', 'create,moved_to', '--format', '%e %w%f', '-o', out, ...ctx.host.dirs], { stdio: ['ignore', 'ignore', 'pipe'] });
    const unregister = onInterrupt(() => proc.kill('SIGTERM'));
    proc.once('exit', unregister);
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += String(d)));
    for (let i = 0; !stderr.includes('Watches established'); i++) {
      if (proc.exitCode !== null || i > 200) {
        proc.kill();
        await tail.stop();
        throw new Error(`inotifywait did not start: ${stderr.trim()}`);
      }
      await sleep(25);
    }
    let churn = 0;
    let overflows = 0;
    let stopped = false;
    const notes: string[] = [];
    return {
      notes,
      pids: () => (proc.exitCode === null ? [proc.pid!] : []),
      mainPid: () => proc.pid,
      poll() {
        const obs: Observation[] = [];
        for (const [at, line] of tail.lines()) {
          if (line.startsWith('Q_OVERFLOW')) {
            overflows++;
            continue;
          }
          const sp = line.indexOf(' ');
          const name = basename(line.slice(sp + 1));
          if (name.includes('ld-linux')) obs.push({ name, at });
          else churn++;
        }
        return obs;
      },
      churnSeen: () => churn,
      lost: () => ({ count: overflows, detail: `${overflows} Q_OVERFLOW line(s)` }),
      async stop() {
        if (stopped) return;
        stopped = true;
        if (proc.exitCode === null) {
          const exited = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGTERM');
          await exited;
        }
        await tail.stop();
        if (/error|fail/i.test(stderr)) notes.push(stderr.trim().split('\n').slice(-1)[0]!);
      },
    };
  },
};

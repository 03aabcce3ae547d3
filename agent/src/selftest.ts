// Before the agent announces ready, it proves its source works: a child process writes a file in a
// private scratch directory and the event must arrive, attributed to that child's pid and
// executable (beats' kprobes events_verifier does the same). The inotify source cannot attribute,
// so for it only arrival is checked, and the agent's health says degraded.
import { spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LdgError } from '../../shared/errors.js';
import type { RawFileEvent, Source } from './source/source.js';

export const SELFTEST_NAME = 'ld-linux-ldguard-selftest.so';
const TIMEOUT_MS = 5_000;

export interface SelfTestResult {
  ok: true;
  ms: number;
  attributed: boolean;
  pid: number;
  /** The test write's event as the source reported it (the agent rehearses its pipeline with it). */
  event: RawFileEvent;
}

export class SelfTest {
  readonly dir: string;
  private waiter: ((e: RawFileEvent) => void) | undefined;

  constructor(stateDir: string) {
    this.dir = realpathSync(mkdtempSync(join(stateDir, 'selftest-')));
  }

  /** True when the event belongs to the self-test (the agent then keeps it out of the rules). */
  observe(e: RawFileEvent): boolean {
    if (e.dir !== this.dir) return false;
    if (e.name === SELFTEST_NAME && e.kind === 'create') this.waiter?.(e);
    return true;
  }

  async run(source: Source): Promise<SelfTestResult> {
    await source.addDir(this.dir, { forwardAll: true });
    const shell = realpathSync('/bin/sh');
    const started = performance.now();
    const arrived = new Promise<RawFileEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LdgError('LDG_ERR_SELFTEST', `the ${source.name} source did not report a test write in ${this.dir} within ${TIMEOUT_MS} ms; check the kernel log and that the state dir is on a local filesystem`)), TIMEOUT_MS);
      this.waiter = (e) => {
        clearTimeout(timer);
        resolve(e);
      };
    });
    // The shell writes with a builtin redirection, so the writer is the shell itself (no exec).
    const child = spawn(shell, ['-c', ': > "$1"', 'sh', join(this.dir, SELFTEST_NAME)], { stdio: 'ignore' });
    child.on('error', () => undefined);
    const event = await arrived.finally(() => (this.waiter = undefined));
    const ms = performance.now() - started;
    if (source.degraded) return { ok: true, ms, attributed: false, pid: event.pid, event };
    if (event.pid !== child.pid || event.process?.exe !== shell) {
      throw new LdgError(
        'LDG_ERR_SELFTEST',
        `the ${source.name} source attributed the test write to pid ${event.pid} (${event.process?.exe ?? 'unknown'}), not to the writer pid ${child.pid} (${shell}); run as root with CAP_SYS_ADMIN and CAP_SYS_PTRACE, or set source = "inotify"`,
      );
    }
    return { ok: true, ms, attributed: true, pid: event.pid, event };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

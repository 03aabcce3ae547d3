// A barrier through the kernel's event queue: the agent creates a file in a directory of its own
// and waits for that creation to come through. fanotify keeps one queue per group, in order, so
// once it arrives every event queued before it has been delivered (and judged: onEvents runs the
// pipeline synchronously). The rescan after a new directory needs exactly that: a file it finds
// that no live event reported by then was created before its directory was in the reader's table
// (subtree.c), and is reported as such; one whose event is still in flight is not reported twice.
import { closeSync, mkdirSync, openSync, realpathSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { RawFileEvent, Source } from './source/source.js';

// A barrier that does not come through (the source stopped) must not hold the rescan forever:
// the rescan then goes on, and its files are reported as before this barrier existed.
const TIMEOUT_MS = 5_000;

export class QueueBarrier {
  private seq = 0;
  private readonly waiting = new Map<string, (ok: boolean) => void>(); // by file name

  private constructor(readonly dir: string) {}

  /** Makes the barrier's directory under stateDir and has the source watch it (every name). */
  static async open(stateDir: string, source: Source): Promise<QueueBarrier> {
    const dir = join(stateDir, 'queue-barrier');
    rmSync(dir, { recursive: true, force: true }); // what a killed agent left
    mkdirSync(dir, { mode: 0o700 });
    const b = new QueueBarrier(realpathSync(dir));
    await source.addDir(b.dir, { forwardAll: true });
    return b;
  }

  /** True when the event is the barrier's own (the agent keeps it out of the rules). */
  observe(e: RawFileEvent): boolean {
    if (e.dir !== this.dir) return false;
    if (e.kind === 'create') this.waiting.get(e.name)?.(true);
    return true;
  }

  /** Resolves true once every event queued before this call has been delivered; false on timeout. */
  pass(): Promise<boolean> {
    const name = `b${++this.seq}`;
    const file = join(this.dir, name);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(name);
        try {
          unlinkSync(file);
        } catch {
          // never made, or gone already
        }
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), TIMEOUT_MS);
      this.waiting.set(name, done);
      try {
        closeSync(openSync(file, 'wx', 0o600));
      } catch {
        done(false);
      }
    });
  }

  cleanup(): void {
    for (const fn of [...this.waiting.values()]) fn(false);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

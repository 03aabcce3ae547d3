// Holds a verified package manager's events until the writer has exited, or SETTLE_MAX_MS after
// the write, whichever comes first: only then is the file's package verdict taken
// (file-verdict.ts), because dpkg unpacks a package's files under temporary names, renames them,
// and records the package as installed, with its md5sums, last.
// Exit is seen by polling /proc/PID/stat every POLL_MS while anything waits (no timer otherwise):
// the process is gone, a zombie, or its pid now names another process (a different start time).
// Back-pressure: none needed; one entry per matched event of a verified package manager, and
// those are few (a libc6 upgrade gives a handful). flush() runs everything at once (shutdown).
import { readFileSync } from 'node:fs';

export const SETTLE_MAX_MS = 120_000;
const POLL_MS = 100;

interface Entry {
  pid: number;
  ticks: number;
  deadline: number;
  run: () => void;
}

/** Whether pid is still the process that started at `ticks` and has not exited (zombies have). */
function running(pid: number, ticks: number): boolean {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return fields[0] !== 'Z' && fields[0] !== 'X' && Number(fields[19]) === ticks;
  } catch {
    return false;
  }
}

export class Settle {
  private entries: Entry[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly maxMs = SETTLE_MAX_MS) {}

  get size(): number {
    return this.entries.length;
  }

  /** Calls run() once the writer (pid, started at ticks) is gone, or after maxMs. run must not throw. */
  add(pid: number, ticks: number, run: () => void): void {
    this.entries.push({ pid, ticks, deadline: Date.now() + this.maxMs, run });
    this.timer ??= setInterval(() => this.poll(), POLL_MS);
  }

  private poll(): void {
    const now = Date.now();
    const due: Entry[] = [];
    const alive = new Map<string, boolean>(); // one read per writer per round
    this.entries = this.entries.filter((e) => {
      const k = `${e.pid}:${e.ticks}`;
      let up = alive.get(k);
      if (up === undefined) alive.set(k, (up = running(e.pid, e.ticks)));
      if (up && now < e.deadline) return true;
      due.push(e);
      return false;
    });
    if (this.entries.length === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    for (const e of due) e.run(); // in arrival order: the writer's events keep their order
  }

  /** Run everything that waits, now (shutdown). */
  flush(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    const all = this.entries;
    this.entries = [];
    for (const e of all) e.run();
  }
}

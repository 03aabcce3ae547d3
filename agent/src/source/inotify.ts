// The inotify fallback, through @parcel/watcher, for hosts where fanotify is not permitted (no
// CAP_SYS_ADMIN, an old kernel, a restricted container). It is degraded, and says so: inotify
// carries no pid, so the writer is named only when a live process still holds the new file open
// (a scan of every /proc/PID/fd, done only for names the rules care about). Recursive, so files in
// rule-matching subdirectories are seen without marking them.
//
// Names that are not UTF-8: @parcel/watcher takes and reports paths as strings, so such a name
// arrives with U+FFFD in place of its bytes and names no file. It is passed on as it came, without
// rawName, and the agent looks it up again as bytes before judging it (Agent.exactNames): one alert,
// with the escaped path and the file facts (byte-path.ts). The fd scan below still finds its holder:
// readlink of /proc/PID/fd decodes the link the same lossy way (so, with two names in one folder
// that differ only in such bytes, it may name the holder of the other one).
//
// The name filter runs here, in JavaScript, not in @parcel/watcher's `ignore` option, although
// that would save much (a bare subscription fed 80,000 unrelated creations peaked at 58 MB RSS
// instead of 116-128; its crawl of a real /usr/lib took 4 ms instead of 2.2 s): with any ignore
// pattern, 2.6.0 lost events for good. Three creations right after 200 ignored ones: the second
// was never reported in 5-7 runs of 12, nor after later events; without `ignore`, 0 lost in 15
// runs, and 0 of 100 creations lost behind a callback that blocked for 100 ms each time.
import { lstatSync } from 'node:fs';
import { posix } from 'node:path';
import watcher, { type AsyncSubscription } from '@parcel/watcher';
import { displayPath, type FsPath } from '../byte-path.js';
import { holders, readProc } from './procfs.js';
import type { RawFileEvent, Source, SourceStats } from './source.js';

export class InotifySource implements Source {
  readonly name = 'inotify' as const;
  readonly degraded = true;
  private subs: AsyncSubscription[] = [];
  private onEvents: ((events: RawFileEvent[]) => void) | undefined;
  private early: RawFileEvent[] = [];
  private readonly forwardAll = new Set<string>();
  private readonly watched = new Set<string>();
  private readonly counts = { read: 0, forwarded: 0, attributed: 0, errors: 0 };

  private constructor(private prefixes: readonly string[]) {}

  setPrefixes(prefixes: readonly string[]): void {
    this.prefixes = [...prefixes];
  }

  static async open(dirs: readonly string[], prefixes: readonly string[]): Promise<InotifySource> {
    const s = new InotifySource(prefixes);
    try {
      for (const d of dirs) {
        s.watched.add(d);
        s.subs.push(await s.subscribe(d));
      }
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  private subscribe(dir: string): Promise<AsyncSubscription> {
    return watcher.subscribe(
      dir,
      (err, events) => {
        if (err) {
          this.counts.errors++;
          // @parcel/watcher reports a lost inotify queue as an error: the agent rescans, as after an overflow.
          this.emit([{ kind: 'overflow', dir: '', name: '', isDir: false, pid: 0, timeNs: now(), attribution: 'unknown', process: null, parent: null }]);
          return;
        }
        const out: RawFileEvent[] = [];
        for (const e of events) {
          this.counts.read++;
          if (e.type === 'delete' || !this.wanted(dir, e.path)) continue;
          out.push(this.toRaw(e.path, e.type === 'create' ? 'create' : 'close_write'));
        }
        if (out.length > 0) this.emit(out);
      },
      { backend: 'inotify' },
    );
  }

  private wanted(root: string, path: string): boolean {
    for (const d of this.forwardAll) if (path.startsWith(d + '/')) return true;
    const first = path.slice(root.length + 1).split('/')[0]!.toLowerCase();
    return this.prefixes.some((p) => first.startsWith(p));
  }

  private toRaw(path: string, kind: 'create' | 'close_write'): RawFileEvent {
    let isDir = false;
    try {
      isDir = lstatSync(path).isDirectory();
    } catch {
      // gone already: still reported, by name
    }
    const held = isDir ? [] : holders(path);
    const proc = held.length > 0 ? readProc(held[0]!) : null;
    if (proc) this.counts.attributed++;
    this.counts.forwarded++;
    return {
      kind,
      dir: posix.dirname(path),
      name: posix.basename(path),
      isDir,
      pid: proc?.pid ?? 0,
      timeNs: now(),
      attribution: proc ? 'fd_scan' : 'unknown',
      process: proc,
      parent: proc && proc.ppid > 0 ? readProc(proc.ppid) : null,
      ...(kind === 'create' && !isDir && held.length === 0 ? { writeDone: true } : {}),
    };
  }

  private emit(events: RawFileEvent[]): void {
    if (this.onEvents) this.onEvents(events);
    else this.early.push(...events);
  }

  start(onEvents: (events: RawFileEvent[]) => void): void {
    this.onEvents = onEvents;
    const early = this.early;
    this.early = [];
    if (early.length > 0) onEvents(early);
  }

  async addDir(path: FsPath, opts?: { forwardAll?: boolean; content?: boolean }): Promise<void> {
    // A directory whose name is not UTF-8 (see above) is watched anyway when it lies under a
    // recursive watch; elsewhere @parcel/watcher cannot watch it.
    if (typeof path !== 'string') {
      const covered = [...this.watched].some((w) => {
        const prefix = Buffer.from(w + '/');
        return path.subarray(0, prefix.length).equals(prefix);
      });
      if (covered) return;
      throw new Error(`inotify (@parcel/watcher) cannot watch ${displayPath(path)}: its name is not UTF-8`);
    }
    const dir = path;
    // Subdirectories are already covered (the watch is recursive); a directory elsewhere (the
    // self-test's) gets its own subscription.
    if (opts?.forwardAll) this.forwardAll.add(dir);
    if ([...this.watched].some((w) => dir === w || dir.startsWith(w + '/'))) return;
    this.watched.add(dir);
    this.subs.push(await this.subscribe(dir));
  }

  stats(): SourceStats {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    const subs = this.subs;
    this.subs = [];
    this.onEvents = undefined;
    await Promise.all(subs.map((s) => s.unsubscribe()));
  }
}

function now(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

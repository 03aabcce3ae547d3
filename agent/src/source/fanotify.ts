// The fanotify source: the native addon's C thread reads the kernel queue, resolves each writer
// (live /proc, guarded by the pidfd, or the exec cache fed by FAN_OPEN_EXEC and the process
// connector) and hands only events whose names the rules care about to JavaScript.
import type { FsPath } from '../byte-path.js';
import { loadNative, type NativeEvent, type Watcher } from '../native.js';
import type { RawFileEvent, Source, SourceStats } from './source.js';

export class FanotifySource implements Source {
  readonly name = 'fanotify' as const;
  readonly degraded = false;
  private watcher: Watcher | undefined;
  // Events that arrive between construction and start() (the self-test's, say) are kept here.
  private early: NativeEvent[] = [];
  private onEvents: ((events: RawFileEvent[]) => void) | undefined;

  /** Opens the fanotify group and marks the directories now, so a refusal (EPERM) shows at once.
   * nestedDirs: the filesystem creation mark for nested directories (the addon's WatchOptions). */
  constructor(dirs: readonly string[], prefixes: readonly string[], graceMs: number, nestedDirs = true) {
    const native = loadNative();
    this.watcher = new native.Watcher({ dirs: [...dirs], prefixes: [...prefixes], execCache: true, graceMs, nestedDirs }, (events) => this.deliver(events));
  }

  private deliver(events: NativeEvent[]): void {
    if (this.onEvents) this.onEvents(events as RawFileEvent[]);
    else this.early.push(...events);
  }

  start(onEvents: (events: RawFileEvent[]) => void): void {
    this.onEvents = onEvents;
    if (this.early.length > 0) {
      const early = this.early;
      this.early = [];
      onEvents(early as RawFileEvent[]);
    }
  }

  async addDir(dir: FsPath, opts?: { forwardAll?: boolean; content?: boolean }): Promise<void> {
    this.watcher?.addDir(dir, opts);
  }

  watchFile(file: FsPath, on: boolean): void {
    this.watcher?.watchFile(file, on);
  }

  setPrefixes(prefixes: readonly string[]): void {
    this.watcher?.setPrefixes([...prefixes]);
  }

  removeDir(dir: FsPath): void {
    this.watcher?.removeDir(dir);
  }

  stats(): SourceStats {
    return this.watcher ? { ...this.watcher.stats() } : {};
  }

  async close(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    this.onEvents = undefined;
  }
}

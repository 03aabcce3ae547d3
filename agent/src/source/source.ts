// A source turns kernel notifications into raw file events for the pipeline.
// Contract: start() begins delivery through onEvents in arrival order, in batches, on the JS thread;
// the kernel queue is read by the source itself (a C thread for fanotify) and never waits on the
// consumer: when it cannot keep up it reports an overflow (a health event) and the agent rescans.
// close() stops delivery; no callback runs after its promise resolves. The source owns its kernel
// resources; the agent owns the source.
import type { Attribution } from '../../../shared/ecs.js';
import type { FsPath } from '../byte-path.js';
import type { ProcInfo } from '../native.js';

/** What /proc (or the exec cache) told about a process: the addon's ProcInfo, which the inotify
 * source fills from /proc itself. */
export type ProcFacts = ProcInfo;

export interface RawFileEvent {
  /** create: new file, link, symlink or directory; moved_to: renamed into the directory;
   * modify, attrib: an in-place change of a file watched whole (Source.watchFile); mount: the
   * host's mount table changed (the addon's NativeEventKind: dir is the action, name the mount id). */
  kind: 'create' | 'moved_to' | 'close_write' | 'modify' | 'attrib' | 'overflow' | 'mount';
  /** Real directory on the agent's filesystem ('' for overflow). */
  dir: string;
  name: string;
  /** The exact bytes of dir, resp. name, when they are not UTF-8 (see the addon's NativeEvent);
   * byte-path.ts's eventPath() gives the path to use for filesystem calls. */
  rawDir?: Buffer;
  rawName?: Buffer;
  /** moved_to: where the file came from, when the source knows (the addon's NativeEvent). */
  originalDir?: string;
  originalName?: string;
  rawOriginalDir?: Buffer;
  rawOriginalName?: Buffer;
  isDir: boolean;
  pid: number;
  timeNs: bigint;
  attribution: Attribution;
  /** Why the writer is unknown, when the source can tell (the addon's AttributionReason), or, for a
   * file the rescan after a new directory found, that it was made before its directory was marked. */
  attributionReason?: 'exec_unseen' | 'writer_gone' | 'created_before_dir_marked';
  process: ProcFacts | null;
  parent: ProcFacts | null;
  /**
   * A creation whose write the source knows is complete already: inotify reports no close-write
   * (@parcel/watcher folds a new file's writes into its creation), so it says so when no process
   * held the file open as it reported the creation. The alert then need not wait for one.
   */
  writeDone?: boolean;
}

export interface SourceStats {
  [key: string]: number | string | boolean;
}

export interface Source {
  readonly name: 'fanotify' | 'inotify';
  /** True when the source cannot name writers exactly (inotify): shown in health and on the fleet page. */
  readonly degraded: boolean;
  start(onEvents: (events: RawFileEvent[]) => void): void;
  /** Watch another directory; forwardAll skips the name filter (self-test and rule-matching subdirectories);
   * content reports its files' writes as modify events too (package databases; fanotify only: inotify has no writer to judge). */
  /** Resolves once events in dir are being delivered. A Buffer is a directory whose name is not UTF-8. */
  addDir(dir: FsPath, opts?: { forwardAll?: boolean; content?: boolean }): Promise<void>;
  /**
   * Watch an existing regular file whole (on) or stop: its writes, close-writes and attribute
   * changes arrive as modify, close_write and attrib events. Absent where the source cannot
   * (inotify): the agent's periodic re-hash is then all there is. Throws when the file cannot be
   * marked.
   */
  watchFile?(file: FsPath, on: boolean): void;
  /** Stop watching a directory whose path leads elsewhere now (agent/src/mounts.ts); absent where
   * the source cannot (then its events keep coming under the old path until a restart). */
  removeDir?(dir: FsPath): void;
  /** Replace the name filter (after a rules reload). */
  setPrefixes(prefixes: readonly string[]): void;
  stats(): SourceStats;
  close(): Promise<void>;
}

// Types of ldguard's native addon (build/Release/ldguard_native.node), the contract between the
// C reader thread and TypeScript. Load it through agent/src/native.ts, which finds the build,
// names the fix when it is missing, and turns the addon's errors into LdgError.
//
// What the addon does: one fanotify group (FAN_REPORT_DFID_NAME, FAN_REPORT_PIDFD when the kernel
// has it) with inode marks on the watched directories, read by a C thread that also keeps an exec
// cache (FAN_OPEN_EXEC filesystem marks in the same group + the netlink process connector) and
// hands only the events that pass the name filter to JavaScript, in batches. With the exec cache, a
// second group holds the directory marks alone, so that creations wake the thread and exec events
// do not. The directory marks report creations and renames only; the close-write of a new regular
// file that passed the filter is asked of that file alone (an inode mark added when its creation
// is read), so that writers of unrelated files pay for no close-write events. The C returns facts
// (pid, kind, directory, name, the process as /proc or the cache knew it); policy lives in TS.
// A third group (FAN_REPORT_MNT, Linux 6.15; else POLLPRI on mountinfo) watches the host's mount
// table: each change re-marks the filesystems for FAN_OPEN_EXEC, then comes as a `mount` event
// (src/mounts.c); what it covered is agent/src/mounts.ts's to find out.
//
// Privileges: CAP_SYS_ADMIN (fanotify), CAP_DAC_READ_SEARCH (decoding exec events' directory
// handles), CAP_NET_ADMIN (process connector), CAP_SYS_NICE (the reader thread runs at nice -10,
// as auditd boosts itself, so that it reaches /proc while short-lived writers still exist).
// Environment: LDG_NATIVE_TRACE=1 prints raw events and exec-cache decisions on stderr.
//
// Kernel behaviour the contract relies on (Linux 6.x, measured):
// - One fanotify queue is ordered: a pid's FAN_OPEN_EXEC events come before its later creations.
// - One execve gives several exec events from the same pid: a dynamic ELF, then its PT_INTERP
//   (ld.so); a "#!" script, then its interpreter (then the interpreter's ld.so). The image is the
//   binary, resp. the interpreter; comm stays the name passed to execve (the script's name). The
//   addon reads ELF headers and "#!" lines to tell these apart. `ld.so PROGRAM` run directly has
//   ld.so as its image.
// - An exec event that fails afterwards (noexec mount, ENOEXEC) leaves no trace; the addon trusts
//   a live /proc read that contradicts it.
// - The process connector is not ordered with fanotify, but a message sent before an event is in
//   the socket when the event is read; the addon drains it after each fanotify read. Its messages
//   carry CLOCK_MONOTONIC times, which order FORK, EXEC, EXIT and COMM across the addon's two
//   connector sockets; a FORK's time is within microseconds of the child's start time.
// - The kernel sends a close-write at the last release of a description opened for writing, and
//   drops the file's write count only after that; a read lease (F_SETLEASE F_RDLCK) is refused
//   while the count is positive. So once the file's own mark is in place, a granted lease means
//   no close-write can come any more: the write is complete (closewrite.c). The lease is held for
//   two fcntl(2)s; it needs the file's owner to be the agent's uid, or CAP_LEASE.
//
// Cost: the reader wakes for creations (at most once a millisecond: a burst is read in batches,
// a creation right after another waits up to 1 ms) and for each exec on the host (one /proc read
// of the new image, which is what names a writer that has exited by the time its event is read);
// forks, exits and threads do not wake it (see stats().wakeups). Writers pay fsnotify's price
// for each creation in a watched directory (two events: the main group's and the doorbell's),
// and for the close of a new file whose name passed the filter.

export interface WatchOptions {
  /** Absolute directories to mark. Symlinks are resolved again here: the kernel reports under the
   * real directory, so /lib and /usr/lib on a merged-/usr host are one mark and one event. */
  dirs: string[];
  /** Lowercase name prefixes to forward (ASCII case-insensitive match); [''] forwards everything,
   * [] forwards nothing except in directories added with forwardAll. */
  prefixes: string[];
  /** Default true: FAN_OPEN_EXEC filesystem marks + the process connector, so that a writer that
   * has exited or exec'd since the write still resolves to the image that wrote. */
  execCache?: boolean;
  /** Default true: a filesystem creation mark on each watched directory's filesystem, so that a
   * file made at once in a new rule-matching directory, at any depth, is reported with its exact
   * writer (src/subtree.c). Every creation on those filesystems is then queued and read. */
  nestedDirs?: boolean;
  /** How long exited processes stay in the cache, default 30000. */
  graceMs?: number;
  /** Default false: the kernel queue holds 16384 events, then reports an overflow (forwarded as
   * { kind: 'overflow' }) so that the caller rescans. true makes the queue unlimited (no overflow,
   * but kernel memory grows while the reader is behind). */
  unlimitedQueue?: boolean;
}

export interface ProcInfo {
  pid: number;
  /** 0 when unknown. */
  ppid: number;
  /** Real path of the image (/proc/<pid>/exe, or the exec event's path). */
  exe: string | null;
  /** The kernel's comm (what Elastic Defend reports as process.name), at most 15 bytes. */
  comm: string | null;
  /** argv from /proc/<pid>/cmdline (first 4 KiB), as read right after the process's exec by the
   * exec cache (a live attribution reads it after the event only when the cache has none); []
   * when unknown. A process that rewrites its argv (setproctitle) shows the argv it exec'd. */
  args: string[];
  cwd: string | null;
  /** The "#!" script the kernel executed for this image (exe is then its interpreter), as the exec
   * cache recorded it from the script's own exec event (real path). Absent when the image is no
   * script's, when the cache did not see the exec, and for a script named only in argv
   * (`python3 /usr/bin/dnf`): argv names any file, the exec event only the file the kernel ran. */
  script?: string;
  /** Real and effective ids. 4294967295 ((uid_t)-1, the kernel's "no id") when neither /proc nor
   * the cache knew them: only for a writer that was gone before any /proc read of it or of an
   * ancestor it inherited from, which the exec cache makes rare. */
  uid: number;
  gid: number;
  euid: number;
  egid: number;
  /** null when unset (4294967295) or unknown. */
  loginuid: number | null;
  /** /proc/<pid>/stat field 22 (clock ticks after boot): with the pid and the boot id, a process
   * identity that survives pid reuse. */
  startTicks: number | null;
}

/** modify and attrib come only from files watched whole (watchFile): a write or truncate, resp. a
 * change of mode, owner, times or link count.
 * mount: the host's mount table changed (src/mounts.c). `dir` is 'attach', 'detach' (fanotify
 * FAN_REPORT_MNT, Linux 6.15: `pid` is the process that mounted, attributed like a writer) or
 * 'change' (the mountinfo fallback, or a lost mount event: pid 0); `name` is the mount id, '' when
 * unknown. The filesystems were re-marked for FAN_OPEN_EXEC before it was handed over; what it
 * covered is for the caller to find out (agent/src/mounts.ts). */
export type NativeEventKind = 'create' | 'moved_to' | 'close_write' | 'modify' | 'attrib' | 'overflow' | 'mount';

/** How the writer was identified:
 * - live_proc: /proc/<pid> read after the event, while the pidfd showed the same process alive and
 *   no exec of that pid had been seen since the event;
 * - exec_cache: the writer had exited or exec'd since: the cache's image at the event's place in
 *   the queue;
 * - unknown: neither (process is then null). */
export type Attribution = 'live_proc' | 'exec_cache' | 'unknown';

/** Why a writer is 'unknown' (absent when it is known, or the reason is):
 * - exec_unseen: it had exec'd an image fanotify could not see (fexecve of a memfd, a filesystem
 *   that could not be marked) and was gone before /proc could name it; the cache's image is
 *   the one before that exec, so it is not used;
 * - writer_gone: it was gone before any /proc read and the exec cache did not know it. */
export type AttributionReason = 'exec_unseen' | 'writer_gone';

export interface NativeEvent {
  /** One kernel event can carry several kinds: each kind is reported as its own object,
   * create/moved_to before close_write.
   * close_write is reported at most once per `create` of a regular file with one link (not for
   * directories, links, symlinks or renames): when it arrives, the file's first write is complete.
   * It comes right after its `create` (same batch) when the write was already complete when the
   * addon looked; then later with the closing pid; or, with pid 0 and attribution 'unknown', when
   * a recheck found the write complete without its event. None comes when the file was renamed or
   * deleted while open, stayed open for writing longer than 5 s, or could not be leased (see above)
   * and was closed before the addon marked it: wait for it with a timeout.
   * A file watched whole (watchFile) also reports every close-write of a description that had it
   * open for writing, after its modify events (one kernel event carrying both gives attrib, then
   * modify, then close_write), and nothing for a write through a shared mapping until that close. */
  kind: NativeEventKind;
  /** Real path of the directory holding `name`; '' for overflow. */
  dir: string;
  /** Linux names are bytes: `dir` and `name` are decoded as UTF-8, with U+FFFD for each byte
   * sequence that is not UTF-8, so such a string names no file. */
  name: string;
  /** Present only when `dir` is not valid UTF-8 (a directory marked with addDir(Buffer), say an
   * attacker's rule-matching subdirectory): its exact bytes. Use it for every filesystem call. */
  rawDir?: Buffer;
  /** Present only when `name` is not valid UTF-8 (e.g. "ld-linux-x86-64.so.2\xff"): its exact
   * bytes. Valid names, nearly all, carry nothing more. */
  rawName?: Buffer;
  /** moved_to only: the renamed file's directory (real path, as resolved when the event was read)
   * and old name, from FAN_RENAME (Linux 5.17). Absent, never guessed, when the kernel does not
   * report it or the directory cannot be resolved (deleted since, or on a filesystem whose handles
   * cannot be decoded). rawOriginalDir/rawOriginalName as rawDir/rawName. */
  originalDir?: string;
  originalName?: string;
  rawOriginalDir?: Buffer;
  rawOriginalName?: Buffer;
  isDir: boolean;
  /** Thread-group id of the writer (of a close_write: of the closer); 0 when unknown (overflow, an
   * inferred close_write). */
  pid: number;
  /** CLOCK_REALTIME when the C thread read the event. */
  timeNs: bigint;
  attribution: Attribution;
  attributionReason?: AttributionReason;
  process: ProcInfo | null;
  /** The parent (ppid) as /proc or the cache knows it; null when unknown. */
  parent: ProcInfo | null;
}

/** Counters since the watcher started. Values are all primitives (health reports copy them). */
export interface WatcherStats {
  /** fanotify events read (all kinds, before filtering). */
  read: number;
  /** Event objects handed to JavaScript. */
  forwarded: number;
  /** FAN_Q_OVERFLOW events seen. */
  overflows: number;
  /** FAN_OPEN_EXEC events read (the exec cache's ordered feed). */
  execEvents: number;
  cacheEntries: number;
  /** 'unavailable' when the process connector could not be used (netlinkError says why); the
   * watcher then attributes with /proc and fanotify exec events only. */
  netlink: 'ok' | 'unavailable';
  /** '' when the connector is fine. */
  netlinkError: string;
  /** FAN_REPORT_PIDFD accepted by the kernel. */
  pidfd: boolean;
  /** How mount changes are watched: "fanotify NS" (FAN_MARK_MNTNS on NS), "poll MOUNTINFO"
   * (POLLPRI, the mounter is not named), each with why /proc/1 or fanotify could not be used;
   * "none: …" when neither could be opened. */
  mounts: string;
  /** Times the connector socket overran (messages lost). */
  procConnectorLost: number;
  /** Filesystems marked for FAN_OPEN_EXEC. */
  execMarks: number;
  /** Forwarded events by attribution: live_proc, exec_cache, unknown. */
  attributedLive: number;
  attributedCache: number;
  attributedUnknown: number;
  /** Times the reader thread woke up: what a busy host costs the agent (see watcher.c). */
  wakeups: number;
  /** FAN_CLOSE_WRITE marks put on single new files (closewrite.c). */
  fileMarks: number;
  /** close_write events reported without the kernel's event: the write was complete already. */
  writesInferred: number;
  /** New files whose close-write is awaited now (each also holds a mark). */
  closeWritesAwaited: number;
  /** Filesystems carrying the creation mark for nested directories (0: off or refused). */
  creationMarks: number;
  /** Directories the reader put in its table from their creation or rename (src/subtree.c), since start. */
  nestedDirs: number;
  /** Directories in the table now: those marked, and nested ones not yet pruned as gone. */
  dirs: number;
  closed: boolean;
}

export declare class Watcher {
  /** Starts watching at once. Throws an Error with `code`:
   * LDG_ERR_FANOTIFY_EPERM (fanotify_init EPERM), LDG_ERR_FANOTIFY_UNAVAILABLE (ENOSYS, EINVAL,
   * other init failures), LDG_ERR_FANOTIFY_MARK (a directory could not be marked).
   * The process connector failing is not an error: see stats().netlink.
   * `onEvents` runs on the JS thread with one or more events, never after close(). */
  constructor(options: WatchOptions, onEvents: (events: NativeEvent[]) => void);
  /** Marks one more directory (e.g. a new /lib/ld-linux-x/). forwardAll: forward every name in
   * it (the self-test's scratch directory). A Buffer gives the path's exact bytes, for a
   * directory whose name is not UTF-8; its events then carry rawDir. Throws LDG_ERR_FANOTIFY_MARK. */
  /** content: the writes to its files too (FAN_MODIFY on children), forwarded as modify events. */
  addDir(dir: string | Buffer, opts?: { forwardAll?: boolean; content?: boolean }): void;
  /** Unmarks a directory (given as it was added); a directory already deleted is only forgotten. */
  removeDir(dir: string | Buffer): void;
  /** Watches one existing regular file whole (on, the default) or stops (false): its in-place
   * changes come as modify, attrib and close_write events naming it by its directory and name.
   * A symlink is refused, not followed (mark its target, resolved where it should be). The mark
   * goes with the inode when the file is deleted. Throws LDG_ERR_FANOTIFY_MARK. */
  watchFile(file: string | Buffer, on?: boolean): void;
  /** Replaces the name prefixes (config reload). */
  setPrefixes(prefixes: string[]): void;
  stats(): WatcherStats;
  /** Stops and joins the reader thread. Idempotent; after it no callback runs. */
  close(): void;
  /** A running watcher keeps the event loop alive (ref, the default); unref() lets it exit. */
  ref(): void;
  unref(): void;
}

/** sd_notify(3) without libsystemd: sends `state` (e.g. "READY=1") as one datagram to the
 * AF_UNIX socket `socket` ($NOTIFY_SOCKET; a leading '@' means the abstract namespace).
 * Throws an Error with code LDG_ERR_SD_NOTIFY naming the syscall and errno. */
export declare function sdNotify(socket: string, state: string): void;

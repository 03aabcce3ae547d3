// What the host sees at the watched paths, kept equal to what is marked (issue #17, items 1 and 2).
// Directory marks follow inodes, not paths: a mount over /lib64 (or over /usr, or over the loader
// file itself), a directory deleted and made again, renamed away and replaced, or swapped for a
// symlink leaves the marks on inodes the host no longer reaches through those paths, and the kernel
// reports nothing about it in the main group. So on every sign that a path may lead elsewhere now:
//   - a mount event from the source (the addon's second fanotify group on the host's mount
//     namespace, or the mountinfo fallback: agent/native/src/mounts.c), and
//   - an inotify event (fs.watch) on an ancestor of a watched directory for a name on one of the
//     watched paths (ancestors are few and quiet: /, /usr; see watchAncestors for /usr/lib),
// every watched path is resolved again and its (st_dev, st_ino, birth time) compared with the one
// marked. A
// path that leads to another directory is re-marked at once and logged; if a mount did it, or a
// directory that was marked is replaced, that is an alert of the view rule (shared/rules/ldguard/
// ldguard_lib_dir_view_changed.toml), and the rescan that follows reports the files now visible
// as unidentified, linked to that alert by ldguard.view_change.id. After a mount, the baseline's
// files are compared too: a file bind-mounted over the loader changes its identity, not its name.
//
// Checks run one at a time, on the JS thread; a sign that comes during one runs another after it.
// The view is the agent's own mount namespace when it is the host's (PID 1's); when it is not (the
// unit's private namespace), paths are resolved through /proc/1/root. close() stops the watches.
import { lstatSync, readlinkSync, realpathSync, statSync, watch, type FSWatcher } from 'node:fs';
import { posix } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../shared/log.js';
import { errorMessage } from '../../shared/errors.js';
import type { RawFileEvent } from './source/source.js';
import { resolveDirInRoot, toHostPath, type WatchDir } from './watch-dirs.js';

export interface Identity {
  dev: number;
  ino: number;
  /** Birth time (statx btime) in ns, 0 where the filesystem keeps none: a directory deleted and
   * made again at once often gets the same inode number back (ext4 did here, every time). */
  born: bigint;
}

/** A path's identity as "dev:ino" ('' for none): what alerts carry. */
export const idText = (i: Identity | null | undefined): string => (i ? `${i.dev}:${i.ino}` : '');

/** The (st_dev, st_ino) a path leads to now (symlinks followed); null when it leads nowhere. */
export function identityOf(path: string): Identity | null {
  return idOf(path, statSync);
}

/** The identity of the name itself (a symlink's own): what the baseline's inodes are (lstat). */
function nameIdentityOf(path: string): Identity | null {
  return idOf(path, lstatSync);
}

function idOf(path: string, how: typeof statSync | typeof lstatSync): Identity | null {
  try {
    const st = how(path, { bigint: true });
    return { dev: Number(st.dev), ino: Number(st.ino), born: st.birthtimeNs };
  } catch {
    return null;
  }
}

/** The event.action of a view change (shared/ecs.ts): raised by this watch alone. */
export const VIEW_ACTIONS = ['mounted', 'unmounted', 'mount_changed', 'directory_replaced'] as const;
export type ViewAction = (typeof VIEW_ACTIONS)[number];

/** One path that leads elsewhere now, as the alert reports it. */
export interface ViewChange {
  action: ViewAction;
  hostPath: string;
  /** Where the path leads now on the agent's filesystem (or led, when it leads nowhere now). */
  realPath: string;
  isDir: boolean;
  before: Identity | null;
  after: Identity | null;
  /** The mount event that caused the check, when one did (its pid is the mounting process). */
  mount: RawFileEvent | null;
  /** Shared by this change's alerts and the files its rescan reports. */
  id: string;
  noProcessReason?: string;
}

export interface ViewWatchOptions {
  realRoot: string;
  /** Every watched host path (configured and named by the rules), as at start. */
  paths: readonly string[];
  /** The directories as marked at start (watch-dirs.ts), with their identities when marked (taken
   * as the source opened: a change between then and this watch's start is found by its first check). */
  dirs: ReadonlyArray<WatchDir & { id: Identity | null }>;
  log: Logger;
  /** Mark a directory (Source.addDir); resolves when its events are delivered. */
  mark: (real: string) => Promise<void>;
  /** Forget a directory whose path leads elsewhere now (Source.removeDir). */
  unmark: (real: string) => void;
  /** The directories now watched, for the rescans and health. */
  setDirs: (dirs: WatchDir[]) => void;
  /** The baseline: host path → inode of the rule-matching files known. */
  knownFiles: () => ReadonlyArray<{ hostPath: string; inode: number }>;
  /** Raise the view rule's alert on one change. */
  alert: (c: ViewChange) => void;
  /** Rescan the watched directories; files found new are reported linked to `id` (when given),
   * except `covered` (host paths the change's own alerts name). */
  rescan: (why: string, view?: { id: string; covered: ReadonlySet<string> }) => void;
}

interface Marked {
  real: string;
  host: string;
  id: Identity;
}

export class ViewWatch {
  /** By watched host path (alias): what is marked for it; absent when the path led nowhere. */
  private readonly marked = new Map<string, Marked>();
  /** Watched paths whose marked directory went away, by alias: one that comes back there replaced it. */
  private readonly lost = new Map<string, Marked>();
  /** Baseline files' identities as last seen, by host path (dev is what KnownFiles lacks). */
  private readonly files = new Map<string, Identity>();
  private readonly ancestors = new Map<string, { watcher: FSWatcher; names: Set<string>; id: Identity | null }>();
  private running: Promise<void> | undefined;
  private again: RawFileEvent | null | undefined; // a sign that came during a check (null: not a mount)
  private closed = false;
  readonly viewRoot: string;

  constructor(private readonly o: ViewWatchOptions) {
    this.viewRoot = hostViewRoot(o.realRoot, o.log);
    for (const d of o.dirs) if (d.id) for (const a of d.aliases) this.marked.set(a, { real: d.real, host: d.host, id: d.id });
    this.noteFiles();
    this.watchAncestors();
  }

  /** A sign that a path may lead elsewhere now: a mount event, or null (a name changed). */
  changed(mount: RawFileEvent | null): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      // A mount outranks a name change: the check that follows reports it as a mount.
      if (this.again === undefined || (mount && !this.again)) this.again = mount;
      return this.running;
    }
    this.running = this.check(mount)
      .catch((err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'could not compare the watched paths with what is marked'))
      .finally(() => {
        this.running = undefined;
        const next = this.again;
        this.again = undefined;
        if (next !== undefined) void this.changed(next);
      });
    return this.running;
  }

  close(): void {
    this.closed = true;
    for (const a of this.ancestors.values()) a.watcher.close();
    this.ancestors.clear();
  }

  private async check(mount: RawFileEvent | null): Promise<void> {
    const dirs = resolveView(this.viewRoot, this.o.paths);
    const now = new Map<string, Marked>();
    for (const d of dirs) {
      const id = identityOf(d.real);
      if (!id) continue;
      const real = this.agentPath(d.real);
      for (const a of d.aliases) now.set(a, { real, host: preferredHost(d), id });
    }
    const changeId = randomUUID();
    const action: ViewAction = !mount ? 'directory_replaced' : mount.dir === 'attach' ? 'mounted' : mount.dir === 'detach' ? 'unmounted' : 'mount_changed';
    const noProcessReason = !mount
      ? 'seen as a name change in a parent directory (inotify), which does not name the process'
      : mount.pid > 0
        ? undefined
        : mount.dir === 'change'
          ? 'the mountinfo fallback (poll), or a lost mount event, does not name the mounting process; FAN_REPORT_MNT needs Linux 6.15'
          : 'the kernel named no process (pid 0: a mount changed by the kernel itself, or by a process outside the agent\'s pid namespace)';
    const changes: ViewChange[] = [];
    const done = new Set<string>(); // by host path: aliases of one directory give one alert
    const changedDirs: string[] = [];
    for (const alias of this.o.paths) {
      const after = now.get(alias) ?? null;
      // rmdir and mkdir seen by two checks are one replacement: the one that went is the one before.
      const before = this.marked.get(alias) ?? (after ? this.lost.get(alias) : undefined) ?? null;
      if (after) this.lost.delete(alias);
      else if (before) this.lost.set(alias, before);
      if (before && after && sameId(before.id, after.id) && before.real === after.real) continue;
      if (!before && !after) continue;
      const hostPath = after?.host ?? before!.host;
      changedDirs.push(hostPath);
      if (after) this.marked.set(alias, after);
      else this.marked.delete(alias);
      if (done.has(hostPath)) continue;
      done.add(hostPath);
      if (before && (!after || before.real !== after.real) && ![...now.values()].some((m) => m.real === before.real)) this.o.unmark(before.real);
      if (after) {
        try {
          await this.o.mark(after.real);
        } catch (err) {
          this.o.log.error({ path: hostPath, err: errorMessage(err) }, 'could not mark a watched directory again');
        }
      }
      this.o.log.warn(
        { path: alias, host: hostPath, before: before ? { real: before.real, id: idText(before.id) } : null, after: after ? { real: after.real, id: idText(after.id) } : null, why: mount ? `mount ${mount.dir}` : 'name change', mountId: mount?.name || undefined },
        after ? 're-marked a watched directory: its path leads to another directory now' : 'a watched directory is gone from its path: unmarked until it comes back',
      );
      // A directory that comes where none was (created after start, or back after a delete seen
      // apart) is marked, not alerted: that is how a missing /lib64 gets made. Replacing one is.
      if (mount || (before && after)) {
        changes.push({ action, hostPath, realPath: after?.real ?? before!.real, isDir: true, before: before?.id ?? null, after: after?.id ?? null, mount, id: changeId, noProcessReason });
      }
    }
    if (mount) changes.push(...this.fileChanges(changedDirs, action, mount, changeId, noProcessReason));
    else this.noteFiles();
    if (changedDirs.length > 0) this.o.setDirs(currentDirs(this.marked));
    this.watchAncestors(); // after a mount too: an ancestor may be another directory now
    for (const c of changes) this.o.alert(c);
    if (changes.length > 0 || changedDirs.length > 0) {
      this.o.rescan(mount ? `mount ${mount.dir}` : 'watched directory re-marked', changes.length > 0 ? { id: changeId, covered: new Set(changes.filter((c) => !c.isDir).map((c) => c.hostPath)) } : undefined);
    }
  }

  /** Baseline files whose path leads to another file now (a file mounted over one, or unmounted
   * from it), outside directories that changed (their alert says it). */
  private fileChanges(changedDirs: readonly string[], action: ViewAction, mount: RawFileEvent, id: string, noProcessReason: string | undefined): ViewChange[] {
    const out: ViewChange[] = [];
    const known = this.o.knownFiles();
    for (const f of known) {
      if (changedDirs.some((d) => f.hostPath.startsWith(d.endsWith('/') ? d : `${d}/`))) continue;
      const real = posix.join(this.viewRoot, f.hostPath);
      // A loader symlink keeps its own inode when a file is mounted over its target: the target's
      // name, in the baseline too (the multiarch rule's), is the one that changed.
      const after = nameIdentityOf(real);
      const seen = this.files.get(f.hostPath);
      const before: Identity = seen && seen.ino === f.inode ? seen : { dev: -1, ino: f.inode, born: 0n };
      if (!after || (before.dev === -1 ? after.ino === before.ino : sameId(before, after))) continue;
      out.push({ action, hostPath: f.hostPath, realPath: this.agentPath(real), isDir: false, before: before.dev === -1 ? null : before, after, mount, id, noProcessReason });
    }
    this.noteFiles();
    return out;
  }

  private noteFiles(): void {
    this.files.clear();
    for (const f of this.o.knownFiles()) {
      const id = nameIdentityOf(posix.join(this.viewRoot, f.hostPath));
      if (id) this.files.set(f.hostPath, id);
    }
  }

  /** The host's path as the agent reaches it (the marks and the file reads are the agent's). */
  private agentPath(viewPath: string): string {
    return this.viewRoot === this.o.realRoot ? viewPath : posix.join(this.o.realRoot, viewPath.slice(this.viewRoot.length) || '/');
  }

  /**
   * inotify watches on the parents along each watched path (ROOT, ROOT/usr for /usr/lib64 …):
   * a name on a watched path that changes there (mkdir, rmdir, rename, a symlink put in its place)
   * starts a check. Only those names count. An ancestor that is itself a watched directory (/usr/lib,
   * parent of the multiarch /usr/lib/<triplet>) is not watched so: every creation there would cross
   * into JavaScript (measured: ~6 µs of agent CPU per event, 0.7 CPU-s for 120k, against the
   * fanotify path's 0.02 CPU-s per 10k), so a triplet directory's lifecycle is seen at mounts only.
   * Watches whose directory went, or is another directory now, are made again after each check.
   */
  private watchAncestors(): void {
    const want = new Map<string, Set<string>>();
    const add = (dir: string, name: string) => {
      const s = want.get(dir) ?? new Set<string>();
      s.add(name);
      want.set(dir, s);
    };
    const chains = [...this.o.paths, ...[...this.marked.values()].map((m) => m.host)];
    for (const p of chains) {
      const parts = p.split('/').filter(Boolean);
      for (let i = 0; i < parts.length; i++) add(posix.join(this.o.realRoot, ...parts.slice(0, i)), parts[i]!);
    }
    const watched = new Set([...this.marked.values()].map((m) => m.real));
    for (const dir of [...want.keys()]) {
      let real: string;
      try {
        real = realpathSync(dir);
      } catch {
        continue; // not there (yet): the check after its parent's event watches it
      }
      if (watched.has(real)) want.delete(dir);
    }
    for (const [dir, a] of this.ancestors) {
      if (!want.has(dir)) {
        a.watcher.close();
        this.ancestors.delete(dir);
      }
    }
    for (const [dir, names] of want) {
      const have = this.ancestors.get(dir);
      const id = identityOf(dir);
      // An inotify watch follows its inode: a mount over /usr leaves it on the covered directory.
      if (have && have.id && id && sameId(have.id, id)) {
        have.names = names;
        continue;
      }
      if (have) {
        have.watcher.close();
        this.ancestors.delete(dir);
      }
      try {
        const watcher = watch(dir, { persistent: false }, (_type, name) => {
          const a = this.ancestors.get(dir);
          if (name === null || (a && a.names.has(String(name)))) void this.changed(null);
        });
        watcher.on('error', () => {
          watcher.close();
          if (this.ancestors.get(dir)?.watcher === watcher) this.ancestors.delete(dir);
          void this.changed(null);
        });
        this.ancestors.set(dir, { watcher, names, id });
      } catch {
        // not there (yet): the check after its parent's event watches it
      }
    }
  }
}

function sameId(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.born === b.born;
}

/**
 * The watched paths resolved in the host's view, as resolveWatchDirs does, but without realpath(3)
 * on the root: through /proc/1/root it would leave the host's namespace for the agent's (the link
 * reads "/"), where each component walked by the kernel does not.
 */
function resolveView(viewRoot: string, paths: readonly string[]): WatchDir[] {
  const byReal = new Map<string, WatchDir>();
  for (const h of paths) {
    const real = resolveDirInRoot(viewRoot, h);
    if (!real) continue;
    const d = byReal.get(real);
    if (d) d.aliases.push(h);
    else byReal.set(real, { real, host: toHostPath(viewRoot, real), aliases: [h] });
  }
  return [...byReal.values()];
}

/** The watched directories as marked now, one per real directory. */
function currentDirs(marked: ReadonlyMap<string, Marked>): WatchDir[] {
  const byReal = new Map<string, WatchDir>();
  for (const [alias, m] of marked) {
    const d = byReal.get(m.real);
    if (d) d.aliases.push(alias);
    else byReal.set(m.real, { real: m.real, host: m.host, aliases: [alias] });
  }
  return [...byReal.values()];
}

/**
 * The host path alerts name for a directory: its real place, unless that is not one of the
 * watched paths that led there (a watched directory swapped for a symlink to /tmp/x): then the
 * longest watched path that leads there (on merged /usr, /usr/lib64 is where /lib64 leads), which
 * is what the host resolves and what the rules are written for.
 */
export function preferredHost(d: WatchDir): string {
  return d.aliases.includes(d.host) ? d.host : [...d.aliases].sort((a, b) => b.length - a.length || a.localeCompare(b))[0]!;
}

/**
 * Where the host's view of the root is: the root itself when the agent shares PID 1's mount
 * namespace (or cannot tell), else PID 1's root seen through /proc/1/root.
 */
function hostViewRoot(realRoot: string, log: Logger): string {
  let own: string, host: string;
  try {
    own = readlinkSync('/proc/self/ns/mnt');
    host = readlinkSync('/proc/1/ns/mnt');
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'cannot compare the agent\'s mount namespace with the host\'s (/proc/1/ns/mnt): the agent\'s own view is used');
    return realRoot;
  }
  if (own === host) return realRoot;
  const via = posix.join('/proc/1/root', realRoot);
  if (identityOf(via) === null) {
    log.warn({ via }, 'the agent runs in a mount namespace of its own and cannot read the host\'s (/proc/1/root needs CAP_SYS_PTRACE): mounts are compared in the agent\'s view');
    return realRoot;
  }
  return via;
}

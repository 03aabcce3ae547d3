// Gap detection. The agent keeps, in its state dir, the set of files in the watched directories
// whose paths the rules care about. At start, and after a kernel queue overflow, it rescans: a file
// that is there now but was not known appeared while nobody was looking. Its writer is unknowable;
// the file is not, and the agent reports it.
import { lstatSync, readdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync, type Dirent } from 'node:fs';
import { compileWildcard, fieldConstraint } from '../../shared/eql/index.js';
import type { Rule } from '../../shared/rule.js';
import { displayPath, fromBytes, hostPathOf, joinPath, pathKey, type FsPath } from './byte-path.js';
import type { WatchDir } from './watch-dirs.js';
import { lstatNow } from './stat-now.js';

const MAX_DEPTH = 8; // rule-matching subdirectories (/lib/ld-linux-x/…) are followed this deep

export interface FoundFile {
  /** As alerts report it: escaped when the path is not UTF-8 (byte-path.ts). */
  hostPath: string;
  /** A Buffer when the path is not UTF-8. */
  realPath: FsPath;
  inode: number;
}

/** A test for host paths the rules' file.path constraints can match; null when they cannot be bounded. */
export function pathMatcher(rules: readonly Rule[]): ((hostPath: string) => boolean) | null {
  const tests: Array<(p: string) => boolean> = [];
  for (const r of rules) {
    const c = fieldConstraint(r.ast, 'file.path');
    if (!c) return null;
    for (const p of c.patterns) tests.push(compileWildcard(p, true));
    for (const e of c.exact) tests.push((v) => v === e);
  }
  return (p) => tests.some((t) => t(p));
}

/**
 * Files under the watched directories that match, descending into subdirectories whose names pass
 * the prefix filter (and everything below them, as the agent marks them with forwardAll). The
 * subdirectories are returned too: the agent watches them.
 * A string readdir turns a name that is not UTF-8 into U+FFFD, which names no file, so such a file
 * (an ld.so planted as "ld-linux-x86-64.so.2\xff") would be lost: its folder is read as bytes.
 */
export function scanMatching(
  realRoot: string,
  dirs: readonly WatchDir[],
  prefixes: readonly string[],
  matches: (hostPath: string) => boolean,
): { files: FoundFile[]; subdirs: FsPath[] } {
  const out: FoundFile[] = [];
  const subdirs: FsPath[] = [];
  // The prefixes are ASCII (the addon matches them byte by byte): escaping a name keeps them.
  const passes = (name: FsPath) => prefixes.some((p) => displayPath(name).toLowerCase().startsWith(p));
  const walk = (dir: FsPath, depth: number, all: boolean) => {
    let entries: Array<Dirent<string> | Dirent<Buffer>>;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
      // Read as bytes again only a folder with a name that decoded to U+FFFD: a Buffer per entry
      // for every folder cost the inotify fallback's periodic rescans of 160k names ~90 MB of RSS.
      if (entries.some((e) => e.name.includes('\uFFFD'))) entries = readdirSync(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch {
      return;
    }
    for (const e of entries) {
      const name = typeof e.name === 'string' ? e.name : fromBytes(e.name);
      if (!all && !passes(name)) continue;
      const real = joinPath(dir, name);
      const hostPath = displayPath(hostPathOf(realRoot, real));
      if (e.isDirectory() && depth < MAX_DEPTH) {
        subdirs.push(real);
        walk(real, depth + 1, true);
      }
      if (matches(hostPath)) {
        let inode = 0;
        try {
          inode = lstatSync(real).ino;
        } catch {
          continue;
        }
        out.push({ hostPath, realPath: real, inode });
      }
    }
  };
  for (const d of dirs) walk(d.real, 0, false);
  return { files: out, subdirs };
}

/**
 * The real paths a name decoded with losses could stand for. A string readdir, and @parcel/watcher,
 * write U+FFFD for each byte that is not UTF-8, so "x\xff" and "x\xfe" both arrive as "x\uFFFD":
 * every path whose bytes decode to `path` is a candidate. Components without U+FFFD are taken as
 * they are; each one with it is looked up in its parent read as bytes (`listings` keeps those reads
 * for the caller's batch). Empty when nothing matches any more (the file is gone again); at most
 * `max` paths, so a folder of look-alikes cannot make one event cost more than that.
 */
export function resolveLossy(path: string, listings = new Map<string, Buffer[]>(), max = 16): FsPath[] {
  if (!path.includes('\uFFFD')) return [path];
  let paths: FsPath[] = ['/'];
  for (const part of path.split('/')) {
    if (part === '') continue;
    if (!part.includes('\uFFFD')) {
      paths = paths.map((p) => joinPath(p, part));
      continue;
    }
    const next: FsPath[] = [];
    for (const p of paths) {
      const key = pathKey(p);
      let names = listings.get(key);
      if (!names) {
        try {
          names = readdirSync(p, { encoding: 'buffer' });
        } catch {
          names = [];
        }
        listings.set(key, names);
      }
      for (const n of names) if (next.length < max && n.toString('utf8') === part) next.push(joinPath(p, fromBytes(n)));
    }
    paths = next;
  }
  return paths;
}

/** The baseline: host path → inode, persisted atomically in the state dir. */
export class KnownFiles {
  private known = new Map<string, number>();
  private saveTimer: NodeJS.Immediate | undefined;
  private constructor(
    private readonly file: string,
    private noBaseline: boolean,
  ) {}

  /** True until the first baseline is recorded: then nothing can be told apart as new. */
  get firstRun(): boolean {
    return this.noBaseline;
  }

  static open(file: string): KnownFiles {
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as { files?: Record<string, number> };
      const k = new KnownFiles(file, false);
      for (const [p, ino] of Object.entries(data.files ?? {})) if (typeof ino === 'number') k.known.set(p, ino);
      return k;
    } catch {
      return new KnownFiles(file, true);
    }
  }

  /** Files that are new (or were replaced: another inode) against the baseline. */
  diff(found: readonly FoundFile[]): FoundFile[] {
    return found.filter((f) => this.known.get(f.hostPath) !== f.inode);
  }

  /** Make the baseline what is on disk now, and save it. */
  replace(found: readonly FoundFile[]): void {
    this.known = new Map(found.map((f) => [f.hostPath, f.inode]));
    this.noBaseline = false;
    clearImmediate(this.saveTimer);
    this.saveTimer = undefined;
    this.save();
  }

  /**
   * Record one file; saved once this turn of the event loop ends, so the alerts accepted together
   * share one write. Until then a kill -9 repeats the file's alert at the next start (its rescan
   * reports the file again), so the save waits no longer than that: with a delay of 500 ms the
   * system test's kill -9 just after a write gave two alerts for one file.
   */
  add(hostPath: string, inode: number): void {
    if (this.known.get(hostPath) === inode) return;
    this.known.set(hostPath, inode);
    this.saveTimer ??= setImmediate(() => {
      this.saveTimer = undefined;
      this.save();
    }).unref();
  }

  /** Save now if anything is waiting; for shutdown. */
  flush(): void {
    if (!this.saveTimer) return;
    clearImmediate(this.saveTimer);
    this.saveTimer = undefined;
    this.save();
  }

  private save(): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, files: Object.fromEntries(this.known) }), { mode: 0o600 });
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }
}

/**
 * Files seen in the last few seconds, by live event or by rescan, so that one file gives one
 * alert when both see it (a rescan racing a late live event). Keyed by real path and inode; the
 * time bound keeps a later file that reuses the inode from being taken for the same one.
 */
export class RecentFiles {
  private readonly byPath = new Map<string, { inode: number; at: number; how: 'live' | 'rescan' }>(); // by pathKey

  constructor(private readonly windowMs = 5_000) {}

  live(realPath: FsPath): void {
    const inode = inodeOf(realPath);
    if (inode !== null) this.put(realPath, inode, 'live');
  }

  rescanned(realPath: FsPath, inode: number): void {
    this.put(realPath, inode, 'rescan');
  }

  wasLive(realPath: FsPath, inode: number): boolean {
    return this.fresh(realPath, inode, 'live');
  }

  fromRescan(realPath: FsPath): boolean {
    const inode = inodeOf(realPath);
    return inode !== null && this.fresh(realPath, inode, 'rescan');
  }

  private fresh(realPath: FsPath, inode: number, how: 'live' | 'rescan'): boolean {
    const e = this.byPath.get(pathKey(realPath));
    return !!e && e.how === how && e.inode === inode && Date.now() - e.at < this.windowMs;
  }

  private put(realPath: FsPath, inode: number, how: 'live' | 'rescan'): void {
    const now = Date.now();
    this.byPath.set(pathKey(realPath), { inode, at: now, how });
    if (this.byPath.size > 4096) for (const [p, e] of this.byPath) if (now - e.at >= this.windowMs) this.byPath.delete(p);
  }
}

function inodeOf(path: FsPath): number | null {
  return lstatNow(path)?.ino ?? null;
}

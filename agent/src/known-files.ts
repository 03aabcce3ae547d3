// Gap detection. The agent keeps, in its state dir, the set of files in the watched directories
// whose paths the rules care about. At start, and after a kernel queue overflow, it rescans: a file
// that is there now but was not known appeared while nobody was looking. Its writer is unknowable;
// the file is not, and the agent reports it.
import { lstatSync, readdirSync, readFileSync, type Dirent } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { compileWildcard, type Expr } from '../../shared/eql/index.js';
import type { Rule } from '../../shared/rule.js';
import { displayPath, fromBytes, hostPathOf, joinPath, pathKey, type FsPath } from './byte-path.js';
import { fsyncDir } from './fsync-dir.js';
import type { WatchDir } from './watch-dirs.js';
import { lstatNow } from './stat-now.js';
import { neverKernelFileEvent } from './prefilter.js';

const MAX_DEPTH = 8; // rule-matching subdirectories (/lib/ld-linux-x/…) are followed this deep

export interface FoundFile {
  /** As alerts report it: escaped when the path is not UTF-8 (byte-path.ts). */
  hostPath: string;
  /** A Buffer when the path is not UTF-8. */
  realPath: FsPath;
  inode: number;
}

/**
 * A test for host paths the rules can match; null when one rule's cannot be bounded (then the
 * rescan cannot tell what to look for). Derived from each rule's conditions on file.path,
 * file.directory and file.name, through and/or (a rule that names paths in one branch and a
 * directory and names in another, as the masquerade rule does, is still a path test): a sound
 * over-approximation, case-insensitive even where the rule is not.
 */
export function pathMatcher(rules: readonly Rule[]): ((hostPath: string) => boolean) | null {
  const tests: Array<(p: string) => boolean> = [];
  for (const r of rules) {
    const t = pathTest(r.ast.condition);
    if (!t) return null;
    tests.push(t);
  }
  return (p) => tests.some((t) => t(p));
}

type PathTest = (hostPath: string) => boolean;

/** The paths `e` can match, as a test (see pathMatcher); null when it does not bound them. */
function pathTest(e: Expr): PathTest | null {
  switch (e.kind) {
    case 'and': {
      const l = pathTest(e.left);
      const r = pathTest(e.right);
      return l && r ? (p) => l(p) && r(p) : l ?? r;
    }
    case 'or': {
      const l = pathTest(e.left);
      const r = pathTest(e.right);
      return l && r ? (p) => l(p) || r(p) : null;
    }
    case 'bool':
      return e.value ? null : () => false;
    case 'compare':
    case 'in':
    case 'like': {
      if (neverKernelFileEvent(e)) return () => false; // the agent's view changes: no file of the baseline
      const part = PATH_PARTS[e.field.path];
      if (!part) return null;
      let values: Array<(v: string) => boolean>;
      if (e.kind === 'like') values = e.patterns.map((p) => compileWildcard(p, true));
      else {
        const exact = e.kind === 'in' ? e.values : e.op === '==' ? [e.value] : [];
        if (exact.length === 0 || exact.some((v) => typeof v !== 'string')) return null;
        values = (exact as string[]).map((x) => (v: string) => v.toLowerCase() === x.toLowerCase());
      }
      return (p) => values.some((t) => t(part(p)));
    }
    default:
      return null;
  }
}

/** The part of a host path each path field holds. */
const PATH_PARTS: Record<string, (p: string) => string> = {
  'file.path': (p) => p,
  'file.directory': (p) => (p.lastIndexOf('/') <= 0 ? '/' : p.slice(0, p.lastIndexOf('/'))),
  'file.name': (p) => p.slice(p.lastIndexOf('/') + 1),
};

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
  /** The host's name for a real path (default: its place under realRoot; see Agent.hostPathOf). */
  hostOf: (real: FsPath) => FsPath = (real) => hostPathOf(realRoot, real),
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
      const hostPath = displayPath(hostOf(real));
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
  /** The save in the thread pool, if one runs; `dirty`: changed since it took its copy. */
  private saving: Promise<void> | undefined;
  private dirty = false;
  private constructor(
    private readonly file: string,
    private noBaseline: boolean,
    private readonly log?: Logger,
  ) {}

  /** Called (synchronously, must not throw) whenever the set changes: the integrity watch follows it. */
  onChange: (() => void) | undefined;

  /** The host paths known now. */
  paths(): string[] {
    return [...this.known.keys()];
  }

  /** The files known now, with the inode each had when recorded. */
  entries(): Array<{ hostPath: string; inode: number }> {
    return [...this.known].map(([hostPath, inode]) => ({ hostPath, inode }));
  }

  /** True until the first baseline is recorded: then nothing can be told apart as new. */
  get firstRun(): boolean {
    return this.noBaseline;
  }

  static open(file: string, log?: Logger): KnownFiles {
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as { files?: Record<string, number> };
      const k = new KnownFiles(file, false, log);
      for (const [p, ino] of Object.entries(data.files ?? {})) if (typeof ino === 'number') k.known.set(p, ino);
      return k;
    } catch {
      return new KnownFiles(file, true, log);
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
    this.changed();
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
    this.changed();
  }

  /** Wait for the saves in progress, and save what changed since (one try); for shutdown. */
  async flush(): Promise<void> {
    clearImmediate(this.saveTimer);
    this.saveTimer = undefined;
    let tried = false;
    for (;;) {
      if (this.saving) await this.saving;
      else if (this.dirty && !tried) {
        tried = true;
        await this.save();
      } else return;
    }
  }

  private changed(): void {
    this.dirty = true;
    this.onChange?.();
    this.saveTimer ??= setImmediate(() => {
      this.saveTimer = undefined;
      void this.save();
    }).unref();
  }

  /**
   * Writes the baseline to a temporary file, fsyncs it, renames it over the old one and fsyncs the
   * folder, in the thread pool: done on the event loop, the fsync (1-5 ms, more while a collector
   * on the same disk commits) held back every kernel event that arrived meanwhile, and the alert
   * it would have raised. One save at a time: what changes meanwhile goes in the next. A failure
   * is logged and the next change (or shutdown) tries again; it costs at most a repeated alert at
   * the next start.
   */
  private save(): Promise<void> {
    if (this.saving) return this.saving; // its end starts the next save if anything changed
    this.dirty = false;
    const text = JSON.stringify({ version: 1, files: Object.fromEntries(this.known) });
    const run = async () => {
      const tmp = `${this.file}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
      await fsyncDir(dirname(this.file)); // the rename too: else a power loss can bring the old baseline back
    };
    let failed = false;
    this.saving = run()
      .catch((err: unknown) => {
        failed = this.dirty = true;
        const e = new LdgError('LDG_ERR_STATE', `cannot save the baseline ${this.file}: ${errorMessage(err)}; check that the state dir is writable and the disk has space`);
        this.log?.error({ err: e.message, code: e.code }, 'baseline not saved');
      })
      .finally(() => {
        this.saving = undefined;
        if (this.dirty && !failed) void this.save();
      });
    return this.saving;
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

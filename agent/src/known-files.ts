// Gap detection. The agent keeps, in its state dir, the set of files in the watched directories
// whose paths the rules care about. At start, and after a kernel queue overflow, it rescans: a file
// that is there now but was not known appeared while nobody was looking. Its writer is unknowable;
// the file is not, and the agent reports it.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, type Dirent } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { compileWildcard, type Expr } from '../../shared/eql/index.js';
import type { Rule } from '../../shared/rule.js';
import { parseRecord, readRecord, type FileRecord } from './baseline/record.js';
import { displayPath, fromBytes, hostPathOf, joinPath, pathKey, type FsPath } from './byte-path.js';
import { fsyncDir } from './fsync-dir.js';
import type { WatchDir } from './watch-dirs.js';
import { lstatNow } from './stat-now.js';
import { neverKernelFileEvent } from './prefilter.js';

// Rule-matching subdirectories (/lib/ld-linux-x/…) are followed at any depth (the rule's * crosses
// /, so a loader 30 levels down matches), each directory once: a bind mount of a directory inside
// its own subtree shows the same (dev, inode) again and ends the walk there. The bound is on the
// number of directories, against a tree made to exhaust the agent, not on depth.
const MAX_SUBDIRS = 100_000;

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
 * the prefix filter (and everything below them, as the agent marks them with forwardAll), at any
 * depth, each directory once (see MAX_SUBDIRS). The subdirectories are returned too: the agent
 * watches them.
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
  const visited = new Set<string>(); // `${dev}:${ino}` of each directory walked
  const firstVisit = (dir: FsPath) => {
    const st = lstatNow(dir);
    if (!st || visited.size >= MAX_SUBDIRS) return false;
    const key = `${st.dev}:${st.ino}`;
    if (visited.has(key)) return false;
    visited.add(key);
    return true;
  };
  // Iterative: a tree thousands of levels deep must not exhaust the stack.
  const stack: Array<{ dir: FsPath; all: boolean }> = [];
  const walk = (dir: FsPath, all: boolean) => {
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
      if (e.isDirectory() && firstVisit(real)) {
        subdirs.push(real);
        stack.push({ dir: real, all: true });
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
  for (const d of dirs) {
    firstVisit(d.real);
    walk(d.real, false);
    for (let next = stack.pop(); next; next = stack.pop()) walk(next.dir, next.all);
  }
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

/**
 * How the baseline was found at start. "ok": it parsed and its seal (below) vouches for it;
 * "upgraded": the first format (inodes only), taken as it is and completed with the files' facts;
 * "first_run": no state at all; "missing", "corrupt", "edited": there was state before (a seal, or
 * the agent id) and the baseline is gone, unreadable, or not what the agent last saved. Only "ok"
 * and "upgraded" are trusted; otherwise every rule-matching file is checked against the package
 * database at start (agent/src/baseline/judge.ts).
 */
export interface BaselineOpened {
  kind: 'ok' | 'upgraded' | 'first_run' | 'missing' | 'corrupt' | 'edited';
  /** What was wrong, in words. */
  detail?: string;
  /** The generation the seal says was saved last, when there is a seal. */
  expectedGeneration?: number;
  /** The generation the baseline file holds, when it parsed. */
  foundGeneration?: number;
}

/** The baseline's identity as the collector is told it: sha256 of the file's bytes and its generation. */
export interface BaselineSeal {
  generation: number;
  sha256: string;
}

interface Entry {
  inode: number;
  /** The file's facts (baseline/record.ts); null for an entry of the first format, or a file unread. */
  rec: FileRecord | null;
}

/**
 * The baseline: host path → inode and the file's facts, persisted atomically in the state dir with
 * a generation that grows at each save. Beside it, the seal (`<file>.seal`): the generation and
 * sha256 of the last save, and of the one before, written before the baseline is renamed into
 * place, so a crash between the two leaves a baseline the seal's `previous` still vouches for.
 * A baseline the seal does not vouch for was edited; one that is gone while the seal (or the agent
 * id) is there was deleted. Root can rewrite both consistently: that is the collector's to catch
 * (it records every seal it is told, see BaselineSeal in shared/protocol.ts).
 */
export class KnownFiles {
  private known = new Map<string, Entry>();
  private saveTimer: NodeJS.Immediate | undefined;
  /** The save in the thread pool, if one runs; `dirty`: changed since it took its copy. */
  private saving: Promise<void> | undefined;
  private dirty = false;
  private generation = 0;
  private current: BaselineSeal | null = null;
  private constructor(
    private readonly file: string,
    private noBaseline: boolean,
    readonly opened: BaselineOpened,
    private readonly opts: KnownFilesOptions,
  ) {}

  /** Called (synchronously, must not throw) whenever the set changes: the integrity watch follows it. */
  onChange: (() => void) | undefined;
  /** Called after each save with its seal (must not throw): the sink tells the collector. */
  onSaved: ((seal: BaselineSeal) => void) | undefined;

  /** The host paths known now. */
  paths(): string[] {
    return [...this.known.keys()];
  }

  /** The files known now, with the inode each had when recorded. */
  entries(): Array<{ hostPath: string; inode: number }> {
    return [...this.known].map(([hostPath, e]) => ({ hostPath, inode: e.inode }));
  }

  /** The facts recorded for a host path: undefined when unknown, null when recorded without them. */
  record(hostPath: string): FileRecord | null | undefined {
    return this.known.get(hostPath)?.rec;
  }

  /** The seal of the baseline on disk: null before the first save of a first run. */
  get seal(): BaselineSeal | null {
    return this.current;
  }

  /** True until the first baseline is recorded, and when the one found is not trusted. */
  get firstRun(): boolean {
    return this.noBaseline;
  }

  static open(file: string, log?: Logger, opts: Omit<KnownFilesOptions, 'log'> = {}): KnownFiles {
    const o = { ...opts, log };
    const seal = readSeal(`${file}.seal`);
    const expected = seal ? { expectedGeneration: seal.generation } : {};
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      const before = seal !== null || o.stateExisted === true;
      const k = new KnownFiles(file, true, before ? { kind: 'missing', detail: `${file} is gone`, ...expected } : { kind: 'first_run' }, o);
      k.generation = seal?.generation ?? 0;
      return k;
    }
    const digest = createHash('sha256').update(bytes).digest('hex');
    let data: { version?: unknown; generation?: unknown; files?: unknown };
    try {
      data = JSON.parse(bytes.toString('utf8')) as typeof data;
      if (data === null || typeof data !== 'object' || data.files === null || typeof data.files !== 'object') throw new Error('no "files" object');
    } catch (err) {
      const k = new KnownFiles(file, true, { kind: 'corrupt', detail: `${file} does not parse: ${errorMessage(err)}`, ...expected }, o);
      k.generation = seal?.generation ?? 0;
      return k;
    }
    const found = typeof data.generation === 'number' && Number.isSafeInteger(data.generation) ? data.generation : 0;
    const entries = new Map<string, Entry>();
    let bad = 0;
    for (const [p, v] of Object.entries(data.files as Record<string, unknown>)) {
      if (typeof v === 'number') entries.set(p, { inode: v, rec: null }); // the first format
      else if (v !== null && typeof v === 'object' && typeof (v as Entry).inode === 'number') {
        const { inode, ...rest } = v as Record<string, unknown>;
        const rec = parseRecord(rest);
        if (!rec && Object.keys(rest).length > 0) bad++;
        entries.set(p, { inode: inode as number, rec });
      } else bad++;
    }
    let opened: BaselineOpened;
    if (data.version === 1 && !seal) opened = { kind: 'upgraded', foundGeneration: 0 };
    else if (!seal) opened = { kind: 'edited', detail: `${file}.seal is gone: nothing vouches for the baseline`, foundGeneration: found };
    else if (digest !== seal.sha256 && digest !== seal.previous) opened = { kind: 'edited', detail: `${file} is not what the agent saved last (sha256 ${digest}, saved ${seal.sha256})`, ...expected, foundGeneration: found };
    else if (bad > 0) opened = { kind: 'corrupt', detail: `${bad} entries of ${file} are malformed`, ...expected, foundGeneration: found };
    else opened = { kind: 'ok', ...expected, foundGeneration: found };
    const trusted = opened.kind === 'ok' || opened.kind === 'upgraded';
    const k = new KnownFiles(file, !trusted, opened, o);
    if (trusted) k.known = entries;
    // Never back: a lost or edited baseline continues from the highest generation known, so the
    // collector's "lower generation" means the seal went too.
    k.generation = Math.max(found, seal?.generation ?? 0);
    if (opened.kind === 'ok') k.current = { generation: found, sha256: digest };
    return k;
  }

  /** Files that are new (or were replaced: another inode) against the baseline. */
  diff(found: readonly FoundFile[]): FoundFile[] {
    return found.filter((f) => this.known.get(f.hostPath)?.inode !== f.inode);
  }

  /**
   * Make the baseline what is on disk now, and save it. A file whose inode is the one known keeps
   * its record (a change in place updates it once its alert is accepted: refresh); `keep`: host
   * paths whose old entry stays as it is until their alert is accepted.
   */
  replace(found: readonly FoundFile[], keep: ReadonlySet<string> = new Set()): void {
    const next = new Map<string, Entry>();
    for (const f of found) {
      const old = this.known.get(f.hostPath);
      if (old && keep.has(f.hostPath)) next.set(f.hostPath, old);
      else if (old?.rec && old.inode === f.inode) next.set(f.hostPath, old);
      else next.set(f.hostPath, { inode: f.inode, rec: this.read(f.hostPath, f.realPath) });
    }
    this.known = next;
    this.noBaseline = false;
    this.changed();
  }

  /**
   * Record one file; saved once this turn of the event loop ends, so the alerts accepted together
   * share one write. Until then a kill -9 repeats the file's alert at the next start (its rescan
   * reports the file again), so the save waits no longer than that: with a delay of 500 ms the
   * system test's kill -9 just after a write gave two alerts for one file.
   */
  add(hostPath: string, inode: number, realPath?: FsPath): void {
    const old = this.known.get(hostPath);
    if (old?.inode === inode && old.rec) return;
    this.known.set(hostPath, { inode, rec: this.read(hostPath, realPath) });
    this.changed();
  }

  /** The file's facts read again (a change in place was reported); nothing when it is not known. */
  refresh(hostPath: string): void {
    const old = this.known.get(hostPath);
    if (!old) return;
    const rec = this.read(hostPath);
    if (rec && old.rec && JSON.stringify(rec) === JSON.stringify(old.rec)) return;
    this.known.set(hostPath, { inode: old.inode, rec });
    this.changed();
  }

  private read(hostPath: string, realPath?: FsPath): FileRecord | null {
    const { realRoot, hashMaxBytes } = this.opts;
    if (realRoot === undefined) return null;
    return readRecord(realRoot, realPath ?? posix.join(realRoot, hostPath), hostPath, hashMaxBytes ?? DEFAULT_HASH_MAX);
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
   * Writes the seal, then the baseline to a temporary file, fsyncs it, renames it over the old one
   * and fsyncs the folder, in the thread pool: done on the event loop, the fsync (1-5 ms, more
   * while a collector on the same disk commits) held back every kernel event that arrived
   * meanwhile, and the alert it would have raised. One save at a time: what changes meanwhile goes
   * in the next. A failure is logged and the next change (or shutdown) tries again; it costs at
   * most a repeated alert at the next start.
   */
  private save(): Promise<void> {
    if (this.saving) return this.saving; // its end starts the next save if anything changed
    this.dirty = false;
    const generation = this.generation + 1;
    const files: Record<string, unknown> = {};
    for (const [p, e] of this.known) files[p] = e.rec ? { inode: e.inode, ...e.rec } : { inode: e.inode };
    const text = JSON.stringify({ version: 2, generation, files });
    const seal: BaselineSeal = { generation, sha256: createHash('sha256').update(text).digest('hex') };
    const previous = this.current?.sha256 ?? null;
    const run = async () => {
      // The seal first: a crash before the rename leaves the old baseline, which `previous` vouches for.
      await writeAtomic(`${this.file}.seal`, JSON.stringify({ ...seal, previous }));
      await writeAtomic(this.file, text);
    };
    let failed = false;
    this.saving = run()
      .then(() => {
        this.generation = generation;
        this.current = seal;
        this.onSaved?.(seal);
      })
      .catch((err: unknown) => {
        failed = this.dirty = true;
        const e = new LdgError('LDG_ERR_STATE', `cannot save the baseline ${this.file}: ${errorMessage(err)}; check that the state dir is writable and the disk has space`);
        this.opts.log?.error({ err: e.message, code: e.code }, 'baseline not saved');
      })
      .finally(() => {
        this.saving = undefined;
        if (this.dirty && !failed) void this.save();
      });
    return this.saving;
  }
}

export interface KnownFilesOptions {
  log?: Logger;
  /** The agent's --root, real: with it each entry keeps the file's facts (baseline/record.ts). */
  realRoot?: string;
  hashMaxBytes?: number;
  /** The state dir held an agent id before this start: a baseline missing now was deleted. */
  stateExisted?: boolean;
}

const DEFAULT_HASH_MAX = 64 * 1024 * 1024;

/** The seal beside a baseline; null when absent or not one. */
function readSeal(path: string): (BaselineSeal & { previous: string | null }) | null {
  try {
    const s = JSON.parse(readFileSync(path, 'utf8')) as { generation?: unknown; sha256?: unknown; previous?: unknown };
    if (typeof s.generation !== 'number' || typeof s.sha256 !== 'string') return null;
    return { generation: s.generation, sha256: s.sha256, previous: typeof s.previous === 'string' ? s.previous : null };
  } catch {
    return null;
  }
}

/** Temporary file, fsync, rename over, fsync of the folder (else a power loss can bring the old one back). */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
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

  /** Reported by a rescan a moment ago (another rescan, its alert not yet accepted, finds it too). */
  wasRescanned(realPath: FsPath, inode: number): boolean {
    return this.fresh(realPath, inode, 'rescan');
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

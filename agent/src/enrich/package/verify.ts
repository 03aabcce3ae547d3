// The writer's package facts (ldguard.package): which package owns its executable, and whether the
// image the process runs has the bytes the package database recorded (dpkg's md5sums, read
// directly: dpkg-db.ts; where dpkg lists no such file, rpm's file digests, then pacman's mtree,
// read directly too: rpm-db.ts, pacman-db.ts, so that an rpm host's dnf and rpm are judged
// without trusting its rpm tool). This is what an exclusion by name cannot give: a copy of cp
// named dnf, or a process that set its comm to dnf, has the name but not a package manager's
// package and bytes.
// When: on the event as it arrived, before the rules (their verdict reads these facts), while the
// writer is normally still alive. The image is read through /proc/PID/exe, the inode the process
// runs, not the path: a binary swapped at the path after exec is judged by what ran. The pid is
// first checked to be the same process (start time), because pid_max is small and pids are reused.
// An interpreter is judged with the "#!" script the kernel executed (ProcFacts.script, from the
// script's own exec event in the exec cache): dnf is python3 running /usr/bin/dnf, and python3's
// package is no package manager's. Both must match: python3 with a planted script is not dnf, and
// dnf's script under a patched python3 is not either. The script is read at its path under the
// same rule as a gone writer's image (unchanged since the process started). A script named only in
// argv (`python3 /usr/bin/dnf`, `python3 -c`) has no exec event and is never the script here.
// A live interpreter started with a variable that makes it run other code (PYTHONPATH, …) is not
// verified (CODE_VARIABLES); a gone one's environment, like its tracer, cannot be shown.
// Cost: one stat and one read of /proc/PID/status per event (a script's writer: one more stat, of
// the script, and a read of /proc/PID/environ); a hash of the image (or script) and a database
// lookup only per new (device, inode, size, ctime), cached until the database changes. Bounded:
// at most CACHE_MAX images, the cache starts over when full.
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { PackageFacts, PackageVerdict } from '../../../../shared/ecs.js';
import type { ProcFacts } from '../../source/source.js';
import { BOOT_MS, USER_HZ } from '../proc.js';
import { DpkgDb, dpkgStamp } from './dpkg-db.js';
import { isPackageManagerPackage } from './managers.js';
import { PacmanDb } from './pacman-db.js';
import { RpmDb } from './rpm-db.js';
import { mainManager, recorded, type Recorded } from './root-databases.js';

const CACHE_MAX = 4096;
/**
 * How old a copy of rpm's database a writer's verdict may read (rpm-db.ts): rpm rewrites it for
 * every package of a transaction, and each of those writes is an event whose writer is judged.
 */
const RPM_SNAPSHOT_MAX_AGE_MS = 5_000;
/** Images larger than this are not hashed on the hot path (dockerd is ~100 MB; this is 4x that). */
const HASH_MAX_BYTES = 512 * 1024 * 1024;

export type ImageVerdict = Omit<PackageFacts, 'manager' | 'interpreter' | 'script'> & { manager?: PackageFacts['manager'] };


/** /proc/PID/stat field 22; null when the process is gone. */
export function startTicks(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

/** TracerPid from /proc/PID/status: a traced process may run code its image does not hold. */
function tracerPid(pid: number): number | null {
  try {
    const m = /^TracerPid:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Variables that make an interpreter run code besides the script the kernel gave it: a module path
 * or home (a planted `dnf/` package would be imported instead of dnf's), a user site directory
 * (its .pth files run at start-up), interactive mode once the script returns (PYTHONINSPECT: stdin
 * is then run as the verified dnf), and the loader's preloads. Not seen by this check: files the
 * interpreter loads without being told (a .pth in root's own ~/.local site directory, a module
 * added beside a package's), as root can forge a package and its database.
 */
const CODE_VARIABLES: ReadonlySet<string> = new Set([
  'PYTHONPATH', 'PYTHONHOME', 'PYTHONUSERBASE', 'PYTHONINSPECT', 'PERL5LIB', 'PERLLIB', 'PERL5OPT', 'RUBYLIB', 'RUBYOPT',
  'LD_PRELOAD', 'LD_AUDIT', 'LD_LIBRARY_PATH',
]);

/** The first non-empty CODE_VARIABLES entry of /proc/PID/environ (the environment the process exec'd with); null when none or gone. */
export function codeVariable(pid: number): string | null {
  let env: string;
  try {
    env = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return null; // gone: like its tracer, a gone process's environment cannot be shown
  }
  for (const kv of env.split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0 && eq < kv.length - 1 && CODE_VARIABLES.has(kv.slice(0, eq))) return kv.slice(0, eq);
  }
  return null;
}

export class PackageVerifier {
  private readonly dbs = new Map<string, { stamp: string; db: DpkgDb }>();
  private readonly cache = new Map<string, ImageVerdict>();
  readonly counts = { hashed: 0, cacheHits: 0 };
  private touched = false;

  /**
   * realRoot: the agent's --root, real path. An executable under it is judged against that root's
   * databases (ROOT/var/lib/dpkg, rpm, pacman) under its path inside the root; one outside it
   * (the agent's own side) against the agent's host databases, those under hostRoot.
   */
  constructor(
    private readonly realRoot: string,
    private readonly hostRoot = '/',
  ) {}

  /**
   * Takes the databases' snapshots now (status parsed; the directories packages use indexed in
   * the background), so that the first writer judged does not pay for them on the event loop
   * (56 ms here for a copy of cp named dnf, as the first).
   */
  warm(): void {
    for (const root of new Set([this.hostRoot, this.realRoot])) {
      const admindir = join(root, 'var/lib/dpkg');
      const stamp = dpkgStamp(admindir);
      if (stamp !== null) this.db(admindir, stamp);
    }
  }

  /** Whether any writer can be judged: a package database exists (dpkg's, rpm's in the format read, or pacman's), the host's or the watched root's. */
  judgesWriters(): boolean {
    return [this.hostRoot, this.realRoot].some((root) => dpkgStamp(join(root, 'var/lib/dpkg')) !== null || RpmDb.of(root).readable() || PacmanDb.of(root).present());
  }

  /**
   * The watched root's database was written by something that is not a verified package manager
   * (the pipeline saw it): no executable judged against it is verified again until restart. The
   * host's own database (the agent's side, under --root) is not the one that was seen written.
   */
  taint(): void {
    this.touched = true;
  }

  /**
   * attribution: the source's (RawFileEvent.attribution). A live_proc writer is judged by the
   * image it runs (/proc/PID/exe). One gone by then (dpkg writes its status last and exits
   * within milliseconds: measured, 1 install in 4 here), or an exec_cache writer (exited, or
   * exec'd since: /proc/PID/exe is no longer the image that wrote, and a fake dnf that writes then
   * execs the real dpkg must not borrow its verdict), is judged at the path its image ran from
   * (p.exe, the image at the write), and only when the file there has not changed since the
   * process started (its ctime is older): a file put at that path afterwards is a new ctime.
   * What a gone process cannot show: whether it was traced (reason "md5_matches_at_path" says so).
   */
  facts(pid: number, p: ProcFacts, attribution: string): PackageFacts {
    const image = this.imageFacts(pid, p, attribution);
    if (!p.script) return { ...image, manager: image.manager ?? this.managerOf(p.exe) };
    const script = this.atPath(p.script, p.startTicks);
    return { ...withScript(image, script, this.where(p.script).path), manager: script.manager ?? image.manager ?? this.managerOf(p.script) };
  }

  /** The manager of the database an executable at `exe` is judged against when none named it: the first the root has. */
  private managerOf(exe: string | null): PackageFacts['manager'] {
    const { root } = this.where(exe ?? '/');
    return mainManager({ dpkg: dpkgStamp(join(root, 'var/lib/dpkg')) !== null, rpm: RpmDb.of(root), pacman: PacmanDb.of(root) });
  }

  private imageFacts(pid: number, p: ProcFacts, attribution: string): ImageVerdict {
    if (attribution === 'live_proc') {
      const v = this.judge(pid, p);
      if (v.reason !== 'writer_gone') return v;
    } else if (attribution !== 'exec_cache') {
      return { verdict: 'inconclusive', reason: 'writer_gone' };
    }
    return p.exe === null ? { verdict: 'inconclusive', reason: 'writer_gone' } : this.atPath(p.exe, p.startTicks);
  }

  /** The file at `file` (a gone writer's image, or a script), if unchanged since the process started at `startTicks`. */
  private atPath(file: string, startTicks: number | null): ImageVerdict {
    if (startTicks === null || !BOOT_MS) return { verdict: 'inconclusive', reason: 'writer_gone' };
    let st;
    try {
      st = statSync(file, { bigint: true });
    } catch {
      return { verdict: 'inconclusive', reason: 'writer_gone' };
    }
    // BOOT_MS and the ticks are both rounded down: the start computed is never later than the real one.
    if (Number(st.ctimeNs / 1_000_000n) >= BOOT_MS + startTicks * (1000 / USER_HZ)) return { verdict: 'inconclusive', reason: 'image_changed_since_start' };
    const { root, path } = this.where(file);
    if (this.touched && root === this.realRoot) return { verdict: 'inconclusive', reason: 'database_touched' };
    const stamp = this.stamp(root);
    if (stamp === null) return { verdict: 'inconclusive', reason: 'no_database' };
    const key = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${root}:${stamp}:${path}:at-path`;
    let v = this.cache.get(key);
    if (v) this.counts.cacheHits++;
    else {
      v = this.image(path, root, Number(st.size), () => readFileSync(file));
      if (v.reason.endsWith('_matches')) v = { ...v, reason: `${v.reason}_at_path` };
      if (v.reason !== 'writer_gone') {
        if (this.cache.size >= CACHE_MAX) this.cache.clear();
        this.cache.set(key, v);
      }
    }
    return v;
  }

  private judge(pid: number, p: ProcFacts): ImageVerdict {
    if (pid <= 0 || p.exe === null) return { verdict: 'inconclusive', reason: 'writer_unknown' };
    if (p.startTicks === null || startTicks(pid) !== p.startTicks) return { verdict: 'inconclusive', reason: 'writer_gone' };
    const tracer = tracerPid(pid);
    if (tracer === null) return { verdict: 'inconclusive', reason: 'writer_gone' };
    let st;
    try {
      st = statSync(`/proc/${pid}/exe`, { bigint: true });
    } catch {
      return { verdict: 'inconclusive', reason: 'writer_gone' };
    }
    // The image now running must be the one the source named: an exec in between changes it.
    try {
      if (readlinkSync(`/proc/${pid}/exe`) !== p.exe) return { verdict: 'inconclusive', reason: 'writer_gone' };
    } catch {
      return { verdict: 'inconclusive', reason: 'writer_gone' };
    }
    const { root, path } = this.where(p.exe);
    if (this.touched && root === this.realRoot) return { verdict: 'inconclusive', reason: 'database_touched' };
    const stamp = this.stamp(root);
    if (stamp === null) return { verdict: 'inconclusive', reason: 'no_database' };
    const key = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${root}:${stamp}:${path}`;
    let v = this.cache.get(key);
    if (v) this.counts.cacheHits++;
    else {
      v = this.image(path, root, Number(st.size), () => readFileSync(`/proc/${pid}/exe`));
      // A process gone while its image was read says nothing about the image: kept, it would
      // make every later writer of the same binary (rpm, here) "writer_gone" until restart.
      if (v.reason !== 'writer_gone') {
        if (this.cache.size >= CACHE_MAX) this.cache.clear();
        this.cache.set(key, v);
      }
    }
    // The tracer is the process's, not the image's: checked every time, never cached.
    if (tracer !== 0 && v.verdict === 'verified') return { ...v, verdict: 'inconclusive', reason: 'traced' };
    // So is the environment an interpreter started with: it can make it run code besides its script.
    if (p.script && v.verdict === 'verified' && codeVariable(pid) !== null) return { ...v, verdict: 'inconclusive', reason: 'interpreter_environment' };
    return v;
  }

  /** The root whose databases judge `exe` ("/"-based host side, or the watched root), and its path there. */
  private where(exe: string): { root: string; path: string } {
    const root = this.realRoot;
    if (root !== '/' && exe.startsWith(`${root}/`)) return { root, path: exe.slice(root.length) };
    return { root: this.hostRoot, path: exe };
  }

  /** The state of the root's databases as verdicts read them; null when it has none that can be read. */
  private stamp(root: string): string | null {
    const rpm = RpmDb.of(root);
    const d = dpkgStamp(join(root, 'var/lib/dpkg'));
    const r = rpm.readable() ? rpm.snapshotStamp(RPM_SNAPSHOT_MAX_AGE_MS) : null;
    const p = PacmanDb.of(root).stamp();
    return d === null && r === null && p === null ? null : `${d ?? ''}|${r ?? ''}|${p ?? ''}`;
  }

  private db(admindir: string, stamp: string): DpkgDb | null {
    const held = this.dbs.get(admindir);
    if (held?.stamp === stamp) return held.db;
    try {
      const db = new DpkgDb(admindir);
      this.dbs.set(admindir, { stamp, db });
      void db.indexDirs();
      return db;
    } catch {
      return null;
    }
  }

  /** The package and digest the root's databases record for `path` (root-databases.ts); "no_database" when dpkg's exists but cannot be read. */
  private recorded(path: string, root: string): Recorded | 'no_database' | null {
    const admindir = join(root, 'var/lib/dpkg');
    const dstamp = dpkgStamp(admindir);
    const dpkg = dstamp === null ? null : this.db(admindir, dstamp);
    if (dstamp !== null && !dpkg) return 'no_database';
    return recorded({ dpkg, rpm: RpmDb.of(root), pacman: PacmanDb.of(root) }, path, RPM_SNAPSHOT_MAX_AGE_MS);
  }

  /** read: the image's bytes (through /proc/PID/exe, or at its path for a writer gone). */
  private image(path: string, root: string, size: number, read: () => Buffer): ImageVerdict {
    if (path.endsWith(' (deleted)')) return { verdict: 'inconclusive', reason: 'image_deleted' };
    const rec = this.recorded(path, root);
    if (rec === 'no_database') return { verdict: 'inconclusive', reason: 'no_database' };
    if (!rec) return { verdict: 'inconclusive', reason: 'not_in_any_package' };
    const named = { manager: rec.manager, name: rec.name, ...(isPackageManagerPackage(rec.name) ? { role: 'package_manager' as const } : {}) };
    if (!rec.digest) return { ...named, verdict: 'inconclusive', reason: rec.manager === 'dpkg' ? 'no_md5sum' : 'no_digest' };
    if (size > HASH_MAX_BYTES) return { ...named, verdict: 'inconclusive', reason: 'too_large' };
    let got: string;
    try {
      got = createHash(rec.digest.algo).update(read()).digest('hex');
    } catch {
      return { ...named, verdict: 'inconclusive', reason: 'writer_gone' };
    }
    this.counts.hashed++;
    const algo = rec.digest.algo;
    return got === rec.digest.hex ? { ...named, verdict: 'verified', reason: `${algo}_matches` } : { ...named, verdict: 'mismatch', reason: `${algo}_differs` };
  }
}

/**
 * The verdict of an interpreter's image (`image`) with the "#!" script the kernel executed for it
 * (`script`, at `path`): the script's package names the writer, and the writer is verified only
 * when both are. A mismatch in either is the writer's mismatch; otherwise the first that is not
 * verified (the interpreter first) gives the verdict and its reason.
 */
export function withScript(image: ImageVerdict, script: ImageVerdict, path: string): Omit<PackageFacts, 'manager'> {
  const own = (v: ImageVerdict): PackageVerdict => ({ ...(v.name ? { name: v.name } : {}), ...(v.role ? { role: v.role } : {}), verdict: v.verdict, reason: v.reason });
  const worst = [image, script].find((v) => v.verdict === 'mismatch') ?? [image, script].find((v) => v.verdict !== 'verified') ?? script;
  return {
    ...(script.name ? { name: script.name } : {}),
    ...(script.role ? { role: script.role } : {}),
    verdict: worst.verdict,
    reason: worst.reason,
    interpreter: own(image),
    script: { path, ...own(script) },
  };
}

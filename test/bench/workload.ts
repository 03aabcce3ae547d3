// The workload every tool is measured on, built the same way for each: a scratch host root, a plan
// of matching creations made by fresh short-lived processes of every kind, a C churner for the
// unrelated creations, and a C reference observer that stamps each creation as the kernel makes it
// visible. Nothing here writes outside the scratch root and the bench's own temporary folders.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';
import { scratchRoot } from '../helpers/agent.js';
import { prepareTools, WRITERS } from '../helpers/writers.js';
import { onInterrupt } from './cleanup.js';
import { summarize, type Summary } from './stats.js';

/** All times are CLOCK_REALTIME nanoseconds, as the C helpers print them, kept as bigint. */
export type Ns = bigint;

/** The wall clock in ns from Node (sub-ms through performance.timeOrigin), for stamps taken in JS. */
export const nowNs = (): Ns => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
export const msBetween = (from: Ns, to: Ns): number => Number(to - from) / 1e6;

export interface Native {
  dir: string;
  churn: string;
  observe: string;
}

/** Compiles the bench's C helpers (test/bench/c) into a temporary folder. */
export function buildNative(): Native {
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-bin-'));
  const src = join(findRepoRoot(), 'test/bench/c');
  const out: Native = { dir, churn: join(dir, 'churn'), observe: join(dir, 'observe') };
  for (const name of ['churn', 'observe'] as const) {
    execFileSync('cc', ['-O2', '-Wall', '-o', out[name], join(src, `${name}.c`)], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return out;
}

/** A copy of the bundled rules with max_signals at its ceiling. */
export function benchRules(): string {
  // Elastic keeps at most max_signals (100) alerts per rule per 5-minute window and summarises the
  // rest; a workload of hundreds of creations in a minute would measure that throttle instead of
  // detection, so the bench runs the same rules with the ceiling the rule schema allows.
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-rules-'));
  const walk = (from: string, to: string) => {
    mkdirSync(to, { recursive: true });
    for (const e of readdirSync(from, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(from, e.name), join(to, e.name));
      else if (e.name.endsWith('.toml')) {
        writeFileSync(join(to, e.name), readFileSync(join(from, e.name), 'utf8').replace(/^max_signals\s*=\s*\d+/m, 'max_signals = 100000'));
      }
      // The exception lists the rules bind (the default exception) come along as they are.
      else if (e.name.endsWith('.ndjson')) writeFileSync(join(to, e.name), readFileSync(join(from, e.name)));
    }
  };
  walk(bundledRulesDir(), dir);
  return dir;
}

/** The scratch host root one tool runs against, with its two real library directories. */
export interface Host {
  root: string;
  /** Real directories written to: [usr/lib64, usr/lib]; the churn goes to both. */
  dirs: [string, string];
  /** Where mv's files are staged (same file system, not watched). */
  staging: string;
  remove(): void;
}

let scratchParent: string | undefined;

/**
 * Where the scratch roots go. The default is tmpfs (/dev/shm) where there is one: on this machine's
 * virtual disk a journal commit stalls file creation for a second now and then, which made the
 * same burst take 0.1 s or 1.6 s from one run to the next and the writer slowdown mostly noise.
 * The tools' costs are in the notification and audit paths, which are the same on every file system.
 */
export function useScratchParent(dir: string | undefined): string {
  scratchParent = dir;
  return dir ?? tmpdir();
}

/**
 * Runs fn with os.tmpdir() (which follows TMPDIR on every call) pointing at the scratch parent:
 * the helpers make their folders there. The writer tools must be there too, on the same file
 * system as the roots, because the `ln` writer makes a hard link to one of them.
 */
export function inScratch<T>(fn: () => T): T {
  const saved = process.env.TMPDIR;
  if (scratchParent) process.env.TMPDIR = scratchParent;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

export function makeHost(): Host {
  const root = realpathSync(inScratch(() => scratchRoot('ldg-bench-root-')));
  const staging = join(root, 'staging');
  mkdirSync(staging);
  return {
    root,
    dirs: [join(root, 'usr/lib64'), join(root, 'usr/lib')],
    staging,
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** Kinds of writer in the plan: the helpers' WRITERS, mv into place, and the excluded dnf copy. */
export const DNF = 'dnf (excluded)';
export const KINDS: readonly string[] = [...Object.keys(WRITERS), 'mv into place', DNF];

/** One matching creation the workload made, with who made it and when. */
export interface Creation {
  /** The file name: unique within a host, and what every tool's output is matched on. */
  name: string;
  kind: string;
  phase: string;
  pid: number;
  exe: string;
  /** dnf's: a correct tool raises no creation alert for it. */
  excluded: boolean;
  /** The writer's own clock just before open(2) (the C churner's files only). */
  stampedNs?: Ns;
}

const binPath = (name: string) => realpathSync(execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim());

function waitExit(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (p.exitCode !== null) return resolve(p.exitCode);
    p.once('error', reject);
    p.once('exit', (code) => resolve(code));
  });
}

/**
 * Runs `count` matching creations one after the other, each by a fresh process, cycling through
 * KINDS so every kind gets count/KINDS.length turns. Half go through the lib64 symlink, half to
 * usr/lib directly, as an attacker would write either.
 */
export async function runWriters(host: Host, count: number, phase: string): Promise<Creation[]> {
  const { dnf } = prepareTools();
  const mv = binPath('mv');
  const out: Creation[] = [];
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length]!;
    const name = i % 2 === 0 ? `ld-linux-x86-64.so.2.${phase}${i}` : `ld-linux.so.2.${phase}${i}`;
    const path = i % 2 === 0 ? join(host.root, 'lib64', name) : join(host.root, 'usr/lib', name);
    if (kind === DNF) {
      const p = spawn(dnf, ['/bin/true', path], { stdio: 'ignore' });
      await waitExit(p);
      out.push({ name, kind, phase, pid: p.pid!, exe: dnf, excluded: true });
    } else if (kind === 'mv into place') {
      const staged = join(host.staging, name);
      writeFileSync(staged, '\x7fELF');
      const p = spawn(mv, [staged, path], { stdio: 'ignore' });
      await waitExit(p);
      out.push({ name, kind, phase, pid: p.pid!, exe: mv, excluded: false });
    } else {
      const w = await WRITERS[kind]!(path);
      out.push({ name, kind, phase, pid: w.pid, exe: w.exe, excluded: false });
    }
  }
  return out;
}

export interface ChurnResult {
  pid: number;
  exe: string;
  elapsedMs: number;
  cpuMs: number;
  /** The stamped matching files the churner made among its unrelated ones. */
  stamped: Creation[];
}

/** Starts the C churner; resolves when it has finished. */
export function startChurn(native: Native, host: Host, o: { count: number; durationMs: number; prefix: string; matches: number; phase: string }): { pid: number; done: Promise<ChurnResult> } {
  const p = spawn(native.churn, [host.dirs.join(':'), String(o.count), String(o.durationMs), o.prefix, String(o.matches)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += String(d)));
  p.stderr!.on('data', (d) => (err += String(d)));
  const done = waitExit(p).then((code) => {
    if (code !== 0) throw new Error(`churn exited ${code}: ${err}`);
    let pid = 0;
    let elapsedMs = NaN;
    let cpuMs = NaN;
    const stamped: Creation[] = [];
    for (const line of out.split('\n')) {
      const f = line.split(' ');
      if (f[0] === 'pid') pid = Number(f[1]);
      else if (f[0] === 'elapsed_ns') elapsedMs = Number(f[1]) / 1e6;
      else if (f[0] === 'cpu_ns') cpuMs = Number(f[1]) / 1e6;
      else if (f[0] === 'm') stamped.push({ name: f[3]!, kind: 'C churner (stamped)', phase: o.phase, pid: 0, exe: native.churn, excluded: false, stampedNs: BigInt(f[1]!) });
    }
    for (const s of stamped) s.pid = pid;
    return { pid, exe: native.churn, elapsedMs, cpuMs, stamped };
  });
  return { pid: p.pid!, done };
}

/** Reads the lines a C helper appends to a file, from where it left off. */
export class LineFollower {
  private offset = 0;
  private partial = '';
  constructor(readonly file: string) {}

  /** New complete lines since the last call. */
  read(): string[] {
    if (!existsSync(this.file)) return [];
    const fd = openSync(this.file, 'r');
    const chunks: Buffer[] = [];
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        chunks.push(Buffer.from(buf.subarray(0, n)));
        this.offset += n;
      }
    } finally {
      closeSync(fd);
    }
    const text = this.partial + Buffer.concat(chunks).toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    return lines;
  }
}

/** A C process following a file or directories; its stamped output goes to a file we read. */
export class Observer {
  readonly out: string;
  private readonly proc: ChildProcess;
  private readonly follower: LineFollower;

  private constructor(native: Native, args: string[], work: string, label: string) {
    this.out = join(work, `${label}.stamped`);
    this.proc = spawn(native.observe, [args[0]!, this.out, ...args.slice(1)], { stdio: ['ignore', 'ignore', 'inherit'] });
    this.follower = new LineFollower(this.out);
    const unregister = onInterrupt(() => this.proc.kill('SIGTERM'));
    this.proc.once('exit', unregister);
  }

  /** Follows FILE (which must exist): every appended line, stamped. */
  static async tail(native: Native, file: string, work: string, label: string): Promise<Observer> {
    const o = new Observer(native, ['tail', file], work, label);
    await o.ready();
    return o;
  }

  /** The reference: creations of names containing "ld-linux" in the host's real directories. */
  static async reference(native: Native, host: Host, work: string): Promise<Observer> {
    const o = new Observer(native, ['dirs', 'ld-linux', ...host.dirs], work, 'reference');
    await o.ready();
    return o;
  }

  private async ready(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (existsSync(this.out) && readFileSync(this.out, 'utf8').includes('!ready')) return;
      if (this.proc.exitCode !== null) throw new Error(`observe exited ${this.proc.exitCode}`);
      await sleep(10);
    }
    throw new Error('observe not ready in 2 s');
  }

  /** New stamped lines: [ns, rest of the line]. */
  lines(): Array<[Ns, string]> {
    const out: Array<[Ns, string]> = [];
    for (const l of this.follower.read()) {
      const sp = l.indexOf(' ');
      if (sp <= 0) continue;
      const rest = l.slice(sp + 1);
      if (rest === '!ready') continue;
      out.push([BigInt(l.slice(0, sp)), rest]);
    }
    return out;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      await waitExit(this.proc);
    }
  }
}

/** Collects the reference observer's stamps: first sighting of each name, and its overflows. */
export class Reference {
  readonly seen = new Map<string, Ns>();
  overflows = 0;
  constructor(private readonly obs: Observer) {}

  static async start(native: Native, host: Host, work: string): Promise<Reference> {
    return new Reference(await Observer.reference(native, host, work));
  }

  poll(): void {
    for (const [t, rest] of this.obs.lines()) {
      if (rest === '!overflow') {
        this.overflows++;
        continue;
      }
      const name = rest.slice(rest.indexOf(' ') + 1);
      if (!this.seen.has(name)) this.seen.set(name, t);
    }
  }

  async stop(): Promise<void> {
    await this.obs.stop();
    this.poll();
  }
}

/** What a tool said about one file. */
export interface Observation {
  name: string;
  /** When its line appeared in the tool's output (the C tailer's stamp). */
  at: Ns;
  pid?: number;
  exe?: string;
  /** ldguard: the rule's id and name, and how the writer was found. */
  ruleId?: string;
  ruleName?: string;
  attribution?: string;
  /** ldguard: when its reader took the event from the kernel (the event's time, whole ms). */
  eventAt?: Ns;
  /** ldguard: when the alert was built (the alert's @timestamp, whole ms). */
  builtAt?: Ns;
}

export const SEED_RULE = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

export interface PhaseScore {
  phase: string;
  /** Matching creations (dnf's excluded) and how many the tool reported. */
  matching: number;
  reported: number;
  /** Reported with an executable at all, and with the right pid and executable. */
  exeKnown: number;
  exact: number;
  /** dnf's creations, and how many the tool got right (see Tool.exclusion). */
  excludedTotal: number;
  excludedRight: number;
  excludedNote: string;
  /** Write → line in the tool's output, ms; and which clock the write time came from. */
  latency: Summary | null;
  latencyClock: string;
  /** Misses and wrong attributions by writer kind: kind → [missed, not exact, total]. */
  byKind: Record<string, { total: number; missed: number; inexact: number; examples: string[]; latencies: number[] }>;
  /** Creations the reference observer did not see (no write time for them). */
  noReference: number;
}

/**
 * Scores a tool's observations against what the workload did. `exclusion` judges each dnf creation
 * from the observations of its file: true when the tool did the right thing.
 */
export function score(
  phase: string,
  creations: readonly Creation[],
  obs: ReadonlyMap<string, Observation[]>,
  ref: ReadonlyMap<string, Ns>,
  exclusion: (o: Observation[]) => boolean,
  excludedNote: string,
): PhaseScore {
  const s: PhaseScore = {
    phase, matching: 0, reported: 0, exeKnown: 0, exact: 0, excludedTotal: 0, excludedRight: 0, excludedNote,
    latency: null, latencyClock: '', byKind: {}, noReference: 0,
  };
  const lat: number[] = [];
  let stamped = 0;
  for (const c of creations) {
    const o = obs.get(c.name) ?? [];
    if (c.excluded) {
      s.excludedTotal++;
      if (exclusion(o)) s.excludedRight++;
      continue;
    }
    const k = (s.byKind[c.kind] ??= { total: 0, missed: 0, inexact: 0, examples: [], latencies: [] });
    k.total++;
    s.matching++;
    if (o.length === 0) {
      k.missed++;
      continue;
    }
    s.reported++;
    const first = o.reduce((a, b) => (b.at < a.at ? b : a));
    if (o.some((x) => x.exe)) s.exeKnown++;
    const hit = o.find((x) => x.pid === c.pid && x.exe === c.exe);
    if (hit) s.exact++;
    else {
      k.inexact++;
      if (k.examples.length < 3) {
        const x = o[0]!;
        k.examples.push(`want ${c.pid} ${basename(c.exe)}, got ${x.pid ?? '-'} ${x.exe ? basename(x.exe) : '-'}${x.attribution ? ` (${x.attribution})` : ''}`);
      }
    }
    const t0 = c.stampedNs ?? ref.get(c.name);
    if (c.stampedNs !== undefined) stamped++;
    if (t0 === undefined) {
      s.noReference++;
      continue;
    }
    lat.push(msBetween(t0, first.at));
    k.latencies.push(msBetween(t0, first.at));
  }
  s.latency = summarize(lat);
  s.latencyClock = stamped === 0 ? 'reference observer' : stamped === lat.length ? "writer's own clock" : 'mixed';
  return s;
}

/** Groups observations by file name. */
export function byName(obs: readonly Observation[]): Map<string, Observation[]> {
  const m = new Map<string, Observation[]>();
  for (const o of obs) {
    const l = m.get(o.name);
    if (l) l.push(o);
    else m.set(o.name, [o]);
  }
  return m;
}

// One tool through the detection workload, on a scratch host of its own:
//   idle      → the tool's CPU while nothing happens
//   quiet     → N matching creations, one fresh writer process each, nothing else going on
//   burst     → the C churner creates M unrelated files as fast as it can, with a few stamped
//               matching ones among them (latency and recall under load, lost events), then M
//               more without any (CPU per 10k creations); writer slowdown from both
//   churn     → the same N writers again, interleaved with C unrelated creations spread over the
//               time the quiet phase took
// The reference observer (real-time priority) stamps the writers' creations in the quiet and churn
// phases; it is stopped for the burst, whose matching files the churner stamps itself, so that
// neither the burst nor its baseline pays for it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CollectorHandle } from './collector.js';
import { cpuOf, forksSinceBoot, peakRssMb, summarize, type Summary } from './stats.js';
import type { Lost, Tool, ToolRun } from './tools/tool.js';
import {
  byName, makeHost, msBetween, Reference, runWriters, score, startChurn,
  type Creation, type Native, type Ns, type Observation, type PhaseScore,
} from './workload.js';

export interface Sizes {
  writers: number;
  burst: number;
  burstMatches: number;
  churn: number;
  idleMs: number;
  /** How long after the tool said ready the idle window starts. */
  idleSettleMs: number;
  /** How long to wait for a tool's late lines once a phase is over. */
  settleMs: number;
}

export interface ToolResult {
  key: string;
  label: string;
  skipped?: string;
  error?: string;
  phases: Record<'quiet' | 'burst' | 'churn', PhaseScore>;
  /** Write → alert committed in the collector (ldguard with a collector), over all phases. */
  stored: { count: number; of: number; quiet: Summary | null; churn: Summary | null; burst: Summary | null } | null;
  idleCpuPerMin: number | null;
  /** Processes the whole host started per second meanwhile (an exec cache works for each). */
  idleForksPerSec: number | null;
  burstCpuS: number | null;
  cpuPer10k: number | null;
  /** The tool's bursts and the baseline's just before it (elapsed and the churner's CPU time). */
  bursts: BurstTime[];
  baseline: BurstTime[];
  /** Best tool burst over best baseline burst, by elapsed time and by the writer's CPU time. */
  slowdown: number | null;
  slowdownCpu: number | null;
  peakRssMb: number | null;
  lost: Lost;
  /** Raw tools report every creation: unrelated creations made and reported. */
  churnReported: { made: number; seen: number } | null;
  referenceOverflows: number;
  /** How far the reference observer's stamp trails the writer's own clock (C writers, quiet). */
  referenceLag: Summary | null;
  /** Write → alert line of the first creation after the tool started (and idled): what compiling and warming up cost. */
  firstMs: number | null;
  /** ldguard: write → its reader took the event → the alert was built → its line in the alerts file. */
  split?: Partial<Record<'quiet' | 'churn' | 'burst', { toReader: Summary | null; toBuilt: Summary | null; toLine: Summary | null }>>;
  exclusionRule: string;
  /** Rule names ldguard raised for dnf's files (none is right). */
  dnfAlerts: Record<string, number>;
  notes: string[];
}

export interface Baseline {
  burstElapsedMs: number[];
}

export interface BurstTime {
  elapsedMs: number;
  cpuMs: number;
}

/** The better of several bursts: on a machine shared with other work, the least disturbed one. */
export const best = (runs: readonly BurstTime[]): BurstTime => ({ elapsedMs: Math.min(...runs.map((r) => r.elapsedMs)), cpuMs: Math.min(...runs.map((r) => r.cpuMs)) });

/** Baseline: the burst with no tool, twice, on a fresh host (the second adds to the first's files, as the tool's does). */
export async function baselineBurst(native: Native, sizes: Sizes, tag: string): Promise<BurstTime[]> {
  const host = makeHost();
  try {
    const out: BurstTime[] = [];
    for (const [i, matches] of [sizes.burstMatches, 0].entries()) {
      const r = await startChurn(native, host, { count: sizes.burst, durationMs: 0, prefix: `${tag}-b${i}.`, matches, phase: 'burst' }).done;
      out.push({ elapsedMs: r.elapsedMs, cpuMs: r.cpuMs });
    }
    return out;
  } finally {
    host.remove();
  }
}

class Collected {
  readonly obs: Observation[] = [];
  readonly stored: Observation[] = [];
  lastNew = performance.now();
  ref: Reference | undefined;
  constructor(private readonly run: ToolRun) {}

  private churn: number | null = null;

  poll(): void {
    const o = this.run.poll();
    const s = this.run.pollStored?.() ?? [];
    // A raw tool working through a backlog of unrelated events is still busy: not settled yet.
    const churn = this.run.churnSeen();
    if (o.length > 0 || s.length > 0 || churn !== this.churn) this.lastNew = performance.now();
    this.churn = churn;
    this.obs.push(...o);
    this.stored.push(...s);
    this.ref?.poll();
  }

  /** Waits until every name in `want` was reported, or nothing new came for settleMs, or maxMs. */
  async settle(want: readonly string[], settleMs: number, maxMs: number, stored = false): Promise<void> {
    const end = performance.now() + maxMs;
    for (;;) {
      this.poll();
      const seen = new Set((stored ? this.stored : this.obs).map((o) => o.name));
      if (want.every((n) => seen.has(n))) return;
      if (performance.now() - this.lastNew > settleMs || performance.now() > end) return;
      await sleep(25);
    }
  }
}

/** CPU of the tool's processes once it has stopped working through a backlog (or after maxMs). */
async function cpuWhenQuiet(run: ToolRun, maxMs: number): Promise<number> {
  const end = performance.now() + maxMs;
  let last = cpuOf(run.pids());
  for (;;) {
    await sleep(250);
    const now = cpuOf(run.pids());
    if (now - last < 0.011 || performance.now() > end) return now;
    last = now;
  }
}

export async function runTool(tool: Tool, native: Native, rules: string, collector: CollectorHandle | null, sizes: Sizes, baseline: BurstTime[], log: (s: string) => void): Promise<ToolResult> {
  const host = makeHost();
  const work = mkdtempSync(join(tmpdir(), `ldg-bench-${tool.key}-`));
  const res: ToolResult = {
    key: tool.key, label: tool.label, phases: {} as ToolResult['phases'], stored: null, idleCpuPerMin: null, idleForksPerSec: null, burstCpuS: null, cpuPer10k: null,
    bursts: [], baseline, slowdown: null, slowdownCpu: null, peakRssMb: null, lost: { count: null, detail: '' }, churnReported: null, referenceOverflows: 0, referenceLag: null, firstMs: null,
    exclusionRule: tool.exclusionRule, dnfAlerts: {}, notes: [],
  };
  let run: ToolRun | undefined;
  const refs: Reference[] = [];
  const reference = async (got: Collected) => {
    const r = await Reference.start(native, host, work);
    refs.push(r);
    got.ref = r;
  };
  const stopReference = async (got: Collected) => {
    got.poll();
    await got.ref?.stop();
    got.ref = undefined;
  };
  try {
    run = await tool.start({ native, host, work, rules, collector });
    const got = new Collected(run);

    // Idle: nothing happens in the watched directories. Measured once the tool's start-up has
    // settled: V8's memory reducer runs full collections 5-10 s after the agent starts (strace:
    // madvise and munmap, ~70 ms of CPU, once), which is start-up, not idling. CPU time comes in
    // 10 ms ticks, so the window is long.
    await sleep(sizes.idleSettleMs);
    const idle0 = cpuOf(run.pids());
    const forks0 = forksSinceBoot();
    await sleep(sizes.idleMs);
    res.idleCpuPerMin = ((cpuOf(run.pids()) - idle0) * 60_000) / sizes.idleMs;
    res.idleForksPerSec = ((forksSinceBoot() - forks0) * 1000) / sizes.idleMs;

    // Quiet: fresh writers one after another.
    log(`${tool.key}: quiet, ${sizes.writers} writers`);
    await reference(got);
    const q0 = performance.now();
    const quiet = await runWriters(host, sizes.writers, `${tool.key}-q`);
    const quietMs = performance.now() - q0;
    // A few creations stamped by their C writer itself: they calibrate the reference's stamp.
    const calib = (await startChurn(native, host, { count: 0, durationMs: 200, prefix: `${tool.key}-k.`, matches: 10, phase: 'quiet' }).done).stamped;
    quiet.push(...calib);
    await got.settle(quiet.filter((c) => !c.excluded).map((c) => c.name), sizes.settleMs, 15_000);
    await stopReference(got);

    // Burst: unrelated creations as fast as the C churner can make them, with stamped matching ones.
    log(`${tool.key}: burst, ${sizes.burst} unrelated creations`);
    const burstRun = startChurn(native, host, { count: sizes.burst, durationMs: 0, prefix: `${tool.key}-b1.`, matches: sizes.burstMatches, phase: 'burst' });
    while (!(await Promise.race([burstRun.done.then(() => true), sleep(100).then(() => false)]))) got.poll();
    const burst = await burstRun.done;
    await got.settle(burst.stamped.map((c) => c.name), sizes.settleMs, 60_000);
    await cpuWhenQuiet(run, 60_000);
    // A second burst of unrelated creations only: the tool's CPU for them alone (the first one's
    // alerts cost ldguard hashing and delivery), and a second sample for the slowdown.
    const cpuB0 = cpuOf(run.pids());
    const againRun = startChurn(native, host, { count: sizes.burst, durationMs: 0, prefix: `${tool.key}-b2.`, matches: 0, phase: 'burst' });
    while (!(await Promise.race([againRun.done.then(() => true), sleep(100).then(() => false)]))) got.poll();
    const again = await againRun.done;
    const cpuB1 = await cpuWhenQuiet(run, 60_000);
    res.burstCpuS = cpuB1 - cpuB0;
    res.cpuPer10k = (res.burstCpuS * 10_000) / sizes.burst;
    got.poll();
    res.bursts = [{ elapsedMs: burst.elapsedMs, cpuMs: burst.cpuMs }, { elapsedMs: again.elapsedMs, cpuMs: again.cpuMs }];
    const t = best(res.bursts);
    const b = best(baseline);
    res.slowdown = t.elapsedMs / b.elapsedMs;
    res.slowdownCpu = t.cpuMs / b.cpuMs;

    // Churn: the writers again, while unrelated creations go on around them.
    log(`${tool.key}: churn, ${sizes.writers} writers among ${sizes.churn} unrelated creations`);
    await reference(got);
    const churnRun = startChurn(native, host, { count: sizes.churn, durationMs: Math.max(1_000, Math.round(quietMs)), prefix: `${tool.key}-c.`, matches: 0, phase: 'churn' });
    const churn = await runWriters(host, sizes.writers, `${tool.key}-c`);
    await churnRun.done;
    await got.settle(churn.filter((c) => !c.excluded).map((c) => c.name), sizes.settleMs, 30_000);
    await stopReference(got);

    // Raw tools report every creation: wait until they stop reporting, then count.
    if (run.churnSeen() !== null) {
      let last = -1;
      for (let i = 0; i < 240 && run.churnSeen() !== last; i++) {
        last = run.churnSeen()!;
        await sleep(sizes.settleMs / 2);
        got.poll();
      }
      res.churnReported = { made: 2 * sizes.burst + sizes.churn, seen: run.churnSeen()! };
    }
    const all: Creation[] = [...quiet, ...burst.stamped, ...churn];
    if (run.pollStored) {
      await got.settle(all.filter((c) => !c.excluded && got.obs.some((o) => o.name === c.name)).map((c) => c.name), sizes.settleMs * 3, 15_000, true);
    }
    got.poll();
    const mainPid = run.mainPid();
    res.peakRssMb = mainPid ? (peakRssMb(mainPid) ?? null) : null;
    res.lost = run.lost();

    // Score each phase against what the workload did.
    const obs = byName(got.obs);
    const refSeen = new Map(refs.flatMap((r) => [...r.seen]));
    res.phases.quiet = score('quiet', quiet, obs, refSeen, tool.excluded, tool.exclusionRule);
    res.phases.burst = score('burst', burst.stamped, obs, refSeen, tool.excluded, tool.exclusionRule);
    res.phases.churn = score('churn', churn, obs, refSeen, tool.excluded, tool.exclusionRule);
    res.referenceOverflows = refs.reduce((n, r) => n + r.overflows, 0);
    res.referenceLag = summarize(calib.filter((c) => refSeen.has(c.name)).map((c) => msBetween(c.stampedNs!, refSeen.get(c.name)!)));
    const first = quiet.find((c) => !c.excluded);
    const firstAt = first ? (first.stampedNs ?? refSeen.get(first.name)) : undefined;
    const firstObs = first ? obs.get(first.name)?.[0] : undefined;
    if (firstAt !== undefined && firstObs) res.firstMs = msBetween(firstAt, firstObs.at);
    // ldguard's alert carries when its reader took the event (kibana.alert.original_time) and
    // when the alert was built (@timestamp): split the latency at both.
    for (const [phase, list] of [['quiet', quiet], ['churn', churn], ['burst', burst.stamped]] as const) {
      const toReader: number[] = [];
      const toBuilt: number[] = [];
      const toLine: number[] = [];
      for (const c of list) {
        const o = obs.get(c.name)?.[0];
        const t0 = c.stampedNs ?? refSeen.get(c.name);
        if (!o?.eventAt || !o.builtAt || t0 === undefined) continue;
        toReader.push(msBetween(t0, o.eventAt));
        toBuilt.push(msBetween(o.eventAt, o.builtAt));
        toLine.push(msBetween(o.builtAt, o.at));
      }
      if (toReader.length > 0) (res.split ??= {})[phase] = { toReader: summarize(toReader), toBuilt: summarize(toBuilt), toLine: summarize(toLine) };
    }
    for (const c of all.filter((x) => x.excluded)) {
      for (const o of obs.get(c.name) ?? []) if (o.ruleName) res.dnfAlerts[o.ruleName] = (res.dnfAlerts[o.ruleName] ?? 0) + 1;
    }
    if (run.pollStored) {
      const firstStored = new Map<string, Ns>();
      for (const s of got.stored) if (!firstStored.has(s.name)) firstStored.set(s.name, s.at);
      const reported = all.filter((c) => obs.has(c.name));
      const lat = (list: readonly Creation[]) => {
        const out: number[] = [];
        for (const c of list) {
          const t0 = c.stampedNs ?? refSeen.get(c.name);
          const t1 = firstStored.get(c.name);
          if (t0 !== undefined && t1 !== undefined) out.push(msBetween(t0, t1));
        }
        return summarize(out);
      };
      res.stored = { count: reported.filter((c) => firstStored.has(c.name)).length, of: reported.length, quiet: lat(quiet), churn: lat(churn), burst: lat(burst.stamped) };
    }
  } catch (err) {
    res.error = (err as Error).stack ?? String(err);
  } finally {
    await run?.stop().catch((err: unknown) => res.notes.push(`stop: ${(err as Error).message}`));
    for (const r of refs) await r.stop().catch(() => undefined);
    if (run) res.notes.push(...run.notes);
    host.remove();
    rmSync(work, { recursive: true, force: true });
  }
  return res;
}

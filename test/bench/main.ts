// `npm run bench [-- --quick] [--out FILE] [--only fanotify,inotify,auditd,inotifywait,collector,triage]`
//
// ldguard against the tools a user would pick instead, on the same workload in the same run, then
// the collector under many simulated agents. Prints markdown tables; --out writes the figures as
// JSON. Only figures: nothing here passes or fails on a number.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_HEARTBEAT_MS } from '../../shared/protocol.js';
import { prepareTools } from '../helpers/writers.js';
import { startCollector, type CollectorHandle } from './collector.js';
import type { LoadOptions } from './collector-load.js';
import type { DirectOptions } from './store-direct.js';
import { collectorStores } from './collector-stores.js';
import { triage, type TriageOptions } from './triage.js';
import { baselineBurst, runTool, type BurstTime, type Sizes, type ToolResult } from './detection.js';
import { machine, markdown, type Report } from './report.js';
import { auditdTool } from './tools/auditd.js';
import { inotifywaitTool } from './tools/inotifywait.js';
import { ldguardTool } from './tools/ldguard.js';
import type { Tool } from './tools/tool.js';
import { benchRules, buildNative, inScratch, KINDS, useScratchParent } from './workload.js';

const TOOLS: Tool[] = [ldguardTool('fanotify'), ldguardTool('inotify'), auditdTool, inotifywaitTool];
const KEYS = [...TOOLS.map((t) => t.key), 'collector', 'triage'];

// Sizes: the full run has a few hundred writers, tens of thousands of unrelated creations and the
// 80,000 of the agent's target; the quick one ends within a minute on 2 cores.
const FULL: Sizes = { writers: KINDS.length * 24, burst: 80_000, burstMatches: 100, churn: 40_000, idleMs: 10_000, idleSettleMs: 15_000, settleMs: 2_000 };
const QUICK: Sizes = { writers: KINDS.length * 2, burst: 5_000, burstMatches: 20, churn: 5_000, idleMs: 500, idleSettleMs: 500, settleMs: 500 };
// Full: the protocol's default heartbeat (15,000 agents → 1,500/s). Quick: a shorter one, so that
// some fall due in its few seconds, and a rated phase of 1,000 alerts/s, which PostgreSQL (one to
// two thousand a second here) keeps up with: the quick run shows that every path works,
// the full one gives the figures. Each size runs on SQLite, on PostgreSQL, then on SHARED_*
// collectors over one PostgreSQL database (collector-stores.ts).
const LOAD_FULL: LoadOptions = { connections: 15_000, extra: 500, holdMs: 5_000, heartbeatMs: DEFAULT_HEARTBEAT_MS, lightAgents: 200, lightMs: 5_000, ratedPerSec: 20_000, burstAgents: 500, burstMs: 15_000, floodAlerts: 45_000, deadlineMs: 180_000 };
const LOAD_QUICK: LoadOptions = { connections: 500, extra: 50, holdMs: 1_000, heartbeatMs: 2_000, lightAgents: 50, lightMs: 2_000, ratedPerSec: 1_000, burstAgents: 50, burstMs: 2_000, floodAlerts: 0, deadlineMs: 20_000 };
const SHARED_FULL = [2, 3];
// The stores alone: an agents table of the capacity model's fleet, and 100,000 alerts to weigh.
const DIRECT_FULL: DirectOptions = { agents: 100_000, heartbeatMs: 10_000, alerts: 100_000 };
const DIRECT_QUICK: DirectOptions = { agents: 2_000, heartbeatMs: 1_000, alerts: 2_000 };
// Triage (#22's done-when): 10,000 then 100,000 alerts from 1,000 hosts; the quick run one small size.
const TRIAGE_FULL: TriageOptions = { sizes: [10_000, 100_000], hosts: 1_000, repeats: 5, bulkCloses: 3, bulk: 1_000, agents: 50, perSec: 500 };
const TRIAGE_QUICK: TriageOptions = { sizes: [5_000], hosts: 1_000, repeats: 3, bulkCloses: 1, bulk: 1_000, agents: 20, perSec: 200 };
// The quick run leaves the shared-database runs out: half a minute each, for what the full run shows.
const SHARED_QUICK: number[] = [];

/**
 * The python3 writer runs `python3` from PATH. Where PATH starts with pyenv's shims each start goes
 * through bash and pyenv (1.5 s here, twice per write with the helper's lookup), which would make
 * the full run last most of an hour; with the system's interpreter present the bench drops pyenv's
 * folders from its own PATH, so the writer is the interpreter an attacker would find on a host.
 */
function usableSystemPython(): void {
  const path = process.env.PATH ?? '';
  if (path.includes('/.pyenv/') && existsSync('/usr/bin/python3')) {
    process.env.PATH = path.split(':').filter((p) => !p.includes('/.pyenv/')).join(':');
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean' }, out: { type: 'string' }, only: { type: 'string' }, disk: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`usage: npm run bench -- [--quick] [--out FILE] [--only ${KEYS.join(',')}] [--disk]

  --quick   small sizes: ends within about a minute
  --out     write the figures as JSON to FILE
  --only    run these tools (and 'collector': the load test; 'triage': the dashboard's API at 10,000 and 100,000 alerts) only
  --disk    scratch roots in the temporary folder (a disk) instead of tmpfs /dev/shm
`);
    return 0;
  }
  const only = values.only ? values.only.split(',').map((s) => s.trim()).filter(Boolean) : KEYS;
  const unknown = only.filter((k) => !KEYS.includes(k));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown --only ${unknown.join(',')}; choose from ${KEYS.join(', ')}\n`);
    return 2;
  }
  const quick = Boolean(values.quick);
  usableSystemPython();
  const tmpfs = !values.disk && readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/dev/shm' && l.split(' ')[2] === 'tmpfs');
  const scratch = useScratchParent(tmpfs ? '/dev/shm' : undefined);
  const sizes = quick ? QUICK : FULL;
  const start = performance.now();
  const loadBefore = loadavg()[0]!;
  const log = (s: string) => process.stderr.write(`[bench ${((performance.now() - start) / 1000).toFixed(1)}s] ${s}\n`);
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;

  const tools = TOOLS.filter((t) => only.includes(t.key));
  const results: ToolResult[] = [];
  const baseline: BurstTime[] = [];
  let collectorNote: string | null = null;
  const native = buildNative();
  const rules = benchRules();
  let collector: CollectorHandle | null = null;
  try {
    if (tools.length > 0) {
      inScratch(prepareTools);
      if (tools.some((t) => t.key === 'fanotify' || t.key === 'inotify')) {
        try {
          collector = await startCollector();
        } catch (err) {
          collectorNote = `could not start, ldguard ran without delivery: ${(err as Error).message.split('\n')[0]}`;
        }
      }
      for (const tool of tools) {
        const why = await tool.skipReason();
        if (why) {
          log(`${tool.key}: skipped: ${why}`);
          results.push({ key: tool.key, label: tool.label, skipped: why } as ToolResult);
          continue;
        }
        // The baseline right before each tool, on a fresh root like the tool's: this machine's
        // file system and neighbours vary over minutes, so a baseline taken once at the start
        // would make the slowdown of the later tools mostly noise.
        log(`${tool.key}: baseline burst without any tool`);
        const base = await baselineBurst(native, sizes, `${tool.key}-base`);
        baseline.push(...base);
        const uses = tool.key === 'fanotify' || tool.key === 'inotify' ? collector : null;
        const r = await runTool(tool, native, rules, uses, sizes, base, log);
        if (r.error) log(`${tool.key}: failed: ${r.error}`);
        results.push(r);
      }
      if (collector) {
        // An agent the bench stopped is marked offline once its heartbeats are missed: expected.
        const warn = collector.logs().filter((l) => l.msg !== 'ready' && !String(l.msg).startsWith('agent offline')).map((l) => String(l.msg));
        if (warn.length > 0) collectorNote = `logged ${warn.length} warning(s), e.g. "${warn[0]}"`;
        await collector.stop();
        collector = null;
      }
    }

    const stores = only.includes('collector') ? await collectorStores(quick ? LOAD_QUICK : LOAD_FULL, quick ? SHARED_QUICK : SHARED_FULL, quick ? DIRECT_QUICK : DIRECT_FULL, log) : null;

    const triageRuns = only.includes('triage') ? await triage(quick ? TRIAGE_QUICK : TRIAGE_FULL, log) : null;

    const report: Report = {
      machine: { ...machine(command), load1: [loadBefore, loadavg()[0]!], scratch: `${scratch}${tmpfs ? ' (tmpfs)' : ''}` },
      mode: quick ? 'quick' : 'full',
      sizes: {
        writers: sizes.writers,
        matching: sizes.writers - Math.floor(sizes.writers / KINDS.length),
        dnf: Math.floor(sizes.writers / KINDS.length),
        burst: sizes.burst,
        burstMatches: sizes.burstMatches,
        churn: sizes.churn,
      },
      baselineBurstMs: baseline,
      tools: results,
      collectorLoad: stores?.runs ?? null,
      storeDirect: stores?.direct ?? null,
      triage: triageRuns,
      collectorNote,
      durationS: (performance.now() - start) / 1000,
    };
    process.stdout.write(`${markdown(report)}\n`);
    if (values.out) {
      writeFileSync(values.out, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v), 2)}\n`);
      log(`figures written to ${values.out}`);
    }
    return 0;
  } finally {
    if (collector) await collector.stop();
    rmSync(native.dir, { recursive: true, force: true });
    rmSync(rules, { recursive: true, force: true });
    if (tools.length > 0) rmSync(prepareTools().dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);

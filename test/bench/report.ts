// The bench's figures as markdown tables (what the README shows) and as JSON (--out).
import { cpus, release } from 'node:os';
import type { LoadResult } from './collector-load.js';
import type { TriageRun } from './triage.js';
import type { DirectResult } from './store-direct.js';
import type { DirectRun, StoreRun } from './collector-stores.js';
import type { BurstTime, ToolResult } from './detection.js';
import { fmt, median, pct, ratio, type Summary } from './stats.js';
import { KINDS } from './workload.js';

export interface Machine {
  date: string;
  cores: number;
  cpu: string;
  kernel: string;
  node: string;
  command: string;
  /** One-minute load average at the start and the end: other work on the machine skews figures. */
  load1?: [number, number];
  /** Where the scratch roots were made. */
  scratch?: string;
}

export interface Report {
  machine: Machine;
  mode: 'quick' | 'full';
  sizes: { writers: number; matching: number; dnf: number; burst: number; burstMatches: number; churn: number };
  baselineBurstMs: BurstTime[];
  tools: ToolResult[];
  /** One run per store (SQLite, PostgreSQL, several collectors on one PostgreSQL database). */
  collectorLoad: StoreRun[] | null;
  /** Each store alone, through the Store interface (store-direct.ts). */
  storeDirect: DirectRun[] | null;
  /** The triage figures: list, grouping and bulk close at each size, per store (triage.ts). */
  triage: TriageRun[] | null;
  /** Detection collector (ldguard's delivery target) problems, if any. */
  collectorNote: string | null;
  durationS: number;
}

export function machine(command: string): Machine {
  return { date: new Date().toISOString(), cores: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version, command };
}

const lat = (s: Summary | null | undefined) => (s ? `${fmt(s.p50)} / ${fmt(s.p99)} / ${fmt(s.max)}` : '–');

function row(cells: string[]): string {
  return `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
}

function totals(t: ToolResult) {
  const ph = Object.values(t.phases);
  const sum = (f: (p: (typeof ph)[number]) => number) => ph.reduce((s, p) => s + f(p), 0);
  return { reported: sum((p) => p.reported), exact: sum((p) => p.exact), exeKnown: sum((p) => p.exeKnown), excl: sum((p) => p.excludedTotal), exclRight: sum((p) => p.excludedRight) };
}

export function markdown(r: Report): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`## ldguard benchmark (${r.mode})`, '');
  out.push(`${m.date} · ${m.cores} cores (${m.cpu}) · Linux ${m.kernel} · Node ${m.node} · \`${m.command}\` · ${fmt(r.durationS, 0)} s` + (m.load1 ? ` · load average ${fmt(m.load1[0], 1)} at the start, ${fmt(m.load1[1], 1)} at the end` : ''), '');
  const s = r.sizes;
  out.push(
    `Workload per tool, each on a fresh scratch root${m.scratch ? ` in ${m.scratch}` : ''}: **quiet** ${s.matching} matching creations (+${s.dnf} by \`dnf\`), each by a fresh process cycling through ${KINDS.length} kinds; ` +
      `**burst** ${s.burst.toLocaleString('en')} unrelated creations as fast as one C process can (${s.burstMatches} stamped matching ones among them), then ${s.burst.toLocaleString('en')} more without any; ` +
      `**churn** the quiet writers again among ${s.churn.toLocaleString('en')} unrelated creations spread over the same time. ` +
      `Baseline bursts without any tool, two on a fresh root just before each tool (elapsed ms / the writer's CPU ms): ${r.baselineBurstMs.map((x) => `${fmt(x.elapsedMs, 0)}/${fmt(x.cpuMs, 0)}`).join(', ')}.`,
    '',
  );

  out.push(
    row(['tool', 'recall quiet · churn · burst', 'writer exact (exe known)', 'excluded dnf', 'write→alert ms p50/p99/max, quiet', 'under churn', 'burst', 'write→collector ms p50/p99/max', 'CPU-s per 10k creations', 'idle CPU-s/min', 'writer slowdown, elapsed (CPU)', 'peak RSS MB', 'lost / overflow']),
    row(Array(13).fill('---')),
  );
  for (const t of r.tools) {
    if (t.skipped || t.error) {
      out.push(row([t.label, t.skipped ? `skipped: ${t.skipped}` : `failed: ${t.error!.split('\n')[0]}`, ...Array(11).fill('')]));
      continue;
    }
    const { quiet, churn, burst } = t.phases;
    const tt = totals(t);
    const lost = t.lost.count === null ? '?' : String(t.lost.count);
    const raw = t.churnReported ? `; reported ${pct(t.churnReported.seen, t.churnReported.made)} of unrelated` : '';
    out.push(row([
      t.label,
      `${pct(quiet.reported, quiet.matching)} · ${pct(churn.reported, churn.matching)} · ${pct(burst.reported, burst.matching)}`,
      `${pct(tt.exact, tt.reported)} (${pct(tt.exeKnown, tt.reported)})`,
      `${tt.exclRight}/${tt.excl}`,
      lat(quiet.latency),
      lat(churn.latency),
      lat(burst.latency),
      t.stored ? `${lat(t.stored.quiet)} quiet; ${lat(t.stored.churn)} churn; ${lat(t.stored.burst)} burst (${t.stored.count}/${t.stored.of} stored)` : '–',
      fmt(t.cpuPer10k, 3),
      `${fmt(t.idleCpuPerMin, 3)} (${fmt(t.idleForksPerSec, 0)} forks/s on the host)`,
      `${fmt(t.slowdown, 2)}× (CPU ${fmt(t.slowdownCpu, 2)}×)`,
      fmt(t.peakRssMb, 1),
      `${lost}${raw}`,
    ]));
  }
  out.push('');

  const auditd = r.tools.find((t) => t.key === 'auditd' && !t.skipped && !t.error);
  const others = r.tools.filter((t) => t !== auditd && !t.skipped && !t.error);
  if (auditd && others.length > 0) {
    out.push('Against auditd (tool ÷ auditd; below 1 is better):', '');
    out.push(row(['tool', 'p50 quiet', 'p99 quiet', 'p50 churn', 'p99 churn', 'p99 burst', 'CPU per 10k creations', 'writer slowdown']), row(Array(8).fill('---')));
    for (const t of others) {
      const rr = (a: number | null | undefined, b: number | null | undefined) => fmt(ratio(a, b), 2);
      out.push(row([
        t.label,
        rr(t.phases.quiet.latency?.p50, auditd.phases.quiet.latency?.p50),
        rr(t.phases.quiet.latency?.p99, auditd.phases.quiet.latency?.p99),
        rr(t.phases.churn.latency?.p50, auditd.phases.churn.latency?.p50),
        rr(t.phases.churn.latency?.p99, auditd.phases.churn.latency?.p99),
        rr(t.phases.burst.latency?.p99, auditd.phases.burst.latency?.p99),
        rr(t.cpuPer10k, auditd.cpuPer10k),
        rr(t.slowdown, auditd.slowdown),
      ]));
    }
    out.push('');
  }

  const attributing = r.tools.filter((t) => !t.skipped && !t.error && t.key !== 'inotifywait');
  if (attributing.length > 0) {
    out.push('Exact writer (pid and executable) by kind over all phases, and the median write→alert ms (missed = no line at all):', '');
    out.push(row(['writer kind', ...attributing.map((t) => t.label)]), row(Array(attributing.length + 1).fill('---')));
    const kinds = [...KINDS.filter((k) => !k.startsWith('dnf')), 'C churner (stamped)'];
    for (const k of kinds) {
      out.push(row([k, ...attributing.map((t) => {
        let total = 0;
        let bad = 0;
        let missed = 0;
        const ex: string[] = [];
        const ms: number[] = [];
        for (const p of Object.values(t.phases)) {
          const b = p.byKind[k];
          if (!b) continue;
          total += b.total;
          bad += b.inexact;
          missed += b.missed;
          ex.push(...b.examples);
          ms.push(...b.latencies);
        }
        if (total === 0) return '–';
        return `${total - bad - missed}/${total}${missed ? `, ${missed} missed` : ''} · ${fmt(median(ms), 1)} ms${ex.length ? ` (${ex[0]})` : ''}`;
      })]));
    }
    out.push('');
  }

  const notes = r.tools.flatMap((t) => {
    const n: string[] = [];
    if (!t.skipped && !t.error) {
      n.push(`${t.label}: lost: ${t.lost.detail}; excluded dnf means: ${t.exclusionRule}` + (Object.keys(t.dnfAlerts).length ? `; dnf's files raised ${Object.entries(t.dnfAlerts).map(([k, v]) => `${v}× "${k}"`).join(', ')}` : '') + (t.referenceOverflows ? `; the reference observer overflowed ${t.referenceOverflows}×` : '') + (t.referenceLag ? `; reference stamp trails the writer's own clock by p50 ${fmt(t.referenceLag.p50, 3)} / max ${fmt(t.referenceLag.max, 3)} ms` : ''));
      if (t.firstMs !== null) n.push(`${t.label}: the first alert after start (the quiet phase's first creation) came ${fmt(t.firstMs, 2)} ms after the write`);
      for (const [phase, sp] of Object.entries(t.split ?? {})) {
        n.push(`${t.label}, ${phase}, where the time goes (p50/p99/max ms; the agent's stamps are whole ms): write → the agent took the event from the kernel (kibana.alert.original_time) ${lat(sp.toReader)}; → alert built (@timestamp) ${lat(sp.toBuilt)}; → line in the alerts file ${lat(sp.toLine)}`);
      }
    }
    for (const x of t.notes) n.push(`${t.label}: ${x}`);
    return n;
  });
  if (r.collectorNote) notes.push(`collector (delivery target): ${r.collectorNote}`);
  if (notes.length > 0) out.push('Notes:', '', ...notes.map((n) => `- ${n}`), '');

  if (r.collectorLoad) out.push(...collectorSection(r.collectorLoad, m.cores));
  if (r.storeDirect) out.push(...directSection(r.storeDirect));
  if (r.triage) out.push(...triageSection(r.triage));

  out.push(
    'Method:',
    '',
    '- **Write time**: the writers are other programs (touch, cp, python3…), so a C reference observer (an inotify reader at SCHED_FIFO priority, IN_CREATE|IN_MOVED_TO on the two real directories) stamps each matching creation with CLOCK_REALTIME as the kernel makes it visible; the C writers (10 per tool in the quiet phase, and the burst\'s matching files) stamp themselves just before open(2), and the notes give how far the reference trails that clock. A tool as fast as the reference can show a latency just below zero.',
    '- **Alert time**: a C tailer (also SCHED_FIFO) follows the tool\'s output (ldguard\'s alerts file, auditd\'s log, inotifywait\'s -o file) by inotify IN_MODIFY and stamps every complete line at the read(2) that returned it. Latency = alert line − write. The collector time is when a worker thread polling the collector\'s SQLite (read-only, every 1 ms) first sees the committed alert.',
    '- **Recall**: a matching creation counts as reported when any line of the tool names its file (any rule, for ldguard). **Writer exact**: a line for it carries the pid the workload spawned and the executable it ran (realpath), so a writer that exec\'d or forked must be named by the image that wrote. dnf (a copy of cp) must raise no creation-rule alert (ldguard), or be named as dnf (auditd).',
    '- **CPU**: utime+stime from /proc/<pid>/stat of the tool\'s processes (auditd and kauditd for auditd), from the start of the second burst (unrelated creations only) until the tool is idle again, per 10k creations; it includes whatever the tool does meanwhile for the rest of the host (see the idle rate); idle CPU over a quiet window (10 s in a full run, from 15 s after the tool said ready, past the start-up garbage collections of the agent; one 10 ms tick is then 0.06 CPU-s/min). **Writer slowdown**: the better of the tool\'s two bursts over the better of two baselines run just before the tool started, by the churner\'s elapsed time (its own monotonic clock) and by its CPU time (getrusage: kernel work done in the writer\'s context, such as fsnotify and audit hooks, without waiting for a CPU; but a writer asleep in auditd\'s backlog wait shows only in elapsed time). **Peak RSS**: VmHWM of the tool\'s main process.',
    '- **Lost**: ldguard\'s logged kernel-queue overflows; auditd\'s kernel `lost` counter; inotifywait\'s Q_OVERFLOW lines; for the raw tools also unrelated creations reported ÷ made.',
    '- Writers: python3 is /usr/bin/python3 (the bench drops pyenv\'s shims from its PATH when the system interpreter exists: a shim start takes 1.5 s here). Scratch roots are on tmpfs unless --disk: the virtual disk\'s journal stalls made the same burst take 0.1–1.6 s.',
    '- Rules: the bundled rules with max_signals raised to 100000 (Elastic\'s 100 per 5 minutes would otherwise fold alerts 101+ into one summary).',
    '- **Collector rows**: one run per store, each from an empty database: the collector (or the collectors, the agents spread round robin) started from the built CLI, the same load client. PostgreSQL is a throwaway cluster of the bench\'s own (Debian\'s initdb and postgres, fsync on) on the same cores. RSS and CPU are summed over the collectors (VmRSS, VmHWM and utime+stime from /proc), not PostgreSQL\'s. Agents-table writes: PostgreSQL\'s own counters (pg_stat_user_tables, n_tup_ins + n_tup_upd), from the moment every agent is held to the end of the client. Size: the alerts the run stored, on disk (PostgreSQL: pg_total_relation_size of alerts after VACUUM, indexes and TOAST included; SQLite: its files after a WAL checkpoint); per million is that ratio times a million, a linear extrapolation.',
    '',
  );
  return out.join('\n');
}

const q0 = (x: { p50: number | null; p99: number | null; max: number | null } | undefined) => (x ? `${fmt(x.p50, 0)} / ${fmt(x.p99, 0)} / ${fmt(x.max, 0)}` : '–');

/** One figure of a run, or '–' when the run has none. */
type Cell = (L: LoadResult) => string;

const CELLS: Array<[string, Cell]> = [
  ['agents held', (L) => `${L.held.toLocaleString('en')} / ${L.connections.toLocaleString('en')} in ${fmt(L.rampMs / 1000, 1)} s (${fmt(L.held / (L.rampMs / 1000), 0)} handshakes/s, 200 at once)${Object.keys(L.refusedDuringRamp).length ? `; refused during the ramp: ${Object.entries(L.refusedDuringRamp).map(([k, v]) => `${v}× ${k}`).join(', ')}` : ''}`],
  ['collector RSS per held connection', (L) => `${fmt(L.rssPerConnKb, 1)} kB (${fmt(L.rssIdleMb, 0)} MB idle → ${fmt(L.rssHeldMb, 0)} MB holding)`],
  ['ack ms p50/p99/max, light load', (L) => (L.light ? `${q0(L.light.ackMs)} (${L.light.agents} agents × a batch of 5 alerts a second = ${L.light.offeredPerSec} alerts/s offered)` : '–')],
  ['rated: ack ms p50/p99/max at a fixed offered rate', (L) => {
    const x = L.rated;
    if (!x) return '–';
    const own = [25, 50, 100].map((ms) => x.collectorAckWithin?.find((w) => w.ms === ms)).filter((w) => w !== undefined).map((w) => `${fmt(100 * w.share, 1)}% within ${w.ms} ms`).join(', ');
    return `${q0(x.ackMs)} (${x.offeredPerSec.toLocaleString('en')} alerts/s offered by ${x.agents} agents in batches of ${x.batch}: ${x.ackedPerSec.toLocaleString('en')} acked/s${x.heldBack ? `, ${x.heldBack.toLocaleString('en')} of ${x.offered.toLocaleString('en')} held back by agents with 8 batches unacked` : ''}; p99 by second: ${x.ackMsBySecond.map((b) => fmt(b.p99, 0)).join(' ')}${own ? `; the collector's own ack times: ${own}` : ''})`;
  }],
  ['durable alerts stored/s with acks, saturated', (L) => (L.heavy ? `**${fmt(L.alertsPerSec, 0)}** (${L.heavy.alertsAcked.toLocaleString('en')} alerts acked in ${fmt(L.heavy.ms / 1000, 1)} s; ${L.heavy.agents} agents each keeping 2 batches of 50 unacked)` : '–')],
  ['ack ms p50/p99/max, saturated', (L) => (L.heavy ? `${q0(L.heavy.ackMs)} (queueing: ${L.heavy.agents * 100} alerts always in flight)` : '–')],
  ['collector RSS, peak', (L) => `${fmt(L.peakRssMb, 0)} MB${L.collectors > 1 ? ` (${L.collectors} collectors together)` : ''}; after the rated phase ${fmt(L.rssAfterMb.rated, 0)}, after the saturated one ${fmt(L.rssAfterMb.heavy, 0)}`],
  ['collector CPU', (L) => `${fmt(L.collectorCpuS, 1)} s${L.collectors > 1 ? ' (all collectors)' : ''}`],
  ['commits (group commit)', (L) => (L.commits ? `${L.commits.toLocaleString('en')}, ${fmt((L.storedTotal ?? NaN) / L.commits, 1)} alerts each on average` : '–')],
  ['agents-table rows written/s', (L) => (L.agentRowWrites ? `${fmt(L.agentRowWrites.perSec, 0)} (over ${fmt(L.agentRowWrites.seconds, 0)} s from all held, heartbeats every ${L.heartbeatMs / 1000} s)` : L.store === 'sqlite' ? 'not counted (SQLite keeps no such counter)' : '–')],
  ['alerts on disk', (L) => (L.size && L.size.alerts > 0 ? `${fmt(L.size.bytes / L.size.alerts, 0)} bytes per alert (${L.size.alerts.toLocaleString('en')} alerts in ${fmt(L.size.bytes / 2 ** 20, 0)} MiB) → ${fmt((L.size.bytes / L.size.alerts) * 1e6 / 2 ** 30, 2)} GiB per million, extrapolated` : '–')],
  ['past max_connections', (L) => (L.extra.tried > 0 ? `${L.extra.tried} more agents: ${L.extra.held} held, ${Object.entries(L.extra.refused).map(([k, v]) => `${v}× ${k}`).join(', ') || 'none refused'}` : 'not tried here')],
  ['past the rate limit', (L) => {
    const f = L.flood;
    return f ? `one agent sent ${f.alerts.toLocaleString('en')} alerts at once (${f.perFrame} per frame): ${f.ackedAlerts.toLocaleString('en')} acked, the last after ${fmt(f.lastAckMs, 0)} ms; connection ${f.stillOpen ? 'kept' : `closed (${f.closeCode})`}` : 'not run';
  }],
  ['after', (L) => `${L.healthAfter}; ${L.stillOpen.toLocaleString('en')} connections still open; closes ${JSON.stringify(L.closes)}; ${L.collectorExit === null ? 'ended by a signal (the bench kills a collector not gone 15 s after SIGTERM)' : `exit ${L.collectorExit}`}${L.timedOut ? '; the client hit its deadline' : ''}`],
  ['heartbeats', (L) => `longest gap between one agent's heartbeats as sent: ${fmt((L.maxBeatGapMs ?? NaN) / 1000, 1)} s`],
];

/** The collector rows: a column per store run, side by side. */
function collectorSection(runs: StoreRun[], cores: number): string[] {
  const out: string[] = [];
  const done = runs.filter((x): x is LoadResult => !('skipped' in x));
  const first = done[0];
  out.push(
    first
      ? `Collector load: ${first.connections.toLocaleString('en')} simulated agents (real \`ws\` clients in one child process on the same cores, over loopback), each heartbeating every ${first.heartbeatMs / 1000} s from its connect, and the rated phase's agents beside them (in a worker thread of the client); max_connections = ${(first.connections + (first.rated?.agents ?? 0)).toLocaleString('en')} per collector. One column per store, the same load; with several collectors the agents are spread round robin over them:`
      : 'Collector load:',
    '',
  );
  out.push(row(['figure', ...runs.map((x) => x.label)]), row(Array(runs.length + 1).fill('---')));
  for (const [name, cell] of CELLS) {
    out.push(row([name, ...runs.map((x) => ('skipped' in x ? (name === CELLS[0]![0] ? `skipped: ${x.skipped}` : '–') : cell(x)))]));
  }
  out.push('');
  const shared = done.filter((x) => x.collectors > 1);
  if (shared.length > 0) {
    out.push(`The ${shared.map((x) => x.collectors).join(' and ')}-collector columns run every collector, PostgreSQL and the load client on this machine's ${cores} cores: they measure what sharing one database and these cores costs (contention), not scaling. Collectors on hosts of their own add capacity; here they can only take it from each other.`, '');
  }
  const floor = done.find((x) => x.floor)?.floor;
  if (floor) out.push(`The floor: the same held connections and rated phase against a bare \`ws\` server that acks each batch on parse and stores nothing, run after the collector stopped: ack ms p50/p99/max ${q0(floor.ackMs)} (${floor.ackedPerSec.toLocaleString('en')} acked/s; p99 by second: ${floor.ackMsBySecond.map((b) => fmt(b.p99, 0)).join(' ')}).`, '');
  for (const x of done) {
    const w = Object.entries(x.warnings);
    if (w.length > 0 || x.error) out.push(`${x.label}: the collector logged (warnings and errors):`, '', ...w.map(([msg, n]) => `- ${n}× "${msg}"`), ...(x.error ? [`- ${x.error}`] : []), '');
  }
  return out;
}

/** Each store alone: the figures the capacity model builds on. */
function directSection(runs: DirectRun[]): string[] {
  const done = runs.filter((x): x is DirectResult => !('skipped' in x));
  const first = done[0];
  const out: string[] = [
    `Each store alone, no collector: commits made through the store's interface one at a time, as ingest makes them${first ? `, over an agents table of ${first.agents.toLocaleString('en')} rows` : ''}:`,
    '',
    row(['figure', ...runs.map((x) => x.label)]),
    row(Array(runs.length + 1).fill('---')),
  ];
  const lat = (s: Summary | null) => (s ? `${fmt(s.p50, 1)} / ${fmt(s.p99, 1)} / ${fmt(s.max, 1)}` : '–');
  const cells: Array<[string, (d: DirectResult) => string]> = [
    ['presence rows written/s (heartbeats of random agents)', (d) => `**${fmt(d.heartbeats.perSec, 0)}** (${d.heartbeats.perCommit} a commit; commit ms p50/p99/max ${lat(d.heartbeats.commitMs)})`],
    ['alerts stored/s', (d) => `**${fmt(d.alerts.perSec, 0)}** (${d.alerts.perCommit} a commit; commit ms p50/p99/max ${lat(d.alerts.commitMs)})`],
    ['alerts on disk', (d) => (d.size && d.size.alerts > 0 ? `${fmt(d.size.bytes / d.size.alerts, 0)} bytes per alert (${d.size.alerts.toLocaleString('en')} alerts in ${fmt(d.size.bytes / 2 ** 20, 0)} MiB: ${d.size.how}) → ${fmt((d.size.bytes / d.size.alerts) * 1e6 / 2 ** 30, 2)} GiB per million, extrapolated` : '–')],
  ];
  for (const [name, cell] of cells) out.push(row([name, ...runs.map((x) => ('skipped' in x ? (name === cells[0]![0] ? `skipped: ${x.skipped}` : '–') : cell(x)))]));
  out.push('');
  return out;
}

/** The triage figures: a row per store and size (#22's targets: list 500 ms, grouping 1 s, bulk close of 1,000 in 2 s). */
function triageSection(runs: TriageRun[]): string[] {
  const lat = (s: Summary | null) => (s ? `${fmt(s.p50, 0)} / ${fmt(s.max, 0)}` : '–');
  const q = (x: { p50: number | null; p99: number | null; max: number | null } | null) => (x ? `${fmt(x.p50, 0)} / ${fmt(x.p99, 0)} / ${fmt(x.max, 0)}` : '–');
  return [
    'Triage through the HTTP API, a collector holding the alerts of 1,000 hosts (ms, p50 / max of the repeats; ack ms p50 / p99 / max, the worst second):',
    '',
    row(['store', 'alerts', 'list, first page', 'grouping by host', 'bulk close of 1,000', 'agents\' ack during a bulk close', 'ack, other seconds']),
    row(Array(7).fill('---')),
    ...runs.map((t) => row([t.label, t.alerts.toLocaleString('en'), lat(t.listMs), `${lat(t.groupMs)}${t.groups !== null ? ` (${t.groups} groups)` : ''}`, `${lat(t.bulkCloseMs)}${t.closed ? ` (${t.closed.toLocaleString('en')} closed)` : ''}`, q(t.ackDuringMs), `${q(t.ackOtherMs)}${t.error ? ` — failed: ${t.error}` : ''}`])),
    '',
    'The same in Chromium (headless, from the navigation to the rows on screen, ms):',
    '',
    row(['store', 'alerts', 'alert list', 'grouped by host', 'a page (50) ticked and closed', 'alert page', 'note', 'assignee', 'CSV export of all', 'times say UTC; guide as Markdown']),
    row(Array(10).fill('---')),
    ...runs.map((t) => {
      const b = t.browser;
      if (!b || 'skipped' in b) return row([t.label, t.alerts.toLocaleString('en'), b ? `skipped: ${b.skipped}` : '–', ...Array(7).fill('–')]);
      return row([t.label, t.alerts.toLocaleString('en'), fmt(b.listMs, 0), fmt(b.groupMs, 0), fmt(b.closePageMs, 0), fmt(b.detailMs, 0), fmt(b.noteMs, 0), fmt(b.assignMs, 0),
        `${fmt(b.exportMs, 0)} (${b.exportRows.toLocaleString('en')} rows)`, `${b.zoneShown ? 'yes' : 'NO'}; ${b.guideMarkdown ? 'yes' : 'NO'}`]);
    }),
    '',
  ];
}

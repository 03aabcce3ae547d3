// The collector under N simulated agents: the real collector (max_connections = N, so the extra
// connections find the limit), the load client in a child process of its own with a raised file
// limit, and the collector's memory and CPU read from /proc at each step the client reports.
// The same load runs against each store (LoadTarget): one collector on its own SQLite file, one on
// a PostgreSQL database, then several collectors on one PostgreSQL database with the agents spread
// over them. On one machine those collectors share its cores with each other, the database and the
// load client: what the last runs show is what several collectors cost, not what they add.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onInterrupt } from './cleanup.js';
import { onJsonLines, startCollector } from './collector.js';
import type { LoadConfig } from './load-client.js';
import { cpuSeconds, peakRssMb, rssMb } from './stats.js';
import { postgresProbe, sqliteProbe, type StoreProbe, type StoreSize } from './store-probe.js';

export interface LoadOptions {
  connections: number;
  extra: number;
  holdMs: number;
  /** Heartbeat period of every simulated agent (the protocol's default is 10 s). */
  heartbeatMs: number;
  lightAgents: number;
  lightMs: number;
  /** The rated phase's offered load, alerts a second (RATED). */
  ratedPerSec: number;
  burstAgents: number;
  burstMs: number;
  floodAlerts: number;
  deadlineMs: number;
}

const fmtN = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '?');

type Quantiles = { p50: number | null; p99: number | null; max: number | null };

/**
 * The rated phase: alerts offered on a fixed schedule in batches of 20, at `LoadOptions.ratedPerSec`
 * (the full run: the capacity target's 20,000 a second); latency is only meaningful below
 * saturation (the heavy phase keeps 50,000 alerts queued, so its acks wait seconds by Little's law).
 */
const RATED = { batch: 20, maxAgents: 200, maxMs: 10_000 };

/** Where the load goes: which store, how many collectors. */
export interface LoadTarget {
  /** The column's head in the report. */
  label: string;
  /** A PostgreSQL URL (an empty database); none: a SQLite file of the collector's own. */
  db?: string;
  /** Collectors on that database (PostgreSQL only past 1), the agents spread round robin. */
  collectors: number;
  /** Then the same client against a bare `ws` server (wsFloor): the store plays no part there, so once per bench run. */
  floor: boolean;
  /** The flood past the rate limit and the connections past max_connections: properties of one collector, tried once. */
  limits: boolean;
}

export interface LoadResult {
  label: string;
  store: 'sqlite' | 'postgres';
  collectors: number;
  connections: number;
  held: number;
  rampMs: number;
  refusedDuringRamp: Record<string, number>;
  heartbeatMs: number;
  /** The longest gap between one agent's heartbeats as the client sent them (client-side lateness). */
  maxBeatGapMs: number | null;
  rssIdleMb: number | null;
  rssHeldMb: number | null;
  rssPerConnKb: number | null;
  peakRssMb: number | null;
  /** RSS at the end of the rated and of the heavy phase. */
  rssAfterMb: Record<string, number | null>;
  collectorCpuS: number | null;
  light: { agents: number; offeredPerSec: number; ackMs: Quantiles } | null;
  /** RATED's load: what the client managed to send, what was acked, and the ack latency. */
  rated: {
    agents: number; batch: number; offeredPerSec: number; offered: number;
    /** Alerts not sent when due because the agent had 8 batches unacked (a real agent spools them). */
    heldBack?: number;
    sentPerSec: number; ackedPerSec: number; acked: number; lateSends: number; ackMs: Quantiles;
    /** The ack latency of the batches sent in each second of the phase. */
    ackMsBySecond: Quantiles[];
    /**
     * The collector's own view of the same phase (its ack histogram on /metrics, from a batch read
     * to its ack sent): the share of batches acked within each bound, in ms. What the agents see
     * adds the network and the load client's own delays on the shared cores.
     */
    collectorAckWithin?: Array<{ ms: number; share: number }>;
  } | null;
  /** The same rated phase against a bare `ws` server that stores nothing (wsFloor). */
  floor: { ackMs: Quantiles; ackMsBySecond: Quantiles[]; ackedPerSec: number } | null;
  heavy: { agents: number; ms: number; alertsAcked: number; ackMs: Quantiles } | null;
  alertsPerSec: number | null;
  flood: { alerts: number; perFrame: number; ackedAlerts: number; ms: number; lastAckMs: number | null; stillOpen: boolean; closeCode: number | null } | null;
  extra: { tried: number; held: number; refused: Record<string, number> };
  stillOpen: number;
  closes: Record<string, number>;
  storedTotal: number | null;
  /** Commits over the whole run, all collectors, and the alerts they stored (group commit: many agents' batches, heartbeats and hellos per transaction). */
  commits: number | null;
  /**
   * Agents-table rows written a second (hellos, heartbeats, last_seen of alert senders) from all
   * agents held to the client's end, over `seconds`; null where the store cannot tell (SQLite).
   */
  agentRowWrites: { perSec: number; seconds: number } | null;
  /** What the alerts stored in this run take on disk. */
  size: StoreSize | null;
  healthAfter: string;
  collectorExit: number | null;
  /** What the collector logged at warning level or above, by message. */
  warnings: Record<string, number>;
  timedOut: boolean;
  error?: string;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += String(d)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (err) => resolve({ status: 0, body: err.message }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** The collector's ack histogram: cumulative batch counts by upper bound in seconds (`le`). */
async function ackHistogram(port: number): Promise<Map<string, number>> {
  const body = (await get(port, '/metrics')).body;
  const out = new Map<string, number>();
  for (const m of body.matchAll(/^ldguard_collector_ack_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** Runs the load client (load-client.ts) to its end; `onEvent` sees each progress line as it comes. */
async function runClient(cfg: LoadConfig, onEvent: (m: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  const client = fileURLToPath(new URL('./load-client.js', import.meta.url));
  // LDG_BENCH_CLIENT_NODE_ARGS profiles the load client as LDG_BENCH_COLLECTOR_NODE_ARGS does the collector.
  const clientArgs = (process.env.LDG_BENCH_CLIENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const p = spawn('/bin/sh', ['-c', 'ulimit -n 20000 && exec "$@"', 'sh', process.execPath, ...clientArgs, client, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onInterrupt(() => p.kill('SIGTERM'));
  let result: Record<string, unknown> = {};
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += String(d)));
  onJsonLines(p.stdout!, (m) => {
    onEvent(m);
    if (m.event === 'result' || m.event === 'error') result = m;
  });
  const code = await new Promise<number | null>((resolve) => p.once('exit', resolve));
  unregister();
  if (code !== 0 && !result.event) throw new Error(`load client exited ${code}: ${stderr.slice(-500)}`);
  return result;
}

/**
 * The floor under the rated phase's figures: the same client (the held connections, then the rated
 * phase alone) against a bare `ws` server that acks each batch once parsed and does nothing else
 * (ws-floor.ts). What it measures is what the connections and the load client cost on these cores
 * by themselves; the collector's figure is that plus all the collector does.
 */
async function wsFloor(o: LoadOptions, ratedAgents: number, tokensFile: string): Promise<LoadResult['floor']> {
  const server = fileURLToPath(new URL('./ws-floor.js', import.meta.url));
  const p = spawn('/bin/sh', ['-c', 'ulimit -n 20000 && exec "$@"', 'sh', process.execPath, server], { stdio: ['ignore', 'pipe', 'inherit'] });
  const unregister = onInterrupt(() => p.kill('SIGTERM'));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      p.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
      p.once('exit', (code) => reject(new Error(`the ws floor server exited (${code}) before listening`)));
    });
    const result = await runClient({
      ...clientConfig(o, [`ws://127.0.0.1:${port}`], tokensFile, ratedAgents),
      extra: 0, lightAgents: 0, lightMs: 0, burstAgents: 0, burstMs: 0, floodAlerts: 0,
    }, () => undefined);
    const rated = result.rated as LoadResult['rated'];
    return rated ? { ackMs: rated.ackMs, ackMsBySecond: rated.ackMsBySecond, ackedPerSec: rated.ackedPerSec } : null;
  } finally {
    p.kill('SIGTERM');
    unregister();
  }
}

function clientConfig(o: LoadOptions, urls: string[], tokensFile: string, ratedAgents: number): LoadConfig {
  return {
    urls,
    tokensFile,
    connections: o.connections,
    extra: o.extra,
    rampConcurrency: 200,
    heartbeatMs: o.heartbeatMs,
    holdMs: o.holdMs,
    lightAgents: o.lightAgents,
    lightMs: o.lightMs,
    ratedAgents,
    ratedPerSec: o.ratedPerSec,
    ratedBatch: RATED.batch,
    ratedMs: Math.min(RATED.maxMs, o.burstMs * 2),
    burstAgents: o.burstAgents,
    burstMs: o.burstMs,
    batchSize: 50,
    inflight: 2,
    floodAlerts: o.floodAlerts,
    deadlineMs: o.deadlineMs,
    localAddresses: Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`),
  };
}

/** Sums over the collectors; null when any reading failed (a collector gone). */
const sumOf = (xs: Array<number | null | undefined>): number | null => (xs.every((x) => typeof x === 'number') ? (xs as number[]).reduce((a, b) => a + b, 0) : null);

/** The collectors' ack histograms added up. */
async function ackHistograms(ports: number[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const h of await Promise.all(ports.map(ackHistogram))) for (const [le, v] of h) out.set(le, (out.get(le) ?? 0) + v);
  return out;
}

export async function collectorLoad(o: LoadOptions, target: LoadTarget): Promise<LoadResult> {
  const ratedAgents = Math.min(RATED.maxAgents, Math.floor(o.connections / 2));
  const n = Math.max(1, target.collectors);
  if (n > 1 && !target.db) throw new Error('several collectors need a PostgreSQL database (SQLite is one collector\'s file)');
  // The rated phase's agents connect beside the held ones (load-client.ts, ratedPhase). The first
  // collector adds every agent's token; the others start once it has made the schema.
  const config = { max_connections: o.connections + ratedAgents };
  const first = await startCollector({ config, nofile: 20_000, agentTokens: o.connections + o.extra + ratedAgents, db: target.db });
  const cs = [first];
  const probe: StoreProbe = target.db ? postgresProbe(target.db) : sqliteProbe(first.db);
  try {
    for (let k = 1; k < n; k++) cs.push(await startCollector({ config, nofile: 20_000, db: target.db }));
    await new Promise((r) => setTimeout(r, 500));
    const pids = cs.map((c) => c.pid);
    const ports = cs.map((c) => c.port);
    const rss = () => sumOf(pids.map(rssMb));
    const rssIdle = rss();
    const cpu0 = sumOf(pids.map(cpuSeconds));
    const cfg = clientConfig(o, cs.map((c) => c.url), first.agentTokensFile, ratedAgents);
    if (!target.limits) Object.assign(cfg, { extra: 0, floodAlerts: 0 });
    let ackBefore: Promise<Map<string, number>> | undefined;
    let ackAfter: Promise<Map<string, number>> | undefined;
    let writesHeld: Promise<{ n: number | null; t: number }> | undefined;
    let writesEnd: Promise<{ n: number | null; t: number }> | undefined;
    const writes = async () => ({ n: await probe.agentRowWrites().catch(() => null), t: performance.now() });
    let rssHeld: number | null = null;
    const rssAfter: Record<string, number | null> = {};
    const result = await runClient(cfg, (m) => {
      // Memory once every agent has connected and sent a few heartbeats, before any alert.
      if (m.event === 'holding') rssHeld = rss();
      // Memory at the end of each alert phase: the peak (VmHWM) alone does not say which one.
      if (m.event === 'rated' || m.event === 'heavy') rssAfter[m.event] = rss();
      // The collectors' ack histogram before and after the rated phase's measured part.
      if (m.event === 'rated-start') ackBefore = ackHistograms(ports);
      if (m.event === 'rated') ackAfter = ackHistograms(ports);
      // Presence writes from every agent held (their hellos written) to the end.
      if (m.event === 'held') writesHeld = writes();
      if (m.event === 'result' || m.event === 'error') writesEnd = writes();
    });
    const cpu1 = sumOf(pids.map(cpuSeconds));
    const peak = sumOf(pids.map(peakRssMb));
    const health = await get(first.port, '/healthz');
    const metrics = await Promise.all(ports.map((p) => get(p, '/metrics')));
    const num = (name: string) => metrics.reduce((sum, m) => sum + Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m.body)?.[1] ?? NaN), 0);
    const maxOf = (name: string) => Math.max(...metrics.map((m) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m.body)?.[1] ?? NaN)));
    const heavy = (result.heavy as LoadResult['heavy']) ?? null;
    const [w0, w1] = await Promise.all([writesHeld, writesEnd]);
    const commits = num('ldguard_collector_commits_total');
    const out: LoadResult = {
      label: target.label,
      store: target.db ? 'postgres' : 'sqlite',
      collectors: n,
      connections: o.connections,
      held: Number(result.held ?? 0),
      rampMs: Number(result.rampMs ?? NaN),
      refusedDuringRamp: {},
      heartbeatMs: o.heartbeatMs,
      maxBeatGapMs: typeof result.maxBeatGapMs === 'number' ? result.maxBeatGapMs : null,
      rssIdleMb: rssIdle,
      rssHeldMb: rssHeld,
      rssPerConnKb: null,
      peakRssMb: peak,
      rssAfterMb: rssAfter,
      collectorCpuS: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null,
      light: (result.light as LoadResult['light']) ?? null,
      rated: (result.rated as LoadResult['rated']) ?? null,
      floor: null,
      heavy,
      alertsPerSec: heavy && heavy.ms > 0 ? (heavy.alertsAcked * 1000) / heavy.ms : null,
      flood: (result.flood as LoadResult['flood']) ?? null,
      extra: (result.extra as LoadResult['extra']) ?? { tried: cfg.extra, held: 0, refused: {} },
      stillOpen: Number(result.stillOpen ?? 0),
      closes: (result.closes as Record<string, number>) ?? {},
      storedTotal: Number.isFinite(num('ldguard_collector_alerts_stored_total')) ? num('ldguard_collector_alerts_stored_total') : null,
      commits: Number.isFinite(commits) ? commits : null,
      agentRowWrites: w0?.n != null && w1?.n != null && w1.t > w0.t ? { perSec: ((w1.n - w0.n) * 1000) / (w1.t - w0.t), seconds: (w1.t - w0.t) / 1000 } : null,
      size: null,
      healthAfter: health.status === 200 ? 'answers /healthz 200' : `healthz: ${health.status} ${health.body.slice(0, 80)}`,
      collectorExit: null,
      warnings: {},
      timedOut: Boolean(result.timedOut),
    };
    if (out.rated && ackBefore && ackAfter) {
      const [b, a] = await Promise.all([ackBefore, ackAfter]);
      const total = (a.get('+Inf') ?? 0) - (b.get('+Inf') ?? 0);
      if (total > 0) out.rated.collectorAckWithin = [...a].filter(([le]) => le !== '+Inf').map(([le, v]) => ({ ms: Number(le) * 1000, share: (v - (b.get(le) ?? 0)) / total }));
    }
    if (rssHeld !== null && rssIdle !== null && out.held > 0) out.rssPerConnKb = ((rssHeld - rssIdle) * 1024) / out.held;
    for (const [k, v] of Object.entries((result.refused as Record<string, number>) ?? {})) {
      const r = v - (out.extra.refused[k] ?? 0);
      if (r > 0) out.refusedDuringRamp[k] = r;
    }
    if (result.event === 'error') out.error = `load client: ${String(result.message)}`;
    // By message, and the error the line names (a failed commit's reason is what to look into).
    for (const c of cs) {
      for (const l of c.logs()) {
        if (l.msg === 'ready') continue;
        const key = typeof l.err === 'string' ? `${String(l.msg)}: ${l.err.slice(0, 200)}` : String(l.msg);
        out.warnings[key] = (out.warnings[key] ?? 0) + 1;
      }
    }
    // The rated phase also goes to the log, with the figures the markdown report leaves out.
    const tag = `[collector load, ${target.label}]`;
    const r = out.rated;
    if (r) {
      process.stderr.write(`${tag} rated: ${r.offeredPerSec} alerts/s offered by ${r.agents} agents in batches of ${r.batch}; sent ${r.sentPerSec}/s, ` +
        `acked ${r.ackedPerSec}/s (${r.acked} of ${r.offered}); ack ms p50/p99/max ${r.ackMs.p50?.toFixed(1)} / ${r.ackMs.p99?.toFixed(1)} / ${r.ackMs.max?.toFixed(1)}; ` +
        `late sends ${r.lateSends}; held back (8 batches unacked) ${r.heldBack ?? 0}; RSS after rated ${rssAfter.rated} MB, after heavy ${rssAfter.heavy} MB, peak ${peak} MB\n` +
        `${tag} rated: ack ms p99 by second of the phase: ${(r.ackMsBySecond ?? []).map((x) => x.p99?.toFixed(0) ?? '-').join(' ')}\n` +
        `${tag} rated, the collector's own ack times: ${(r.collectorAckWithin ?? []).map((x) => `${(100 * x.share).toFixed(2)}% within ${x.ms} ms`).join(', ')}\n`);
    }
    process.stderr.write(`${tag} store: ${commits} commits, ${fmtN(num('ldguard_collector_alerts_stored_total') / commits)} alerts each on average, ` +
      `${fmtN((1000 * num('ldguard_collector_commit_seconds_sum')) / commits)} ms each (longest ${fmtN(1000 * maxOf('ldguard_collector_commit_seconds_max'))} ms), ` +
      `${fmtN(num('ldguard_collector_commit_seconds_sum'))} s committing in all; readers paused for ingest ${num('ldguard_collector_ingest_paused_total')}×\n`);
    // The size once no collector writes (SQLite: read after its collector exited, before its folder goes).
    const sizeOf = async () => {
      out.size = await probe.size().catch((err: unknown) => {
        process.stderr.write(`${tag} size not read: ${(err as Error).message}\n`);
        return null;
      });
    };
    const exits = await Promise.all(cs.map((c) => (target.db ? c.stop() : c.stop(sizeOf))));
    out.collectorExit = exits.find((e) => e !== 0) ?? exits[0] ?? null;
    if (target.db) await sizeOf();
    if (out.size) process.stderr.write(`${tag} size: ${out.size.alerts} alerts in ${out.size.bytes} bytes (${out.size.how})\n`);
    if (!target.floor) return out;
    // After the collector has stopped, so that the floor has the cores to itself.
    const dir = mkdtempSync(join(tmpdir(), 'ldg-floor-'));
    try {
      writeFileSync(join(dir, 'tokens'), 'floor\n');
      out.floor = await wsFloor(o, ratedAgents, join(dir, 'tokens'));
      const f = out.floor;
      if (f) process.stderr.write(`[collector load] floor (bare ws server, same client): ack ms p50/p99/max ${f.ackMs.p50?.toFixed(1)} / ${f.ackMs.p99?.toFixed(1)} / ${f.ackMs.max?.toFixed(1)}; p99 by second: ${f.ackMsBySecond.map((x) => x.p99?.toFixed(0) ?? '-').join(' ')}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return out;
  } finally {
    for (const c of cs) if (!c.exited()) await c.stop();
  }
}

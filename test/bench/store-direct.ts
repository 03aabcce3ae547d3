// The stores without a collector or agents: commits made straight through the Store interface
// (collector/src/store), as ingest makes them, one at a time, each timed. The figures the capacity
// model (docs/scale.md) needs and the collector runs cannot give apart: how many presence rows
// (heartbeats of agents with an agents table of fleet size) one collector's store writes a second,
// how many alerts a second in commits of ALERTS_PER_COMMIT, and the bytes an alert takes on disk
// once `alerts` of them are stored (per million: that ratio, extrapolated linearly).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../collector/src/store/open.js';
import type { AlertRow, CommitWork, HeartbeatRow, Store } from '../../collector/src/store/store.js';
import { alert, SEED } from './alert-doc.js';
import { summarize, type Summary } from './stats.js';
import { postgresProbe, sqliteProbe, type StoreSize } from './store-probe.js';

/** As the README's first PostgreSQL figure was taken (one process, batches of 200, one commit at a time). */
const ALERTS_PER_COMMIT = 200;
/** Heartbeats per commit: what a collector gathers while one commit runs, at a fleet's rate. */
const HEARTBEATS_PER_COMMIT = 500;
const HELLOS_PER_COMMIT = 1_000;

export interface DirectOptions {
  /** Rows in the agents table (the fleet). */
  agents: number;
  /** How long heartbeats are committed, ms. */
  heartbeatMs: number;
  /** Alerts stored, then measured on disk. */
  alerts: number;
}

export interface DirectResult {
  label: string;
  agents: number;
  heartbeats: { rows: number; perSec: number; perCommit: number; commitMs: Summary | null };
  alerts: { stored: number; perSec: number; perCommit: number; commitMs: Summary | null };
  size: StoreSize | null;
}

const empty = (): CommitWork => ({ alerts: [], hellos: [], heartbeats: [], seals: [], seen: new Map(), quarantine: [], bindings: [] });

export function alertRowOf(agent: number, i: number): AlertRow {
  const doc = alert(agent, i);
  const now = Date.now();
  return {
    uuid: (doc.kibana as { alert: { uuid: string } }).alert.uuid, ts: now, ots: now, host: `load-agent-${agent}`, ruleId: SEED, ruleName: 'Dynamic Linker (ld.so) Creation',
    severity: 'low', status: 'open', agentId: `load-agent-${agent}`, tokenName: `load-agent-${agent}`, received: now, future: false, doc: Buffer.from(JSON.stringify(doc)),
  };
}

function heartbeatRow(agent: number): HeartbeatRow {
  const health = { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false }, uptimeSec: Math.floor(performance.now() / 1000) };
  return { agentId: `load-agent-${agent}`, health: JSON.stringify(health), spoolDepth: 0, eventsLost: 0, spoolOverflow: 0, at: Date.now() };
}

/** Commits what `make()` returns until it returns null, one commit at a time; the time of each. */
async function timed(store: Store, make: () => CommitWork | null): Promise<number[]> {
  const ms: number[] = [];
  for (let w = make(); w; w = make()) {
    const t = performance.now();
    await store.commit(w);
    ms.push(performance.now() - t);
  }
  return ms;
}

async function measure(store: Store, o: DirectOptions): Promise<Omit<DirectResult, 'label' | 'size'>> {
  // The fleet says hello (not timed: a fleet does it once per collector start).
  let next = 0;
  await timed(store, () => {
    if (next >= o.agents) return null;
    const w = empty();
    for (const end = Math.min(o.agents, next + HELLOS_PER_COMMIT); next < end; next++) {
      w.hellos.push({ agentId: `load-agent-${next}`, hostname: `load-agent-${next}`, version: '0.1.0', tokenName: `load-agent-${next}`, heartbeatMs: 10_000, facts: '{"hostname":"x"}', at: Date.now() });
    }
    return w;
  });
  // Heartbeats of agents picked at random: the rows (and pages) a fleet's beats touch.
  const hbEnd = performance.now() + o.heartbeatMs;
  const hbStart = performance.now();
  const hbMs = await timed(store, () => {
    if (performance.now() >= hbEnd) return null;
    const w = empty();
    const picked = new Set<number>();
    while (picked.size < Math.min(HEARTBEATS_PER_COMMIT, o.agents)) picked.add(Math.floor(Math.random() * o.agents));
    for (const a of picked) w.heartbeats.push(heartbeatRow(a));
    return w;
  });
  const hbRows = hbMs.length * Math.min(HEARTBEATS_PER_COMMIT, o.agents);
  const hbS = (performance.now() - hbStart) / 1000;
  // Alerts, as many agents' batches in a commit (no token check: tokenHash '' is the collector's own).
  let stored = 0;
  const aStart = performance.now();
  const aMs = await timed(store, () => {
    if (stored >= o.alerts) return null;
    const n = Math.min(ALERTS_PER_COMMIT, o.alerts - stored);
    const rows = Array.from({ length: n }, (_, k) => alertRowOf((stored + k) % o.agents, stored + k));
    stored += n;
    return { ...empty(), alerts: [{ rows, tokenHash: '' }] };
  });
  const aS = (performance.now() - aStart) / 1000;
  return {
    agents: o.agents,
    heartbeats: { rows: hbRows, perSec: hbRows / hbS, perCommit: Math.min(HEARTBEATS_PER_COMMIT, o.agents), commitMs: summarize(hbMs) },
    alerts: { stored, perSec: stored / aS, perCommit: ALERTS_PER_COMMIT, commitMs: summarize(aMs) },
  };
}

/** The SQLite store in a folder of its own, removed afterwards. */
export async function sqliteDirect(o: DirectOptions): Promise<DirectResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-store-'));
  try {
    const file = join(dir, 'collector.db');
    const store = await openStore(file, { collector: true });
    let m;
    try {
      m = await measure(store, o);
    } finally {
      await store.close();
    }
    return { label: 'SQLite', ...m, size: await sqliteProbe(file).size() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The PostgreSQL store on `url` (an empty database). */
export async function postgresDirect(url: string, o: DirectOptions): Promise<DirectResult> {
  const store = await openStore(url, { collector: false });
  let m;
  try {
    m = await measure(store, o);
  } finally {
    await store.close();
  }
  return { label: 'PostgreSQL', ...m, size: await postgresProbe(url).size() };
}

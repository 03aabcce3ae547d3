// The triage figures (#22): a collector holding N alerts from 1,000 hosts, on SQLite and on
// PostgreSQL, at each size: the alert list's first page, a grouping by host, a bulk close of 1,000
// alerts, all through the HTTP API as the dashboard calls it, and the agents' ack latency while a
// bulk close runs (the load client's rated phase: agents sending at a fixed rate throughout).
// The store is filled straight through the Store interface (as store-direct.ts commits), with the
// collector stopped; then the collector starts on it and is measured. Only figures.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../collector/src/store/open.js';
import type { CommitWork, Store } from '../../collector/src/store/store.js';
import { postgresUnavailable } from '../helpers/pg-cluster.js';
import { onInterrupt } from './cleanup.js';
import { onJsonLines, startCollector, type CollectorHandle } from './collector.js';
import { withCluster } from './collector-stores.js';
import type { LoadConfig } from './load-client.js';
import { summarize, type Summary } from './stats.js';
import { alertRowOf } from './store-direct.js';
import { browserTriage, browserUnavailable, type BrowserFigures } from './triage-browser.js';

export interface TriageOptions {
  /** Alerts in the store at each measurement, ascending (the store grows from one to the next). */
  sizes: number[];
  hosts: number;
  /** Each read timed this many times. */
  repeats: number;
  /** Bulk closes of `bulk` alerts, each of alerts still open. */
  bulkCloses: number;
  bulk: number;
  /** Agents sending during the bulk close, and their offered alerts a second. */
  agents: number;
  perSec: number;
}

type Quantiles = { p50: number | null; p99: number | null; max: number | null };

export interface TriageRun {
  label: string;
  alerts: number;
  listMs: Summary | null;
  groupMs: Summary | null;
  groups: number | null;
  bulkCloseMs: Summary | null;
  closed: number;
  /** The rated load's ack latency in the seconds a bulk close ran, and in the others. */
  ackDuringMs: Quantiles | null;
  ackOtherMs: Quantiles | null;
  /** The same views in Chromium (triage-browser.ts), or why not. */
  browser: BrowserFigures | { skipped: string } | null;
  error?: string;
}

const empty = (): CommitWork => ({ alerts: [], hellos: [], heartbeats: [], seals: [], seen: new Map(), quarantine: [], bindings: [] });

/** Adds alerts `from`..`to` (exclusive), spread over `hosts` hosts, 1,000 a commit. */
async function fill(db: string, from: number, to: number, hosts: number): Promise<void> {
  const store: Store = await openStore(db, { collector: !db.startsWith('postgres') });
  try {
    for (let i = from; i < to; ) {
      const n = Math.min(1_000, to - i);
      const rows = Array.from({ length: n }, (_, k) => alertRowOf((i + k) % hosts, i + k));
      i += n;
      await store.commit({ ...empty(), alerts: [{ rows, tokenHash: '' }] });
    }
  } finally {
    await store.close();
  }
}

async function api(c: CollectorHandle, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${c.port}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${c.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  if (res.status >= 400) throw new Error(`${path}: ${res.status} ${text.slice(0, 200)}`);
  return { status: res.status, json };
}

async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** The ids of `n` open alerts, newest first, through the list API (pages of 500). */
async function openIds(c: CollectorHandle, n: number): Promise<string[]> {
  const ids: string[] = [];
  let before: string | undefined;
  while (ids.length < n) {
    const r = await api(c, `/api/alerts?status=open&limit=500${before ? `&before=${encodeURIComponent(before)}` : ''}`);
    const page = r.json.alerts as Array<Record<string, any>>;
    if (page.length === 0) break;
    for (const a of page) ids.push(String(a.kibana.alert.uuid));
    before = r.json.next ?? undefined;
    if (!before) break;
  }
  return ids.slice(0, n);
}

/**
 * The load client's rated phase alone (load-client.ts; its agents, in a worker thread, take the
 * first `agents` tokens when the main thread holds none), `onStart` called as it starts sending.
 */
function ratedLoad(c: CollectorHandle, o: TriageOptions, alerts: number, ms: number, onStart: () => void): Promise<Record<string, any>> {
  const cfg: LoadConfig = {
    urls: [c.url], tokensFile: c.agentTokensFile, connections: 0, extra: 0, rampConcurrency: 50, heartbeatMs: 10_000, holdMs: 0,
    lightAgents: 0, lightMs: 0, ratedAgents: o.agents, ratedPerSec: o.perSec, ratedBatch: 10, ratedMs: ms, burstAgents: 0, burstMs: 0,
    batchSize: 50, inflight: 2, floodAlerts: 0, deadlineMs: ms + 30_000, localAddresses: ['127.0.0.1'],
    // Each size's agents are new ones: the ids of the last size's are bound to their tokens.
    idBase: 1_000_000 + o.sizes.indexOf(alerts) * o.agents,
  };
  const client = fileURLToPath(new URL('./load-client.js', import.meta.url));
  const p = spawn(process.execPath, [client, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onInterrupt(() => p.kill('SIGTERM'));
  let result: Record<string, any> = {};
  onJsonLines(p.stdout!, (m) => {
    if (m.event === 'rated-start') onStart();
    if (m.event === 'result' || m.event === 'error') result = m;
  });
  return new Promise((resolve) => p.once('exit', () => {
    unregister();
    resolve(result);
  }));
}

const worst = (xs: Quantiles[]): Quantiles | null => {
  const got = xs.filter((x) => x.p99 !== null);
  if (got.length === 0) return null;
  return { p50: Math.max(...got.map((x) => x.p50!)), p99: Math.max(...got.map((x) => x.p99!)), max: Math.max(...got.map((x) => x.max!)) };
};

async function measure(label: string, db: string, alerts: number, o: TriageOptions): Promise<TriageRun> {
  const run: TriageRun = { label, alerts, listMs: null, groupMs: null, groups: null, bulkCloseMs: null, closed: 0, ackDuringMs: null, ackOtherMs: null, browser: null };
  const c = await startCollector({ db, agentTokens: o.agents, tokenPrefix: `triage-${alerts}` });
  try {
    const list: number[] = [];
    const group: number[] = [];
    for (let i = 0; i < o.repeats; i++) {
      list.push(await timedMs(() => api(c, '/api/alerts?limit=50')));
      group.push(await timedMs(async () => {
        const r = await api(c, '/api/alerts/groups?by=host');
        run.groups = (r.json.groups as unknown[]).length;
      }));
    }
    run.listMs = summarize(list);
    run.groupMs = summarize(group);

    // Bulk closes while agents send: the first after two seconds of steady load.
    const closes: number[] = [];
    const windows: Array<[number, number]> = [];
    let started = 0;
    const phaseMs = 4_000 + o.bulkCloses * 4_000;
    const loaded = ratedLoad(c, o, alerts, phaseMs, () => (started = performance.now()));
    while (!started) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 2_000));
    for (let k = 0; k < o.bulkCloses; k++) {
      const ids = await openIds(c, o.bulk);
      const t = performance.now();
      const r = await api(c, '/api/alerts/bulk', { action: 'close', ids });
      const end = performance.now();
      closes.push(end - t);
      windows.push([t - started, end - started]);
      run.closed += Number(r.json.changed ?? 0);
      await new Promise((r2) => setTimeout(r2, 2_000));
    }
    run.bulkCloseMs = summarize(closes);
    const result = await loaded;
    const rated = result.rated as { ackMsBySecond?: Quantiles[] } | undefined;
    const bySecond = rated?.ackMsBySecond ?? [];
    if (bySecond.length === 0) throw new Error(`the load client gave no ack figures: ${JSON.stringify(result).slice(0, 200)}`);
    const during = new Set<number>();
    for (const [a, b] of windows) for (let s = Math.floor(a / 1000); s <= Math.floor(b / 1000); s++) during.add(s);
    run.ackDuringMs = worst(bySecond.filter((_, s) => during.has(s)));
    run.ackOtherMs = worst(bySecond.filter((_, s) => !during.has(s) && s >= 1));
    const why = browserUnavailable();
    run.browser = why ? { skipped: why } : await browserTriage(c.port, c.adminToken).catch((err: unknown) => ({ skipped: `failed: ${(err as Error).message.split('\n')[0]}` }));
  } catch (err) {
    run.error = (err as Error).message.split('\n')[0];
  } finally {
    await c.stop();
  }
  return run;
}

/** Every size on one store: filled up to it, then measured. */
async function series(label: string, db: string, o: TriageOptions, log: (s: string) => void): Promise<TriageRun[]> {
  const out: TriageRun[] = [];
  let have = 0;
  for (const size of o.sizes) {
    log(`triage, ${label}: filling to ${size.toLocaleString('en')} alerts from ${o.hosts} hosts`);
    await fill(db, have, size, o.hosts);
    have = size;
    log(`triage, ${label}: measuring at ${size.toLocaleString('en')} alerts`);
    out.push(await measure(label, db, size, o));
  }
  return out;
}

export async function triage(o: TriageOptions, log: (s: string) => void): Promise<TriageRun[]> {
  const runs: TriageRun[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-triage-'));
  const unregister = onInterrupt(() => rmSync(dir, { recursive: true, force: true }));
  try {
    runs.push(...(await series('SQLite', join(dir, 'collector.db'), o, log)));
    const why = postgresUnavailable();
    if (why) runs.push({ label: `PostgreSQL (skipped: ${why})`, alerts: 0, listMs: null, groupMs: null, groups: null, bulkCloseMs: null, closed: 0, ackDuringMs: null, ackOtherMs: null, browser: null });
    else runs.push(...(await withCluster(async (pg) => series('PostgreSQL', await pg.createDb('triage'), o, log))));
  } finally {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    unregister();
  }
  return runs;
}

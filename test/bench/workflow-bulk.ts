// Bulk close of 1,000 alerts (#22 items 1 and 6) on SQLite and on PostgreSQL (a throwaway cluster
// with fsync on, as a production server runs) with 10,000 alerts in the store: by filter (preview,
// then apply) and by ids, and how long group commits of ingest took meanwhile against an idle
// baseline (the question: does a bulk change stall ingest?). Prints figures only; nothing passes
// or fails on a number.
//
//   npx tsc -p tsconfig.build.json && node dist/test/bench/workflow-bulk.js [--alerts 10000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { PostgresStore } from '../../collector/src/store/postgres.js';
import { SqliteStore } from '../../collector/src/store/sqlite.js';
import { listedTime, type AlertRow, type CommitWork, type Store } from '../../collector/src/store/store.js';
import { makeAlert } from '../helpers/delivery.js';
import { postgresUnavailable, startPgCluster } from '../helpers/pg-cluster.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const TOTAL = arg('alerts', 10_000);
const HOSTS = TOTAL / 1000;
/** Alerts per ingest commit while measuring (a busy collector's group commit). */
const COMMIT_ROWS = 200;

function rows(n: number, host: (i: number) => string, t0: number): AlertRow[] {
  const out: AlertRow[] = [];
  for (let i = 0; i < n; i++) {
    const time = new Date(t0 + i * 100).toISOString();
    const a = makeAlert({ agentId: 'bench', host: host(i), time });
    const ts = Date.parse(time);
    out.push({
      uuid: a.kibana.alert.uuid, ts: listedTime(ts, Date.now()), ots: ts, host: host(i), ruleId: a.kibana.alert.rule.rule_id, ruleName: a.kibana.alert.rule.name,
      severity: a.kibana.alert.severity, status: 'open', agentId: 'bench', tokenName: 'bench', received: Date.now(), future: false, doc: Buffer.from(JSON.stringify(a)),
    });
  }
  return out;
}

const work = (r: AlertRow[]): CommitWork => ({ alerts: [{ rows: r, tokenHash: '' }], hellos: [], heartbeats: [], seals: [], seen: new Map(), quarantine: [], bindings: [] });

async function fill(store: Store): Promise<AlertRow[]> {
  const t0 = Date.parse('2026-11-01T00:00:00Z');
  const all = rows(TOTAL, (i) => `h-${i % HOSTS}`, t0);
  for (let i = 0; i < all.length; i += 1000) await store.commit(work(all.slice(i, i + 1000)));
  return all;
}

/** Ingest commits back to back until `stop` resolves; their durations (ms). */
async function ingestWhile(store: Store, stop: Promise<unknown>): Promise<number[]> {
  let done = false;
  void stop.finally(() => (done = true));
  const times: number[] = [];
  let t = Date.parse('2026-11-20T00:00:00Z');
  while (!done) {
    const batch = rows(COMMIT_ROWS, () => 'ingest', t);
    t += COMMIT_ROWS * 100;
    const s = performance.now();
    await store.commit(work(batch));
    times.push(performance.now() - s);
  }
  return times;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function measure(name: string, store: Store): Promise<void> {
  const all = await fill(store);
  const idle = await ingestWhile(store, new Promise((r) => setTimeout(r, 2000)));
  // By filter: the preview's count, then the change (one host = 1,000 alerts).
  let s = performance.now();
  const preview = await store.previewBulk({ host: 'h-3', status: ['open'] });
  const previewMs = performance.now() - s;
  // The event loop serves every agent's ack: how long it was held while the change ran.
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  s = performance.now();
  const byFilter = store.bulkWorkflow({ filter: { host: 'h-3', status: ['open'] }, upTo: preview.upTo }, { kind: 'status', status: 'closed' }, 'bench');
  const during = ingestWhile(store, byFilter);
  const r1 = await byFilter;
  const filterMs = performance.now() - s;
  const duringTimes = await during;
  // By ids: another host's 1,000 uuids, as the API takes them (resolved to rows, then changed).
  s = performance.now();
  const { rows: ids } = await store.resolveAlertIds(all.filter((r) => r.host === 'h-5').map((r) => r.uuid));
  const r2 = await store.bulkWorkflow({ ids }, { kind: 'status', status: 'closed' }, 'bench');
  const idsMs = performance.now() - s;
  loop.disable();
  const loopMax = loop.max / 1e6;
  console.log(`| ${name} | ${TOTAL.toLocaleString('en')} | ${preview.count} in ${ms(previewMs)} | ${r1.changed} in ${ms(filterMs)} | ${r2.changed} in ${ms(idsMs)} | ${ms(pct(idle, 50))} / ${ms(pct(idle, 99))} (${idle.length}) | ${ms(pct(duringTimes, 50))} / ${ms(Math.max(...duringTimes))} (${duringTimes.length}) | ${ms(loopMax)} |`);
}

async function main(): Promise<void> {
  console.log(`Bulk close of 1,000 alerts with ${TOTAL.toLocaleString('en')} in the store; ingest commits of ${COMMIT_ROWS} alerts back to back (idle: 2 s before; during: the filter's change)\n`);
  console.log('| store | alerts | preview | close by filter | close by ids | ingest commit p50 / p99 idle (n) | ingest commit p50 / max during (n) | event loop delay max (both closes) |');
  console.log('|---|---|---|---|---|---|---|---|');
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-bulk-'));
  try {
    const sqlite = SqliteStore.open(join(dir, 'collector.db'), { workers: true });
    try {
      await measure('SQLite', sqlite);
    } finally {
      await sqlite.close();
    }
    const why = postgresUnavailable();
    if (why) {
      console.log(`| PostgreSQL | skipped: ${why} |`);
      return;
    }
    // Its own folder under the temporary one: the cluster runs as the postgres user, who may not enter `dir`.
    const pgDir = mkdtempSync(join(tmpdir(), 'ldg-bench-bulk-pg-'));
    const cluster = await startPgCluster(pgDir, { durable: true });
    try {
      const pgStore = await PostgresStore.open(await cluster.createDb('bulk'));
      try {
        await measure('PostgreSQL', pgStore);
      } finally {
        await pgStore.close();
      }
    } finally {
      await cluster.stop();
      rmSync(pgDir, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

// Grouped reads and the group keys' fill (#22 item 2), measured, not asserted: a store filled
// through Store.commit (as ingest writes, so the keys are filled at insert) with alerts of the
// bench's shape (alert-doc.ts, ~2 kB) from 1,000 hosts over 30 days (2 rules, 5 hashes, 3
// executables, a file package on every 4th), then GET /api/alerts/groups's read by host and by
// rule, unfiltered and with a filter (status open, last 7 days), at 10,000 and 100,000 alerts;
// then the schema taken back to before the keys (as the e2e test does) and the store opened
// again: the fill's time at 100,000 rows. SQLite in a temp dir; PostgreSQL a throwaway cluster
// with fsync on (skipped, saying why, where it cannot run).
//
//   node dist/test/bench/group-reads.js [sqlite|postgres ...]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openStore } from '../../collector/src/store/open.js';
import type { GroupQuery } from '../../collector/src/store/groups.js';
import type { AlertRow, CommitWork, Store } from '../../collector/src/store/store.js';
import { postgresUnavailable, startPgCluster, type PgCluster } from '../helpers/pg-cluster.js';
import { undoGroupKeys } from '../helpers/schema-undo.js';
import { alert, SEED } from './alert-doc.js';

const HOSTS = 1_000;
const SIZES = [10_000, 100_000];
const PER_COMMIT = 1_000;
const RUNS = 5;
const DAY = 86_400_000;
const NOW = Date.now();

function row(i: number): AlertRow {
  const host = i % HOSTS;
  const doc = alert(host, i) as Record<string, any>;
  const ts = NOW - Math.floor(((i * 7919) % 1000) / 1000 * 30 * DAY);
  const rule = i % 10 === 0 ? 'rule-b' : SEED;
  doc['@timestamp'] = new Date(ts).toISOString();
  doc.kibana.alert.original_time = doc['@timestamp'];
  doc.kibana.alert.rule.rule_id = rule;
  doc.file.hash.sha256 = `hash-${i % 5}`;
  doc.process.executable = ['/usr/bin/cp', '/usr/bin/dpkg', '/usr/bin/install'][i % 3];
  if (i % 4 === 0) doc.ldguard.file_package = { manager: 'dpkg', name: 'libc6', verdict: 'verified', reason: 'matches' };
  return {
    uuid: doc.kibana.alert.uuid, ts, ots: ts, host: `load-agent-${host}`, ruleId: rule, ruleName: 'Rule', severity: 'low', status: 'open',
    agentId: `load-agent-${host}`, tokenName: `load-agent-${host}`, received: NOW, future: false, doc: Buffer.from(JSON.stringify(doc)),
  };
}

async function fill(store: Store, from: number, to: number): Promise<number> {
  const t0 = performance.now();
  for (let i = from; i < to; i += PER_COMMIT) {
    const rows = Array.from({ length: Math.min(PER_COMMIT, to - i) }, (_, k) => row(i + k));
    const work: CommitWork = { alerts: [{ rows }], hellos: [], heartbeats: [], seals: [], seen: new Map(), quarantine: [], bindings: [] };
    await store.commit(work);
  }
  return (to - from) / ((performance.now() - t0) / 1000);
}

async function timeRead(store: Store, q: GroupQuery): Promise<{ p50: number; max: number; groups: number }> {
  const ms: number[] = [];
  let groups = 0;
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    const page = await store.alertGroups(q);
    ms.push(performance.now() - t0);
    groups = page.groups.length;
  }
  ms.sort((a, b) => a - b);
  return { p50: ms[Math.floor(ms.length / 2)]!, max: ms.at(-1)!, groups };
}

/** The schema before the group keys, the rows kept, then VACUUM (the dropped columns' space). */
async function downgrade(kind: 'sqlite' | 'postgres', db: string): Promise<void> {
  await undoGroupKeys(kind, db);
  if (kind === 'sqlite') return;
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  // VACUUM cannot run in the transaction a multi-statement query is.
  await c.query('VACUUM ANALYZE alerts');
  await c.end();
}

async function run(kind: 'sqlite' | 'postgres', dir: string): Promise<void> {
  let cluster: PgCluster | undefined;
  let db: string;
  if (kind === 'sqlite') db = join(dir, 'groups.db');
  else {
    cluster = await startPgCluster(dir, { durable: true });
    db = await cluster.createDb('groups');
  }
  try {
    let store = await openStore(db, { collector: true });
    let have = 0;
    for (const n of SIZES) {
      const rate = await fill(store, have, n);
      have = n;
      if (cluster) await cluster.query('groups', 'VACUUM ANALYZE alerts');
      console.log(`${kind}: ${n.toLocaleString('en')} alerts stored (${Math.round(rate).toLocaleString('en')} alerts/s in commits of ${PER_COMMIT})`);
      const week = { status: ['open'], since: NOW - 7 * DAY };
      for (const [by, filters] of [['host', {}], ['rule', {}], ['host', week], ['rule', week], ['hash', {}]] as const) {
        const r = await timeRead(store, { by, order: 'last', limit: 50, offset: 0, ...filters });
        console.log(`  by ${by}${Object.keys(filters).length ? ' (status open, last 7 days)' : ''}: p50 ${r.p50.toFixed(1)} ms, max ${r.max.toFixed(1)} ms of ${RUNS} (${r.groups} groups on the page)`);
      }
    }
    await store.close();
    await downgrade(kind, db);
    const t0 = performance.now();
    store = await openStore(db, { collector: true });
    console.log(`${kind}: open after the downgrade ${((performance.now() - t0) / 1000).toFixed(1)} s: ${store.upgraded}`);
    const r = await timeRead(store, { by: 'hash', order: 'last', limit: 50, offset: 0 });
    console.log(`  by hash after the fill: p50 ${r.p50.toFixed(1)} ms (${r.groups} groups)`);
    await store.close();
  } finally {
    await cluster?.stop();
  }
}

const kinds = process.argv.slice(2).length ? process.argv.slice(2) : ['sqlite', 'postgres'];
const dir = mkdtempSync(join(tmpdir(), 'ldg-group-bench-'));
try {
  for (const kind of kinds) {
    if (kind === 'postgres' && postgresUnavailable()) {
      console.log(`postgres: skipped: ${postgresUnavailable()}`);
      continue;
    }
    await run(kind as 'sqlite' | 'postgres', dir);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

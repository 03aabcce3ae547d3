// The collector rows, one run per store in one bench run: the same load (collector-load.ts) on
// one collector over SQLite, one over PostgreSQL, then 2 and 3 collectors over one PostgreSQL
// database; then each store alone (store-direct.ts: presence rows, alerts and bytes per alert). PostgreSQL is a throwaway cluster of the bench's own (test/helpers/pg-cluster.ts) with
// fsync on, as a production server commits; each run gets an empty database of its own, so what
// one run stored does not slow the next. Without PostgreSQL installed, its columns say why.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postgresUnavailable, startPgCluster, type PgCluster } from '../helpers/pg-cluster.js';
import { onInterrupt } from './cleanup.js';
import { collectorLoad, type LoadOptions, type LoadResult, type LoadTarget } from './collector-load.js';
import { postgresDirect, sqliteDirect, type DirectOptions, type DirectResult } from './store-direct.js';

export type StoreRun = LoadResult | { label: string; skipped: string };
export type DirectRun = DirectResult | { label: string; skipped: string };

/** Blocks this thread for `ms` (an interrupt handler cannot await). */
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export async function withCluster<T>(fn: (pg: PgCluster) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-pg-'));
  let cluster: PgCluster | undefined;
  // Ctrl-C: an immediate shutdown (SIGQUIT), a few seconds for it, then the folder.
  const unregister = onInterrupt(() => {
    if (cluster) {
      process.kill(cluster.pid, 'SIGQUIT');
      for (let i = 0; i < 50 && existsSync(`/proc/${cluster.pid}`); i++) sleepSync(100);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    cluster = await startPgCluster(dir, { durable: true, maxConnections: 100 });
    return await fn(cluster);
  } finally {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    unregister();
  }
}

/**
 * `shared`: the numbers of collectors to run over one PostgreSQL database after the single ones
 * (the quick run keeps it short). Each run that fails becomes a skipped column with its reason;
 * the others still run.
 */
export async function collectorStores(o: LoadOptions, shared: number[], direct: DirectOptions, log: (s: string) => void): Promise<{ runs: StoreRun[]; direct: DirectRun[] }> {
  const runs: StoreRun[] = [];
  const directs: DirectRun[] = [];
  const run = async (target: LoadTarget) => {
    log(`collector load, ${target.label}: ${o.connections} agents`);
    try {
      runs.push(await collectorLoad(o, target));
    } catch (err) {
      runs.push({ label: target.label, skipped: `failed: ${(err as Error).message.split('\n')[0]}` });
    }
  };
  const alone = async (label: string, fn: () => Promise<DirectResult>) => {
    log(`store alone, ${label}: ${direct.agents} agents' presence, then ${direct.alerts} alerts`);
    try {
      directs.push(await fn());
    } catch (err) {
      directs.push({ label, skipped: `failed: ${(err as Error).message.split('\n')[0]}` });
    }
  };
  await run({ label: 'SQLite', collectors: 1, floor: true, limits: true });
  await alone('SQLite', () => sqliteDirect(direct));
  const pgLabels = ['PostgreSQL', ...shared.map((n) => `PostgreSQL, ${n} collectors`)];
  const why = postgresUnavailable();
  if (why) {
    for (const label of pgLabels) runs.push({ label, skipped: why });
    directs.push({ label: 'PostgreSQL', skipped: why });
    return { runs, direct: directs };
  }
  try {
    await withCluster(async (pg) => {
      log(`PostgreSQL ${pg.version}, a throwaway cluster with fsync on`);
      await run({ label: pgLabels[0]!, db: await pg.createDb('single'), collectors: 1, floor: false, limits: true });
      for (const [k, n] of shared.entries()) await run({ label: pgLabels[k + 1]!, db: await pg.createDb(`shared${n}`), collectors: n, floor: false, limits: false });
      const url = await pg.createDb('alone');
      await alone('PostgreSQL', () => postgresDirect(url, direct));
      for (const [msg, n] of pg.errors()) log(`PostgreSQL logged ${n}× ERROR: ${msg}`);
    });
  } catch (err) {
    const reason = `the throwaway PostgreSQL cluster failed: ${(err as Error).message.split('\n')[0]}`;
    for (const label of pgLabels) if (!runs.some((r) => r.label === label)) runs.push({ label, skipped: reason });
    if (!directs.some((d) => d.label === 'PostgreSQL')) directs.push({ label: 'PostgreSQL', skipped: reason });
  }
  return { runs, direct: directs };
}

// A throwaway PostgreSQL cluster for a test file (pg-cluster.ts, with fsync off): in a temporary
// folder, stopped and removed when the test that made it ends (or its file, when made outside a test).
import { startPgCluster, type PgCluster } from './pg-cluster.js';
import { tempDir, whenDone } from './temp.js';

export { postgresBin, postgresUnavailable } from './pg-cluster.js';
export type TestPostgres = PgCluster;

export async function startPostgres(): Promise<TestPostgres> {
  const dir = tempDir('ldg-pg-');
  const cluster = await startPgCluster(dir);
  // Registered after tempDir's removal, so it runs first.
  whenDone(cluster.stop);
  return cluster;
}

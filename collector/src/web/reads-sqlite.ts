// The dashboard's reads on the SQLite store: DashboardQueries (query.ts) on a connection of its
// own, and the search indexer (indexer.ts) that fills the search database behind ingest, in a
// worker thread from the build or in this thread from sources (tests).
//
// Failure containment: if indexing fails, the dashboard logs why (at most once a minute) and goes
// on with search and counts lagging; the agents' endpoint and the API never depend on any of this.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { SqliteStore } from '../store/sqlite.js';
import { Indexer, searchDbPath } from './indexer.js';
import { DashboardQueries, type ListQuery } from './query.js';
import type { DashboardReads } from './reads.js';

export class SqliteDashboardReads implements DashboardReads {
  readonly queries: DashboardQueries;
  private indexer: Worker | undefined;
  private inThread: { ix: Indexer; timer: NodeJS.Timeout | undefined } | undefined;
  private lastIndexError = 0;

  constructor(private readonly store: SqliteStore, private readonly log: Logger) {
    const searchPath = searchDbPath(store.path);
    // Creates the search database's tables before anyone reads them (the worker opens its own).
    new Indexer(store.path, searchPath).close();
    this.queries = new DashboardQueries(store.path, searchPath);
  }

  async list(q: ListQuery) {
    return this.queries.list(q);
  }

  async indexLag() {
    return this.queries.indexLag();
  }

  async alert(uuid: string) {
    return this.queries.alert(uuid);
  }

  async overview(window: string, now?: number) {
    return this.queries.overview(window, now);
  }

  async facets(now?: number) {
    return this.queries.facets(now);
  }

  start(): void {
    const workerFile = fileURLToPath(new URL('./indexer-worker.js', import.meta.url));
    const side = searchDbPath(this.store.path);
    if (import.meta.url.endsWith('.js') && existsSync(workerFile)) {
      const w = new Worker(workerFile, { workerData: { main: this.store.path, side, pressure: this.store.pressure.buffer } });
      w.on('message', (m: { error?: string }) => m.error && this.indexError(m.error));
      w.on('error', (err) => this.indexError(errorMessage(err)));
      w.on('exit', () => {
        if (this.indexer === w) this.indexer = undefined;
      });
      w.unref();
      this.indexer = w;
      return;
    }
    const ix = new Indexer(this.store.path, side);
    const state: { ix: Indexer; timer: NodeJS.Timeout | undefined } = { ix, timer: undefined };
    const tick = () => {
      let n = 0;
      try {
        n = ix.step(500);
      } catch (err) {
        this.indexError(errorMessage(err));
      }
      state.timer = setTimeout(tick, n === 500 ? 0 : 100);
      state.timer.unref();
    };
    tick();
    this.inThread = state;
  }

  private indexError(message: string): void {
    const now = Date.now();
    if (now - this.lastIndexError < 60_000) return;
    this.lastIndexError = now;
    this.log.warn({ err: message }, 'dashboard search index: indexing failed; search and counts lag until it succeeds (check disk space)');
  }

  async close(): Promise<void> {
    const w = this.indexer;
    this.indexer = undefined;
    if (w) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => void w.terminate().then(() => resolve()), 5_000);
        w.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        w.postMessage('stop');
      });
    }
    if (this.inThread) {
      clearTimeout(this.inThread.timer);
      this.inThread.ix.close();
      this.inThread = undefined;
    }
    this.queries.close();
  }
}

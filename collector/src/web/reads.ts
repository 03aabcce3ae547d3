// What the dashboard (collector/src/web.ts) reads, whichever store the collector runs on. Two
// implementations: reads-sqlite.ts (DashboardQueries over the collector's file and the search
// database its indexer keeps behind ingest) and reads-postgres.ts (the PostgreSQL store's tables
// and indexes, shared by every collector over the database).
//
// Contract both keep: every call is bounded whatever the store holds (query.ts says how: keyset
// paging on an index in the list's order, at most SCAN_BUDGET index entries looked at per request,
// and `partial: true` with a cursor where the walk stopped when the page is not full by then).
import type { Overview } from '../../web/src/api-types.js';
import type { HistoryEntry, ListPage, ListQuery } from './query.js';

export interface Facets {
  hosts: string[];
  rules: Array<{ ruleId: string; name: string | null }>;
}

export interface DashboardReads {
  list(q: ListQuery): Promise<ListPage>;
  /** Alerts stored but not yet searchable or counted (0 where search and counts are kept with the alerts). */
  indexLag(): Promise<number>;
  /** The newest alert carrying that uuid, as the API shows it, and its workflow history. */
  alert(uuid: string): Promise<{ doc: string; history: HistoryEntry[] } | undefined>;
  /** `window`: a key of WINDOWS (query.ts). */
  overview(window: string, now?: number): Promise<Overview>;
  facets(now?: number): Promise<Facets>;
  /** Starts background work (SQLite: the search indexer); errors are logged, never thrown. */
  start(): void;
  close(): Promise<void>;
}

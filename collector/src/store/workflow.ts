// The analysts' workflow on many alerts at once (#22 items 1 and 3): a status, an assignee, a note.
// What is shared by both stores: the selection (ids, or a filter up to a bound; its SQL is the
// grouped reads' filterSql, so the two select the same alerts) and the driver that applies a
// change in chunks.
//
// Contracts:
// - A change is applied in transactions of at most BULK_CHUNK rows. Ingest never waits behind one
//   big transaction: SQLite runs each chunk in ingest's own writer thread, between two group
//   commits (store/sqlite.ts); PostgreSQL locks only the chunk's rows, on a pooled connection.
// - A selection by filter carries `upTo`, the highest row id its preview counted: later arrivals
//   are never touched. (PostgreSQL takes ids at insert and commits later, so a row inserted just
//   before the preview and committed just after it has a lower id and is included.)
// - Each row that changes gets a history entry (kind, who, when, value); a row already in that
//   status, or with that assignee, is counted `unchanged` and gets none.
// - Last writer wins for the assignee; both writers' entries stay in the history.
import type { WorkflowStatus } from '../../../shared/ecs.js';
import type { GroupFilters } from './groups.js';

/** Rows per transaction. */
export const BULK_CHUNK = 1000;
/** Ids one call may name (a page's selection is at most 200; this bounds a script's). */
export const BULK_MAX_IDS = 10_000;
/** Characters of a note. */
export const NOTE_MAX_CHARS = 4000;
/** Characters of an assignee (a login name; free text). */
export const ASSIGNEE_MAX_CHARS = 128;

/**
 * The filter a bulk selection takes: the list's filters (a group's members included) without free
 * text, which selects through a search index read a page at a time (workflow-input.ts).
 */
export type BulkFilter = Omit<GroupFilters, 'text'>;

export type BulkSelection = { ids: number[] } | { filter: BulkFilter; upTo: number };

export type WorkflowChange = { kind: 'status'; status: WorkflowStatus } | { kind: 'assignee'; assignee: string | null };

export interface BulkResult {
  /** Rows changed (each with its history entry). */
  changed: number;
  /** Rows selected that were already so. */
  unchanged: number;
}

export interface BulkPreview {
  count: number;
  /** The row id bound the apply call must carry. */
  upTo: number;
}

/** What a store offers the driver: the next rows a filter selects, and one chunk's transaction. */
export interface WorkflowRows {
  /** Up to `limit` row ids the filter selects, id > after and ≤ upTo, ascending. */
  selectIds(filter: BulkFilter, upTo: number, after: number, limit: number): Promise<number[]>;
  /** One transaction: the change on those rows (at most BULK_CHUNK); how many changed and how many exist. */
  applyChunk(ids: number[], change: WorkflowChange, by: string, at: number): Promise<{ changed: number; found: number }>;
}

/** One entry of an alert's workflow history (store/workflow.ts): a status change, a note or an assignee. */
export interface HistoryEntry {
  kind: 'status' | 'note' | 'assignee';
  /** The new status (kind status), else the alert's status when the entry was written. */
  status: string;
  by: string | null;
  at: string;
  /** The note's text (kind note) or the assignee (kind assignee; null: cleared). */
  value?: string | null;
}

/** A history row as both stores read it (times as ms, or as the text PostgreSQL gives a bigint). */
export function historyEntry(h: { kind: string; status: string; by: string | null; at: number | string; value: string | null }): HistoryEntry {
  const kind = h.kind === 'note' || h.kind === 'assignee' ? h.kind : 'status';
  return { kind, status: h.status, by: h.by, at: new Date(Number(h.at)).toISOString(), ...(kind === 'status' ? {} : { value: h.value }) };
}

/**
 * Applies `change` to the selection, BULK_CHUNK rows per transaction, yielding to the event loop
 * between chunks. Rows are taken in id order; a filter's rows are read a chunk at a time, so a
 * row that stops matching meanwhile (someone closed it) is simply not selected.
 */
export async function applyBulk(rows: WorkflowRows, sel: BulkSelection, change: WorkflowChange, by: string, at = Date.now()): Promise<BulkResult> {
  const out: BulkResult = { changed: 0, unchanged: 0 };
  const apply = async (ids: number[]) => {
    const r = await rows.applyChunk(ids, change, by, at);
    out.changed += r.changed;
    out.unchanged += r.found - r.changed;
    await new Promise<void>((resolve) => setImmediate(resolve));
  };
  if ('ids' in sel) {
    const ids = [...new Set(sel.ids)].sort((a, b) => a - b);
    for (let i = 0; i < ids.length; i += BULK_CHUNK) await apply(ids.slice(i, i + BULK_CHUNK));
    return out;
  }
  let after = 0;
  for (;;) {
    const ids = await rows.selectIds(sel.filter, sel.upTo, after, BULK_CHUNK);
    if (ids.length === 0) return out;
    await apply(ids);
    after = ids.at(-1)!;
    if (ids.length < BULK_CHUNK) return out;
  }
}

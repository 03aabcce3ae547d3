// The request bodies of the workflow (#22 items 1, 3, 8): bulk preview and apply, a note, an
// assignee. One reading for the admin API (api.ts) and the dashboard (web.ts); each turns a
// WorkflowInputError into a 400 carrying its code. The filter itself is read by the caller's own
// query parser (the API's /api/alerts parameters, the dashboard's list parameters), so a bulk
// selection is the very filter the list and the export were given.
import type { WorkflowStatus } from '../../shared/ecs.js';
import { LdgError } from '../../shared/errors.js';
import { ASSIGNEE_MAX_CHARS, BULK_MAX_IDS, NOTE_MAX_CHARS, type BulkFilter, type WorkflowChange } from './store/workflow.js';

/** The refusals of a workflow request (docs/errors.md), each a 400. */
type WorkflowCode = 'LDG_ERR_WORKFLOW_ACTION' | 'LDG_ERR_WORKFLOW_ASSIGNEE' | 'LDG_ERR_WORKFLOW_BODY' | 'LDG_ERR_WORKFLOW_FILTER'
  | 'LDG_ERR_WORKFLOW_NOTE_LENGTH' | 'LDG_ERR_WORKFLOW_PREVIEW' | 'LDG_ERR_WORKFLOW_TOO_MANY';

export class WorkflowInputError extends LdgError {
  constructor(code: WorkflowCode, readonly detail: string) {
    super(code, detail);
  }
}

/** What the bulk actions do. */
export const BULK_ACTIONS: Readonly<Record<string, WorkflowStatus | 'assign'>> = { acknowledge: 'acknowledged', close: 'closed', reopen: 'open', assign: 'assign' };

/** Bytes a bulk body may have: BULK_MAX_IDS keys of ~60 characters, quoted. */
export const BULK_MAX_BODY = 1024 * 1024;

/** A filter's parameters as the caller's query parser reads them (strings, as in a URL). */
export type FilterParser = (params: URLSearchParams) => BulkFilter;

function fail(code: WorkflowCode, message: string): never {
  throw new WorkflowInputError(code, message);
}

function onlyKeys(body: Record<string, unknown>, allowed: readonly string[], shape: string): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length > 0) fail('LDG_ERR_WORKFLOW_BODY', `unknown field ${extra.map((k) => JSON.stringify(k)).join(', ')}; send ${shape}`);
}

function readFilter(v: unknown, parse: FilterParser): BulkFilter {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail('LDG_ERR_WORKFLOW_BODY', 'filter must be an object of the list\'s filters, e.g. {"status": "open", "host": "web-1"}');
  const params = new URLSearchParams();
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') fail('LDG_ERR_WORKFLOW_BODY', `filter.${k} must be a string, as in the list's URL`);
    // Free text selects through a search index that lags ingest (SQLite) and is read a page at a
    // time: a bulk change must select exactly what it counted, so it takes the columns only.
    if (k === 'q') fail('LDG_ERR_WORKFLOW_FILTER', 'a bulk change by filter takes host, rule, severity, status and the time range, not free text (q); select the search results on the page instead');
    if (['limit', 'cursor', 'before'].includes(k)) fail('LDG_ERR_WORKFLOW_FILTER', `filter.${k}: a bulk change selects every alert the filters match, not a page`);
    params.set(k, val);
  }
  return parse(params);
}

/** POST …/bulk/preview: {"filter": {…}} */
export function parsePreview(body: Record<string, unknown>, parse: FilterParser): BulkFilter {
  onlyKeys(body, ['filter'], '{"filter": {...the list\'s filters}}');
  return readFilter(body.filter ?? {}, parse);
}

export function parseAssignee(v: unknown): string | null {
  if (v === null) return null;
  if (typeof v !== 'string') fail('LDG_ERR_WORKFLOW_ASSIGNEE', 'assignee must be a login name (text) or null to clear it');
  const name = v.trim();
  if (name === '') return null;
  if (name.length > ASSIGNEE_MAX_CHARS || /\p{Cc}/u.test(name)) fail('LDG_ERR_WORKFLOW_ASSIGNEE', `assignee must be 1-${ASSIGNEE_MAX_CHARS} characters without control characters`);
  return name;
}

export interface BulkRequest {
  change: WorkflowChange;
  /** Keys or uuids (the API's ids), or undefined for a filter. */
  ids?: string[];
  filter?: BulkFilter;
  upTo?: number;
}

/** POST …/bulk: {"action", "assignee"?, "ids": [...]} or {"action", "assignee"?, "filter": {...}, "upTo": n}. */
export function parseBulk(body: Record<string, unknown>, parse: FilterParser): BulkRequest {
  const shape = `{"action": one of ${Object.keys(BULK_ACTIONS).join(', ')}, "ids": [...]} or {"action", "filter": {...}, "upTo": the preview's upTo}; "assign" takes "assignee" too`;
  onlyKeys(body, ['action', 'assignee', 'ids', 'filter', 'upTo'], shape);
  const to = typeof body.action === 'string' ? BULK_ACTIONS[body.action] : undefined;
  if (to === undefined) fail('LDG_ERR_WORKFLOW_ACTION', `action ${JSON.stringify(body.action ?? null)} is not one of ${Object.keys(BULK_ACTIONS).join(', ')}`);
  if (to !== 'assign' && 'assignee' in body) fail('LDG_ERR_WORKFLOW_BODY', `assignee goes with "action": "assign" only; send ${shape}`);
  if (to === 'assign' && !('assignee' in body)) fail('LDG_ERR_WORKFLOW_ASSIGNEE', '"action": "assign" needs "assignee": a login name, or null to clear it');
  const change: WorkflowChange = to === 'assign' ? { kind: 'assignee', assignee: parseAssignee(body.assignee) } : { kind: 'status', status: to };
  if ((body.ids === undefined) === (body.filter === undefined)) fail('LDG_ERR_WORKFLOW_BODY', `give either ids or filter; send ${shape}`);
  if (body.ids !== undefined) {
    if (!Array.isArray(body.ids) || body.ids.some((id) => typeof id !== 'string' || id === '' || id.length > 256)) fail('LDG_ERR_WORKFLOW_BODY', 'ids must be an array of alert keys or uuids (strings of 1-256 characters)');
    if (body.ids.length > BULK_MAX_IDS) fail('LDG_ERR_WORKFLOW_TOO_MANY', `${body.ids.length} ids: at most ${BULK_MAX_IDS} per call; split the list, or select by filter`);
    if ('upTo' in body) fail('LDG_ERR_WORKFLOW_BODY', 'upTo goes with a filter only');
    return { change, ids: body.ids as string[] };
  }
  if (!Number.isSafeInteger(body.upTo) || (body.upTo as number) < 0) {
    fail('LDG_ERR_WORKFLOW_PREVIEW', 'a change by filter needs "upTo" from its preview (POST …/bulk/preview): alerts that arrived after the count was shown are left alone');
  }
  return { change, filter: readFilter(body.filter, parse), upTo: body.upTo as number };
}

/** POST …/:id/notes: {"text"} */
export function parseNote(body: Record<string, unknown>): string {
  onlyKeys(body, ['text'], '{"text": "..."}');
  if (typeof body.text !== 'string' || body.text.trim() === '') fail('LDG_ERR_WORKFLOW_BODY', 'send {"text": "..."}: a note is non-empty text');
  if (body.text.length > NOTE_MAX_CHARS) fail('LDG_ERR_WORKFLOW_NOTE_LENGTH', `the note has ${body.text.length} characters; at most ${NOTE_MAX_CHARS}: shorten it, or attach the rest elsewhere and link it`);
  return body.text;
}

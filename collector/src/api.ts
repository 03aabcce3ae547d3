// The collector's HTTP API, on the same port as the agents' WebSocket:
//
//   GET   /healthz               no auth: {"status":"ok"} while the database answers (503 otherwise)
//   GET   /metrics               no auth: Prometheus text format
//   GET   /api/alerts            newest first: ?limit=&since=&until=&host=&rule=&severity=&status=&before=&q=&of=&key= (q: free text, 3+ characters;
//                                  of and key: the members of a group, see /api/alerts/groups)
//                                → {"alerts":[ECS documents], "next": cursor for ?before= | null}
//   GET   /api/alerts/export     ?format=ndjson|csv and the filters of /api/alerts but limit: every alert
//                                  they select, newest first, streamed (export.ts): NDJSON the documents,
//                                  CSV the columns time, severity, rule, host, file, hash, executable,
//                                  pid, user, status (cells a spreadsheet would run defused with ')
//   GET   /api/alerts/groups     ?by=rule|host|hash|executable|package|sender&order=last|count&limit=&offset= and the
//                                  filters of /api/alerts but before → {"by", "order", "groups": [{key, count, heldBack,
//                                  firstSeen, lastSeen}], "next": offset | null} (store/groups.ts); a group's members
//                                  are /api/alerts?of=BY&key=KEY (no key: the group of alerts without one)
//   GET   /api/alerts/live       server-sent events: each alert as it is stored, by this collector or
//                                  another over the same database (`data: document`); a client that
//                                  does not read is cut off (it reconnects and pages /api/alerts)
//   GET   /api/alerts/:id        → {"alert": document, "key": "ots~uuid", "matches": [keys], "history": [{kind,
//                                  status, by, at, value?}]}; :id is a key (one alert) or a uuid (every alert
//                                  carrying it, newest first; the history is the first's)
//   PATCH /api/alerts/:id        {"status":"acknowledged"} → {"alert": document, "key"}, recording who and
//                                  when; a uuid that several alerts share gets 409 with their keys
//   PATCH /api/alerts/:id        {"assignee": "login" | null} → the same: sets or clears the assignee (last writer wins)
//   POST  /api/alerts/:id/notes  {"text"} (at most 4,000 characters) → 201 {"ok": true}: a note in the alert's history
//   POST  /api/alerts/bulk/preview  {"filter": {host, rule, severity, status, since as in /api/alerts}}
//                                → {"count", "upTo"}: how many alerts the filter selects now, and the row id bound
//   POST  /api/alerts/bulk       {"action": acknowledge|close|reopen|assign, "assignee"?, "ids": [keys or uuids]}
//                                  (at most 10,000) or {"action", "filter", "upTo": the preview's} → {"changed",
//                                  "unchanged", "missing": [ids that named no alert]}; 1,000 rows per transaction,
//                                  each changed row's history says who and when (store/workflow.ts)
//   GET   /api/agents            → {"agents":[...]}
//   GET   /api/quarantine        invalid alerts the agents sent, newest first: ?limit=&agent=&before=
//                                → {"quarantine":[{id, agentId, tokenName, seq, uuid, reason, text, size, truncated, received}], "next": id | null}
//
// Every /api call needs `Authorization: Bearer <admin token>`; anything else gets 401. Errors are
// {"error":{"code":"LDG_ERR_…","message":"… what to do"}}. Other paths are offered to the handlers
// in `extra` (the dashboard mounts its pages there), then 404.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDuration } from '../../shared/duration.js';
import type { Severity, WorkflowStatus } from '../../shared/ecs.js';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Ingest } from './ingest.js';
import { EXPORT_FORMATS, EXPORT_PAGE, streamExport, type ExportFormat } from './export.js';
import { Metrics } from './metrics.js';
import { GROUP_BYS, isGroupBy } from './store/group-keys.js';
import { GROUP_ORDERS, MAX_GROUPS, type GroupQuery } from './store/groups.js';
import { stampedDoc, type AlertQuery, type AlertRow, type Store, type TokenInfo } from './store/store.js';
import type { BulkFilter } from './store/workflow.js';
import { BULK_MAX_BODY, WorkflowInputError, parseAssignee, parseBulk, parseNote, parsePreview } from './workflow-input.js';

/** Serves a request it knows and returns true, or returns false to let the next one try. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;

export interface ApiContext {
  store: Store;
  metrics: Metrics;
  ingest: Ingest;
  log: Logger;
  version: string;
  /** Agent ids with an open connection to this collector now. */
  connectedAgents: () => Set<string>;
  connections: () => number;
}

const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
const STATUSES: readonly WorkflowStatus[] = ['open', 'acknowledged', 'closed'];
const QUERY_KEYS = ['limit', 'since', 'until', 'host', 'rule', 'severity', 'status', 'before', 'q', 'of', 'key'];
const GROUP_KEYS = ['by', 'order', 'offset'];
/** Bytes a live client may leave unread before it is cut off. */
const LIVE_MAX_BUFFERED = 2 * 1024 * 1024;
/** A comment this often keeps proxies from closing an idle live stream. */
const LIVE_KEEPALIVE_MS = 15_000;
const MAX_BODY = 16 * 1024;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = h && /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}

export function sendJson(res: ServerResponse, status: number, body: string | object, extra: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}): void {
  sendJson(res, status, { error: { code, message } }, extra);
}

async function readBody(req: IncomingMessage, max = MAX_BODY): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, 'LDG_ERR_API_BODY', `request body over ${max} bytes; send only what the call takes (see the API's list)`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function list<T extends string>(value: string, name: string, allowed: readonly T[]): T[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of items) {
    if (!(allowed as readonly string[]).includes(s)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `${name}=${s} is not one of ${allowed.join(', ')}`);
  }
  return items as T[];
}

/** ?since= takes an ISO 8601 time or a duration back from now (15m, 2h, 7d). */
function parseSince(value: string): number {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d)?$/.test(value)) return Date.now() - parseDuration(value, 'since');
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `since=${value} is neither an ISO 8601 time (2024-05-01T12:00:00Z) nor a duration (15m, 2h, 7d)`);
  return t;
}

export function parseAlertQuery(params: URLSearchParams): AlertQuery {
  for (const k of params.keys()) {
    if (!QUERY_KEYS.includes(k)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `unknown parameter ${k}; /api/alerts takes ${QUERY_KEYS.join(', ')}`);
  }
  const q: AlertQuery = { limit: DEFAULT_LIMIT };
  const limit = params.get('limit');
  if (limit !== null) {
    const n = Number(limit);
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_LIMIT) throw new HttpError(400, 'LDG_ERR_API_QUERY', `limit=${limit}: give a whole number from 1 to ${MAX_LIMIT}`);
    q.limit = n;
  }
  const since = params.get('since');
  if (since !== null) q.since = parseSince(since);
  const until = params.get('until');
  if (until !== null) {
    // An end is a point in time: a duration back from now is since's.
    const t = Date.parse(until);
    if (Number.isNaN(t)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `until=${until} is not an ISO 8601 time (2024-05-01T12:00:00Z)`);
    q.until = t;
  }
  for (const k of ['host', 'rule', 'before'] as const) {
    const v = params.get(k);
    if (v === null) continue;
    if (v === '' || v.length > 256) throw new HttpError(400, 'LDG_ERR_API_QUERY', `${k} must be 1-256 characters`);
    q[k] = v;
  }
  const text = params.get('q');
  if (text !== null) {
    // Three characters at least: what a trigram index (PostgreSQL) can look up.
    if (text.length < 3 || text.length > 256) throw new HttpError(400, 'LDG_ERR_API_QUERY', 'q (free text) must be 3-256 characters');
    q.text = text;
  }
  const of = params.get('of');
  const key = params.get('key');
  if (of !== null) {
    if (!isGroupBy(of)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `of=${of} is not one of ${GROUP_BYS.join(', ')}`);
    if (key !== null && key.length > 1024) throw new HttpError(400, 'LDG_ERR_API_QUERY', 'key must be at most 1024 characters');
    q.of = { by: of, key };
  } else if (key !== null) throw new HttpError(400, 'LDG_ERR_API_QUERY', 'key needs of (the grouping it is a key of): ?of=host&key=web-01');
  const severity = params.get('severity');
  if (severity !== null) q.severity = list(severity, 'severity', SEVERITIES);
  const status = params.get('status');
  if (status !== null) q.status = list(status, 'status', STATUSES);
  return q;
}

/** A JSON object body, or 400. */
async function readObject(req: IncomingMessage, max = MAX_BODY): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req, max));
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'LDG_ERR_API_BODY', 'body is not JSON');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'LDG_ERR_API_BODY', 'body must be a JSON object');
  return body as Record<string, unknown>;
}

/** A bulk filter in /api/alerts' terms (the export's too): host, rule, severity, status, since, until, a group's members. */
function apiFilter(params: URLSearchParams): BulkFilter {
  const { host, rule, severity, status, since, until, of } = parseAlertQuery(params);
  return { host, rule, severity, status, since, until, of };
}

/** GET /api/alerts/groups: `by`, `order`, `limit` (groups), `offset`, and the list's filters. */
export function parseGroupQuery(params: URLSearchParams): GroupQuery {
  const rest = new URLSearchParams();
  for (const [k, v] of params) {
    if (GROUP_KEYS.includes(k) || k === 'limit') continue;
    if (k === 'before') throw new HttpError(400, 'LDG_ERR_API_QUERY', 'groups are paged by offset (the "next" of the previous page), not before');
    if (!QUERY_KEYS.includes(k)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `unknown parameter ${k}; /api/alerts/groups takes ${[...GROUP_KEYS, ...QUERY_KEYS.filter((x) => x !== 'before')].join(', ')}`);
    rest.append(k, v);
  }
  const by = params.get('by');
  if (by === null || !isGroupBy(by)) throw new HttpError(400, 'LDG_ERR_API_GROUP_BY', `by=${by ?? ''}: give by=${GROUP_BYS.join('|')}`);
  const order = params.get('order') ?? 'last';
  if (!(GROUP_ORDERS as readonly string[]).includes(order)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `order=${order}: give order=last (newest last seen first) or order=count (largest first)`);
  const whole = (k: string, dflt: number, min: number, max: number) => {
    const v = params.get(k);
    if (v === null) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new HttpError(400, 'LDG_ERR_API_QUERY', `${k}=${v}: give a whole number from ${min} to ${max}`);
    return n;
  };
  const { limit: _l, text, ...filters } = parseAlertQuery(rest);
  return {
    ...filters, ...(text !== undefined ? { text: [text] } : {}),
    by, order: order as GroupQuery['order'], limit: whole('limit', DEFAULT_LIMIT, 1, MAX_GROUPS), offset: whole('offset', 0, 0, 1_000_000),
  };
}

export class Api {
  /** Handlers tried, in order, for paths the API does not own (the dashboard's pages). */
  readonly extra: HttpHandler[] = [];

  constructor(private readonly ctx: ApiContext) {}

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.route(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (!res.headersSent) sendError(res, err.status, err.code, err.message);
        return;
      }
      if (err instanceof WorkflowInputError) {
        if (!res.headersSent) sendError(res, 400, err.code, err.detail);
        return;
      }
      if (err instanceof LdgError && err.code === 'LDG_ERR_USAGE') {
        if (!res.headersSent) sendError(res, 400, 'LDG_ERR_API_QUERY', err.message);
        return;
      }
      this.ctx.log.error({ err: errorMessage(err), method: req.method, url: req.url }, 'API request failed');
      if (!res.headersSent) sendError(res, 500, 'LDG_ERR_INTERNAL', 'internal error; see the collector log');
      else res.destroy();
    });
  }

  /**
   * Streams the alerts stored from now on (ingest 'stored': this collector's, and other
   * collectors' over PostgreSQL) until the client goes. It listens only while a client is there.
   */
  private live(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write(': ldguard live alerts\n\n');
    const stop = () => {
      this.ctx.ingest.off('stored', onStored);
      clearInterval(keepAlive);
    };
    const onStored = (rows: AlertRow[]) => {
      if (res.writableLength > LIVE_MAX_BUFFERED) {
        stop();
        res.destroy();
        return;
      }
      for (const r of rows) {
        try {
          res.write(`data: ${stampedDoc(r)}\n\n`);
        } catch {
          // A document that is not JSON (never stored by this build): left to GET /api/alerts.
        }
      }
    };
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), LIVE_KEEPALIVE_MS);
    this.ctx.ingest.on('stored', onStored);
    req.socket.setTimeout(0);
    res.on('close', stop);
  }

  /** The admin token of the request, or undefined (an agent token is not enough). */
  private admin(req: IncomingMessage): TokenInfo | undefined {
    const token = bearer(req);
    const info = token ? this.ctx.store.lookupToken(token) : undefined;
    return info && info.revoked === null && info.role === 'admin' ? info : undefined;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://collector');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const { store } = this.ctx;

    if (path === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      const ok = await store.healthy();
      sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'degraded', version: this.ctx.version, db: ok ? 'ok' : 'unavailable', connections: this.ctx.connections() });
      return;
    }
    if (path === '/metrics') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      const fleet = await store.fleet();
      const mem = process.memoryUsage();
      const text = this.ctx.metrics.render({
        ldguard_collector_connections: { help: 'Agent connections open now.', value: this.ctx.connections() },
        ldguard_collector_agents_online: { help: 'Agents heard from within their heartbeat allowance.', value: fleet.online },
        ldguard_collector_agents_offline: { help: 'Agents that missed their heartbeats.', value: fleet.offline },
        ldguard_collector_agents_spool_depth: { help: 'Alerts waiting in agents\' spools, as last reported (sum over agents).', value: fleet.spoolDepth },
        ldguard_collector_agents_events_lost: { help: 'Kernel events agents reported lost (sum over agents).', value: fleet.eventsLost },
        ldguard_collector_agents_spool_overflow: { help: 'Alerts agents refused because their spool was full (sum over agents).', value: fleet.spoolOverflow },
        ldguard_collector_ingest_pending_alerts: { help: 'Alerts received and waiting for a commit.', value: this.ctx.ingest.pendingAlerts },
        ldguard_collector_ingest_pending_bytes: { help: 'Bytes of alert documents received and waiting for a commit.', value: this.ctx.ingest.pendingBytes },
        ldguard_collector_resident_memory_bytes: { help: 'Resident memory of the collector process (RSS).', value: mem.rss },
        ldguard_collector_heap_used_bytes: { help: 'JavaScript heap in use (main thread).', value: mem.heapUsed },
        ldguard_collector_heap_total_bytes: { help: 'JavaScript heap reserved (main thread): what the garbage collector has not returned.', value: mem.heapTotal },
        ldguard_collector_buffers_bytes: { help: 'Memory of Buffers and ArrayBuffers (frames received, documents on their way to the writer).', value: mem.arrayBuffers },
        ldguard_collector_quarantine_alerts: { help: 'Invalid alerts kept in the quarantine now (GET /api/quarantine).', value: await store.quarantineCount() },
      }, this.ctx.version);
      const spared = Metrics.labeled('ldguard_collector_excepted_events', 'Events an exception list item spared (recorded, paging no one), per rule and item, summed over the agents\' counts since each started.',
        (await store.exceptionCounts()).map((e) => ({ labels: { rule_id: e.ruleId, list_id: e.listId, item_id: e.itemId }, value: e.count })));
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
      res.end(text + spared);
      return;
    }
    if (path === '/api' || path.startsWith('/api/')) {
      const who = this.admin(req);
      if (!who) {
        this.ctx.metrics.authFailures += 1;
        this.ctx.log.warn({ method, path, remote: req.socket.remoteAddress, token: bearer(req) ? 'not an active admin token' : 'none' }, 'API call refused (401)');
        sendError(res, 401, 'LDG_ERR_AUTH', 'this API needs Authorization: Bearer <admin token>; create one with `ldguard token create --db FILE --name NAME --role admin`', { 'www-authenticate': 'Bearer realm="ldguard"' });
        return;
      }
      await this.apiRoute(req, res, url, method, who);
      return;
    }
    for (const h of this.extra) if (await h(req, res, url)) return;
    sendError(res, 404, 'LDG_ERR_API_NOT_FOUND', `no such page: ${path}; the API is under /api (alerts, agents)`);
  }

  private async apiRoute(req: IncomingMessage, res: ServerResponse, url: URL, method: string, who: TokenInfo): Promise<void> {
    const { store } = this.ctx;
    const path = url.pathname;
    if (path === '/api/alerts') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      const q = parseAlertQuery(url.searchParams);
      const page = await store.queryAlerts(q);
      if (!page) throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `before=${q.before}: not a cursor and no alert has that uuid; pass the "next" value of the previous page`);
      // The documents are stored as JSON text: join them rather than parse and re-serialise.
      sendJson(res, 200, `{"alerts":[${page.docs.join(',')}],"next":${JSON.stringify(page.next)}}`);
      return;
    }
    if (path === '/api/alerts/export') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      const params = new URLSearchParams(url.searchParams);
      const format = params.get('format') ?? '';
      if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `format=${format}: give format=ndjson or format=csv`);
      params.delete('format');
      if (params.has('limit')) throw new HttpError(400, 'LDG_ERR_API_QUERY', 'an export has no limit: it streams every alert the filters select; narrow it with since, host, rule, severity, status or q');
      const { limit: _limit, ...q } = parseAlertQuery(params);
      const n = await streamExport((cursor) => store.queryAlerts({ ...q, limit: EXPORT_PAGE, ...(cursor !== undefined ? { before: cursor } : {}) }), format as ExportFormat, res);
      if (n === undefined) throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `before=${q.before}: not a cursor and no alert has that uuid; pass the "next" value of a page`);
      this.ctx.log.info({ format, alerts: n, by: who.name }, 'alerts exported');
      return;
    }
    if (path === '/api/alerts/groups') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      sendJson(res, 200, await store.alertGroups(parseGroupQuery(url.searchParams)));
      return;
    }
    if (path === '/api/alerts/live') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      this.live(req, res);
      return;
    }
    if (path === '/api/alerts/bulk/preview') {
      if (method !== 'POST') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use POST`);
      sendJson(res, 200, await store.previewBulk(parsePreview(await readObject(req), apiFilter)));
      return;
    }
    if (path === '/api/alerts/bulk') {
      if (method !== 'POST') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use POST`);
      const b = parseBulk(await readObject(req, BULK_MAX_BODY), apiFilter);
      const resolved = b.ids ? await store.resolveAlertIds(b.ids) : undefined;
      const result = await store.bulkWorkflow(resolved ? { ids: resolved.rows } : { filter: b.filter!, upTo: b.upTo! }, b.change, who.name);
      this.ctx.log.info({ change: b.change, selected: b.ids ? 'ids' : 'filter', ...result, by: who.name }, 'alerts changed in bulk');
      sendJson(res, 200, { ...result, missing: resolved?.missing ?? [] });
      return;
    }
    const notes = /^\/api\/alerts\/([^/]+)\/notes$/.exec(path);
    const one = notes ?? /^\/api\/alerts\/([^/]+)$/.exec(path);
    if (one) {
      let uuid: string;
      try {
        uuid = decodeURIComponent(one[1]!);
      } catch {
        throw new HttpError(400, 'LDG_ERR_API_QUERY', 'the alert id in the path is not valid URL encoding');
      }
      // An id is a key (ots~uuid: one alert) or a uuid (every alert that carries it: events may share one).
      const found = await store.findAlerts(uuid);
      if (found.length === 0) throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `no alert ${uuid}`);
      const keys = JSON.stringify(found.map((f) => f.key));
      const ambiguous = () => new HttpError(409, 'LDG_ERR_API_AMBIGUOUS', `${found.length} alerts carry the uuid ${uuid}; address one by its key (/api/alerts/KEY), one of ${keys}`);
      if (notes) {
        if (method !== 'POST') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use POST`);
        const text = parseNote(await readObject(req));
        if (found.length > 1) throw ambiguous();
        if (!(await store.addNote(found[0]!.id, text, who.name))) throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `no alert ${uuid}`);
        this.ctx.log.info({ alert: found[0]!.key, by: who.name, chars: text.length }, 'alert note added');
        sendJson(res, 201, { ok: true, key: found[0]!.key });
        return;
      }
      if (method === 'GET') {
        const history = JSON.stringify(await store.alertHistory(found[0]!.id));
        sendJson(res, 200, `{"alert":${found[0]!.doc},"key":${JSON.stringify(found[0]!.key)},"matches":${keys},"history":${history}}`);
        return;
      }
      if (method === 'PATCH') {
        let body: unknown;
        try {
          body = JSON.parse(await readBody(req));
        } catch (err) {
          if (err instanceof HttpError) throw err;
          throw new HttpError(400, 'LDG_ERR_API_BODY', 'body is not JSON; send {"status": "acknowledged"}');
        }
        const b = body as Record<string, unknown> | null;
        if (b && typeof b === 'object' && !Array.isArray(b) && Object.keys(b).length === 1 && 'assignee' in b) {
          const assignee = parseAssignee(b.assignee);
          if (found.length > 1) throw ambiguous();
          const r = await store.bulkWorkflow({ ids: [found[0]!.id] }, { kind: 'assignee', assignee }, who.name);
          this.ctx.log.info({ alert: found[0]!.key, assignee, by: who.name, changed: r.changed }, 'alert assignee set');
          const after = await store.findAlerts(found[0]!.key);
          sendJson(res, 200, `{"alert":${after[0]?.doc ?? found[0]!.doc},"key":${JSON.stringify(found[0]!.key)}}`);
          return;
        }
        if (!b || typeof b !== 'object' || Array.isArray(b) || Object.keys(b).some((k) => k !== 'status') || !STATUSES.includes(b.status as WorkflowStatus)) {
          throw new HttpError(400, 'LDG_ERR_API_BODY', `send {"status": one of ${STATUSES.join(', ')}} or {"assignee": "login" | null}`);
        }
        if (found.length > 1) throw ambiguous();
        const doc = await store.setStatus(found[0]!.id, b.status as WorkflowStatus, who.name);
        if (!doc) throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `no alert ${uuid}`);
        this.ctx.log.info({ alert: found[0]!.key, status: b.status, by: who.name }, 'alert workflow status changed');
        sendJson(res, 200, `{"alert":${doc},"key":${JSON.stringify(found[0]!.key)}}`);
        return;
      }
      throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET or PATCH`);
    }
    if (path === '/api/agents') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      const connected = this.ctx.connectedAgents();
      sendJson(res, 200, { agents: (await store.listAgents()).map((a) => ({ ...a, connected: connected.has(a.agentId) })) });
      return;
    }
    if (path === '/api/quarantine') {
      if (method !== 'GET') throw new HttpError(405, 'LDG_ERR_API_METHOD', `${method} ${path}: use GET`);
      for (const k of url.searchParams.keys()) {
        if (!['limit', 'agent', 'before'].includes(k)) throw new HttpError(400, 'LDG_ERR_API_QUERY', `unknown parameter ${k}; /api/quarantine takes limit, agent, before`);
      }
      const num = (k: string, max: number, dflt: number) => {
        const v = url.searchParams.get(k);
        if (v === null) return dflt;
        const n = Number(v);
        if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new HttpError(400, 'LDG_ERR_API_QUERY', `${k}=${v}: give a whole number from 1 to ${max}`);
        return n;
      };
      const limit = num('limit', MAX_LIMIT, DEFAULT_LIMIT);
      const agent = url.searchParams.get('agent') ?? undefined;
      const rows = await store.listQuarantine({ limit: limit + 1, agentId: agent, before: num('before', Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) });
      const more = rows.length > limit;
      if (more) rows.pop();
      sendJson(res, 200, { quarantine: rows, next: more ? rows.at(-1)!.id : null });
      return;
    }
    throw new HttpError(404, 'LDG_ERR_API_NOT_FOUND', `no such API: ${method} ${path}; see GET /api/alerts, /api/agents, /api/quarantine`);
  }
}

// The collector's dashboard, on the collector's own port (mounted through Api.extra and
// CollectorServer.addUpgradeHandler):
//
//   GET   /  and /ui/*.{js,css,svg}      the page (collector/web, built by `npm run build`)
//   POST  /ui/login                      {"token"} or {"name","password"} → session cookie
//   POST  /ui/logout                     ends the session
//   GET   /ui/api/session                → {name, csrf, expires, prefs} (the login's preferences)
//   PUT   /ui/api/prefs                  {"timeZone": "utc"|"local"} → the preferences saved for the login's name
//   GET   /ui/api/alerts                 ?q=&host=&rule=&severity=&status=&since=&until=&cursor=&limit=
//   GET   /ui/api/alerts/groups          ?by=&order=&offset=&limit= and the list's filters → the groups (store/groups.ts);
//                                         the list takes of=BY&key=KEY for a group's members
//   GET   /ui/api/alerts/export          ?format=ndjson|csv and the list's filters (not cursor, limit): a download (export.ts)
//   GET   /ui/api/alerts/:uuid           → {alert, history, guide}
//   PATCH /ui/api/alerts/:uuid           {"status"} or {"assignee": name | null} → the same, recording who (the session's admin) and when
//   POST  /ui/api/alerts/:uuid/notes     {"text"} → the same, the note in the history
//   POST  /ui/api/alerts/bulk/preview    {"filter": the list's filters but q} → {count, upTo}
//   POST  /ui/api/alerts/bulk            {"action", "assignee"?, "ids": [uuids]} or {"action", "filter", "upTo"} → {changed, unchanged, missing}
//   GET   /ui/api/agents | overview | facets
//   WS    /ui/live                       new alerts as they are stored, and the fleet summary
//
// Sessions, not bearer tokens: the page never holds a token in script-readable storage. The cookie
// is HttpOnly, SameSite=Strict, Secure (and __Host-) behind TLS. Every state-changing request also
// needs the session's CSRF token in a header and, when the browser sends an Origin, this origin.
// Every response carries a strict CSP (assets.ts). The page renders alert values as text only.
//
// Storage (web/storage.ts): the SQLite store's file and search database, or the PostgreSQL store's
// database, where every collector serves the same sessions and alerts.
//
// Failure containment: if the search database cannot be opened or indexed, the dashboard logs why
// and goes on without search; the agents' endpoint and the API never depend on any of this.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Severity, WorkflowStatus } from '../../shared/ecs.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { sendJson, type Api } from './api.js';
import { EXPORT_FORMATS, streamExport, type ExportFormat } from './export.js';
import { Auth, LoginLimiter, type Session } from './auth.js';
import type { Ingest } from './ingest.js';
import type { AgentView, Store } from './store/store.js';
import { Assets, securityHeaders } from './web/assets.js';
import { Guides } from './web/guide.js';
import { LIVE_PATH, LiveFeed } from './web/live.js';
import { MAX_PAGE, WINDOWS, type ListQuery } from './web/query.js';
import type { DashboardReads } from './web/reads.js';
import { dashboardStorage } from './web/storage.js';
import type { FleetAgent, WebPrefs } from '../web/src/api-types.js';
import type { CredentialStore } from './credentials/store.js';
import type { BulkFilter } from './store/workflow.js';
import { BULK_MAX_BODY, WorkflowInputError, parseAssignee, parseBulk, parseNote, parsePreview } from './workflow-input.js';
import { GROUP_BYS, isGroupBy } from './store/group-keys.js';
import { MAX_GROUPS, type GroupQuery } from './store/groups.js';

export type { FleetAgent };

const MAX_BODY = 8 * 1024;
const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
const STATUSES: readonly WorkflowStatus[] = ['open', 'acknowledged', 'closed'];
const LIST_KEYS = new Set(['q', 'host', 'rule', 'severity', 'status', 'since', 'until', 'cursor', 'limit', 'of', 'key']);
/** Spool depth past which an agent is shown as falling behind. */
const SPOOL_WARN = 1000;

class WebError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export interface DashboardOptions {
  store: Store;
  ingest: Ingest;
  log: Logger;
  tls: boolean;
  version: string;
  connectedAgents: () => Set<string>;
}


function obj(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

const strOrNull = (v: unknown) => (typeof v === 'string' ? v : null);

export function fleetAgent(a: AgentView, connected: boolean): FleetAgent {
  const facts = obj(a.facts);
  const health = obj(a.health);
  const host = obj(facts?.host);
  const os = obj(host?.os);
  const source = (obj(health?.source) ?? obj(facts?.source)) as FleetAgent['source'] | undefined;
  const attribution = (obj(health?.attribution) ?? obj(facts?.attribution)) as FleetAgent['attribution'] | undefined;
  const problems: FleetAgent['problems'] = [];
  if (!a.online) problems.push({ level: 'error', text: 'offline: missed its heartbeats' });
  if (source?.degraded) problems.push({ level: 'warn', text: `source ${source.name ?? '?'} degraded${source.reason ? `: ${source.reason}` : ''}` });
  if (attribution?.degraded) problems.push({ level: 'warn', text: `attribution degraded${attribution.reason ? `: ${attribution.reason}` : ''}` });
  if ((a.eventsLost ?? 0) > 0) problems.push({ level: 'warn', text: `${a.eventsLost} kernel events lost` });
  if ((a.spoolOverflow ?? 0) > 0) problems.push({ level: 'error', text: `${a.spoolOverflow} alerts refused: spool full` });
  if ((a.spoolDepth ?? 0) > SPOOL_WARN) problems.push({ level: 'warn', text: `${a.spoolDepth} alerts waiting in the spool` });
  const rules = obj(facts?.rules);
  return {
    agentId: a.agentId,
    hostname: a.hostname,
    version: a.version,
    online: a.online,
    connected,
    firstSeen: a.firstSeen,
    lastSeen: a.lastSeen,
    heartbeatMs: a.heartbeatMs,
    os: os ? [strOrNull(os.name), strOrNull(os.version)].filter(Boolean).join(' ') || null : null,
    kernel: strOrNull(os?.kernel),
    architecture: strOrNull(host?.architecture),
    source: source ?? null,
    attribution: attribution ?? null,
    rules: typeof rules?.count === 'number' ? rules.count : null,
    spoolDepth: a.spoolDepth,
    spoolOverflow: a.spoolOverflow,
    eventsLost: a.eventsLost,
    uptimeSec: typeof health?.uptimeSec === 'number' ? health.uptimeSec : null,
    problems,
  };
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

async function readJson(req: IncomingMessage, max = MAX_BODY): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new WebError(415, 'LDG_ERR_WEB_BODY', 'send the body as application/json');
  }
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new WebError(413, 'LDG_ERR_WEB_BODY', `request body over ${max} bytes`);
    chunks.push(chunk);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new WebError(400, 'LDG_ERR_WEB_BODY', 'the body is not JSON');
  }
  const o = obj(v);
  if (!o) throw new WebError(400, 'LDG_ERR_WEB_BODY', 'the body must be a JSON object');
  return o;
}

/** ms since the epoch from an ISO 8601 time or a number of ms. */
function parseTime(v: string, name: string): number {
  const t = /^\d{1,16}$/.test(v) ? Number(v) : Date.parse(v);
  if (Number.isNaN(t)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `${name}=${v} is not an ISO 8601 time`);
  return t;
}

export function parseListQuery(p: URLSearchParams): ListQuery {
  for (const k of p.keys()) if (!LIST_KEYS.has(k)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `unknown parameter ${k}`);
  const q: ListQuery = { limit: 50 };
  const get = (k: string, max = 256) => {
    const v = p.get(k);
    if (v === null || v === '') return undefined;
    if (v.length > max) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `${k} is longer than ${max} characters`);
    return v;
  };
  const limit = get('limit');
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_PAGE) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `limit must be 1-${MAX_PAGE}`);
    q.limit = n;
  }
  const text = get('q', 200);
  if (text !== undefined) q.q = text;
  const host = get('host');
  if (host !== undefined) q.host = host;
  const rule = get('rule');
  if (rule !== undefined) q.rule = rule;
  const sev = get('severity');
  if (sev !== undefined) {
    if (!SEVERITIES.includes(sev as Severity)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `severity must be one of ${SEVERITIES.join(', ')}`);
    q.severity = sev as Severity;
  }
  const status = get('status');
  if (status !== undefined) {
    if (!STATUSES.includes(status as WorkflowStatus)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `status must be one of ${STATUSES.join(', ')}`);
    q.status = status as WorkflowStatus;
  }
  const since = get('since', 40);
  if (since !== undefined) q.since = parseTime(since, 'since');
  const until = get('until', 40);
  if (until !== undefined) q.until = parseTime(until, 'until');
  const cursor = get('cursor', 40);
  if (cursor !== undefined) q.cursor = cursor;
  const of = get('of');
  // A key may be empty text: only its absence means "the group without a key".
  const key = p.get('key');
  if (of !== undefined) {
    if (!isGroupBy(of)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `of must be one of ${GROUP_BYS.join(', ')}`);
    if (key !== null && key.length > 1024) throw new WebError(400, 'LDG_ERR_WEB_QUERY', 'key is longer than 1024 characters');
    q.of = { by: of, key };
  } else if (key !== null) throw new WebError(400, 'LDG_ERR_WEB_QUERY', 'key needs of (the grouping it is a key of)');
  return q;
}

/** A bulk filter in the list's terms (the export's too), read by the list's own parser. */
function listFilter(params: URLSearchParams): BulkFilter {
  const { host, rule, severity, status, since, until, of } = parseListQuery(params);
  return { host, rule, severity: severity && [severity], status: status && [status], since, until, of };
}

/** /ui/api/alerts/groups: by, order, offset, limit (groups) and the list's filters. */
export function parseGroupListQuery(p: URLSearchParams): GroupQuery {
  const rest = new URLSearchParams();
  for (const [k, v] of p) if (!['by', 'order', 'offset', 'limit', 'cursor'].includes(k)) rest.append(k, v);
  const by = p.get('by') ?? '';
  if (!isGroupBy(by)) throw new WebError(400, 'LDG_ERR_API_GROUP_BY', `by=${by}: give by=${GROUP_BYS.join('|')}`);
  const order = p.get('order') || 'last';
  if (order !== 'last' && order !== 'count') throw new WebError(400, 'LDG_ERR_WEB_QUERY', 'order must be last or count');
  const whole = (k: string, dflt: number, min: number, max: number) => {
    const v = p.get(k);
    if (v === null || v === '') return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `${k} must be ${min}-${max}`);
    return n;
  };
  const l = parseListQuery(rest);
  return {
    by, order, limit: whole('limit', 50, 1, MAX_GROUPS), offset: whole('offset', 0, 0, 1_000_000),
    ...(l.host !== undefined ? { host: l.host } : {}), ...(l.rule !== undefined ? { rule: l.rule } : {}),
    ...(l.severity ? { severity: [l.severity] } : {}), ...(l.status ? { status: [l.status] } : {}),
    ...(l.since !== undefined ? { since: l.since } : {}), ...(l.until !== undefined ? { until: l.until } : {}),
    ...(l.q ? { text: l.q.split(/\s+/).filter(Boolean) } : {}), ...(l.of ? { of: l.of } : {}),
  };
}

/** A PUT /ui/api/prefs body: the whole preferences, nothing else (a typo is refused, not ignored). */
function parsePrefs(body: Record<string, unknown>): WebPrefs {
  if (Object.keys(body).some((k) => k !== 'timeZone') || (body.timeZone !== 'utc' && body.timeZone !== 'local')) {
    throw new WebError(400, 'LDG_ERR_WEB_BODY', 'send {"timeZone": "utc"} or {"timeZone": "local"}');
  }
  return { timeZone: body.timeZone };
}

export class Dashboard {
  readonly live: LiveFeed;
  private readonly assets: Assets;
  private readonly queries: DashboardReads;
  private readonly auth: Auth;
  /** The logins' preferences live with their credentials (same database, same sharing). */
  private readonly creds: CredentialStore;
  private readonly limiter = new LoginLimiter();
  private readonly guides: Guides;
  private readonly headers: Record<string, string>;
  private readonly cookieName: string;

  constructor(private readonly o: DashboardOptions) {
    this.assets = new Assets();
    if (!this.assets.built) o.log.warn('dashboard scripts not built (collector/web/dist): the page asks for `npm run build`');
    const storage = dashboardStorage(o.store, o.log);
    this.queries = storage.reads;
    this.auth = new Auth(storage.credentials);
    this.creds = storage.credentials;
    this.guides = new Guides(o.log);
    this.headers = securityHeaders(o.tls);
    this.cookieName = o.tls ? '__Host-ldg_session' : 'ldg_session';
    this.live = new LiveFeed({
      ingest: o.ingest,
      log: o.log,
      session: async (req) => {
        const c = cookies(req).get(this.cookieName);
        const s = c ? await this.auth.session(c) : undefined;
        return c && s ? { cookie: c, name: s.name } : undefined;
      },
      stillValid: async (c) => Boolean(await this.auth.session(c)),
      sameOrigin: (req) => this.sameOrigin(req, true),
      fleet: () => o.store.fleet(),
    });
  }

  /** Mounts the page and its API on the collector's server. */
  mount(api: Api, addUpgradeHandler: (path: string, h: (req: IncomingMessage, socket: import('node:net').Socket, head: Buffer) => void) => void): void {
    api.extra.push((req, res, url) => this.handle(req, res, url));
    addUpgradeHandler(LIVE_PATH, (req, socket, head) => this.live.handleUpgrade(req, socket, head));
  }

  /** Starts indexing for search and counts where the store needs it (SQLite). */
  start(): void {
    this.queries.start();
  }

  async close(): Promise<void> {
    this.live.close();
    await this.queries.close();
  }

  /** True when the request's Origin (required when `strict`) is this server's own. */
  private sameOrigin(req: IncomingMessage, strict: boolean): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return !strict;
    return origin === `${this.o.tls ? 'https' : 'http'}://${req.headers.host ?? ''}`;
  }

  private send(res: ServerResponse, status: number, body: string | object, extra: Record<string, string> = {}): void {
    sendJson(res, status, body, { ...this.headers, ...extra });
  }

  private async session(req: IncomingMessage): Promise<Session> {
    const s = await this.auth.session(cookies(req).get(this.cookieName));
    if (!s) throw new WebError(401, 'LDG_ERR_WEB_SESSION', 'not logged in, or the session ended; log in again');
    return s;
  }

  /** A state-changing request: same origin and the session's CSRF token in x-ldguard-csrf. */
  private guard(req: IncomingMessage, s: Session): void {
    const got = Buffer.from(String(req.headers['x-ldguard-csrf'] ?? ''));
    const want = Buffer.from(s.csrf);
    if (!this.sameOrigin(req, false) || got.length !== want.length || !timingSafeEqual(got, want)) {
      throw new WebError(403, 'LDG_ERR_WEB_CSRF', 'cross-site request refused; reload the dashboard');
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean | Promise<boolean> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (!path.startsWith('/ui/') && path !== '/' && path !== '/index.html') return false;
    if (!path.startsWith('/ui/api/') && path !== '/ui/login' && path !== '/ui/logout') {
      if (this.assets.serve(path, method, req.headers['if-none-match'], res, this.headers)) return true;
      this.send(res, 404, { error: { code: 'LDG_ERR_WEB_NOT_FOUND', message: `no such page: ${path}` } });
      return true;
    }
    return this.route(req, res, url, path, method).then(
      () => true,
      (err: unknown) => {
        if (err instanceof WorkflowInputError) {
          if (!res.headersSent) this.send(res, 400, { error: { code: err.code, message: err.detail } });
          return true;
        }
        if (err instanceof WebError) {
          if (err.status >= 500) this.o.log.error({ path, err: err.message }, 'dashboard request failed');
          if (!res.headersSent) this.send(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
          return true;
        }
        if (err instanceof RangeError) {
          if (!res.headersSent) this.send(res, 400, { error: { code: 'LDG_ERR_WEB_QUERY', message: err.message } });
          return true;
        }
        this.o.log.error({ path, method, err: errorMessage(err) }, 'dashboard request failed');
        if (!res.headersSent) this.send(res, 500, { error: { code: 'LDG_ERR_INTERNAL', message: 'internal error; see the collector log' } });
        return true;
      },
    );
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: URL, path: string, method: string): Promise<void> {
    const only = (m: string) => {
      if (method !== m) throw new WebError(405, 'LDG_ERR_WEB_METHOD', `${method} ${path}: use ${m}`);
    };
    if (path === '/ui/login') {
      only('POST');
      return this.login(req, res);
    }
    if (path === '/ui/logout') {
      only('POST');
      const s = await this.session(req);
      this.guard(req, s);
      await this.auth.endSession(cookies(req).get(this.cookieName)!);
      this.o.log.info({ user: s.name }, 'dashboard logout');
      return this.send(res, 200, { ok: true }, { 'set-cookie': this.cookie('', 0) });
    }
    const s = await this.session(req);
    if (path === '/ui/api/session') {
      only('GET');
      return this.send(res, 200, { name: s.name, csrf: s.csrf, expires: new Date(s.expires).toISOString(), version: this.o.version, prefs: await this.creds.prefs(s.name) });
    }
    if (path === '/ui/api/prefs') {
      only('PUT');
      this.guard(req, s);
      const prefs = parsePrefs(await readJson(req));
      await this.creds.setPrefs(s.name, prefs, Date.now());
      return this.send(res, 200, prefs);
    }
    if (path === '/ui/api/alerts') {
      only('GET');
      const q = parseListQuery(url.searchParams);
      const page = await this.queries.list(q);
      const lag = q.q ? await this.queries.indexLag() : 0;
      return this.send(res, 200, `{"alerts":[${page.docs.join(',')}],"next":${JSON.stringify(page.next)},"partial":${page.partial},"scanned":${page.scanned},"order":"${page.order}","indexLag":${lag}}`);
    }
    if (path === '/ui/api/alerts/groups') {
      only('GET');
      return this.send(res, 200, await this.o.store.alertGroups(parseGroupListQuery(url.searchParams)));
    }
    if (path === '/ui/api/alerts/export') {
      only('GET');
      const params = new URLSearchParams(url.searchParams);
      const format = params.get('format') ?? '';
      if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `format=${format}: give format=ndjson or format=csv`);
      params.delete('format');
      if (params.has('cursor') || params.has('limit')) throw new WebError(400, 'LDG_ERR_WEB_QUERY', 'an export takes the list\'s filters only (no cursor or limit): it streams every alert they select');
      // The list's own query, paged with its cursor: the download holds what the list shows.
      const l = parseListQuery(params);
      const n = await streamExport((cursor) => this.queries.list({ ...l, limit: MAX_PAGE, ...(cursor !== undefined ? { cursor } : {}) }), format as ExportFormat, res, this.headers);
      this.o.log.info({ format, alerts: n, by: s.name, via: 'dashboard' }, 'alerts exported');
      return;
    }
    if (path === '/ui/api/alerts/bulk/preview') {
      only('POST');
      this.guard(req, s);
      return this.send(res, 200, await this.o.store.previewBulk(parsePreview(await readJson(req), listFilter)));
    }
    if (path === '/ui/api/alerts/bulk') {
      only('POST');
      this.guard(req, s);
      const b = parseBulk(await readJson(req, BULK_MAX_BODY), listFilter);
      const resolved = b.ids ? await this.o.store.resolveAlertIds(b.ids) : undefined;
      const result = await this.o.store.bulkWorkflow(resolved ? { ids: resolved.rows } : { filter: b.filter!, upTo: b.upTo! }, b.change, s.name);
      this.o.log.info({ change: b.change, selected: b.ids ? 'ids' : 'filter', ...result, by: s.name, via: 'dashboard' }, 'alerts changed in bulk');
      return this.send(res, 200, { ...result, missing: resolved?.missing ?? [] });
    }
    const one = /^\/ui\/api\/alerts\/([A-Za-z0-9._:-]{1,128})(\/notes)?$/.exec(path);
    if (one) {
      const uuid = one[1]!;
      const found = async () => {
        const f = await this.o.store.findAlerts(uuid);
        if (f.length > 1) throw new WebError(409, 'LDG_ERR_WEB_AMBIGUOUS', `${f.length} alerts carry the uuid ${uuid}; change them through the API by key (/api/alerts/KEY)`);
        if (!f[0]) throw new WebError(404, 'LDG_ERR_WEB_NOT_FOUND', `no alert ${uuid}`);
        return f[0];
      };
      if (one[2]) {
        only('POST');
        this.guard(req, s);
        const text = parseNote(await readJson(req));
        const a = await found();
        if (!(await this.o.store.addNote(a.id, text, s.name))) throw new WebError(404, 'LDG_ERR_WEB_NOT_FOUND', `no alert ${uuid}`);
        this.o.log.info({ uuid, by: s.name, chars: text.length, via: 'dashboard' }, 'alert note added');
      } else if (method === 'PATCH') {
        this.guard(req, s);
        const body = await readJson(req);
        if (Object.keys(body).length === 1 && 'assignee' in body) {
          const assignee = parseAssignee(body.assignee);
          await this.o.store.bulkWorkflow({ ids: [(await found()).id] }, { kind: 'assignee', assignee }, s.name);
          this.o.log.info({ uuid, assignee, by: s.name, via: 'dashboard' }, 'alert assignee set');
        } else {
          if (Object.keys(body).some((k) => k !== 'status') || !STATUSES.includes(body.status as WorkflowStatus)) {
            throw new WebError(400, 'LDG_ERR_WEB_BODY', `send {"status": one of ${STATUSES.join(', ')}} or {"assignee": name | null}`);
          }
          if (!(await this.o.store.setStatus((await found()).id, body.status as WorkflowStatus, s.name))) throw new WebError(404, 'LDG_ERR_WEB_NOT_FOUND', `no alert ${uuid}`);
          this.o.log.info({ uuid, status: body.status, by: s.name, via: 'dashboard' }, 'alert workflow status changed');
        }
      } else {
        only('GET');
      }
      const a = await this.queries.alert(uuid);
      if (!a) throw new WebError(404, 'LDG_ERR_WEB_NOT_FOUND', `no alert ${uuid}`);
      const ruleId = /"rule_id":"([^"\\]{1,128})"/.exec(a.doc)?.[1];
      return this.send(res, 200, `{"alert":${a.doc},"history":${JSON.stringify(a.history)},"guide":${JSON.stringify(this.guides.for(ruleId))}}`);
    }
    if (path === '/ui/api/agents') {
      only('GET');
      const connected = this.o.connectedAgents();
      const agents = (await this.o.store.listAgents()).map((a) => fleetAgent(a, connected.has(a.agentId)));
      return this.send(res, 200, { now: new Date().toISOString(), agents, summary: await this.o.store.fleet() });
    }
    if (path === '/ui/api/overview') {
      only('GET');
      const w = url.searchParams.get('window') ?? '24h';
      if (!WINDOWS[w]) throw new WebError(400, 'LDG_ERR_WEB_QUERY', `window must be one of ${Object.keys(WINDOWS).join(', ')}`);
      return this.send(res, 200, await this.queries.overview(w));
    }
    if (path === '/ui/api/facets') {
      only('GET');
      return this.send(res, 200, await this.queries.facets());
    }
    throw new WebError(404, 'LDG_ERR_WEB_NOT_FOUND', `no such dashboard API: ${method} ${path}`);
  }

  private cookie(value: string, maxAgeSec: number): string {
    return `${this.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${this.o.tls ? '; Secure' : ''}`;
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const remote = req.socket.remoteAddress ?? 'unknown';
    if (!this.sameOrigin(req, false)) throw new WebError(403, 'LDG_ERR_WEB_CSRF', 'cross-site login refused');
    const wait = this.limiter.take(remote);
    if (wait > 0) {
      this.o.log.warn({ remote, retryAfterSec: wait }, 'dashboard login refused: too many attempts (429)');
      throw new WebError(429, 'LDG_ERR_WEB_RATE', `too many login attempts; try again in ${wait} s`, { 'retry-after': String(wait) });
    }
    const body = await readJson(req);
    let admin;
    let how: 'token' | 'password';
    if (typeof body.token === 'string') {
      how = 'token';
      admin = await this.auth.checkToken(body.token.trim());
    } else if (typeof body.name === 'string' && typeof body.password === 'string') {
      how = 'password';
      admin = await this.auth.checkPassword(body.name, body.password);
    } else {
      throw new WebError(400, 'LDG_ERR_WEB_BODY', 'send {"token": "..."} or {"name": "...", "password": "..."}');
    }
    // Attempts refused by the limiter above are not recorded: it bounds the audit log's growth.
    await this.auth.recordLogin({ from: remote, how, admin, name: how === 'password' ? (body.name as string) : undefined, token: how === 'token' ? (body.token as string).trim() : undefined });
    if (!admin) {
      this.o.log.warn({ remote, how, name: how === 'password' ? String(body.name).slice(0, 128) : undefined }, 'dashboard login failed (401)');
      throw new WebError(401, 'LDG_ERR_WEB_LOGIN', how === 'token' ? 'that is not an active admin token' : 'wrong name or password');
    }
    const { cookie, session } = await this.auth.createSession(admin);
    this.o.log.info({ remote, how, user: admin.name }, 'dashboard login');
    this.send(res, 200, { name: session.name, csrf: session.csrf, expires: new Date(session.expires).toISOString(), prefs: await this.creds.prefs(session.name) }, {
      'set-cookie': this.cookie(cookie, Math.floor((session.expires - Date.now()) / 1000)),
    });
  }
}

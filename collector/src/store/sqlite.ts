// The collector's store: SQLite through better-sqlite3 (12.x), WAL, synchronous=FULL so a commit
// is on disk before any agent hears "ack". Durability costs one WAL fsync per transaction, so the
// ingest stage puts many batches from many agents into one transaction (group commit).
//
// Tables:
//   alerts  one row per alert, keyed by its uuid (INSERT OR IGNORE: a resent alert is stored once),
//           with the columns the API filters on and the ECS document as sent (doc)
//   agents  one row per agent id: first/last seen, version, host facts, health, spool depth
//   tokens  SHA-256 of each token (never the token), name, role agent|admin, created, revoked
//   alert_history  each workflow status change (who, when), for the dashboard
//   (the dashboard adds web_passwords and web_sessions, collector/src/auth.ts, and keeps its search
//   index and counts in a database of its own beside this one, collector/src/web/indexer.ts)
//
// Threads: the collector's event loop serves every agent, so nothing slow runs on it. Group commits
// run in a writer worker thread with its own connection (Store.open with `workers`): the main
// thread parses and validates the next group while the worker inserts and fsyncs this one. A
// second worker runs the WAL checkpoints (copying the WAL into the database costs as much I/O as
// the commits; SQLite's autocheckpoint would do it inside a commit). The main connection reads
// (API, tokens) and makes the rare small writes (status changes, offline marks).
//
// Times are integers (ms since the epoch) in the tables and ISO strings in the API.
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Severity, WorkflowStatus } from '../../../shared/ecs.js';

export type Role = 'agent' | 'admin';

export interface TokenInfo {
  hash: string;
  name: string;
  role: Role;
  created: number;
  revoked: number | null;
}

export interface AlertRow {
  uuid: string;
  ts: number;
  host: string | null;
  ruleId: string;
  ruleName: string | null;
  severity: Severity;
  status: WorkflowStatus;
  agentId: string;
  tokenName: string;
  received: number;
  doc: string;
}

export interface HelloRow {
  agentId: string;
  hostname: string;
  version: string;
  tokenName: string;
  heartbeatMs: number;
  facts: string;
  at: number;
}

export interface HeartbeatRow {
  agentId: string;
  health: string;
  spoolDepth: number;
  eventsLost: number;
  spoolOverflow: number;
  at: number;
}

/** One group commit: everything the ingest stage gathered since the last one. */
export interface CommitWork {
  alerts: AlertRow[];
  hellos: HelloRow[];
  heartbeats: HeartbeatRow[];
  /** Agents heard from (alerts) and when, for last_seen. */
  seen: Map<string, number>;
}

export interface AlertQuery {
  limit: number;
  since?: number;
  host?: string;
  rule?: string;
  severity?: string[];
  status?: string[];
  /** uuid of the last alert of the previous page: return older ones. */
  before?: string;
}

export interface AgentView {
  agentId: string;
  hostname: string | null;
  version: string | null;
  tokenName: string | null;
  online: boolean;
  firstSeen: string | null;
  lastSeen: string | null;
  heartbeatMs: number | null;
  spoolDepth: number | null;
  eventsLost: number | null;
  spoolOverflow: number | null;
  facts: unknown;
  health: unknown;
}

const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const SCHEMA_VERSION = 1;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  ts INTEGER NOT NULL,
  host TEXT,
  rule_id TEXT NOT NULL,
  rule_name TEXT,
  severity TEXT NOT NULL,
  status TEXT NOT NULL,
  status_by TEXT,
  status_at INTEGER,
  agent_id TEXT NOT NULL,
  token_name TEXT NOT NULL,
  received INTEGER NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_host_ts ON alerts (host, ts DESC, id DESC);
-- No index on rule_id, severity or status: a fleet runs a handful of rules, so each value matches a
-- large share of the rows and walking alerts_ts is as fast; every index costs each insert.
CREATE TABLE IF NOT EXISTS agents (
  agent_id TEXT PRIMARY KEY,
  hostname TEXT,
  version TEXT,
  token_name TEXT,
  heartbeat_ms INTEGER,
  facts TEXT,
  health TEXT,
  spool_depth INTEGER,
  events_lost INTEGER,
  spool_overflow INTEGER,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  online INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
  created INTEGER NOT NULL,
  revoked INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens (name) WHERE revoked IS NULL;
-- For the dashboard (collector/src/web): its status filter and counts use the alerts someone has
-- triaged. Partial, because alerts arrive open: ingest never writes to this index.
CREATE INDEX IF NOT EXISTS alerts_triaged ON alerts (status, ts DESC, id DESC) WHERE status <> 'open';
-- Each workflow change (who, when), for the alert's history; written by setStatus only, never by ingest.
CREATE TABLE IF NOT EXISTS alert_history (alert_id INTEGER NOT NULL, status TEXT NOT NULL, by TEXT, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS alert_history_alert ON alert_history (alert_id, at);
CREATE TRIGGER IF NOT EXISTS alerts_status_history AFTER UPDATE OF status ON alerts WHEN old.status IS NOT new.status
BEGIN
  INSERT INTO alert_history (alert_id, status, by, at) VALUES (new.id, new.status, new.status_by, new.status_at);
END;
`;

/** The statements of a group commit, prepared in the writer worker. */
const WRITE_SQL = {
  // Columns in ALERT_COLUMNS order, bound by position.
  insertAlert: `INSERT OR IGNORE INTO alerts (uuid, ts, host, rule_id, rule_name, severity, status, agent_id, token_name, received, doc)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  hello: `INSERT INTO agents (agent_id, hostname, version, token_name, heartbeat_ms, facts, first_seen, last_seen, online)
    VALUES (@agentId, @hostname, @version, @tokenName, @heartbeatMs, @facts, @at, @at, 1)
    ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
      token_name = excluded.token_name, heartbeat_ms = excluded.heartbeat_ms, facts = excluded.facts,
      last_seen = max(last_seen, excluded.last_seen), online = 1`,
  heartbeat: `UPDATE agents SET health = @health, spool_depth = @spoolDepth, events_lost = @eventsLost,
    spool_overflow = @spoolOverflow, last_seen = max(last_seen, @at), online = 1 WHERE agent_id = @agentId`,
  seen: 'UPDATE agents SET last_seen = max(last_seen, ?), online = 1 WHERE agent_id = ?',
};

/**
 * A group commit as posted to the writer: the alerts as columns (one array per field), which the
 * structured clone copies several times faster than one object per alert.
 */
interface WireWork {
  alerts: { [K in keyof AlertRow]: Array<AlertRow[K]> };
  hellos: HelloRow[];
  heartbeats: HeartbeatRow[];
  seen: Array<[string, number]>;
}

const ALERT_COLUMNS = ['uuid', 'ts', 'host', 'ruleId', 'ruleName', 'severity', 'status', 'agentId', 'tokenName', 'received', 'doc'] as const;

function toColumns(rows: AlertRow[]): WireWork['alerts'] {
  const cols = Object.fromEntries(ALERT_COLUMNS.map((k) => [k, new Array(rows.length)])) as unknown as Record<string, unknown[]>;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    for (const k of ALERT_COLUMNS) cols[k]![i] = r[k];
  }
  return cols as unknown as WireWork['alerts'];
}

// The writer worker (eval'd CommonJS, so it runs the same from dist/ and from the sources).
const WRITER_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = FULL');
// The checkpointer thread copies most of the WAL concurrently; the WAL can only start over when a
// checkpoint has caught up between two commits, which under constant load only the writer itself
// can ensure: past 2000 pages it checkpoints what is left (little) right after a commit.
db.pragma('wal_autocheckpoint = 2000');
db.pragma('journal_size_limit = 67108864');
db.pragma('cache_size = -65536');
const stmts = {};
for (const [k, sql] of Object.entries(workerData.sql)) stmts[k] = db.prepare(sql);
// One transaction per group; replies with the indexes of the alerts newly inserted.
const tx = db.transaction((w) => {
  const inserted = [];
  for (const h of w.hellos) stmts.hello.run(h);
  const a = w.alerts;
  const n = a.uuid.length;
  for (let i = 0; i < n; i++) {
    if (stmts.insertAlert.run(a.uuid[i], a.ts[i], a.host[i], a.ruleId[i], a.ruleName[i], a.severity[i], a.status[i], a.agentId[i], a.tokenName[i], a.received[i], a.doc[i]).changes > 0) inserted.push(i);
  }
  for (const [agentId, at] of w.seen) stmts.seen.run(at, agentId);
  for (const h of w.heartbeats) stmts.heartbeat.run(h);
  return { inserted, duplicates: n - inserted.length };
});
parentPort.on('message', (m) => {
  if (m.type === 'stop') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    parentPort.postMessage({ id: m.id, ok: true, result: tx(m.work) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, ok: false, error: String((err && err.message) || err), code: err && err.code });
  }
});
`;

// The checkpoint worker (eval'd CommonJS, so it runs the same from dist/ and from the sources).
const CHECKPOINT_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = FULL');
let stopping = false;
parentPort.on('message', (m) => { if (m === 'stop') stopping = true; });
function tick() {
  if (stopping) {
    try { db.pragma('wal_checkpoint(TRUNCATE)'); } catch {}
    db.close();
    parentPort.close();
    return;
  }
  let behind = false;
  try {
    const r = db.pragma('wal_checkpoint(PASSIVE)')[0];
    behind = r.log > r.checkpointed + 256;
  } catch {}
  setTimeout(tick, behind ? 0 : workerData.intervalMs);
}
tick();
`;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export class Store {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly queryCache = new Map<string, Database.Statement>();
  private writer: Worker | undefined;
  private checkpointer: Worker | undefined;
  private nextCommitId = 1;
  private readonly commits = new Map<number, { work: CommitWork; resolve: (r: { inserted: AlertRow[]; duplicates: number }) => void; reject: (e: Error) => void }>();

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
    this.stmts = {
      insertToken: db.prepare('INSERT INTO tokens (hash, name, role, created) VALUES (?, ?, ?, ?)'),
      listTokens: db.prepare('SELECT hash, name, role, created, revoked FROM tokens ORDER BY created, name'),
      revokeToken: db.prepare('UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL'),
      lookupToken: db.prepare('SELECT hash, name, role, created, revoked FROM tokens WHERE hash = ?'),
      alertByUuid: db.prepare('SELECT id, ts, doc FROM alerts WHERE uuid = ?'),
      setStatus: db.prepare(`UPDATE alerts SET status = @status, status_by = @by, status_at = @at,
        doc = json_set(doc, '$.kibana.alert.workflow_status', @status, '$.kibana.alert.workflow_user', @by,
          '$.kibana.alert.workflow_status_updated_at', @atIso)
        WHERE uuid = @uuid`),
      agents: db.prepare('SELECT * FROM agents ORDER BY hostname, agent_id'),
      overdue: db.prepare(`SELECT agent_id, hostname, last_seen FROM agents
        WHERE online = 1 AND last_seen + coalesce(heartbeat_ms, 10000) * ? < ?`),
      markOffline: db.prepare('UPDATE agents SET online = 0 WHERE agent_id = ?'),
      fleet: db.prepare(`SELECT coalesce(sum(online), 0) AS online, count(*) - coalesce(sum(online), 0) AS offline,
        coalesce(sum(spool_depth), 0) AS spoolDepth, coalesce(sum(events_lost), 0) AS eventsLost,
        coalesce(sum(spool_overflow), 0) AS spoolOverflow FROM agents`),
      ping: db.prepare('SELECT 1 AS ok'),
    };
  }

  /**
   * Opens (creating 0600 in a 0700 folder) the database and brings its schema up to date. With
   * `workers` (the collector), group commits and WAL checkpoints run in worker threads; without
   * (`ldguard token`), commit() is not available.
   */
  static open(path: string, opts: { workers?: boolean } = {}): Store {
    try {
      const dir = dirname(path);
      if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Created here, before SQLite, so it is 0600 from the start; SQLite gives the -wal and -shm
      // files the database file's mode.
      if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
      const db = new Database(path);
      // Big pages: an alert document (~2-3 KB) fits in one page with room to spare, and the
      // B-trees are shallower. Only takes effect on a new database.
      db.pragma('page_size = 16384');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.pragma('cache_size = -65536');
      db.pragma('temp_store = MEMORY');
      db.exec(SCHEMA);
      const v = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
      if (!v) db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
      else if (Number(v.value) > SCHEMA_VERSION) {
        db.close();
        throw new LdgError('LDG_ERR_DB_SCHEMA', `${path} was written by a newer ldguard (schema ${v.value}); run that version, or give another --db`);
      }
      const store = new Store(path, db);
      if (opts.workers) store.startWorkers();
      return store;
    } catch (err) {
      if (err instanceof LdgError) throw err;
      throw new LdgError('LDG_ERR_DB', `cannot open the database ${path}: ${errorMessage(err)}. Check --db and that its folder is writable`, { cause: err });
    }
  }

  /**
   * Commits one group in one transaction (in the writer thread); resolves once it is durable, with
   * the alerts newly inserted. Rejects, having committed nothing, on any error.
   */
  commit(work: CommitWork): Promise<{ inserted: AlertRow[]; duplicates: number }> {
    const writer = this.writer;
    if (!writer) return Promise.reject(new Error('Store.commit needs Store.open(path, { workers: true })'));
    const id = this.nextCommitId++;
    const wire: WireWork = { alerts: toColumns(work.alerts), hellos: work.hellos, heartbeats: work.heartbeats, seen: [...work.seen] };
    return new Promise((resolve, reject) => {
      this.commits.set(id, { work, resolve, reject });
      writer.postMessage({ type: 'commit', id, work: wire });
    });
  }

  // ---- tokens

  /** Creates a token and returns it: the only time it exists outside the holder's hands. */
  createToken(name: string, role: Role, now = Date.now()): string {
    if (!TOKEN_NAME.test(name)) {
      throw new LdgError('LDG_ERR_TOKEN_NAME', `token name ${JSON.stringify(name)} must be 1-128 letters, digits and . _ @ - (e.g. the agent's host name)`);
    }
    if (role !== 'agent' && role !== 'admin') throw new LdgError('LDG_ERR_USAGE', `--role must be agent or admin, not ${JSON.stringify(role)}`);
    const token = `ldg_${randomBytes(32).toString('base64url')}`;
    try {
      this.stmts.insertToken.run(hashToken(token), name, role, now);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new LdgError('LDG_ERR_TOKEN_EXISTS', `a token named ${name} is already active; revoke it first (ldguard token revoke --name ${name}) or choose another name`);
      }
      throw err;
    }
    return token;
  }

  listTokens(): TokenInfo[] {
    return this.stmts.listTokens.all() as TokenInfo[];
  }

  /** Revokes the active token of that name; false when there is none. */
  revokeToken(name: string, now = Date.now()): boolean {
    return this.stmts.revokeToken.run(now, name).changes > 0;
  }

  lookupToken(token: string): TokenInfo | undefined {
    return this.stmts.lookupToken.get(hashToken(token)) as TokenInfo | undefined;
  }

  lookupTokenHash(hash: string): TokenInfo | undefined {
    return this.stmts.lookupToken.get(hash) as TokenInfo | undefined;
  }

  /** Changes when another connection (e.g. `ldguard token revoke`) commits to the database. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  // ---- alerts

  queryAlerts(q: AlertQuery): { docs: string[]; next: string | null } | undefined {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.host !== undefined) {
      where.push('host = ?');
      params.push(q.host);
    }
    if (q.rule !== undefined) {
      where.push('rule_id = ?');
      params.push(q.rule);
    }
    if (q.severity?.length) {
      where.push(`severity IN (${q.severity.map(() => '?').join(', ')})`);
      params.push(...q.severity);
    }
    if (q.status?.length) {
      where.push(`status IN (${q.status.map(() => '?').join(', ')})`);
      params.push(...q.status);
    }
    if (q.since !== undefined) {
      where.push('ts >= ?');
      params.push(q.since);
    }
    if (q.before !== undefined) {
      const row = this.stmts.alertByUuid.get(q.before) as { id: number; ts: number } | undefined;
      if (!row) return undefined;
      where.push('(ts, id) < (?, ?)');
      params.push(row.ts, row.id);
    }
    const sql = `SELECT uuid, doc FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ?`;
    let stmt = this.queryCache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.queryCache.set(sql, stmt);
    }
    const rows = stmt.all(...params, q.limit + 1) as Array<{ uuid: string; doc: string }>;
    const more = rows.length > q.limit;
    if (more) rows.pop();
    return { docs: rows.map((r) => r.doc), next: more ? rows.at(-1)!.uuid : null };
  }

  getAlert(uuid: string): string | undefined {
    return (this.stmts.alertByUuid.get(uuid) as { doc: string } | undefined)?.doc;
  }

  /** Sets the workflow status (in the row and in the document); the new document, or undefined. */
  setStatus(uuid: string, status: WorkflowStatus, by: string, at = Date.now()): string | undefined {
    const n = this.stmts.setStatus.run({ uuid, status, by, at, atIso: new Date(at).toISOString() }).changes;
    return n > 0 ? this.getAlert(uuid) : undefined;
  }

  // ---- agents

  listAgents(): AgentView[] {
    const rows = this.stmts.agents.all() as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      agentId: r.agent_id as string,
      hostname: r.hostname as string | null,
      version: r.version as string | null,
      tokenName: r.token_name as string | null,
      online: r.online === 1,
      firstSeen: iso(r.first_seen as number | null),
      lastSeen: iso(r.last_seen as number | null),
      heartbeatMs: r.heartbeat_ms as number | null,
      spoolDepth: r.spool_depth as number | null,
      eventsLost: r.events_lost as number | null,
      spoolOverflow: r.spool_overflow as number | null,
      facts: parseJson(r.facts as string | null),
      health: parseJson(r.health as string | null),
    }));
  }

  /** Marks offline the agents unheard for `missed` heartbeat periods; returns them. */
  markOffline(now: number, missed: number): Array<{ agentId: string; hostname: string | null; lastSeen: number }> {
    const rows = this.stmts.overdue.all(missed, now) as Array<{ agent_id: string; hostname: string | null; last_seen: number }>;
    if (rows.length === 0) return [];
    this.db.transaction(() => {
      for (const r of rows) this.stmts.markOffline.run(r.agent_id);
    })();
    return rows.map((r) => ({ agentId: r.agent_id, hostname: r.hostname, lastSeen: r.last_seen }));
  }

  fleet(): { online: number; offline: number; spoolDepth: number; eventsLost: number; spoolOverflow: number } {
    return this.stmts.fleet.get() as { online: number; offline: number; spoolDepth: number; eventsLost: number; spoolOverflow: number };
  }

  healthy(): boolean {
    try {
      return (this.stmts.ping.get() as { ok: number }).ok === 1;
    } catch {
      return false;
    }
  }

  private startWorkers(): void {
    // The main connection only reads and makes small writes: it never checkpoints (see above).
    this.db.pragma('wal_autocheckpoint = 0');
    // Once the WAL has been recycled, truncate it back to this size rather than keep it large.
    this.db.pragma('journal_size_limit = 67108864');
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const writer = new Worker(WRITER_WORKER, { eval: true, workerData: { sqlite, path: this.path, sql: WRITE_SQL } });
    writer.on('message', (m: { id: number; ok: boolean; result?: { inserted: number[]; duplicates: number }; error?: string; code?: string }) => {
      const c = this.commits.get(m.id);
      if (!c) return;
      this.commits.delete(m.id);
      if (m.ok) c.resolve({ inserted: m.result!.inserted.map((i) => c.work.alerts[i]!), duplicates: m.result!.duplicates });
      else c.reject(Object.assign(new Error(m.error), { code: m.code }));
    });
    writer.on('error', (err) => {
      for (const c of this.commits.values()) c.reject(err);
      this.commits.clear();
    });
    writer.on('exit', () => {
      if (this.writer === writer) this.writer = undefined;
      for (const c of this.commits.values()) c.reject(new Error('the database writer thread stopped'));
      this.commits.clear();
    });
    this.writer = writer;
    this.checkpointer = new Worker(CHECKPOINT_WORKER, { eval: true, workerData: { sqlite, path: this.path, intervalMs: 100 } });
    this.checkpointer.on('error', (err) => {
      // Without checkpoints the WAL only grows: checkpoint in this thread rather than not at all.
      this.db.pragma('wal_autocheckpoint = 1000');
      process.emitWarning(`ldguard: WAL checkpointer failed (${errorMessage(err)}); checkpointing in the main thread instead`);
    });
  }

  /** Stops the workers (after the commit in progress; the checkpointer runs a last checkpoint) and closes the database. */
  close(): Promise<void> {
    if (!this.writer && !this.checkpointer) {
      // No workers (ldguard token): closed before this returns.
      if (this.db.open) this.db.close();
      return Promise.resolve();
    }
    return this.closeWithWorkers();
  }

  private async closeWithWorkers(): Promise<void> {
    const stop = (w: Worker | undefined, msg: unknown) => w && new Promise<void>((resolve) => {
      const timer = setTimeout(() => void w.terminate().then(() => resolve()), 10_000);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.postMessage(msg);
    });
    const { writer, checkpointer } = this;
    this.writer = undefined;
    this.checkpointer = undefined;
    await stop(writer, { type: 'stop' });
    await stop(checkpointer, 'stop');
    if (this.db.open) this.db.close();
  }
}

// The collector's store: SQLite through better-sqlite3 (12.x), WAL, synchronous=FULL so a commit
// is on disk before any agent hears "ack". Durability costs one WAL fsync per transaction, so the
// ingest stage puts many batches from many agents into one transaction (group commit).
//
// Tables:
//   alerts  one row per alert, unique by (ots, uuid, agent_id) (INSERT OR IGNORE: a resent alert is stored
//           once), with the columns the API filters on and the ECS document as sent (doc)
//   agents  one row per agent id: first/last seen, version, host facts, health, spool depth
//   tokens  SHA-256 of each token (never the token), name, role agent|admin, created, revoked, and
//           for an agent token the agent id it is bound to (the first that used it)
//   quarantine  alerts of valid batches that failed validation: agent, why, the text (bounded)
//   alert_history  each workflow status change (who, when), for the dashboard
//   (the dashboard adds web_passwords and web_sessions, collector/src/auth.ts, and keeps its search
//   index and counts in a database of its own beside this one, collector/src/web/indexer.ts)
//
// Threads: the collector's event loop serves every agent, so nothing slow runs on it. Group commits
// run in a writer worker thread with its own connection (Store.open with `workers`): the main
// thread parses and validates the next group while the worker inserts and fsyncs this one, and
// posts it before this one ends (two in flight), so the writer goes from one to the next at once. A
// second worker runs the WAL checkpoints (copying the WAL into the database costs as much I/O as
// the commits; SQLite's autocheckpoint would do it inside a commit). The main connection reads
// (API, tokens) and makes the rare small writes (status changes, offline marks).
//
// Why (ots, uuid) and not uuid alone (schema 1): uuids are random, so a unique index on them takes
// each insert to a random leaf page. Every commit then dirties about one 16 KB index page per alert
// once the index outgrows a few hundred pages, and the WAL and the checkpoint write each of those
// pages whole: ingest fell from 18,500 to 8,800 alerts/s between 100k and 600k rows. `ots` is the
// original event time (kibana.alert.original_time, else @timestamp), in ms: the uuid is derived from
// the rule and the event, and a resend or a re-judgement of the same event carries the same event
// time (not the same @timestamp, which is when it was judged), so it is still stored once. Events
// arrive in about time order, so the index grows at its right edge and a commit dirties a handful of
// its pages. A lookup by uuid alone (GET/PATCH /api/alerts/:uuid, a human's click) therefore goes
// through the derived index beside the database (uuid_id, filled behind ingest with the host index,
// see HOSTS_SCHEMA), never a scan on the event loop (that took 104-185 ms at 216k alerts, and every
// ack waited). Paging uses a (ts, id) cursor and never looks a uuid up.
//
// What the API and the dashboard return of a document: the bytes as sent, with the authenticated
// sender (ldguard.received_from, from the agent_id and token_name columns) and, for an alert dated
// in the future, ldguard.future_timestamp merged in (DOC_SQL). Ingest dropped any received_from the
// agent wrote itself, so those fields always say what the collector saw.
//
// Times are integers (ms since the epoch) in the tables and ISO strings in the API.
import Database from 'better-sqlite3';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { WorkflowStatus } from '../../../shared/ecs.js';
import { KEY_FIELDS, SCANNED_FIELDS, SPANS_PER_ALERT, TEXT_FIELDS, originalTime } from '../frame.js';
import { FLOOD_BATCH, FLOOD_DUTY, IngestPressure } from './pressure.js';
import { applyBulk, historyEntry, type HistoryEntry, type BulkFilter, type BulkPreview, type BulkResult, type BulkSelection, type WorkflowChange, type WorkflowRows } from './workflow.js';
import { GROUP_COLUMNS, KEY_CHARS, keysOfParsed } from './group-keys.js';
import { filterSql, groupPage, groupStatement, type GroupPage, type GroupQuery } from './groups.js';
import { fillGroupKeysSqlite, heldGroupUpdate } from './group-fill.js';
import type { FleetSummary } from '../../web/src/api-types.js';
import {
  QUARANTINE_MAX_ROWS, QUARANTINE_MAX_ROWS_PER_AGENT, alertKey, batchSize, checkTokenName, hashToken, newTokenSecret,
  type AgentView, type AlertQuery, type CommitResult, type CommitWork, type QuarantineView, type RemoteAlertsListener, type Role,
  listedTime, type HeartbeatRow, type HelloRow, type QuarantineRow, type Store, type TokenBinding, type TokenInfo, type HostHistory, type SealRow,
} from './store.js';

// Defined with the reading of alerts (frame.ts), which computes it for the fast path.
export { originalTime };

/**
 * A stored alert's document as the API shows it (see above), for a query whose alerts table is
 * `a`. A row that is not valid JSON (stored by an older build) is shown as stored, never an error.
 */
export function docSql(a: string): string {
  // The assignee is the row's (schema 5), never one an agent wrote into its document.
  const stamped = `json_set(json_remove(CASE WHEN ${a}.future THEN json_set(${a}.doc, '$.ldguard.future_timestamp', json('true')) ELSE ${a}.doc END, '$.ldguard.assignee'),
    '$.ldguard.received_from', json_object('agent_id', ${a}.agent_id, 'token_name', ${a}.token_name))`;
  return `CASE WHEN NOT json_valid(${a}.doc) THEN ${a}.doc WHEN ${a}.assignee IS NULL THEN ${stamped} ELSE json_set(${stamped}, '$.ldguard.assignee', ${a}.assignee) END`;
}

/**
 * The ids of the alerts with a uuid (several when different events shared one), through the
 * derived index up to its cursor and the few rows past it (as hostKeysSql). Parameters: uuid, uuid.
 */
export const IDS_BY_UUID_SQL = `SELECT id FROM hx.uuid_id WHERE uuid = ?
  UNION SELECT id FROM alerts NOT INDEXED WHERE id > (SELECT coalesce(max(value), 0) FROM hx.state WHERE key = 'cursor') AND uuid = ?`;

/** Ids resolveAlertIds looks up between two turns of the event loop. */
const RESOLVE_BATCH = 500;

/** An alert's workflow history (parameter: its row id), in the order written (rowid; history rows are never updated), as PostgreSQL's seq. */
export const HISTORY_SQL = 'SELECT kind, status, by, at, value FROM alert_history WHERE alert_id = ? ORDER BY rowid';

/** 2: alerts unique by (ts, uuid) instead of uuid; tokens.agent_id; the quarantine table. 3: alerts.future, the key includes the sender. 4: host_seals (the agents' baseline seals per host). 5: the workflow's assignee and notes (migrate4To5). 6: the group keys (migrateTo6). */
export const SCHEMA_VERSION = 6;

const TOKEN_COLUMNS = 'hash, name, role, created, revoked, agent_id AS agentId';

/** Agents online but unheard for `missed` (the first parameter) heartbeat periods at `now` (the second). */
const OVERDUE_SQL = `SELECT agent_id, hostname, last_seen FROM agents
  WHERE online = 1 AND last_seen + coalesce(heartbeat_ms, 10000) * ? < ?`;
interface OverdueRow {
  agent_id: string;
  hostname: string | null;
  last_seen: number;
}

/**
 * The fleet in numbers (/metrics, the dashboard). It reads every agent row, facts and health
 * included: 25-80 ms with 15,000 agents, so the checkpointer thread answers it (see
 * CHECKPOINT_WORKER). A row SQLite cannot read as JSON (an older build stored a heartbeat nested
 * 1,500 deep: every /metrics answered 500 from then on) counts as saying nothing.
 */
const FLEET_SQL = `SELECT count(*) AS total, coalesce(sum(online), 0) AS online, coalesce(sum(events_lost), 0) AS eventsLost,
  coalesce(sum(spool_depth), 0) AS spoolDepth, coalesce(sum(spool_overflow), 0) AS spoolOverflow,
  coalesce(sum(d), 0) AS degraded, coalesce(sum(online = 0 OR d), 0) AS attention
  FROM (SELECT *, (coalesce(h ->> '$.source.degraded', f ->> '$.source.degraded', 0)
    OR coalesce(h ->> '$.attribution.degraded', f ->> '$.attribution.degraded', 0)) AS d
    FROM (SELECT *, iif(json_valid(health), health, NULL) AS h, iif(json_valid(facts), facts, NULL) AS f FROM agents))`;

/**
 * Events spared by each exception list item, summed over the agents' last reported health (each
 * agent counts since it started, shared/protocol.ts AgentHealth.exceptions).
 */
const EXCEPTIONS_SQL = `SELECT e.value ->> '$.ruleId' AS ruleId, e.value ->> '$.listId' AS listId, e.value ->> '$.itemId' AS itemId,
  sum(e.value ->> '$.count') AS count
  FROM agents, json_each(iif(json_valid(agents.health), agents.health -> '$.exceptions', NULL)) e
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;

/** The scans of every agent row that the checkpointer thread answers (Store.scan), by name. */
const AGENT_SCANS = { overdue: OVERDUE_SQL, fleet: FLEET_SQL, exceptions: EXCEPTIONS_SQL };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY,
  uuid TEXT NOT NULL,
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
  doc TEXT NOT NULL,
  ots INTEGER NOT NULL DEFAULT 0,
  future INTEGER NOT NULL DEFAULT 0
);
-- The idempotence key (see the top of this file): a resend has the same original time and uuid,
-- from the same sender. With the sender in it, a hostile agent that sends another host's uuids
-- first stores only its own rows; the other host's alerts are still stored (schema 3).
DROP INDEX IF EXISTS alerts_key;
CREATE UNIQUE INDEX IF NOT EXISTS alerts_sender_key ON alerts (ots, uuid, agent_id);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts DESC, id DESC);
-- No (host, ts) index here: see HOSTS_SCHEMA.
DROP INDEX IF EXISTS alerts_host_ts;
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
  revoked INTEGER,
  agent_id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens (name) WHERE revoked IS NULL;
-- Which token holds an agent id (a hello claiming it from another token is refused).
CREATE INDEX IF NOT EXISTS tokens_agent ON tokens (agent_id) WHERE agent_id IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS quarantine (
  id INTEGER PRIMARY KEY,
  agent_id TEXT NOT NULL,
  token_name TEXT NOT NULL,
  seq INTEGER NOT NULL,
  uuid TEXT,
  reason TEXT NOT NULL,
  text TEXT NOT NULL,
  size INTEGER NOT NULL,
  received INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_agent ON quarantine (agent_id, id);
`;

/**
 * Schema 1 → 2, in one transaction: the alerts table is rebuilt without the UNIQUE constraint on
 * uuid (a column constraint: only a rebuild drops it), keeping every id (the dashboard's index and
 * the alert history refer to them); SCHEMA then adds the (ts, uuid) key and the indexes, trigger
 * and tables the drop took or v1 lacked. Runs once; a large table takes a while (logged by the caller).
 */
const MIGRATE_1_TO_2 = `
CREATE TABLE alerts_v2 (
  id INTEGER PRIMARY KEY, uuid TEXT NOT NULL, ts INTEGER NOT NULL, host TEXT, rule_id TEXT NOT NULL, rule_name TEXT,
  severity TEXT NOT NULL, status TEXT NOT NULL, status_by TEXT, status_at INTEGER, agent_id TEXT NOT NULL,
  token_name TEXT NOT NULL, received INTEGER NOT NULL, doc TEXT NOT NULL, ots INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alerts_v2 (id, uuid, ts, host, rule_id, rule_name, severity, status, status_by, status_at, agent_id, token_name, received, doc)
  SELECT id, uuid, ts, host, rule_id, rule_name, severity, status, status_by, status_at, agent_id, token_name, received, doc FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v2 RENAME TO alerts;
ALTER TABLE tokens ADD COLUMN agent_id TEXT;
`;

/**
 * Schema 3 → 4: each baseline seal an agent told (host id, agent id, generation, sha256), for the
 * continuity checks of collector/src/continuity.ts. Run at every open (IF NOT EXISTS), so a new
 * database gets it too. Portable as it is: plain columns, one composite key, no SQLite-only type.
 */
const MIGRATE_3_TO_4 = `
CREATE TABLE IF NOT EXISTS host_seals (
  host_id TEXT NOT NULL,
  generation INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  PRIMARY KEY (host_id, generation, sha256)
);
CREATE INDEX IF NOT EXISTS host_seals_last ON host_seals (host_id, last_seen DESC);
`;

/**
 * Schema 5 (#22: notes and an assignee, store/workflow.ts): alerts.assignee, and the history's
 * entries typed (kind: status | note | assignee, value: the note's text or the assignee; status
 * is the alert's status when the entry was written). ALTER TABLE is not idempotent: each column
 * is added only where it is missing.
 */
function migrate4To5(db: Database.Database): void {
  const has = (table: string, column: string) => db.prepare(`SELECT 1 FROM pragma_table_info('${table}') WHERE name = ?`).get(column) !== undefined;
  if (!has('alerts', 'assignee')) db.exec('ALTER TABLE alerts ADD COLUMN assignee TEXT');
  if (!has('alert_history', 'kind')) db.exec("ALTER TABLE alert_history ADD COLUMN kind TEXT NOT NULL DEFAULT 'status' CHECK (kind IN ('status', 'note', 'assignee'))");
  if (!has('alert_history', 'value')) db.exec('ALTER TABLE alert_history ADD COLUMN value TEXT');
}

/**
 * Schema 5 → 6: the group keys (store/group-keys.ts) as columns, written by ingest's insert
 * (WRITE_SQL.insertAlert); rows older than them are filled in batches after the open's
 * transaction (store/group-fill.ts), held_back NULL marking a row not filled yet. Run at every open
 * (each step checks first), so a new database gets it too.
 *
 * Indexes: (key, ts, held_back) for the keys with few values (rule, hash, executable, package): a
 * commit's entries land at the right edge of each value's range, a handful of pages; held_back
 * makes them cover the grouped read, which then never reads the rows (without it, by rule at
 * 100,000 alerts read each row through the index: 870 ms, against 210 ms for a scan of the table). No index on host or
 * token_name here: with one value per agent, an insert goes to a random page (the cost that moved
 * the host index out of this file, see HOSTS_SCHEMA); grouping by host or sender reads the rows.
 * The summary lookup is partial: only summaries have an entry, ingest of an alert writes none.
 */
function migrateTo6(db: Database.Database): void {
  const have = new Set((db.prepare("SELECT name FROM pragma_table_info('alerts')").all() as Array<{ name: string }>).map((r) => r.name));
  for (const [col, type] of [['file_hash', 'TEXT'], ['executable', 'TEXT'], ['package', 'TEXT'], ['held_back', 'INTEGER'], ['summary_id', 'TEXT']]) {
    if (!have.has(col!)) db.exec(`ALTER TABLE alerts ADD COLUMN ${col} ${type}`);
  }
  db.exec(`
CREATE INDEX IF NOT EXISTS alerts_g_rule ON alerts (rule_id, ts, held_back);
CREATE INDEX IF NOT EXISTS alerts_g_hash ON alerts (file_hash, ts, held_back);
CREATE INDEX IF NOT EXISTS alerts_g_executable ON alerts (executable, ts, held_back);
CREATE INDEX IF NOT EXISTS alerts_g_package ON alerts (package, ts, held_back);
CREATE INDEX IF NOT EXISTS alerts_summary ON alerts (summary_id, agent_id, id) WHERE summary_id IS NOT NULL AND held_back = 0;
-- The rows the fill (group-fill.ts) has yet to do: empty once it is done, never written by ingest.
CREATE INDEX IF NOT EXISTS alerts_unfilled ON alerts (id) WHERE held_back IS NULL;
-- A held-back record takes its summary's keys (group-keys.ts); the agent sends the summary first.
CREATE TRIGGER IF NOT EXISTS alerts_held_group AFTER INSERT ON alerts WHEN new.held_back = 1 AND new.summary_id IS NOT NULL
BEGIN
  ${heldGroupUpdate('id = new.id')};
END;
`);
}

/** Schema 2 → 3: the future flag (an alert dated after its receipt, listed by receive time). */
const MIGRATE_2_TO_3 = 'ALTER TABLE alerts ADD COLUMN future INTEGER NOT NULL DEFAULT 0;';

/**
 * The host index, in a database file of its own beside the collector's (collector.db →
 * collector.hosts.db), filled behind ingest by a low-priority thread (HOST_INDEX_WORKER):
 *
 *   host_ts  (host, ts, id) of every alert with a host, up to the cursor
 *   state    'cursor': the last alerts.id indexed
 *
 * Why not an index of the alerts table: a (host, ts) key takes each insert to its host's place, so
 * a commit of 200 alerts from 500 hosts rewrote ~180 random pages of it, more than the alerts' own
 * pages, in the WAL and again at checkpoint (16,000 alerts/s with it, 46,000-53,000 without, in one
 * thread). Here it is written in batches of HOST_INDEX_BATCH, with its own lock, synchronous=NORMAL
 * (derived data), and never delays an ack. A host filter reads it for the alerts up to the cursor
 * and scans the alerts table by id for the newest ones past it (hostQuery): both in one statement,
 * so one snapshot of the cursor, and an alert is found once whatever the lag. The cost is that
 * scan, which grows with the lag (the newest alerts, in the page cache).
 *
 * Everything here is derived: the file can be deleted while the collector is stopped; it is
 * rebuilt from the alerts table (and rebuilt if it is ahead of it, i.e. the database was replaced).
 */
const HOSTS_SCHEMA = `
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS host_ts (host TEXT NOT NULL, ts INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (host, ts DESC, id DESC)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uuid_id (uuid TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (uuid, id)) WITHOUT ROWID;
`;
/** Alerts indexed per transaction of the host index. */
const HOST_INDEX_BATCH = 5000;

/** collector.db → collector.hosts.db (beside it, so it shares its folder's 0700). */
export function hostsDbPath(mainPath: string): string {
  return `${mainPath.endsWith('.db') ? mainPath.slice(0, -3) : mainPath}.hosts.db`;
}

/**
 * The (ts, id) keys of a host's alerts, newest first, as one subquery for a connection that has
 * the host index attached as `hx`: the index up to its cursor, and the alerts past the cursor by
 * id (NOT INDEXED: a range of the rowid, never a walk of alerts_ts). `conds` are further conditions
 * on ts and id only (bound twice, once per side). Parameters: host, ...conds, host, ...conds.
 */
export function hostKeysSql(conds: string[]): string {
  const w = conds.map((c) => ` AND ${c}`).join('');
  return `SELECT id, ts FROM hx.host_ts WHERE host = ?${w}
    UNION ALL SELECT id, ts FROM alerts NOT INDEXED WHERE id > (SELECT coalesce(max(value), 0) FROM hx.state WHERE key = 'cursor') AND host = ?${w}`;
}

/** Opens (creating) the host index beside `mainPath` and checks it against the alerts table. */
function prepareHostIndex(db: Database.Database, hostsPath: string): void {
  if (!existsSync(hostsPath)) closeSync(openSync(hostsPath, 'a', 0o600));
  const hx = new Database(hostsPath);
  try {
    // Several `ldguard token` at once open it too.
    hx.pragma('busy_timeout = 5000');
    hx.pragma('journal_mode = WAL');
    // An index made before the uuid table existed is walked again from the start to fill it
    // (its host entries are written again as no-ops).
    const hadUuids = hx.prepare("SELECT 1 FROM sqlite_master WHERE name = 'uuid_id'").get() !== undefined;
    hx.exec(HOSTS_SCHEMA);
    if (!hadUuids) hx.exec("DELETE FROM state WHERE key = 'cursor'");
    const cursor = (hx.prepare("SELECT coalesce(max(value), 0) AS c FROM state WHERE key = 'cursor'").get() as { c: number }).c;
    const maxId = (db.prepare('SELECT coalesce(max(id), 0) AS m FROM alerts').get() as { m: number }).m;
    // Ahead of the alerts: another database (restored, replaced) behind the same name. Start over.
    if (cursor > maxId) hx.exec("DELETE FROM host_ts; DELETE FROM uuid_id; DELETE FROM state WHERE key = 'cursor'");
  } finally {
    hx.close();
  }
}

/**
 * A status change in the row and in its document (parameters @status, @by, @at, @atIso); the
 * history entry is the trigger's. A document that is not valid JSON (an older build's) keeps its
 * text; the row's status changes all the same.
 */
const STATUS_SET_SQL = `status = @status, status_by = @by, status_at = @at,
  doc = CASE WHEN json_valid(doc) THEN json_set(doc, '$.kibana.alert.workflow_status', @status, '$.kibana.alert.workflow_user', @by,
    '$.kibana.alert.workflow_status_updated_at', @atIso) ELSE doc END`;
/** The rows of a workflow chunk (@ids: a JSON array of row ids). */
const CHUNK_IDS = 'id IN (SELECT value FROM json_each(@ids))';

/** The statements of a group commit, prepared in the writer worker. */
const WRITE_SQL = {
  // A workflow chunk (store/workflow.ts), run by the writer between two group commits.
  wfFound: `SELECT count(*) AS n FROM alerts WHERE ${CHUNK_IDS}`,
  wfStatus: `UPDATE alerts SET ${STATUS_SET_SQL} WHERE ${CHUNK_IDS} AND status <> @status`,
  // Before the update: the rows it will change, with the status they have.
  wfAssigneeHistory: `INSERT INTO alert_history (alert_id, status, by, at, kind, value)
    SELECT id, status, @by, @at, 'assignee', @assignee FROM alerts WHERE ${CHUNK_IDS} AND assignee IS NOT @assignee`,
  wfAssignee: `UPDATE alerts SET assignee = @assignee WHERE ${CHUNK_IDS} AND assignee IS NOT @assignee`,
  wfNote: `INSERT INTO alert_history (alert_id, status, by, at, kind, value) SELECT id, status, @by, @at, 'note', @text FROM alerts WHERE id = @id`,
  // Bound by position. The document and the text columns arrive as blobs (ranges of the commit's
  // shared buffer, see WireWork) or strings, and are stored as the TEXT they are either way.
  // With the group keys (group-keys.ts) last: ranges or strings as the text columns (a row of the
  // fast path), or read by the writer thread from the document (a row of the general path).
  insertAlert: `INSERT OR IGNORE INTO alerts (uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, future, doc,
      file_hash, executable, package, held_back, summary_id)
    VALUES (CAST(? AS TEXT), ?, ?, CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ?, ?, CAST(? AS TEXT),
      CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), ?, CAST(? AS TEXT))`,
  // In the transaction itself: a token revoked before this commit has none of its alerts stored.
  tokenActive: 'SELECT 1 AS ok FROM tokens WHERE hash = ? AND revoked IS NULL',
  quarantine: `INSERT INTO quarantine (agent_id, token_name, seq, uuid, reason, text, size, received)
    VALUES (@agentId, @tokenName, @seq, @uuid, @reason, @text, @size, @received)`,
  trimQuarantine: `DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ${QUARANTINE_MAX_ROWS}`,
  trimAgentQuarantine: `DELETE FROM quarantine WHERE agent_id = @agentId AND id < coalesce((SELECT id FROM quarantine WHERE agent_id = @agentId ORDER BY id DESC LIMIT 1 OFFSET ${QUARANTINE_MAX_ROWS_PER_AGENT - 1}), 0)`,
  bind: 'UPDATE tokens SET agent_id = @agentId WHERE hash = @hash AND agent_id IS NULL',
  hello: `INSERT INTO agents (agent_id, hostname, version, token_name, heartbeat_ms, facts, first_seen, last_seen, online)
    VALUES (@agentId, @hostname, @version, @tokenName, @heartbeatMs, @facts, @at, @at, 1)
    ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
      token_name = excluded.token_name, heartbeat_ms = excluded.heartbeat_ms, facts = excluded.facts,
      last_seen = max(last_seen, excluded.last_seen), online = 1`,
  heartbeat: `UPDATE agents SET health = @health, spool_depth = @spoolDepth, events_lost = @eventsLost,
    spool_overflow = @spoolOverflow, last_seen = max(last_seen, @at), online = 1 WHERE agent_id = @agentId`,
  seen: 'UPDATE agents SET last_seen = max(last_seen, ?), online = 1 WHERE agent_id = ?',
  recordSeal: `INSERT INTO host_seals (host_id, generation, sha256, agent_id, first_seen, last_seen) VALUES (@hostId, @generation, @sha256, @agentId, @at, @at)
    ON CONFLICT (host_id, generation, sha256) DO UPDATE SET agent_id = excluded.agent_id, last_seen = max(last_seen, excluded.last_seen)`,
};

/**
 * A group commit as posted to the writer. Structured cloning costs per value: building and posting
 * the columns as one array of strings and numbers per field was 14% of the event loop at 20,000
 * alerts/s. So the documents (95% of the bytes) go as their UTF-8 text laid end to end in a
 * SharedArrayBuffer, and the text columns as byte ranges of it (uuid, host, rule id and name,
 * severity and status are strings inside the document, and a JSON string without escapes is its
 * text's UTF-8), bound as blobs and stored as TEXT. Numbers go in typed arrays (transferred). Only
 * what has no range (a value written with escapes, a row of the general path, the agent and token
 * names and the token's hash) goes as a string, each distinct one once per commit in `strings`. So
 * the writer holds no document or field as a string (cloning the documents as strings cost it a
 * third of its time, in copies and GC), and the main thread keeps none for a waiting alert (see
 * frame.ts). The documents' buffer is reused from commit to commit (the writer is done with one
 * when it replies): a fresh one each time cost more in page faults than the copy itself.
 */
interface WireWork {
  /** Alerts in this commit. */
  n: number;
  /**
   * Per alert (WIRE_META each): its document's end in `docs` (it starts where the previous one
   * ended), then per text column (WIRE_TEXTS, in the insert's order) [start, end) in `docs`, or
   * [-1, index in `strings`] (-1: null), then the indexes of its agent id, token name and token
   * hash in `strings`, then its group keys (frame.ts's KEY_FIELDS, WIRE_KEYS) as the text columns,
   * then held_back: 0 or 1, or -1 when the keys are not given (a row of the general path: the
   * writer reads them from the document).
   */
  meta: Int32Array;
  /** ts (the listed time, see listedTime), ots, received and future (0/1) of alert i at 4i … 4i+3. */
  times: Float64Array;
  strings: string[];
  docs: SharedArrayBuffer;
  docsLength: number;
  hellos: HelloRow[];
  heartbeats: HeartbeatRow[];
  seals: SealRow[];
  seen: Array<[string, number]>;
  quarantine: QuarantineRow[];
  bindings: TokenBinding[];
}

/** The text columns of a row, in the insert's order (frame.ts's TEXT_FIELDS). */
const WIRE_TEXTS = TEXT_FIELDS.length;
/** The group keys of a row of the fast path, found by the frame's scan (frame.ts's KEY_FIELDS). */
const WIRE_KEYS = KEY_FIELDS.length;
/** Where a row's group keys start in its meta, and its held_back. */
const WIRE_KEY_AT = 1 + 2 * WIRE_TEXTS + 3;
const WIRE_HELD_AT = WIRE_KEY_AT + 2 * WIRE_KEYS;
const WIRE_META = WIRE_HELD_AT + 1;

function toWire(work: CommitWork, shared: { buffer: SharedArrayBuffer }): { wire: WireWork; transfer: ArrayBuffer[] } {
  let n = 0;
  let total = 0;
  for (const b of work.alerts) {
    n += batchSize(b);
    if ('rows' in b) for (const r of b.rows) total += r.doc.length;
    else for (let i = 0; i < b.scanned.count; i++) total += b.scanned.spans[i * SPANS_PER_ALERT + 1]! - b.scanned.spans[i * SPANS_PER_ALERT]!;
  }
  if (shared.buffer.byteLength < total) shared.buffer = new SharedArrayBuffer(Math.max(total, 2 * shared.buffer.byteLength));
  const docs = new Uint8Array(shared.buffer, 0, total);
  const meta = new Int32Array(Math.max(1, WIRE_META * n));
  const times = new Float64Array(Math.max(1, 4 * n));
  const strings: string[] = [];
  const index = new Map<string, number>();
  const ref = (v: string | null): number => {
    if (v === null) return -1;
    let k = index.get(v);
    if (k === undefined) {
      k = strings.length;
      strings.push(v);
      index.set(v, k);
    }
    return k;
  };
  let row = 0;
  let at = 0;
  for (const b of work.alerts) {
    if ('rows' in b) {
      const hash = ref(b.tokenHash ?? '');
      for (const r of b.rows) {
        // TypedArray.set, not Buffer.copy: 3x faster per document here (Buffer.copy's checks cost more than the bytes).
        docs.set(r.doc, at);
        at += r.doc.length;
        const m = WIRE_META * row;
        meta[m] = at;
        const texts = [r.uuid, r.host, r.ruleId, r.ruleName, r.severity, r.status];
        for (let f = 0; f < WIRE_TEXTS; f++) {
          meta[m + 1 + 2 * f] = -1;
          meta[m + 2 + 2 * f] = ref(texts[f]!);
        }
        meta[m + 1 + 2 * WIRE_TEXTS] = ref(r.agentId);
        meta[m + 2 + 2 * WIRE_TEXTS] = ref(r.tokenName);
        meta[m + 3 + 2 * WIRE_TEXTS] = hash;
        meta[m + WIRE_HELD_AT] = -1;
        times[4 * row] = r.ts;
        times[4 * row + 1] = r.ots;
        times[4 * row + 2] = r.received;
        times[4 * row + 3] = r.future ? 1 : 0;
        row++;
      }
      continue;
    }
    const { frame, spans, times: t, texts, held } = b.scanned;
    const agent = ref(b.agentId);
    const token = ref(b.tokenName);
    const hash = ref(b.tokenHash);
    for (let i = 0; i < b.scanned.count; i++) {
      const sp = i * SPANS_PER_ALERT;
      const docStart = spans[sp]!;
      const docEnd = spans[sp + 1]!;
      docs.set(frame.subarray(docStart, docEnd), at);
      // The text columns' offsets move with the document, from the frame to `docs`.
      const shift = at - docStart;
      at += docEnd - docStart;
      const m = WIRE_META * row;
      meta[m] = at;
      // The text columns, then the group keys, at their places in the meta (the spans hold them in that order).
      for (let f = 0; f < SCANNED_FIELDS; f++) {
        const o = m + (f < WIRE_TEXTS ? 1 + 2 * f : WIRE_KEY_AT + 2 * (f - WIRE_TEXTS));
        const s = spans[sp + 2 + 2 * f]!;
        if (s >= 0) {
          meta[o] = s + shift;
          meta[o + 1] = spans[sp + 3 + 2 * f]! + shift;
        } else {
          meta[o] = -1;
          meta[o + 1] = ref(texts?.get(i * SCANNED_FIELDS + f) ?? null);
        }
      }
      meta[m + 1 + 2 * WIRE_TEXTS] = agent;
      meta[m + 2 + 2 * WIRE_TEXTS] = token;
      meta[m + 3 + 2 * WIRE_TEXTS] = hash;
      meta[m + WIRE_HELD_AT] = held[i]!;
      const ts = listedTime(t[2 * i]!, b.received);
      times[4 * row] = ts;
      times[4 * row + 1] = t[2 * i + 1]!;
      times[4 * row + 2] = b.received;
      times[4 * row + 3] = ts !== t[2 * i] ? 1 : 0;
      row++;
    }
  }
  const wire: WireWork = {
    n, meta, times, strings, docs: shared.buffer, docsLength: total, hellos: work.hellos, heartbeats: work.heartbeats, seals: work.seals,
    seen: [...work.seen], quarantine: work.quarantine, bindings: work.bindings,
  };
  return { wire, transfer: [meta.buffer as ArrayBuffer, times.buffer as ArrayBuffer] };
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
// group-keys.ts's reader, by its source: this thread cannot import it.
const keysOf = ${keysOfParsed.toString()};
const NO_KEYS = { fileHash: null, executable: null, package: null, heldBack: false, summaryId: null };
// One transaction per group; replies with the indexes of the alerts newly inserted.
const tx = db.transaction((w) => {
  const inserted = [];
  for (const b of w.bindings) stmts.bind.run(b);
  for (const h of w.hellos) stmts.hello.run(h);
  const n = w.n;
  const docs = Buffer.from(w.docs, 0, w.docsLength);
  const t = w.times;
  const m = w.meta;
  // A text column: a range of the documents' buffer, or a string (-1: null). See WireWork.
  const text = (at) => (m[at] >= 0 ? docs.subarray(m[at], m[at + 1]) : m[at + 1] < 0 ? null : w.strings[m[at + 1]]);
  // Each sender's token, looked up once: a token revoked before this commit stores nothing.
  const active = new Map();
  const refusedTokens = [];
  let refusedAlerts = 0;
  let start = 0;
  for (let i = 0; i < n; i++) {
    const at = ${WIRE_META} * i;
    const end = m[at];
    const hash = w.strings[m[at + 15]];
    let ok = active.get(hash);
    if (ok === undefined) {
      ok = hash === '' || stmts.tokenActive.get(hash) !== undefined;
      active.set(hash, ok);
      if (!ok) refusedTokens.push(hash);
    }
    if (!ok) refusedAlerts++;
    else {
      const doc = docs.subarray(start, end);
      const held = m[at + ${WIRE_HELD_AT}];
      let fileHash, executable, pkg, summaryId, heldBack = held;
      if (held >= 0) {
        // Found by the frame's scan, exactly as keysOf reads them (frame.ts).
        fileHash = text(at + ${WIRE_KEY_AT});
        executable = text(at + ${WIRE_KEY_AT + 2});
        pkg = text(at + ${WIRE_KEY_AT + 4});
        summaryId = text(at + ${WIRE_KEY_AT + 6});
      } else {
        let k = NO_KEYS;
        try {
          k = keysOf(JSON.parse(doc.toString('utf8')), ${KEY_CHARS});
        } catch {}
        fileHash = k.fileHash;
        executable = k.executable;
        pkg = k.package;
        summaryId = k.summaryId;
        heldBack = k.heldBack ? 1 : 0;
      }
      if (stmts.insertAlert.run(text(at + 1), t[4 * i], t[4 * i + 1], text(at + 3), text(at + 5), text(at + 7), text(at + 9), text(at + 11),
        w.strings[m[at + 13]], w.strings[m[at + 14]], t[4 * i + 2], t[4 * i + 3], doc, fileHash, executable, pkg, heldBack, summaryId).changes > 0) inserted.push(i);
    }
    start = end;
  }
  if (w.quarantine.length > 0) {
    for (const q of w.quarantine) stmts.quarantine.run(q);
    for (const agentId of new Set(w.quarantine.map((q) => q.agentId))) stmts.trimAgentQuarantine.run({ agentId });
    stmts.trimQuarantine.run();
  }
  for (const [agentId, at] of w.seen) stmts.seen.run(at, agentId);
  for (const h of w.heartbeats) stmts.heartbeat.run(h);
  for (const s of w.seals) stmts.recordSeal.run(s);
  return { inserted, duplicates: n - inserted.length - refusedAlerts, refusedTokens, refusedAlerts };
});
// A workflow chunk (at most BULK_CHUNK rows), queued like a commit: ingest waits for one chunk at
// most, never for a whole bulk change.
const workflow = db.transaction((op) => {
  if (op.kind === 'note') return { changed: stmts.wfNote.run({ id: op.id, by: op.by, at: op.at, text: op.text }).changes, found: 1 };
  const ids = { ids: op.ids };
  const found = stmts.wfFound.get(ids).n;
  if (op.kind === 'status') return { changed: stmts.wfStatus.run({ ids: op.ids, status: op.status, by: op.by, at: op.at, atIso: op.atIso }).changes, found };
  const a = { ids: op.ids, assignee: op.assignee, by: op.by, at: op.at };
  stmts.wfAssigneeHistory.run(a);
  return { changed: stmts.wfAssignee.run({ ids: op.ids, assignee: op.assignee }).changes, found };
});
parentPort.on('message', (m) => {
  if (m.type === 'stop') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    if (m.type === 'workflow') parentPort.postMessage({ id: m.id, workflow: true, ok: true, result: workflow(m.op) });
    else parentPort.postMessage({ id: m.id, ok: true, result: tx(m.work) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, workflow: m.type === 'workflow', ok: false, error: String((err && err.message) || err), code: err && err.code });
  }
});
`;

/**
 * How often the checkpointer copies the WAL into the database (at once again while it is behind).
 * Each checkpoint ends with an fsync of the database file, and the writer's WAL fsync waits behind
 * it on the same disk (in ext4's ordered mode a commit flushes the blocks allocated since the last
 * one). Small, frequent checkpoints keep that wait short: measured at 20,000 alerts/s, every 100 ms
 * gave the collector's own ack p99 61-167 ms a second, every 20 ms 29-61 ms.
 */
const CHECKPOINT_INTERVAL_MS = 20;

// The checkpoint worker (eval'd CommonJS, so it runs the same from dist/ and from the sources).
// It also answers the scans of every agent row (AGENT_SCANS): which agents are overdue (the
// sweep), and the fleet's numbers (each /metrics scrape, the dashboard every 5 s). On the main
// thread each held the event loop, and so every ack: ~35 ms with 15,000 agents for the sweep, and
// 80 ms for the bench's scrape at the start of its rated phase, whose backlog then took a second
// to drain.
const CHECKPOINT_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = FULL');
const scans = {};
for (const [name, sql] of Object.entries(workerData.scans)) scans[name] = db.prepare(sql);
// Reads the store builds (SqliteStore.readOffLoop: grouped reads, a bulk workflow's selection):
// their SQL varies with the filters, so prepared as they come.
const reads = new Map();
let stopping = false;
let timer;
parentPort.on('message', (m) => {
  if (m === 'stop') {
    stopping = true;
    clearTimeout(timer);
    tick();
  } else if (m && (m.type === 'scan' || m.type === 'read')) {
    try {
      let stmt = m.type === 'scan' ? scans[m.name] : reads.get(m.sql);
      if (!stmt) {
        stmt = db.prepare(m.sql);
        if (!stmt.reader) throw new Error('only reads are run here');
        if (reads.size > 64) reads.clear();
        reads.set(m.sql, stmt);
      }
      parentPort.postMessage({ id: m.id, rows: stmt.all(...m.args) });
    } catch (err) {
      parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
    }
  }
});
// While the WAL does not change (an idle collector), the looks grow rarer, up to IDLE_MS apart, so
// that an idle collector does not wake 50 times a second.
const IDLE_MS = 320;
let wait = workerData.intervalMs;
let lastLog = -1;
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
    wait = r.log === lastLog ? Math.min(IDLE_MS, wait * 2) : workerData.intervalMs;
    lastLog = r.log;
  } catch {}
  timer = setTimeout(tick, behind ? 0 : wait);
}
tick();
`;

// The host index's thread (eval'd CommonJS; see HOSTS_SCHEMA). At nice 19, as the dashboard's
// indexer: ingest and the API run first. Batches back to back while behind, a look every
// intervalMs otherwise (growing to IDLE_MS while there is nothing new); the read of the alerts is
// a WAL snapshot, so the writer is never delayed.
const HOST_INDEX_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
try {
  require('node:os').setPriority(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch {}
const db = new Database(workerData.hostsPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.prepare('ATTACH DATABASE ? AS m').run(workerData.path);
const cursor = db.prepare("SELECT coalesce(max(value), 0) AS c FROM state WHERE key = 'cursor'");
const next = db.prepare('SELECT id, ts, host, uuid FROM m.alerts WHERE id > ? ORDER BY id LIMIT ?');
const add = db.prepare('INSERT OR IGNORE INTO host_ts (host, ts, id) VALUES (?, ?, ?)');
const addUuid = db.prepare('INSERT OR IGNORE INTO uuid_id (uuid, id) VALUES (?, ?)');
const setCursor = db.prepare("INSERT INTO state (key, value) VALUES ('cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
// Deferred, not IMMEDIATE: that would take the write lock of the attached collector database too.
const step = db.transaction((batch) => {
  const rows = next.raw().all(cursor.get().c, batch);
  if (rows.length === 0) return 0;
  // In key order: the batch's entries land host by host, each page of the index written once.
  rows.sort((a, b) => (a[2] === b[2] ? 0 : a[2] === null ? -1 : b[2] === null ? 1 : a[2] < b[2] ? -1 : 1));
  for (const [id, ts, host] of rows) if (host !== null) add.run(host, ts, id);
  for (const [id, , , uuid] of rows) addUuid.run(uuid, id);
  setCursor.run(rows.reduce((m, r) => Math.max(m, r[0]), 0));
  return rows.length;
});
let stopping = false;
let timer;
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopping = true;
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
// A look that finds nothing doubles the wait, up to IDLE_MS, so that an idle collector does not
// wake ten times a second; one that finds alerts brings it back to intervalMs.
const IDLE_MS = 1000;
let wait = workerData.intervalMs;
// While ingest floods, small batches at most floodDuty of the time, as the search indexer does
// (web/indexer-worker.ts): nice 19 gives up the CPU, not the disk. The flag and the figures are
// store/pressure.ts's (IngestPressure.active, FLOOD_BATCH, FLOOD_DUTY), read here as plain data:
// eval'd CommonJS cannot import that module.
const { floodBatch, floodDuty } = workerData;
const pressure = new BigInt64Array(workerData.pressure);
function tick() {
  if (stopping) return;
  const flooding = Atomics.load(pressure, 0) > BigInt(Date.now());
  const t0 = performance.now();
  let n = 0;
  try {
    n = step(flooding ? floodBatch : workerData.batch);
  } catch (err) {
    parentPort.postMessage({ error: String((err && err.message) || err) });
    timer = setTimeout(tick, 5000);
    return;
  }
  wait = n > 0 ? workerData.intervalMs : Math.min(IDLE_MS, wait * 2);
  if (flooding && n > 0) timer = setTimeout(tick, (performance.now() - t0) * (1 / floodDuty - 1));
  else timer = setTimeout(tick, n === workerData.batch ? 0 : wait);
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

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly path: string;
  get location(): string {
    return this.path;
  }
  /** What Store.open upgraded (e.g. "schema 1 to 2, 1200 alerts in 0.4 s"), for the caller to log; null if nothing. */
  upgraded: string | null = null;
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly queryCache = new Map<string, Database.Statement>();
  private writer: Worker | undefined;
  private checkpointer: Worker | undefined;
  private hostIndexer: Worker | undefined;
  /** Set by ingest while it floods; the indexing threads (hosts here, search in web/) step aside meanwhile. */
  readonly pressure = new IngestPressure();
  private lastHostIndexWarning = 0;
  private nextCommitId = 1;
  /** The documents of the commits in flight (see WireWork), one buffer each in turn, grown as needed. */
  private readonly docsBuffers = [{ buffer: new SharedArrayBuffer(4 * 1024 * 1024) }, { buffer: new SharedArrayBuffer(4 * 1024 * 1024) }];
  private readonly commits = new Map<number, { resolve: (r: CommitResult) => void; reject: (e: Error) => void }>();
  /** Scans answered by the checkpointer thread (AGENT_SCANS), by id. */
  private readonly queries = new Map<number, { resolve: (rows: unknown[]) => void; reject: (e: Error) => void }>();
  private nextQueryId = 1;
  /** Workflow chunks posted to the writer (workflow.ts), by id. */
  private readonly workflowOps = new Map<number, { resolve: (r: { changed: number; found: number }) => void; reject: (e: Error) => void }>();
  private nextWorkflowId = 1;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
    this.stmts = {
      insertToken: db.prepare('INSERT INTO tokens (hash, name, role, created) VALUES (?, ?, ?, ?)'),
      listTokens: db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens ORDER BY created, name`),
      revokeToken: db.prepare('UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL'),
      lookupToken: db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE hash = ?`),
      // Cheap to run at every sweep; changes when a token is revoked (or one is added).
      tokensVersion: db.prepare("SELECT count(*) || ':' || coalesce(max(created), 0) || ':' || coalesce(sum(revoked), 0) AS v FROM tokens"),
      // No index on uuid alone (see the top of this file): this scans the covering (ts, uuid) index.
      // Every alert with that uuid, newest first (see IDS_BY_UUID_SQL).
      alertsByUuid: db.prepare(`SELECT a.id, a.ts, a.ots, ${docSql('a')} AS doc FROM (${IDS_BY_UUID_SQL}) k CROSS JOIN alerts a ON a.id = k.id ORDER BY a.ts DESC, a.id DESC`),
      alertByKey: db.prepare(`SELECT a.id, a.ts, a.ots, ${docSql('a')} AS doc FROM alerts a WHERE ots = ? AND uuid = ?`),
      alertById: db.prepare(`SELECT ${docSql('a')} AS doc FROM alerts a WHERE id = ?`),
      // A document that is not valid JSON (an older build's) keeps its text; the row's status changes all the same.
      setStatus: db.prepare(`UPDATE alerts SET ${STATUS_SET_SQL} WHERE id = @id`),
      idsByKey: db.prepare('SELECT id FROM alerts WHERE ots = ? AND uuid = ?'),
      idsByUuids: db.prepare(`SELECT x.uuid, x.id FROM hx.uuid_id x WHERE x.uuid IN (SELECT value FROM json_each(?))
        UNION SELECT a.uuid, a.id FROM alerts a NOT INDEXED WHERE a.id > (SELECT coalesce(max(value), 0) FROM hx.state WHERE key = 'cursor')
          AND a.uuid IN (SELECT value FROM json_each(?))`),
      maxId: db.prepare('SELECT coalesce(max(id), 0) AS id FROM alerts'),
      history: db.prepare(HISTORY_SQL),
      tokenOfAgent: db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE agent_id = ? AND revoked IS NULL ORDER BY created LIMIT 1`),
      quarantine: db.prepare('SELECT * FROM quarantine WHERE (@agentId IS NULL OR agent_id = @agentId) AND id < @before ORDER BY id DESC LIMIT @limit'),
      quarantineCount: db.prepare('SELECT count(*) AS n FROM quarantine'),
      agents: db.prepare('SELECT * FROM agents ORDER BY hostname, agent_id'),
      overdue: db.prepare(OVERDUE_SQL),
      fleet: db.prepare(FLEET_SQL),
      exceptions: db.prepare(EXCEPTIONS_SQL),
      // Again overdue when marked: the agent may have been heard from since the scan (markOffline).
      markOffline: db.prepare('UPDATE agents SET online = 0 WHERE agent_id = ? AND online = 1 AND last_seen + coalesce(heartbeat_ms, 10000) * ? < ?'),
      ping: db.prepare('SELECT 1 AS ok'),
      hostLast: db.prepare('SELECT agent_id AS agentId, generation, sha256 FROM host_seals WHERE host_id = ? ORDER BY last_seen DESC, generation DESC LIMIT 1'),
      hostMaxGeneration: db.prepare('SELECT max(generation) AS g FROM host_seals WHERE host_id = ?'),
      hostSeal: db.prepare('SELECT 1 AS ok FROM host_seals WHERE host_id = ? AND generation = ? AND sha256 = ?'),
    };
  }

  /**
   * Opens (creating 0600 in a 0700 folder) the database and brings its schema up to date. With
   * `workers` (the collector), group commits and WAL checkpoints run in worker threads; without
   * (`ldguard token`), commit() is not available.
   */
  static open(path: string, opts: { workers?: boolean; onMigrate?: (message: string) => void } = {}): SqliteStore {
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
      db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
      const v = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
      const version = v ? Number(v.value) : SCHEMA_VERSION;
      if (version > SCHEMA_VERSION) {
        db.close();
        throw new LdgError('LDG_ERR_DB_SCHEMA', `${path} was written by a newer ldguard (schema ${v!.value}); run that version, or give another --db`);
      }
      let upgraded: string | null = null;
      db.transaction(() => {
        if (version === 1) {
          const t0 = performance.now();
          const n = (db.prepare('SELECT count(*) AS n FROM alerts').get() as { n: number }).n;
          opts.onMigrate?.(`upgrading ${path} from schema 1 to ${SCHEMA_VERSION} (${n} alerts; the table is copied once, this can take a minute per million)`);
          db.exec(MIGRATE_1_TO_2);
          // The key's time as ingest computes it (in JS: SQLite's date functions round differently).
          const set = db.prepare('UPDATE alerts SET ots = ? WHERE id = ?');
          const rows = db.prepare("SELECT id, ts, doc ->> '$.kibana.alert.original_time' AS ot FROM alerts").iterate() as IterableIterator<{ id: number; ts: number; ot: unknown }>;
          const updates: Array<[number, number]> = [];
          for (const r of rows) updates.push([originalTime(r.ot, r.ts), r.id]);
          for (const [ots, id] of updates) set.run(ots, id);
          upgraded = `schema 1 to ${SCHEMA_VERSION}, ${n} alerts in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
        }
        if (version <= 2 && db.prepare("SELECT 1 FROM pragma_table_info('alerts') WHERE name = 'future'").get() === undefined) {
          db.exec(MIGRATE_2_TO_3);
          upgraded ??= `schema ${version} to ${SCHEMA_VERSION}`;
        }
        db.exec(SCHEMA);
        db.exec(MIGRATE_3_TO_4);
        migrate4To5(db);
        // The columns and indexes; the rows are filled after this transaction, in batches.
        migrateTo6(db);
        if (version >= 3 && version < SCHEMA_VERSION) upgraded ??= `schema ${version} to ${SCHEMA_VERSION}`;
        db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(SCHEMA_VERSION));
      }).immediate();
      const filled = fillGroupKeysSqlite(db, opts.onMigrate);
      if (filled) upgraded = upgraded ? `${upgraded}; ${filled}` : filled;
      prepareHostIndex(db, hostsDbPath(path));
      db.prepare('ATTACH DATABASE ? AS hx').run(hostsDbPath(path));
      const store = new SqliteStore(path, db);
      store.upgraded = upgraded;
      if (opts.workers) {
        try {
          store.startWorkers();
        } catch (err) {
          // Threads already started would keep the process alive after the error is reported.
          void store.close();
          throw err;
        }
      }
      return store;
    } catch (err) {
      if (err instanceof LdgError) throw err;
      throw new LdgError('LDG_ERR_DB', `cannot open the database ${path}: ${errorMessage(err)}. Check --db and that its folder is writable`, { cause: err });
    }
  }

  /**
   * Commits one group in one transaction (in the writer thread); resolves once it is durable, with
   * the alerts newly inserted. Rejects, having committed nothing, on any error. At most two in
   * flight; they commit, and settle, in the order they were made.
   */
  commit(work: CommitWork): Promise<CommitResult> {
    const writer = this.writer;
    if (!writer) return Promise.reject(new Error('Store.commit needs Store.open(path, { workers: true })'));
    // The documents' buffers are reused (WireWork), one per commit in flight.
    if (this.commits.size >= this.docsBuffers.length) return Promise.reject(new Error(`Store.commit: at most ${this.docsBuffers.length} commits at a time; wait for the oldest`));
    const id = this.nextCommitId++;
    // Commits settle in order, so commit id − 2 (the last user of this buffer) has settled.
    const { wire, transfer } = toWire(work, this.docsBuffers[id % this.docsBuffers.length]!);
    return new Promise((resolve, reject) => {
      this.commits.set(id, { resolve, reject });
      writer.postMessage({ type: 'commit', id, work: wire }, transfer);
    });
  }

  // ---- tokens

  /** Creates a token and returns it: the only time it exists outside the holder's hands. */
  async createToken(name: string, role: Role, now = Date.now()): Promise<string> {
    checkTokenName(name, role);
    const token = newTokenSecret();
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

  async listTokens(): Promise<TokenInfo[]> {
    return this.stmts.listTokens.all() as TokenInfo[];
  }

  /** Revokes the active token of that name; false when there is none. Committed when it returns. */
  async revokeToken(name: string, now = Date.now()): Promise<boolean> {
    return this.stmts.revokeToken.run(now, name).changes > 0;
  }

  /**
   * Gives the active token of that name a new secret on the same row: name, role, created and the
   * bound agent id stay, the old secret matches nothing from the commit on. Returns the new token
   * (the only time it exists outside the holder's hands) and the row, or undefined when no token of
   * that name is active. Prepared here rather than with the other statements: it runs once per
   * `ldguard token rotate`.
   */
  async rotateToken(name: string): Promise<{ token: string; info: TokenInfo } | undefined> {
    const token = newTokenSecret();
    const hash = hashToken(token);
    return this.db.transaction(() => {
      const info = this.db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE name = ? AND revoked IS NULL`).get(name) as TokenInfo | undefined;
      if (!info) return undefined;
      this.db.prepare('UPDATE tokens SET hash = ? WHERE hash = ?').run(hash, info.hash);
      // A rotation changes no count, created or revoked: counted here for tokensVersion.
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('token_rotations', '1') ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1").run();
      return { token, info: { ...info, hash } };
    }).immediate();
  }

  lookupToken(token: string): TokenInfo | undefined {
    return this.stmts.lookupToken.get(hashToken(token)) as TokenInfo | undefined;
  }

  lookupTokenHash(hash: string): TokenInfo | undefined {
    return this.stmts.lookupToken.get(hash) as TokenInfo | undefined;
  }

  /** The active token an agent id is bound to, if any. */
  tokenOfAgent(agentId: string): TokenInfo | undefined {
    return this.stmts.tokenOfAgent.get(agentId) as TokenInfo | undefined;
  }

  /**
   * Changes when a token is created, rotated or revoked (by `ldguard token` in another process).
   * The collector compares it at each sweep and rechecks its connections' tokens only then: SQLite's
   * data_version changes with every commit of the writer thread, i.e. all the time.
   */
  tokensVersion(): string {
    this.rotationsStmt ??= this.db.prepare("SELECT coalesce((SELECT value FROM meta WHERE key = 'token_rotations'), '0') AS r");
    return `${(this.stmts.tokensVersion.get() as { v: string }).v}:${(this.rotationsStmt.get() as { r: string }).r}`;
  }

  /** tokensVersion's count of rotations (see rotateToken). */
  private rotationsStmt: Database.Statement | undefined;

  // ---- alerts

  async queryAlerts(q: AlertQuery): Promise<{ docs: string[]; next: string | null } | undefined> {
    // On the (ts, id) keys: the host's (hostKeysSql) or all of them; the rest on the rows.
    const keyWhere: string[] = [];
    const keyParams: unknown[] = [];
    const where: string[] = [];
    const params: unknown[] = [];
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
    if (q.of) {
      const col = GROUP_COLUMNS[q.of.by];
      if (q.of.key === null) where.push(`${col} IS NULL`);
      else {
        where.push(`${col} = ?`);
        params.push(q.of.key);
      }
    }
    if (q.text !== undefined) {
      // A scan along the list's order, stopped by the page: the dashboard's search index
      // (web/indexer.ts) is the indexed way on SQLite. instr on lower() for a case-insensitive
      // match of any text, with no LIKE wildcards to escape.
      where.push('instr(lower(doc), lower(?)) > 0');
      params.push(q.text);
    }
    if (q.since !== undefined) {
      keyWhere.push('ts >= ?');
      keyParams.push(q.since);
    }
    if (q.until !== undefined) {
      keyWhere.push('ts < ?');
      keyParams.push(q.until);
    }
    if (q.before !== undefined) {
      // A "ts.id" cursor (what `next` gives), or the uuid of the previous page's last alert (what
      // schema 1 gave; still taken, at the cost of a scan).
      const cursor = /^(-?\d{1,16})\.(\d{1,16})$/.exec(q.before);
      const row = cursor ? { ts: Number(cursor[1]), id: Number(cursor[2]) } : (this.stmts.alertsByUuid.get(q.before, q.before) as { id: number; ts: number } | undefined);
      if (!row) return undefined;
      keyWhere.push('(ts, id) < (?, ?)');
      keyParams.push(row.ts, row.id);
    }
    let sql: string;
    if (q.host !== undefined) {
      // LIMIT -1 keeps the subquery's ORDER BY (SQLite drops it otherwise, then sorts all the
      // host's rows): its two sides are merged as they come, the index in order and the few rows
      // past its cursor sorted, and the walk stops with the page.
      sql = `SELECT a.id, a.ts, ${docSql('a')} AS doc FROM (${hostKeysSql(keyWhere)} ORDER BY ts DESC, id DESC LIMIT -1) k CROSS JOIN alerts a ON a.id = k.id
        ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY k.ts DESC, k.id DESC LIMIT ?`;
      params.unshift(q.host, ...keyParams, q.host, ...keyParams);
    } else {
      where.unshift(...keyWhere);
      params.unshift(...keyParams);
      sql = `SELECT a.id, a.ts, ${docSql('a')} AS doc FROM alerts a ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ?`;
    }
    const rows = this.prepCached(sql).all(...params, q.limit + 1) as Array<{ id: number; ts: number; doc: string }>;
    const more = rows.length > q.limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { docs: rows.map((r) => r.doc), next: more && last ? `${last.ts}.${last.id}` : null };
  }

  async alertGroups(q: GroupQuery): Promise<GroupPage> {
    const { sql, params } = groupStatement(q, 'sqlite');
    return groupPage(q, await this.readOffLoop(sql, params));
  }

  /**
   * The alerts an id names: a key (`ots~uuid`, see alertKey) names one; a uuid every alert that
   * carries it (different events may share one), newest first.
   */
  async findAlerts(id: string): Promise<Array<{ id: number; key: string; doc: string }>> {
    const key = /^(-?\d{1,16})~(.+)$/.exec(id);
    const rows = (key ? this.stmts.alertByKey.all(Number(key[1]), key[2]) : this.stmts.alertsByUuid.all(id, id)) as Array<{ id: number; ots: number; doc: string }>;
    return rows.map((r) => ({ id: r.id, key: alertKey(r.ots, id.includes('~') ? key![2]! : id), doc: r.doc }));
  }

  /** Sets the workflow status of one alert (in the row and in the document); the new document, or undefined. */
  async setStatus(rowId: number, status: WorkflowStatus, by: string, at = Date.now()): Promise<string | undefined> {
    const n = this.stmts.setStatus.run({ id: rowId, status, by, at, atIso: new Date(at).toISOString() }).changes;
    return n > 0 ? (this.stmts.alertById.get(rowId) as { doc: string } | undefined)?.doc : undefined;
  }

  private prepCached(sql: string): Database.Statement {
    let stmt = this.queryCache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.queryCache.set(sql, stmt);
    }
    return stmt;
  }

  async resolveAlertIds(ids: readonly string[]): Promise<{ rows: number[]; missing: string[] }> {
    const rows: number[] = [];
    const missing: string[] = [];
    const uuids: string[] = [];
    for (const id of ids) {
      const key = /^(-?\d{1,16})~(.+)$/.exec(id);
      if (!key) {
        uuids.push(id);
        continue;
      }
      // A key is one lookup on the idempotence index: nothing lags behind it.
      const found = this.stmts.idsByKey.all(Number(key[1]), key[2]) as Array<{ id: number }>;
      if (found.length === 0) missing.push(id);
      for (const f of found) rows.push(f.id);
    }
    // Uuids go through the derived index and the rows past its cursor, a batch per statement: one
    // walk of the lag for the batch, not one per uuid (which held the event loop for 470 ms per
    // 1,000 uuids behind a fresh 10,000-row ingest). Batches yield the event loop in between.
    for (let i = 0; i < uuids.length; i += RESOLVE_BATCH) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const batch = uuids.slice(i, i + RESOLVE_BATCH);
      const found = this.stmts.idsByUuids.all(JSON.stringify(batch), JSON.stringify(batch)) as Array<{ uuid: string; id: number }>;
      const seen = new Set<string>();
      for (const f of found) {
        rows.push(f.id);
        seen.add(f.uuid);
      }
      for (const u of batch) if (!seen.has(u)) missing.push(u);
    }
    return { rows, missing };
  }

  async previewBulk(filter: BulkFilter): Promise<BulkPreview> {
    const upTo = (this.stmts.maxId.get() as { id: number }).id;
    const params: unknown[] = [];
    const where = filterSql(filter, (v) => (params.push(v), '?'), 'sqlite');
    const [row] = await this.readOffLoop<{ n: number }>(`SELECT count(*) AS n FROM alerts WHERE ${[...where, 'id <= ?'].join(' AND ')}`, [...params, upTo]);
    return { count: row!.n, upTo };
  }

  bulkWorkflow(sel: BulkSelection, change: WorkflowChange, by: string, at = Date.now()): Promise<BulkResult> {
    return applyBulk(this.workflowRows, sel, change, by, at);
  }

  async alertHistory(rowId: number): Promise<HistoryEntry[]> {
    return (this.stmts.history.all(rowId) as Array<Parameters<typeof historyEntry>[0]>).map(historyEntry);
  }

  async addNote(rowId: number, text: string, by: string, at = Date.now()): Promise<boolean> {
    return (await this.workflowOp({ kind: 'note', id: rowId, text, by, at })).changed > 0;
  }

  /** The driver's view of this store (workflow.ts): filters read here, chunks written by the writer thread. */
  private readonly workflowRows: WorkflowRows = {
    selectIds: async (filter, upTo, after, limit) => {
      const params: unknown[] = [];
      const where = filterSql(filter, (v) => (params.push(v), '?'), 'sqlite');
      return (await this.readOffLoop<{ id: number }>(`SELECT id FROM alerts WHERE ${[...where, 'id > ?', 'id <= ?'].join(' AND ')} ORDER BY id LIMIT ?`, [...params, after, upTo, limit]))
        .map((r) => r.id);
    },
    applyChunk: (ids, change, by, at) => this.workflowOp(change.kind === 'status'
      ? { kind: 'status', ids: JSON.stringify(ids), status: change.status, by, at, atIso: new Date(at).toISOString() }
      : { kind: 'assignee', ids: JSON.stringify(ids), assignee: change.assignee, by, at }),
  };

  private workflowOp(op: Record<string, unknown>): Promise<{ changed: number; found: number }> {
    const writer = this.writer;
    if (!writer) return Promise.reject(new Error('the workflow needs Store.open(path, { workers: true })'));
    const id = this.nextWorkflowId++;
    return new Promise((resolve, reject) => {
      this.workflowOps.set(id, { resolve, reject });
      writer.postMessage({ type: 'workflow', id, op });
    });
  }

  // ---- quarantine

  /** Quarantined alerts, newest first; `before` is the id of the last one of the previous page. */
  async listQuarantine(q: { limit: number; agentId?: string; before?: number }): Promise<QuarantineView[]> {
    const rows = this.stmts.quarantine.all({ agentId: q.agentId ?? null, before: q.before ?? Number.MAX_SAFE_INTEGER, limit: q.limit }) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      id: r.id as number,
      agentId: r.agent_id as string,
      tokenName: r.token_name as string,
      seq: r.seq as number,
      uuid: r.uuid as string | null,
      reason: r.reason as string,
      text: r.text as string,
      size: r.size as number,
      truncated: (r.size as number) > Buffer.byteLength(r.text as string),
      received: new Date(r.received as number).toISOString(),
    }));
  }

  async quarantineCount(): Promise<number> {
    return (this.stmts.quarantineCount.get() as { n: number }).n;
  }

  // ---- agents

  async listAgents(): Promise<AgentView[]> {
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

  /**
   * Marks offline the agents unheard for `missed` heartbeat periods; resolves with them. The scan
   * for them runs in the checkpointer thread when there is one (see CHECKPOINT_WORKER), the few
   * updates here.
   */
  async markOffline(now: number, missed: number): Promise<Array<{ agentId: string; hostname: string | null; lastSeen: number }>> {
    const rows = await this.scan<OverdueRow>('overdue', [missed, now]);
    if (rows.length === 0 || !this.db.open) return [];
    const gone: OverdueRow[] = [];
    this.db.transaction(() => {
      for (const r of rows) if (this.stmts.markOffline.run(r.agent_id, missed, now).changes > 0) gone.push(r);
    })();
    return gone.map((r) => ({ agentId: r.agent_id, hostname: r.hostname, lastSeen: r.last_seen }));
  }

  // ---- host continuity (collector/src/continuity.ts): small, synchronous, rare (hellos and baseline saves)

  async hostHistory(hostId: string, seal?: { generation: number; sha256: string }): Promise<HostHistory | null> {
    const last = this.stmts.hostLast.get(hostId) as { agentId: string; generation: number; sha256: string } | undefined;
    if (!last) return null;
    const max = (this.stmts.hostMaxGeneration.get(hostId) as { g: number }).g;
    return { lastAgentId: last.agentId, maxGeneration: max, sealKnown: seal ? this.stmts.hostSeal.get(hostId, seal.generation, seal.sha256) !== undefined : false };
  }


  /** The fleet's numbers: agents known, online, offline, degraded, and their spools and losses. */
  async fleet(): Promise<FleetSummary> {
    const [f] = await this.scan<Omit<FleetSummary, 'offline'>>('fleet', []);
    return { ...f!, offline: f!.total - f!.online };
  }

  /** Events spared per exception list item, summed over the agents' last health (see EXCEPTIONS_SQL). */
  exceptionCounts(): Promise<Array<{ ruleId: string; listId: string; itemId: string; count: number }>> {
    return this.scan('exceptions', []);
  }

  /**
   * A read that looks at every row a filter selects (the grouped reads: 270 ms by host at 100,000
   * alerts here; a bulk workflow's selection, 100 ms per 10,000), in the checkpointer thread as
   * AGENT_SCANS are: on the main connection it would hold the event loop, and every ack, that long. The checkpoints wait behind it meanwhile (the
   * writer checkpoints itself past 2000 WAL pages). Here when there is no thread (no workers).
   */
  private readOffLoop<T>(sql: string, args: unknown[]): Promise<T[]> {
    const w = this.checkpointer;
    if (!w) return Promise.resolve(this.prepCached(sql).all(...args) as T[]);
    const id = this.nextQueryId++;
    return new Promise((resolve, reject) => {
      this.queries.set(id, { resolve: resolve as (rows: unknown[]) => void, reject });
      w.postMessage({ type: 'read', id, sql, args });
    });
  }

  /** Runs one of AGENT_SCANS in the checkpointer thread, or here when there is none (no workers). */
  private scan<T>(name: keyof typeof AGENT_SCANS, args: unknown[]): Promise<T[]> {
    const w = this.checkpointer;
    if (!w) return Promise.resolve(this.stmts[name].all(...args) as T[]);
    const id = this.nextQueryId++;
    return new Promise((resolve, reject) => {
      this.queries.set(id, { resolve: resolve as (rows: unknown[]) => void, reject });
      w.postMessage({ type: 'scan', id, name, args });
    });
  }

  async healthy(): Promise<boolean> {
    try {
      return (this.stmts.ping.get() as { ok: number }).ok === 1;
    } catch {
      return false;
    }
  }

  /** One collector per SQLite file: nobody else stores alerts in it. */
  onRemoteAlerts(_listener: RemoteAlertsListener): void {}

  private startWorkers(): void {
    // The main connection only reads and makes small writes: it never checkpoints (see above).
    this.db.pragma('wal_autocheckpoint = 0');
    // Once the WAL has been recycled, truncate it back to this size rather than keep it large.
    this.db.pragma('journal_size_limit = 67108864');
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const writer = new Worker(WRITER_WORKER, { eval: true, workerData: { sqlite, path: this.path, sql: WRITE_SQL } });
    writer.on('message', (m: { id: number; workflow?: boolean; ok: boolean; result?: CommitResult; error?: string; code?: string }) => {
      if (m.workflow) {
        const w = this.workflowOps.get(m.id);
        this.workflowOps.delete(m.id);
        if (m.ok) w?.resolve(m.result as unknown as { changed: number; found: number });
        else w?.reject(Object.assign(new Error(m.error), { code: m.code }));
        return;
      }
      const c = this.commits.get(m.id);
      if (!c) return;
      this.commits.delete(m.id);
      if (m.ok) c.resolve(m.result!);
      else c.reject(Object.assign(new Error(m.error), { code: m.code }));
    });
    writer.on('error', (err) => {
      for (const c of [...this.commits.values(), ...this.workflowOps.values()]) c.reject(err);
      this.commits.clear();
      this.workflowOps.clear();
    });
    writer.on('exit', () => {
      if (this.writer === writer) this.writer = undefined;
      for (const c of [...this.commits.values(), ...this.workflowOps.values()]) c.reject(new Error('the database writer thread stopped'));
      this.commits.clear();
      this.workflowOps.clear();
    });
    this.writer = writer;
    const checkpointer = new Worker(CHECKPOINT_WORKER, { eval: true, workerData: { sqlite, path: this.path, intervalMs: CHECKPOINT_INTERVAL_MS, scans: AGENT_SCANS } });
    checkpointer.on('message', (m: { id: number; rows?: unknown[]; error?: string }) => {
      const q = this.queries.get(m.id);
      if (!q) return;
      this.queries.delete(m.id);
      if (m.rows) q.resolve(m.rows);
      else q.reject(new Error(m.error));
    });
    checkpointer.on('exit', () => {
      if (this.checkpointer === checkpointer) this.checkpointer = undefined;
      for (const q of this.queries.values()) q.reject(new Error('the database checkpointer thread stopped'));
      this.queries.clear();
    });
    this.checkpointer = checkpointer;
    this.hostIndexer = new Worker(HOST_INDEX_WORKER, {
      eval: true,
      workerData: { sqlite, path: this.path, hostsPath: hostsDbPath(this.path), batch: HOST_INDEX_BATCH, intervalMs: 100, pressure: this.pressure.buffer, floodBatch: FLOOD_BATCH, floodDuty: FLOOD_DUTY },
    });
    // Behind, a host filter only scans more new rows (hostKeysSql): worth a warning, not a failure.
    const hostIndexWarning = (message: string) => {
      if (Date.now() - this.lastHostIndexWarning < 60_000) return;
      this.lastHostIndexWarning = Date.now();
      process.emitWarning(`ldguard: host index: ${message}; host filters scan the alerts past it until it recovers`);
    };
    this.hostIndexer.on('message', (m: { error?: string }) => m.error && hostIndexWarning(m.error));
    this.hostIndexer.on('error', (err) => hostIndexWarning(`thread failed (${errorMessage(err)})`));
    this.hostIndexer.unref();
    this.checkpointer.on('error', (err) => {
      // Without checkpoints the WAL only grows: checkpoint in this thread rather than not at all.
      this.db.pragma('wal_autocheckpoint = 1000');
      process.emitWarning(`ldguard: WAL checkpointer failed (${errorMessage(err)}); checkpointing in the main thread instead`);
    });
  }

  /** Stops the workers (after the commit in progress; the checkpointer runs a last checkpoint) and closes the database. */
  close(): Promise<void> {
    if (!this.writer && !this.checkpointer && !this.hostIndexer) {
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
    const { writer, checkpointer, hostIndexer } = this;
    this.writer = undefined;
    this.checkpointer = undefined;
    this.hostIndexer = undefined;
    await stop(hostIndexer, 'stop');
    await stop(writer, { type: 'stop' });
    await stop(checkpointer, 'stop');
    if (this.db.open) this.db.close();
  }
}

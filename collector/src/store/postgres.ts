// The collector's store on PostgreSQL (the `pg` package, 8.x): several stateless collectors over
// one database, each accepting agents and serving the API. What the SQLite store keeps in one
// process is here in the database, so that any collector can take any agent:
//
// - Schema: versioned migrations (MIGRATIONS), applied at start by whichever collector first takes
//   the advisory lock MIGRATION_LOCK; the others wait on it, then find the schema current.
// - Alerts: the document is `bytea`, the bytes the agent sent (jsonb refuses \u0000 and rewrites
//   documents). Unique by (ots, uuid, agent_id), a constraint: the same alert sent to two
//   collectors is stored once. A row the database refuses (a text column it cannot hold) does not
//   fail the commit: it goes to the quarantine with the database's reason (insertAlerts).
// - Revocation: a commit reads its senders' tokens FOR SHARE, so a revoke (an UPDATE of that row)
//   waits for the commits that read it and every later commit sees it: no collector stores, and so
//   acks, a revoked token's alert after the revoke commits.
// - The token view (store.ts): a copy of the tokens table, refreshed from the changed rows (a
//   sequence, `rev`) on NOTIFY ldguard_tokens and every TOKEN_REFRESH_MS whatever happens to the
//   notifications: a revoke, a binding or a rotation made on one collector holds on all within
//   about a second.
// - Live feed: each commit NOTIFYs ldguard_alerts with its collector's id and the new row ids only
//   (a payload must stay under 8,000 bytes; an alert may be 64 KiB), chunked. The others read those
//   rows. LISTEN needs a session of its own (not a transaction pooler); after any reconnect a
//   collector reads what it missed from the last id it saw (catchUp).
// - Presence: an agent row holds a lease (lease_until = last heard + missed heartbeat periods),
//   renewed by every write about it; markOffline is one UPDATE of the lapsed leases, so each
//   agent going offline is reported by exactly one collector.
//
// Commits run one at a time on one connection, in the order they were made: ingest's acks rely on
// that order, and two transactions on two connections may commit in either.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { WorkflowStatus } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { FleetSummary } from '../../web/src/api-types.js';
import { connectionPassword, type PassFileTarget } from './pgpass.js';
import { IngestPressure } from './pressure.js';
import { inTransaction } from './pg-tx.js';
import { applyBulk, historyEntry, type HistoryEntry, type BulkFilter, type BulkPreview, type BulkResult, type BulkSelection, type WorkflowChange, type WorkflowRows } from './workflow.js';
import { GROUP_COLUMNS } from './group-keys.js';
import { filterSql, groupsPostgres, type GroupPage, type GroupQuery } from './groups.js';
import { fillGroupKeysPostgres, GROUP_KEY_COLUMNS, groupKeyArrays, groupKeyColumns } from './group-fill.js';
import {
  QUARANTINE_MAX_ROWS, QUARANTINE_MAX_ROWS_PER_AGENT, QUARANTINE_TEXT_CHARS, alertKey, alertRows, batchSize, checkTokenName, hashToken, newTokenSecret,
  stampedDoc, type AgentView, type AlertQuery, type AlertRow, type CommitResult, type CommitWork, type QuarantineRow, type QuarantineView,
  type RemoteAlertsListener, type Role, type Store, type TokenInfo, type HostHistory, type SealRow,
} from './store.js';

/** Key of the advisory lock held while migrating (any fixed bigint; "ldguard" in ASCII). */
const MIGRATION_LOCK = '0x6c64677561726400';
/** The token view is refreshed at least this often, notifications or not. */
const TOKEN_REFRESH_MS = 500;
/** An unknown token makes the collector read the tokens again (catchUpTokens), at most this often: a flood of wrong tokens costs one small query per interval. */
const CATCH_UP_MIN_MS = 50;
/** NOTIFY payloads stay under this many bytes (the server's limit is 8,000). */
const NOTIFY_MAX = 7_900;
/** After a LISTEN reconnect, rows this far below the last id seen are read again: ids are taken at insert and commit later, so a lower id can commit after a higher one. */
const CATCHUP_WINDOW = 20_000;
/** At most this many alerts are read back per catch-up (a feed shows the newest; the API has them all). */
const CATCHUP_MAX = 5_000;
/** Ids already delivered to the feed (own and remote) remembered, so a catch-up repeats none. */
const DELIVERED_MAX = 50_000;

/**
 * Versioned migrations: the n-th entry takes the schema from version n to n + 1, in one
 * transaction. Never edit one that has shipped; add the next.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE TABLE alerts (
    id bigserial PRIMARY KEY,
    uuid text NOT NULL, ts bigint NOT NULL, ots bigint NOT NULL, host text, rule_id text NOT NULL, rule_name text,
    severity text NOT NULL, status text NOT NULL, status_by text, status_at bigint,
    agent_id text NOT NULL, token_name text NOT NULL, received bigint NOT NULL, future boolean NOT NULL DEFAULT false,
    doc bytea NOT NULL,
    CONSTRAINT alerts_sender_key UNIQUE (ots, uuid, agent_id)
  );
  CREATE INDEX alerts_ts ON alerts (ts DESC, id DESC);
  CREATE INDEX alerts_host_ts ON alerts (host, ts DESC, id DESC);
  CREATE INDEX alerts_uuid ON alerts (uuid);
  CREATE INDEX alerts_triaged ON alerts (status, ts DESC, id DESC) WHERE status <> 'open';
  -- The document as text for search. convert_from is only STABLE (it reads the encoding): the
  -- database's encoding is fixed at creation, so this wrapper may say IMMUTABLE and be indexed.
  CREATE FUNCTION ldguard_doc_text(bytea) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(convert_from($1, 'UTF8')) $$;
  CREATE INDEX alerts_doc_trgm ON alerts USING gin (ldguard_doc_text(doc) gin_trgm_ops);
  -- Health and facts are kept as sent (text); read as JSON only where that succeeds.
  CREATE FUNCTION ldguard_json(text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE STRICT AS $$
    BEGIN RETURN $1::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$;
  CREATE TABLE alert_history (alert_id bigint NOT NULL, status text NOT NULL, by text, at bigint NOT NULL);
  CREATE INDEX alert_history_alert ON alert_history (alert_id, at);
  CREATE SEQUENCE token_rev;
  CREATE TABLE tokens (
    id bigserial PRIMARY KEY, hash text NOT NULL UNIQUE, name text NOT NULL,
    role text NOT NULL CHECK (role IN ('agent', 'admin')), created bigint NOT NULL, revoked bigint, agent_id text,
    rev bigint NOT NULL DEFAULT nextval('token_rev')
  );
  CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked IS NULL;
  CREATE INDEX tokens_rev ON tokens (rev);
  CREATE TABLE agents (
    agent_id text PRIMARY KEY, hostname text, version text, token_name text, heartbeat_ms bigint, facts text, health text,
    spool_depth bigint, events_lost bigint, spool_overflow bigint, first_seen bigint NOT NULL, last_seen bigint NOT NULL,
    lease_until bigint NOT NULL, online boolean NOT NULL DEFAULT true
  );
  CREATE INDEX agents_lease ON agents (lease_until) WHERE online;
  CREATE TABLE quarantine (
    id bigserial PRIMARY KEY, agent_id text NOT NULL, token_name text NOT NULL, seq bigint NOT NULL, uuid text,
    reason text NOT NULL, text text NOT NULL, size integer NOT NULL, received bigint NOT NULL
  );
  CREATE INDEX quarantine_agent ON quarantine (agent_id, id);`,
  // 2: the baseline seals each host's agent told (collector/src/continuity.ts), as SQLite's schema 4.
  `CREATE TABLE host_seals (
    host_id text NOT NULL, generation bigint NOT NULL, sha256 text NOT NULL, agent_id text NOT NULL,
    first_seen bigint NOT NULL, last_seen bigint NOT NULL,
    PRIMARY KEY (host_id, generation, sha256)
  );
  CREATE INDEX host_seals_last ON host_seals (host_id, last_seen DESC);`,
  // 3: the dashboard's credentials (collector/src/credentials/postgres.ts), as SQLite's
  // (credentials/sqlite.ts, audit.ts): passwords and sessions that live and die with their admin
  // token's row, and the append-only audit log.
  `CREATE TABLE web_passwords (token_hash text PRIMARY KEY, hash text NOT NULL, updated bigint NOT NULL);
  CREATE TABLE web_sessions (
    hash text PRIMARY KEY, name text NOT NULL, token_hash text NOT NULL, csrf text NOT NULL,
    created bigint NOT NULL, last_used bigint NOT NULL, expires bigint NOT NULL
  );
  CREATE INDEX web_sessions_expires ON web_sessions (expires);
  CREATE INDEX web_sessions_token ON web_sessions (token_hash);
  -- Only changes of hash or revoked concern them: an agent binding (agent_id) leaves them be.
  CREATE FUNCTION ldguard_web_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'UPDATE' AND new.hash IS DISTINCT FROM old.hash THEN
      UPDATE web_passwords SET token_hash = new.hash WHERE token_hash = old.hash;
      DELETE FROM web_sessions WHERE token_hash = old.hash;
    END IF;
    IF TG_OP = 'DELETE' OR new.revoked IS NOT NULL THEN
      DELETE FROM web_passwords WHERE token_hash = old.hash;
      DELETE FROM web_sessions WHERE token_hash = old.hash;
    END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER web_credentials AFTER UPDATE OF hash, revoked OR DELETE ON tokens FOR EACH ROW EXECUTE FUNCTION ldguard_web_credentials();
  CREATE TABLE audit_log (
    id bigserial PRIMARY KEY, at bigint NOT NULL, actor text NOT NULL, action text NOT NULL, token_name text, detail text
  );
  -- Append-only, as SQLite's: no code path (ours, or a slip at psql) rewrites history. The table's
  -- owner can still drop the trigger: the log is for the record, not a seal.
  CREATE FUNCTION ldguard_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'LDG_ERR_AUDIT_APPEND_ONLY: the audit log is append-only; its rows are never %',
      CASE TG_OP WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END USING ERRCODE = 'restrict_violation';
  END $$;
  CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION ldguard_audit_append_only();
  CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION ldguard_audit_append_only();`,
  // 4: the dashboard's counts (collector/src/web/reads-postgres.ts), as SQLite's search database
  // keeps them (web/indexer.ts: by_minute, by_hour, rules), but kept by a statement trigger in the
  // inserting transaction, whoever inserts (a commit, ldguard db copy): never behind the alerts.
  // One upsert per bucket per statement, in key order (two commits never wait on each other in a
  // cycle). The minute row every commit touches is split in 16 rows by the inserting session
  // (its backend pid), so commits of several collectors do not queue on one row lock.
  `CREATE TABLE alert_minutes (minute bigint NOT NULL, shard smallint NOT NULL, n bigint NOT NULL, PRIMARY KEY (minute, shard));
  CREATE TABLE alert_hours (
    hour bigint NOT NULL, host text NOT NULL, rule_id text NOT NULL, severity text NOT NULL, n bigint NOT NULL,
    PRIMARY KEY (hour, host, rule_id, severity)
  );
  CREATE TABLE alert_rules (rule_id text PRIMARY KEY, name text);
  CREATE FUNCTION ldguard_count_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO alert_minutes (minute, shard, n)
      SELECT floor(ts / 60000.0)::bigint, pg_backend_pid() % 16, count(*) FROM new_alerts GROUP BY 1 ORDER BY 1
      ON CONFLICT (minute, shard) DO UPDATE SET n = alert_minutes.n + excluded.n;
    INSERT INTO alert_hours (hour, host, rule_id, severity, n)
      SELECT floor(ts / 3600000.0)::bigint, coalesce(host, ''), rule_id, severity, count(*) FROM new_alerts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
      ON CONFLICT (hour, host, rule_id, severity) DO UPDATE SET n = alert_hours.n + excluded.n;
    -- DO NOTHING takes no lock on a rule row that is there already (DO UPDATE would, on every commit).
    INSERT INTO alert_rules (rule_id, name) SELECT rule_id, max(rule_name) FROM new_alerts GROUP BY 1 ORDER BY 1 ON CONFLICT (rule_id) DO NOTHING;
    UPDATE alert_rules r SET name = n.name FROM (SELECT rule_id, max(rule_name) AS name FROM new_alerts GROUP BY 1) n
      WHERE r.rule_id = n.rule_id AND r.name IS NULL AND n.name IS NOT NULL;
    RETURN NULL;
  END $$;
  CREATE TRIGGER alerts_count AFTER INSERT ON alerts REFERENCING NEW TABLE AS new_alerts FOR EACH STATEMENT EXECUTE FUNCTION ldguard_count_alerts();
  INSERT INTO alert_minutes (minute, shard, n) SELECT floor(ts / 60000.0)::bigint, 0, count(*) FROM alerts GROUP BY 1;
  INSERT INTO alert_hours (hour, host, rule_id, severity, n) SELECT floor(ts / 3600000.0)::bigint, coalesce(host, ''), rule_id, severity, count(*) FROM alerts GROUP BY 1, 2, 3, 4;
  INSERT INTO alert_rules (rule_id, name) SELECT rule_id, max(rule_name) FROM alerts GROUP BY 1;`,
  // 5: the dashboard's preferences per login name (credentials/postgres.ts), as SQLite's
  // (credentials/sqlite.ts): not tied to a token row, so a rotation keeps them.
  `CREATE TABLE web_prefs (name text PRIMARY KEY, time_zone text NOT NULL CHECK (time_zone IN ('utc', 'local')), updated bigint NOT NULL);`,
  // 6: the workflow's assignee and notes (store/workflow.ts), as SQLite's schema 5: alerts.assignee,
  // and the history's entries typed (kind: status | note | assignee, value: the note's text or the
  // assignee; status is the alert's status when the entry was written), in the order they were
  // written (seq: two edits of one row are written in the order they took its lock, which their
  // times, taken before, need not follow).
  `ALTER TABLE alerts ADD COLUMN assignee text;
  ALTER TABLE alert_history ADD COLUMN kind text NOT NULL DEFAULT 'status' CHECK (kind IN ('status', 'note', 'assignee')),
    ADD COLUMN value text, ADD COLUMN seq bigserial;`,
  // 7: the group keys (store/group-keys.ts), as SQLite's schema 6: columns written by every insert
  // (insertAlerts, ldguard db copy), (key, ts) indexes covering the grouped reads (INCLUDE
  // held_back: an index-only scan; host has alerts_host_ts), the summaries' lookup, and the rows left to fill: held_back NULL, filled in
  // batches after the migrations (group-fill.ts), so this transaction only adds empty columns
  // (no table rewrite) and builds the indexes.
  `ALTER TABLE alerts ADD COLUMN file_hash text, ADD COLUMN executable text, ADD COLUMN package text, ADD COLUMN held_back smallint, ADD COLUMN summary_id text;
  CREATE INDEX alerts_g_rule ON alerts (rule_id, ts) INCLUDE (held_back);
  CREATE INDEX alerts_g_hash ON alerts (file_hash, ts) INCLUDE (held_back);
  CREATE INDEX alerts_g_executable ON alerts (executable, ts) INCLUDE (held_back);
  CREATE INDEX alerts_g_package ON alerts (package, ts) INCLUDE (held_back);
  CREATE INDEX alerts_g_sender ON alerts (token_name, ts) INCLUDE (held_back);
  CREATE INDEX alerts_summary ON alerts (summary_id, agent_id, id) WHERE summary_id IS NOT NULL AND held_back = 0;
  CREATE INDEX alerts_unfilled ON alerts (id) WHERE held_back IS NULL;
  -- A held-back record takes its summary's keys; the agent sends the summary first (a row of the
  -- same INSERT before it is visible here: PostgreSQL's rule for row-level BEFORE triggers).
  CREATE FUNCTION ldguard_held_group() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE s record;
  BEGIN
    SELECT a.file_hash, a.executable, a.package INTO s FROM alerts a
      WHERE a.summary_id = new.summary_id AND a.agent_id = new.agent_id AND a.held_back = 0 ORDER BY a.id LIMIT 1;
    IF FOUND THEN
      new.file_hash := s.file_hash;
      new.executable := s.executable;
      new.package := s.package;
    END IF;
    RETURN new;
  END $$;
  CREATE TRIGGER alerts_held_group BEFORE INSERT ON alerts FOR EACH ROW WHEN (new.held_back = 1 AND new.summary_id IS NOT NULL) EXECUTE FUNCTION ldguard_held_group();`,
];

/**
 * An alert's workflow history (parameter: its row id), in the order written (migration 6's seq): of
 * two concurrent edits of one row, the last one wins and is listed last.
 */
export const HISTORY_SQL = 'SELECT kind, status, by, at, value FROM alert_history WHERE alert_id = $1 ORDER BY seq';

/** The tokens' columns tokenInfo reads (credentials/postgres.ts reads them too). */
export const TOKEN_COLUMNS = 'id, hash, name, role, created, revoked, agent_id, rev';
/** The alerts' columns shownDoc needs (web/reads-postgres.ts reads them too). */
export const ALERT_COLUMNS = 'id, uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, future, doc, assignee';

export interface TokenDbRow {
  id: string;
  hash: string;
  name: string;
  role: Role;
  created: string;
  revoked: string | null;
  agent_id: string | null;
  rev: string;
}

export interface AlertDbRow {
  id: string;
  uuid: string;
  ts: string;
  ots: string;
  host: string | null;
  rule_id: string;
  rule_name: string | null;
  severity: string;
  status: string;
  agent_id: string;
  token_name: string;
  received: string;
  future: boolean;
  doc: Buffer;
  assignee: string | null;
}

export const tokenInfo = (r: TokenDbRow): TokenInfo => ({
  hash: r.hash, name: r.name, role: r.role, created: Number(r.created), revoked: r.revoked === null ? null : Number(r.revoked), agentId: r.agent_id,
});

const alertRow = (r: AlertDbRow): AlertRow => ({
  uuid: r.uuid, ts: Number(r.ts), ots: Number(r.ots), host: r.host, ruleId: r.rule_id, ruleName: r.rule_name,
  severity: r.severity as AlertRow['severity'], status: r.status as AlertRow['status'], agentId: r.agent_id, tokenName: r.token_name,
  received: Number(r.received), future: r.future, doc: r.doc, assignee: r.assignee,
});

/** The document with its workflow status (as SQLite's json_set); a document that is not JSON keeps its bytes. */
function withStatus(doc: Buffer, status: WorkflowStatus, by: string, at: number): Buffer {
  try {
    const d = JSON.parse(doc.toString('utf8')) as Record<string, unknown>;
    const kibana = (d.kibana ??= {}) as Record<string, unknown>;
    const alert = (kibana.alert ??= {}) as Record<string, unknown>;
    alert.workflow_status = status;
    alert.workflow_user = by;
    alert.workflow_status_updated_at = new Date(at).toISOString();
    return Buffer.from(JSON.stringify(d), 'utf8');
  } catch {
    // not JSON: the row's status changes all the same
    return doc;
  }
}

/** The document as the API shows it (store.ts stampedDoc); one that is not JSON is shown as stored. */
export function shownDoc(r: AlertDbRow): string {
  try {
    return stampedDoc(alertRow(r));
  } catch {
    return r.doc.toString('utf8');
  }
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Splits ids into NOTIFY payloads "<collector>:<id>,<id>…" under NOTIFY_MAX bytes. */
export function notifyPayloads(collector: string, ids: readonly string[]): string[] {
  const out: string[] = [];
  let cur = '';
  for (const id of ids) {
    if (cur && collector.length + 1 + cur.length + 1 + id.length > NOTIFY_MAX) {
      out.push(`${collector}:${cur}`);
      cur = '';
    }
    cur = cur ? `${cur},${id}` : id;
  }
  if (cur) out.push(`${collector}:${cur}`);
  return out;
}

/**
 * A pg client that finds its password as libpq does (pgpass.ts). Set after construction: pg reads
 * the URL after the options, and the URL's empty password would replace a password function given
 * there (pg 8.23, connection-parameters.js).
 */
class Client extends pg.Client {
  constructor(config?: pg.ClientConfig) {
    super(config);
    const url = this as unknown as { password: unknown };
    const given = url.password;
    // Called only when the server asks for one.
    url.password = async (params: PassFileTarget) => {
      const found = await connectionPassword({ ...params, password: given });
      if (found === undefined) {
        throw new LdgError('LDG_ERR_DB_PASSWORD', `the server asks user ${params.user ?? '?'} for a password and none was found: put one in a password file (PGPASSFILE, mode 0600; under systemd a LoadCredential= file) or PGPASSWORD`);
      }
      return found;
    };
    // pg 8.23 leaves the socket open when start-up fails on the client's side (the password
    // lookup above, a TLS check), and the process with it: a failed client is closed here.
    const connection = (this as unknown as { connection: { once: (e: 'error', f: () => void) => void; stream: { destroy: () => void } } }).connection;
    connection.once('error', () => setImmediate(() => connection.stream.destroy()));
  }
}

/** What every connection is made with: the URL (PG* variables fill what it leaves out). */
function connectionOptions(url: string): pg.ClientConfig {
  return { connectionString: url, connectionTimeoutMillis: 10_000 };
}

/**
 * A client of its own, made as the store's (password lookup, PG* variables, time-outs), for a
 * command that streams rows in bulk (`ldguard db copy`); not connected. Open the store first: its
 * migrations are the only schema there is.
 */
export function postgresClient(url: string, applicationName: string): pg.Client {
  return new Client({ ...connectionOptions(url), application_name: applicationName });
}

export interface PostgresOpenOptions {
  /** The collector: listen for other collectors' alerts and keep agents' leases. `ldguard token` opens without. */
  collector?: boolean;
  /** Heartbeat periods an agent's lease lasts (the collector's offline_after_missed_heartbeats). */
  leaseMissedHeartbeats?: number;
  onMigrate?: (message: string) => void;
  /** Problems in the background (a lost LISTEN session, a failed refresh), for the caller to log. */
  onWarning?: (message: string) => void;
}

export class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly location: string;
  upgraded: string | null = null;
  readonly pressure = new IngestPressure();
  /** This process among the collectors, in NOTIFY payloads (its own are not read back). */
  private readonly collectorId = randomUUID();
  private readonly pool: pg.Pool;
  private readonly leaseMissed: number;
  private readonly warn: (message: string) => void;
  // The token view (see the top of this file): by row id, and hash → row id.
  private readonly tokens = new Map<string, TokenInfo>();
  private readonly tokenByHash = new Map<string, string>();
  /** When catchUpTokens last read the tokens (performance.now()). */
  private caughtUpAt = -Infinity;
  private catchingUp: Promise<void> | undefined;
  private tokenRev = '0';
  private refreshing: Promise<void> | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  // The live feed (see the top of this file).
  private readonly listeners: RemoteAlertsListener[] = [];
  private listenClient: Client | undefined;
  private listenRetry: NodeJS.Timeout | undefined;
  private lastAlertId = 0n;
  private readonly delivered = new Set<string>();
  /** Commits run one after another (see the top of this file). */
  private commitChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(private readonly url: string, opts: PostgresOpenOptions) {
    this.location = redactUrl(url);
    this.leaseMissed = opts.leaseMissedHeartbeats ?? 3;
    this.warn = opts.onWarning ?? ((m) => process.emitWarning(`ldguard: ${m}`));
    // Bigints as strings (ids may pass 2^53 in principle); converted where a number is meant.
    this.pool = new pg.Pool({ ...connectionOptions(url), max: 6, application_name: 'ldguard', Client });
    // An idle connection the server dropped: the pool replaces it; nothing was in flight.
    this.pool.on('error', (err) => this.warn(`database connection lost (${errorMessage(err)}); reconnecting`));
  }

  /**
   * A pool of its own on this database, made as the store's connections are (password file, TLS).
   * The dashboard reads through one, so its queries never queue before commits, nor commits before
   * them; the caller ends it.
   */
  newPool(applicationName: string, max: number): pg.Pool {
    const pool = new pg.Pool({ ...connectionOptions(this.url), max, application_name: applicationName, Client });
    pool.on('error', (err) => this.warn(`database connection lost (${errorMessage(err)}); reconnecting`));
    return pool;
  }

  /**
   * Connects, brings the schema up to date (under MIGRATION_LOCK) and loads the token view. With
   * `collector`, also LISTENs for other collectors' alerts and token changes.
   */
  static async open(url: string, opts: PostgresOpenOptions = {}): Promise<PostgresStore> {
    const store = new PostgresStore(url, opts);
    try {
      await store.migrate(opts.onMigrate);
      await store.refreshTokens();
      if (opts.collector) {
        const { rows } = await store.pool.query<{ m: string }>('SELECT coalesce(max(id), 0) AS m FROM alerts');
        store.lastAlertId = BigInt(rows[0]!.m);
        await store.listen();
        store.refreshTimer = setInterval(() => void store.refreshTokens().catch((err) => store.warn(`refreshing the tokens failed (${errorMessage(err)}); retrying`)), TOKEN_REFRESH_MS);
        store.refreshTimer.unref();
      }
      return store;
    } catch (err) {
      // Bounded: a pool whose connection failed half-way may never report itself ended.
      await Promise.race([store.close().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000).unref())]);
      if (err instanceof LdgError) throw err;
      throw new LdgError('LDG_ERR_DB', `cannot open the database ${store.location}: ${errorMessage(err)}. Check --db (user, host, port, database), the password (PGPASSWORD or a password file, PGPASSFILE) and that the server accepts this host (pg_hba.conf)`, { cause: err });
    }
  }

  private async migrate(onMigrate?: (message: string) => void): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query('SELECT pg_advisory_lock($1::bigint)', [BigInt(MIGRATION_LOCK).toString()]);
      try {
        await c.query('CREATE TABLE IF NOT EXISTS ldguard_schema (version integer PRIMARY KEY, applied bigint NOT NULL)');
        const { rows } = await c.query<{ v: number }>('SELECT coalesce(max(version), 0) AS v FROM ldguard_schema');
        const from = rows[0]!.v;
        if (from > MIGRATIONS.length) {
          throw new LdgError('LDG_ERR_DB_SCHEMA', `${this.location} was written by a newer ldguard (schema ${from}); run that version, or give another --db`);
        }
        for (let v = from; v < MIGRATIONS.length; v++) {
          if (v > 0) onMigrate?.(`upgrading ${this.location} from schema ${v} to ${v + 1}`);
          await c.query('BEGIN');
          try {
            await c.query(MIGRATIONS[v]!);
            await c.query('INSERT INTO ldguard_schema (version, applied) VALUES ($1, $2)', [v + 1, Date.now()]);
            await c.query('COMMIT');
          } catch (err) {
            await c.query('ROLLBACK');
            throw err;
          }
        }
        if (from > 0 && from < MIGRATIONS.length) this.upgraded = `schema ${from} to ${MIGRATIONS.length}`;
        // Under the lock: the other collectors start once the keys are filled.
        const filled = await fillGroupKeysPostgres(c, onMigrate);
        if (filled) this.upgraded = this.upgraded ? `${this.upgraded}; ${filled}` : filled;
      } finally {
        await c.query('SELECT pg_advisory_unlock($1::bigint)', [BigInt(MIGRATION_LOCK).toString()]);
      }
    } finally {
      c.release();
    }
  }

  // ---- the token view

  /** Reads the token rows changed since the last refresh; one refresh at a time. */
  private refreshTokens(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const { rows } = await this.pool.query<TokenDbRow>(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE rev > $1 ORDER BY rev`, [this.tokenRev]);
        for (const r of rows) {
          const old = this.tokens.get(r.id);
          // A rotation changed the hash: the old secret must match nothing from now on.
          if (old && old.hash !== r.hash) this.tokenByHash.delete(old.hash);
          this.tokens.set(r.id, tokenInfo(r));
          this.tokenByHash.set(r.hash, r.id);
          this.tokenRev = r.rev;
        }
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  async catchUpTokens(): Promise<void> {
    const asked = performance.now();
    // One read for everyone asking, at most every CATCH_UP_MIN_MS: a flood of wrong tokens costs
    // that, and each asker waits for the next read rather than being refused on an old view.
    this.catchingUp ??= (async () => {
      try {
        const wait = this.caughtUpAt + CATCH_UP_MIN_MS - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (this.refreshing) await this.refreshing.catch(() => undefined); // it may predate the row asked about
        const started = performance.now();
        await this.refreshTokens();
        this.caughtUpAt = started;
      } finally {
        this.catchingUp = undefined;
      }
    })();
    await this.catchingUp;
    // That read began before this was asked (it was under way): one more.
    if (this.caughtUpAt < asked) await this.catchUpTokens();
  }

  lookupToken(token: string): TokenInfo | undefined {
    return this.lookupTokenHash(hashToken(token));
  }

  lookupTokenHash(hash: string): TokenInfo | undefined {
    const id = this.tokenByHash.get(hash);
    return id === undefined ? undefined : this.tokens.get(id);
  }

  tokenOfAgent(agentId: string): TokenInfo | undefined {
    let best: TokenInfo | undefined;
    for (const t of this.tokens.values()) if (t.agentId === agentId && t.revoked === null && (!best || t.created < best.created)) best = t;
    return best;
  }

  tokensVersion(): string {
    return this.tokenRev;
  }

  // ---- tokens (each change bumps rev and tells the other collectors)

  async createToken(name: string, role: Role, now = Date.now()): Promise<string> {
    checkTokenName(name, role);
    const token = newTokenSecret();
    try {
      await this.tx(async (c) => {
        await c.query('INSERT INTO tokens (hash, name, role, created) VALUES ($1, $2, $3, $4)', [hashToken(token), name, role, now]);
        await c.query("NOTIFY ldguard_tokens");
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new LdgError('LDG_ERR_TOKEN_EXISTS', `a token named ${name} is already active; revoke it first (ldguard token revoke --name ${name}) or choose another name`);
      }
      throw err;
    }
    await this.refreshTokens();
    return token;
  }

  async listTokens(): Promise<TokenInfo[]> {
    const { rows } = await this.pool.query<TokenDbRow>(`SELECT ${TOKEN_COLUMNS} FROM tokens ORDER BY created, name`);
    return rows.map(tokenInfo);
  }

  async revokeToken(name: string, now = Date.now()): Promise<boolean> {
    const n = await this.tx(async (c) => {
      const r = await c.query("UPDATE tokens SET revoked = $1, rev = nextval('token_rev') WHERE name = $2 AND revoked IS NULL", [now, name]);
      if (r.rowCount) await c.query('NOTIFY ldguard_tokens');
      return r.rowCount ?? 0;
    });
    await this.refreshTokens();
    return n > 0;
  }

  async rotateToken(name: string): Promise<{ token: string; info: TokenInfo } | undefined> {
    const token = newTokenSecret();
    const hash = hashToken(token);
    const row = await this.tx(async (c) => {
      const r = await c.query<TokenDbRow>(`UPDATE tokens SET hash = $1, rev = nextval('token_rev') WHERE name = $2 AND revoked IS NULL RETURNING ${TOKEN_COLUMNS}`, [hash, name]);
      if (r.rows[0]) await c.query('NOTIFY ldguard_tokens');
      return r.rows[0];
    });
    await this.refreshTokens();
    return row ? { token, info: tokenInfo(row) } : undefined;
  }

  // ---- group commit

  commit(work: CommitWork): Promise<CommitResult> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    const run = this.commitChain.then(() => this.tx((c) => this.commitIn(c, work)));
    this.commitChain = run.catch(() => undefined);
    return run;
  }

  private async commitIn(c: pg.PoolClient, work: CommitWork): Promise<CommitResult> {
    let bound = false;
    for (const b of work.bindings) {
      const r = await c.query("UPDATE tokens SET agent_id = $2, rev = nextval('token_rev') WHERE hash = $1 AND agent_id IS NULL", [b.hash, b.agentId]);
      bound ||= (r.rowCount ?? 0) > 0;
    }
    // Presence: set-based (one statement per kind, whatever the number of agents: a statement per
    // row held a wave of 15,000 reconnecting agents' acks for seconds), on rows locked first in one
    // order, agent id, as the offline sweep takes them: commits and sweeps never wait in a cycle.
    const hellos = [...new Map(work.hellos.map((h) => [h.agentId, h] as const)).values()].sort((a, b) => (a.agentId < b.agentId ? -1 : 1));
    const touched = [...new Set([...hellos.map((h) => h.agentId), ...work.seen.keys(), ...work.heartbeats.map((h) => h.agentId)])].sort();
    if (touched.length > 0) await c.query('SELECT 1 FROM agents WHERE agent_id = ANY($1::text[]) ORDER BY agent_id FOR UPDATE', [touched]);
    if (hellos.length > 0) {
      await c.query(`INSERT INTO agents (agent_id, hostname, version, token_name, heartbeat_ms, facts, first_seen, last_seen, lease_until, online)
        SELECT a, h, v, t, p, f, at, at, at + p * $8::bigint, true
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[]) AS u(a, h, v, t, p, f, at) ORDER BY a
        ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, token_name = excluded.token_name,
          heartbeat_ms = excluded.heartbeat_ms, facts = excluded.facts, last_seen = greatest(agents.last_seen, excluded.last_seen),
          lease_until = greatest(agents.lease_until, excluded.lease_until), online = true`,
      [hellos.map((h) => h.agentId), hellos.map((h) => h.hostname), hellos.map((h) => h.version), hellos.map((h) => h.tokenName), hellos.map((h) => h.heartbeatMs),
        hellos.map((h) => h.facts), hellos.map((h) => h.at), this.leaseMissed]);
    }
    // The senders' tokens, read FOR SHARE: a concurrent revoke waits for this commit (see the top).
    const n = work.alerts.reduce((s, b) => s + batchSize(b), 0);
    const hashes = [...new Set(work.alerts.map((b) => b.tokenHash ?? '').filter((h) => h !== ''))].sort();
    const active = new Set<string>(['']);
    if (hashes.length > 0) {
      const r = await c.query<{ hash: string }>('SELECT hash FROM tokens WHERE hash = ANY($1) AND revoked IS NULL ORDER BY hash FOR SHARE', [hashes]);
      for (const row of r.rows) active.add(row.hash);
    }
    const refusedTokens = hashes.filter((h) => !active.has(h));
    const keep: number[] = [];
    let i = 0;
    for (const b of work.alerts) {
      const ok = active.has(b.tokenHash ?? '');
      for (let k = 0; k < batchSize(b); k++, i++) if (ok) keep.push(i);
    }
    const rows = alertRows(work.alerts, keep);
    const { inserted, ids, refused } = await this.insertAlerts(c, rows);
    const quarantine = [...work.quarantine, ...refused];
    for (const q of quarantine) {
      await c.query('INSERT INTO quarantine (agent_id, token_name, seq, uuid, reason, text, size, received) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
        [q.agentId, q.tokenName, q.seq, q.uuid, q.reason, q.text, q.size, q.received]);
    }
    if (quarantine.length > 0) {
      for (const agentId of new Set(quarantine.map((q) => q.agentId))) {
        await c.query(`DELETE FROM quarantine WHERE agent_id = $1 AND id < coalesce((SELECT id FROM quarantine WHERE agent_id = $1 ORDER BY id DESC LIMIT 1 OFFSET ${QUARANTINE_MAX_ROWS_PER_AGENT - 1}), 0)`, [agentId]);
      }
      await c.query(`DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ${QUARANTINE_MAX_ROWS}`);
    }
    const lease = `lease_until = greatest(g.lease_until, u.at + coalesce(g.heartbeat_ms, 10000) * ${Math.floor(this.leaseMissed)})`;
    if (work.seen.size > 0) {
      await c.query(`UPDATE agents AS g SET last_seen = greatest(g.last_seen, u.at), ${lease}, online = true
        FROM unnest($1::text[], $2::bigint[]) AS u(agent_id, at) WHERE g.agent_id = u.agent_id`, [[...work.seen.keys()], [...work.seen.values()]]);
    }
    for (const s of work.seals) await this.recordSeal(c, s);
    if (work.heartbeats.length > 0) {
      const hb = work.heartbeats;
      await c.query(`UPDATE agents AS g SET health = u.health, spool_depth = u.depth, events_lost = u.lost, spool_overflow = u.overflow,
          last_seen = greatest(g.last_seen, u.at), ${lease}, online = true
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u(agent_id, at, health, depth, lost, overflow)
        WHERE g.agent_id = u.agent_id`,
      [hb.map((h) => h.agentId), hb.map((h) => h.at), hb.map((h) => h.health), hb.map((h) => h.spoolDepth), hb.map((h) => h.eventsLost), hb.map((h) => h.spoolOverflow)]);
    }
    // Delivered with the commit, never before it (PostgreSQL holds notifications until then).
    for (const p of notifyPayloads(this.collectorId, ids)) await c.query("SELECT pg_notify('ldguard_alerts', $1)", [p]);
    if (bound) await c.query('NOTIFY ldguard_tokens');
    for (const id of ids) this.remember(id);
    const refusedAlerts = n - keep.length;
    return { inserted: inserted.map((k) => keep[k]!), duplicates: keep.length - inserted.length - refused.length, refusedTokens, refusedAlerts };
  }

  /**
   * Inserts rows (ON CONFLICT DO NOTHING): all in one statement, or, when the database refuses
   * that, one by one, each refused row to the quarantine with the database's reason. Returns the
   * indexes in `rows` inserted, their ids, and the quarantine rows.
   */
  private async insertAlerts(c: pg.PoolClient, rows: AlertRow[]): Promise<{ inserted: number[]; ids: string[]; refused: QuarantineRow[] }> {
    if (rows.length === 0) return { inserted: [], ids: [], refused: [] };
    const cols = (rs: AlertRow[]) => [
      rs.map((r) => r.uuid), rs.map((r) => r.ts), rs.map((r) => r.ots), rs.map((r) => r.host), rs.map((r) => r.ruleId), rs.map((r) => r.ruleName),
      rs.map((r) => r.severity), rs.map((r) => r.status), rs.map((r) => r.agentId), rs.map((r) => r.tokenName), rs.map((r) => r.received),
      rs.map((r) => r.future), rs.map((r) => r.doc), ...groupKeyColumns(rs.map((r) => r.doc)),
    ];
    const sql = `INSERT INTO alerts (uuid, ts, ots, host, rule_id, rule_name, severity, status, agent_id, token_name, received, future, doc, ${GROUP_KEY_COLUMNS})
      SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
        $11::bigint[], $12::boolean[], $13::bytea[], ${groupKeyArrays(14)})
      ON CONFLICT ON CONSTRAINT alerts_sender_key DO NOTHING RETURNING id, ots, uuid, agent_id`;
    // A row inserted is matched back to its input by its key (RETURNING gives no input order); of
    // two inputs with one key, the first was inserted and the second is the duplicate.
    const match = (returned: Array<{ id: string; ots: string; uuid: string; agent_id: string }>, rs: AlertRow[], base: number, inserted: number[], ids: string[]) => {
      const byKey = new Map(returned.map((r) => [`${r.ots}\u0000${r.uuid}\u0000${r.agent_id}`, r.id]));
      rs.forEach((r, k) => {
        const key = `${r.ots}\u0000${r.uuid}\u0000${r.agentId}`;
        const id = byKey.get(key);
        if (id === undefined) return;
        byKey.delete(key);
        inserted.push(base + k);
        ids.push(id);
      });
    };
    const inserted: number[] = [];
    const ids: string[] = [];
    await c.query('SAVEPOINT alerts_all');
    try {
      const r = await c.query<{ id: string; ots: string; uuid: string; agent_id: string }>(sql, cols(rows));
      match(r.rows, rows, 0, inserted, ids);
      await c.query('RELEASE SAVEPOINT alerts_all');
      return { inserted, ids, refused: [] };
    } catch {
      await c.query('ROLLBACK TO SAVEPOINT alerts_all');
    }
    const refused: QuarantineRow[] = [];
    for (let k = 0; k < rows.length; k++) {
      const row = rows[k]!;
      await c.query('SAVEPOINT alerts_one');
      try {
        const r = await c.query<{ id: string; ots: string; uuid: string; agent_id: string }>(sql, cols([row]));
        match(r.rows, [row], k, inserted, ids);
        await c.query('RELEASE SAVEPOINT alerts_one');
      } catch (err) {
        await c.query('ROLLBACK TO SAVEPOINT alerts_one');
        const text = row.doc.toString('utf8');
        refused.push({
          agentId: row.agentId, tokenName: row.tokenName, seq: 0, uuid: row.uuid.includes('\u0000') ? null : row.uuid,
          reason: `the database refused the row: ${errorMessage(err)}`,
          // The quarantine's text column cannot hold NUL either: shown escaped.
          text: text.slice(0, QUARANTINE_TEXT_CHARS).replaceAll('\u0000', '\\u0000'), size: row.doc.length, received: row.received,
        });
      }
    }
    return { inserted, ids, refused };
  }

  private tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, fn);
  }

  // ---- the live feed across collectors

  onRemoteAlerts(listener: RemoteAlertsListener): void {
    this.listeners.push(listener);
  }

  private remember(id: string): void {
    this.delivered.add(id);
    const n = BigInt(id);
    if (n > this.lastAlertId) this.lastAlertId = n;
    if (this.delivered.size > DELIVERED_MAX) for (const old of this.delivered) {
      this.delivered.delete(old);
      if (this.delivered.size <= DELIVERED_MAX * 0.9) break;
    }
  }

  /** A session of its own for LISTEN; on any loss, a new one, then a catch-up from the last id seen. */
  private async listen(): Promise<void> {
    const client = new Client({ ...connectionOptions(this.url), application_name: 'ldguard-listen' });
    const lost = (err?: Error) => {
      if (this.listenClient !== client) return;
      this.listenClient = undefined;
      client.end().catch(() => undefined);
      if (this.closed) return;
      this.warn(`the LISTEN session ended (${err ? errorMessage(err) : 'closed'}); reconnecting`);
      this.listenRetry = setTimeout(() => void this.listen().catch((e) => lost(e as Error)), 500);
      this.listenRetry.unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (m) => {
      if (m.channel === 'ldguard_tokens') void this.refreshTokens().catch(() => undefined);
      else if (m.channel === 'ldguard_alerts' && m.payload) void this.onAlertsNotice(m.payload).catch((e) => this.warn(`reading other collectors' alerts failed (${errorMessage(e)})`));
    });
    this.listenClient = client;
    try {
      await client.connect();
      await client.query('LISTEN ldguard_alerts');
      await client.query('LISTEN ldguard_tokens');
    } catch (err) {
      lost(err as Error);
      return;
    }
    // What committed while no session listened: alerts, and token changes (the timer would find those too).
    await Promise.all([this.catchUp(), this.refreshTokens()]).catch((e) => this.warn(`catching up after LISTEN failed (${errorMessage(e)})`));
  }

  private async onAlertsNotice(payload: string): Promise<void> {
    const colon = payload.indexOf(':');
    if (payload.slice(0, colon) === this.collectorId) return;
    const ids = payload.slice(colon + 1).split(',').filter((id) => /^\d{1,19}$/.test(id) && !this.delivered.has(id));
    if (ids.length === 0 || this.listeners.length === 0) {
      for (const id of ids) this.remember(id);
      return;
    }
    const { rows } = await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id`, [ids]);
    this.deliver(rows);
  }

  private async catchUp(): Promise<void> {
    const from = this.lastAlertId > BigInt(CATCHUP_WINDOW) ? this.lastAlertId - BigInt(CATCHUP_WINDOW) : 0n;
    const { rows } = await this.pool.query<AlertDbRow>(
      `SELECT * FROM (SELECT ${ALERT_COLUMNS} FROM alerts WHERE id > $1 ORDER BY id DESC LIMIT ${CATCHUP_MAX + CATCHUP_WINDOW}) x ORDER BY id`, [from.toString()]);
    this.deliver(rows.filter((r) => !this.delivered.has(r.id)).slice(-CATCHUP_MAX));
  }

  private deliver(rows: AlertDbRow[]): void {
    const fresh = rows.filter((r) => !this.delivered.has(r.id));
    for (const r of fresh) this.remember(r.id);
    if (fresh.length === 0) return;
    const out = fresh.map(alertRow);
    for (const l of this.listeners) l(out);
  }

  // ---- alerts

  async queryAlerts(q: AlertQuery): Promise<{ docs: string[]; next: string | null } | undefined> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.host !== undefined) where.push(`host = ${p(q.host)}`);
    if (q.rule !== undefined) where.push(`rule_id = ${p(q.rule)}`);
    if (q.severity?.length) where.push(`severity = ANY(${p(q.severity)})`);
    if (q.status?.length) where.push(`status = ANY(${p(q.status)})`);
    if (q.since !== undefined) where.push(`ts >= ${p(q.since)}`);
    if (q.until !== undefined) where.push(`ts < ${p(q.until)}`);
    if (q.of) where.push(q.of.key === null ? `${GROUP_COLUMNS[q.of.by]} IS NULL` : `${GROUP_COLUMNS[q.of.by]} = ${p(q.of.key)}`);
    if (q.text !== undefined) where.push(`ldguard_doc_text(doc) LIKE ${p(`%${q.text.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`)}`);
    if (q.before !== undefined) {
      const cursor = /^(-?\d{1,16})\.(\d{1,16})$/.exec(q.before);
      let at: { ts: string; id: string } | undefined;
      if (cursor) at = { ts: cursor[1]!, id: cursor[2]! };
      else at = (await this.pool.query<{ ts: string; id: string }>('SELECT ts, id FROM alerts WHERE uuid = $1 ORDER BY ts DESC, id DESC LIMIT 1', [q.before])).rows[0];
      if (!at) return undefined;
      where.push(`(ts, id) < (${p(at.ts)}::bigint, ${p(at.id)}::bigint)`);
    }
    const { rows } = await this.pool.query<AlertDbRow>(
      `SELECT ${ALERT_COLUMNS} FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ${p(q.limit + 1)}`, params);
    const more = rows.length > q.limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { docs: rows.map(shownDoc), next: more && last ? `${last.ts}.${last.id}` : null };
  }

  alertGroups(q: GroupQuery): Promise<GroupPage> {
    return groupsPostgres(this.pool, q);
  }

  async findAlerts(id: string): Promise<Array<{ id: number; key: string; doc: string }>> {
    const key = /^(-?\d{1,16})~(.+)$/.exec(id);
    const { rows } = key
      ? await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE ots = $1 AND uuid = $2 ORDER BY ts DESC, id DESC`, [key[1], key[2]])
      : await this.pool.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE uuid = $1 ORDER BY ts DESC, id DESC`, [id]);
    return rows.map((r) => ({ id: Number(r.id), key: alertKey(Number(r.ots), r.uuid), doc: shownDoc(r) }));
  }

  async setStatus(rowId: number, status: WorkflowStatus, by: string, at = Date.now()): Promise<string | undefined> {
    return this.tx(async (c) => {
      const { rows } = await c.query<AlertDbRow>(`SELECT ${ALERT_COLUMNS} FROM alerts WHERE id = $1 FOR UPDATE`, [rowId]);
      const row = rows[0];
      if (!row) return undefined;
      const doc = withStatus(row.doc, status, by, at);
      await c.query('UPDATE alerts SET status = $2, status_by = $3, status_at = $4, doc = $5 WHERE id = $1', [rowId, status, by, at, doc]);
      if (row.status !== status) await c.query('INSERT INTO alert_history (alert_id, status, by, at) VALUES ($1, $2, $3, $4)', [rowId, status, by, at]);
      return shownDoc({ ...row, status, doc });
    });
  }

  async resolveAlertIds(ids: readonly string[]): Promise<{ rows: number[]; missing: string[] }> {
    const keyOf = (id: string) => /^(-?\d{1,16})~(.+)$/.exec(id);
    const uuids = [...new Set(ids.map((id) => keyOf(id)?.[2] ?? id))];
    const { rows } = await this.pool.query<{ id: string; uuid: string; ots: string }>('SELECT id, uuid, ots FROM alerts WHERE uuid = ANY($1::text[])', [uuids]);
    const byUuid = new Map<string, Array<{ id: string; ots: string }>>();
    for (const r of rows) byUuid.set(r.uuid, [...(byUuid.get(r.uuid) ?? []), r]);
    const out: number[] = [];
    const missing: string[] = [];
    for (const id of ids) {
      const key = keyOf(id);
      const found = (byUuid.get(key?.[2] ?? id) ?? []).filter((r) => !key || r.ots === String(Number(key[1])));
      if (found.length === 0) missing.push(id);
      for (const f of found) out.push(Number(f.id));
    }
    return { rows: out, missing };
  }

  async previewBulk(filter: BulkFilter): Promise<BulkPreview> {
    // One snapshot for the bound and the count, so the count is of rows up to the bound.
    return inTransaction(this.pool, async (c) => {
      const upTo = Number((await c.query<{ id: string }>('SELECT coalesce(max(id), 0) AS id FROM alerts')).rows[0]!.id);
      const params: unknown[] = [];
      const where = filterSql(filter, (v) => (params.push(v), `$${params.length}`), 'postgres');
      params.push(upTo);
      const { rows } = await c.query<{ n: string }>(`SELECT count(*) AS n FROM alerts WHERE ${[...where, `id <= $${params.length}`].join(' AND ')}`, params);
      return { count: Number(rows[0]!.n), upTo };
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  bulkWorkflow(sel: BulkSelection, change: WorkflowChange, by: string, at = Date.now()): Promise<BulkResult> {
    return applyBulk(this.workflowRows, sel, change, by, at);
  }

  async alertHistory(rowId: number): Promise<HistoryEntry[]> {
    const { rows } = await this.pool.query<Parameters<typeof historyEntry>[0]>(HISTORY_SQL, [rowId]);
    return rows.map(historyEntry);
  }

  async addNote(rowId: number, text: string, by: string, at = Date.now()): Promise<boolean> {
    const r = await this.pool.query(`INSERT INTO alert_history (alert_id, status, by, at, kind, value)
      SELECT id, status, $2, $3, 'note', $4 FROM alerts WHERE id = $1`, [rowId, by, at, text]);
    return (r.rowCount ?? 0) > 0;
  }

  /**
   * The driver's view of this store (workflow.ts). A chunk locks its rows in id order (two bulk
   * changes over the same rows wait, never deadlock); ingest only inserts, so it never waits.
   */
  private readonly workflowRows: WorkflowRows = {
    selectIds: async (filter, upTo, after, limit) => {
      const params: unknown[] = [];
      const p = (v: unknown) => (params.push(v), `$${params.length}`);
      const where = filterSql(filter, p, 'postgres');
      const { rows } = await this.pool.query<{ id: string }>(
        `SELECT id FROM alerts WHERE ${[...where, `id > ${p(after)}`, `id <= ${p(upTo)}`].join(' AND ')} ORDER BY id LIMIT ${p(limit)}`, params);
      return rows.map((r) => Number(r.id));
    },
    applyChunk: (ids, change, by, at) => this.tx(async (c) => {
      if (change.kind === 'status') {
        const { rows } = await c.query<{ id: string; status: string; doc: Buffer }>('SELECT id, status, doc FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE', [ids]);
        const todo = rows.filter((r) => r.status !== change.status);
        if (todo.length > 0) {
          const todoIds = todo.map((r) => r.id);
          await c.query(`UPDATE alerts a SET status = $2, status_by = $3, status_at = $4, doc = u.doc
            FROM unnest($1::bigint[], $5::bytea[]) AS u(id, doc) WHERE a.id = u.id`, [todoIds, change.status, by, at, todo.map((r) => withStatus(r.doc, change.status, by, at))]);
          await c.query(`INSERT INTO alert_history (alert_id, status, by, at) SELECT id, $2, $3, $4 FROM unnest($1::bigint[]) AS u(id)`, [todoIds, change.status, by, at]);
        }
        return { changed: todo.length, found: rows.length };
      }
      const { rows } = await c.query<{ id: string; status: string; assignee: string | null }>('SELECT id, status, assignee FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE', [ids]);
      const todo = rows.filter((r) => r.assignee !== change.assignee);
      if (todo.length > 0) {
        await c.query('UPDATE alerts SET assignee = $2 WHERE id = ANY($1::bigint[])', [todo.map((r) => r.id), change.assignee]);
        await c.query(`INSERT INTO alert_history (alert_id, status, by, at, kind, value) SELECT id, status, $3, $4, 'assignee', $2 FROM unnest($1::bigint[], $5::text[]) AS u(id, status)`,
          [todo.map((r) => r.id), change.assignee, by, at, todo.map((r) => r.status)]);
      }
      return { changed: todo.length, found: rows.length };
    }),
  };

  // ---- quarantine

  async listQuarantine(q: { limit: number; agentId?: string; before?: number }): Promise<QuarantineView[]> {
    const { rows } = await this.pool.query<Record<string, string>>(
      'SELECT * FROM quarantine WHERE ($1::text IS NULL OR agent_id = $1) AND id < $2 ORDER BY id DESC LIMIT $3',
      [q.agentId ?? null, q.before ?? Number.MAX_SAFE_INTEGER, q.limit]);
    return rows.map((r) => ({
      id: Number(r.id), agentId: r.agent_id!, tokenName: r.token_name!, seq: Number(r.seq), uuid: r.uuid ?? null, reason: r.reason!, text: r.text!,
      size: Number(r.size), truncated: Number(r.size) > Buffer.byteLength(r.text!), received: new Date(Number(r.received)).toISOString(),
    }));
  }

  async quarantineCount(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM quarantine');
    return Number(rows[0]!.n);
  }

  // ---- agents

  async listAgents(): Promise<AgentView[]> {
    const { rows } = await this.pool.query<Record<string, string | boolean | null>>('SELECT * FROM agents ORDER BY hostname, agent_id');
    const num = (v: unknown) => (v === null ? null : Number(v));
    const iso = (v: unknown) => (v === null ? null : new Date(Number(v)).toISOString());
    const json = (v: unknown) => {
      if (v === null) return null;
      try {
        return JSON.parse(v as string) as unknown;
      } catch {
        return null;
      }
    };
    return rows.map((r) => ({
      agentId: r.agent_id as string, hostname: r.hostname as string | null, version: r.version as string | null, tokenName: r.token_name as string | null,
      online: r.online === true, firstSeen: iso(r.first_seen), lastSeen: iso(r.last_seen), heartbeatMs: num(r.heartbeat_ms),
      spoolDepth: num(r.spool_depth), eventsLost: num(r.events_lost), spoolOverflow: num(r.spool_overflow), facts: json(r.facts), health: json(r.health),
    }));
  }

  /** One UPDATE of the lapsed leases: a row changes once, so one collector reports it. `missed` is in the lease already. */
  async markOffline(now: number, _missed: number): Promise<Array<{ agentId: string; hostname: string | null; lastSeen: number }>> {
    const { rows } = await this.pool.query<{ agent_id: string; hostname: string | null; last_seen: string }>(
      // Rows a commit holds are being renewed: skipped, not waited for (and never locked out of order).
      `UPDATE agents SET online = false WHERE agent_id IN (
        SELECT agent_id FROM agents WHERE online AND lease_until < $1 ORDER BY agent_id FOR UPDATE SKIP LOCKED
      ) AND online AND lease_until < $1 RETURNING agent_id, hostname, last_seen`, [now]);
    return rows.map((r) => ({ agentId: r.agent_id, hostname: r.hostname, lastSeen: Number(r.last_seen) }));
  }

  async hostHistory(hostId: string, seal?: { generation: number; sha256: string }): Promise<HostHistory | null> {
    const { rows } = await this.pool.query<{ agent_id: string; max: string; known: boolean }>(
      `SELECT (SELECT agent_id FROM host_seals WHERE host_id = $1 ORDER BY last_seen DESC, generation DESC LIMIT 1) AS agent_id,
        (SELECT max(generation) FROM host_seals WHERE host_id = $1) AS max,
        EXISTS (SELECT 1 FROM host_seals WHERE host_id = $1 AND generation = $2 AND sha256 = $3) AS known`,
      [hostId, seal?.generation ?? -1, seal?.sha256 ?? '']);
    const r = rows[0];
    if (!r?.agent_id) return null;
    return { lastAgentId: r.agent_id, maxGeneration: Number(r.max), sealKnown: r.known };
  }

  private async recordSeal(c: pg.PoolClient, r: SealRow): Promise<void> {
    await c.query(`INSERT INTO host_seals (host_id, generation, sha256, agent_id, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $5)
      ON CONFLICT (host_id, generation, sha256) DO UPDATE SET agent_id = excluded.agent_id, last_seen = greatest(host_seals.last_seen, excluded.last_seen)`,
      [r.hostId, r.generation, r.sha256, r.agentId, r.at]);
  }

  async fleet(): Promise<FleetSummary> {
    const { rows } = await this.pool.query<Record<string, string>>(`SELECT count(*) AS total, count(*) FILTER (WHERE online) AS online,
      coalesce(sum(events_lost), 0) AS "eventsLost", coalesce(sum(spool_depth), 0) AS "spoolDepth", coalesce(sum(spool_overflow), 0) AS "spoolOverflow",
      count(*) FILTER (WHERE d) AS degraded, count(*) FILTER (WHERE NOT online OR d) AS attention
      FROM (SELECT *, coalesce(coalesce(h #> '{source,degraded}', f #> '{source,degraded}') = 'true'::jsonb, false)
        OR coalesce(coalesce(h #> '{attribution,degraded}', f #> '{attribution,degraded}') = 'true'::jsonb, false) AS d
        FROM (SELECT *, ldguard_json(health) AS h, ldguard_json(facts) AS f FROM agents) a) b`);
    const r = rows[0]!;
    const f = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)])) as unknown as Omit<FleetSummary, 'offline'>;
    return { ...f, offline: f.total - f.online };
  }

  async exceptionCounts(): Promise<Array<{ ruleId: string; listId: string; itemId: string; count: number }>> {
    const { rows } = await this.pool.query<{ ruleId: string; listId: string; itemId: string; count: string }>(`SELECT e ->> 'ruleId' AS "ruleId", e ->> 'listId' AS "listId",
      e ->> 'itemId' AS "itemId", sum((e ->> 'count')::numeric) AS count
      FROM agents, jsonb_array_elements(CASE WHEN jsonb_typeof(ldguard_json(health) -> 'exceptions') = 'array' THEN ldguard_json(health) -> 'exceptions' ELSE '[]'::jsonb END) e
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`);
    return rows.map((r) => ({ ...r, count: Number(r.count) }));
  }

  async healthy(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.refreshTimer);
    clearTimeout(this.listenRetry);
    const l = this.listenClient;
    this.listenClient = undefined;
    await l?.end().catch(() => undefined);
    // After the commit in progress.
    await this.commitChain.catch(() => undefined);
    await this.refreshing?.catch(() => undefined);
    await this.pool.end();
  }
}

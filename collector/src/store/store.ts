// The collector's store: what the collector, its API and the `ldguard token` commands need of a
// database, and the types they share. Two implementations: SQLite (store/sqlite.ts, the embedded
// default, one collector) and PostgreSQL (store/postgres.ts, several stateless collectors over one
// database). store/open.ts picks one from --db.
//
// Contracts every implementation keeps:
// - Exactly-once is the database's: an alert is unique by (ots, uuid, agent_id); a resend, to this
//   collector or another over the same database, is counted a duplicate and stored once.
// - commit() is durable when it resolves, and stores nothing of a token revoked before it commits:
//   after a revoke has committed, no collector acks that token's alerts.
// - Documents are kept as the bytes the agent sent (never re-encoded); the API stamps the sender
//   on the way out (ldguard.received_from).
// - Token lookups are synchronous reads of a view the store keeps (SQLite: its own connection;
//   PostgreSQL: a copy of the tokens table refreshed on NOTIFY and at least every
//   TOKEN_REFRESH_MS): every agent upgrade and hello consults it, and a round trip to a remote
//   database there would make a slow database every agent's problem. The commit's own check is
//   the authoritative one.
// - Everything else returns a promise: with PostgreSQL it is a round trip.
import { createHash, randomBytes } from 'node:crypto';
import { LdgError } from '../../../shared/errors.js';
import type { Severity, WorkflowStatus } from '../../../shared/ecs.js';
import type { FleetSummary } from '../../web/src/api-types.js';
import { scannedAlert, type ScannedFrame } from '../frame.js';
import type { IngestPressure } from './pressure.js';
import type { BulkFilter, BulkPreview, BulkResult, BulkSelection, HistoryEntry, WorkflowChange } from './workflow.js';
import type { GroupMember, GroupPage, GroupQuery } from './groups.js';

/** A row's document as docSql shows it, for a row not read from the database (the live feed's). */
export function stampedDoc(r: AlertRow): string {
  const doc = JSON.parse(r.doc.toString('utf8')) as { ldguard?: Record<string, unknown> };
  // The assignee is the collector's (the row's), never what an agent wrote.
  const { assignee: _agents, ...own } = doc.ldguard ?? {};
  doc.ldguard = { ...own, ...(r.future ? { future_timestamp: true } : {}), received_from: { agent_id: r.agentId, token_name: r.tokenName }, ...(r.assignee ? { assignee: r.assignee } : {}) };
  return JSON.stringify(doc);
}

/** An alert's key as the API writes it: its original time (ms) and uuid, which together are unique. */
export function alertKey(ots: number, uuid: string): string {
  return `${ots}~${uuid}`;
}


export type Role = 'agent' | 'admin';

export interface TokenInfo {
  hash: string;
  name: string;
  role: Role;
  created: number;
  revoked: number | null;
  /** The agent id an agent token is bound to (set by the first hello that used it), or null. */
  agentId: string | null;
}

export interface AlertRow {
  uuid: string;
  /** @timestamp, ms: the API's order. */
  ts: number;
  /** Original event time, ms (originalTime()): with uuid, the idempotence key. */
  ots: number;
  host: string | null;
  ruleId: string;
  ruleName: string | null;
  severity: Severity;
  status: WorkflowStatus;
  agentId: string;
  tokenName: string;
  received: number;
  /** Dated after it was received (ingest's FUTURE_SKEW_MS): `ts` is then the receive time. */
  future: boolean;
  /** The ECS document's UTF-8 text, as the agent sent it (often a slice of the received frame). */
  doc: Buffer;
  /** Who the alert is assigned to (workflow.ts), for a row read back from the database. */
  assignee?: string | null;
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

/** An alert of a valid batch that failed validation, kept apart from the alerts. */
export interface QuarantineRow {
  agentId: string;
  tokenName: string;
  seq: number;
  /** kibana.alert.uuid when the alert had a usable one. */
  uuid: string | null;
  /** Every problem found, one per line. */
  reason: string;
  /** The alert's JSON, cut at QUARANTINE_TEXT_CHARS. */
  text: string;
  /** Bytes of the alert's JSON (UTF-8) as received. */
  size: number;
  received: number;
}

/** A token bound to an agent id by the first hello that used it. */
export interface TokenBinding {
  hash: string;
  agentId: string;
}

/** An alert dated more than this after it was received is flagged (ldguard.future_timestamp): clocks may differ a little. */
export const FUTURE_SKEW_MS = 5 * 60_000;

/**
 * Where an alert dated `ts` and received at `received` sits in the list (the ts column): at its
 * date, unless that is past its receipt by more than FUTURE_SKEW_MS. A date in the future would sit
 * on top for ever, so such an alert is listed by when it arrived (its document keeps its date).
 */
export function listedTime(ts: number, received: number): number {
  return ts > received + FUTURE_SKEW_MS ? received : ts;
}

/**
 * The alerts of one batch: read by the fast path (collector/src/frame.ts: the frame, and offsets
 * into it), or built from the parsed alerts by the general path (rows); with the hash of the token
 * that sent them ('' for the collector's own), which the writer checks in the commit.
 */
export type AlertBatch =
  | { rows: AlertRow[]; tokenHash?: string }
  | { scanned: ScannedFrame; agentId: string; tokenName: string; tokenHash: string; received: number };

export function batchSize(b: AlertBatch): number {
  return 'rows' in b ? b.rows.length : b.scanned.count;
}

/** The alerts at `indexes` (in the order of the batches' alerts, all batches end to end) as rows. */
export function alertRows(batches: readonly AlertBatch[], indexes: readonly number[]): AlertRow[] {
  const out: AlertRow[] = [];
  let b = 0;
  let first = 0;
  for (const i of indexes) {
    while (i >= first + batchSize(batches[b]!)) first += batchSize(batches[b++]!);
    const batch = batches[b]!;
    if ('rows' in batch) out.push(batch.rows[i - first]!);
    else {
      const a = scannedAlert(batch.scanned, i - first);
      const ts = listedTime(a.ts, batch.received);
      out.push({ ...a, ts, future: ts !== a.ts, agentId: batch.agentId, tokenName: batch.tokenName, received: batch.received });
    }
  }
  return out;
}

/**
 * What a commit did: the alerts newly stored (indexes in the commit's alerts, see alertRows), how
 * many were already there, and the tokens found revoked in the transaction (their alerts, counted
 * in refusedAlerts, were not stored).
 */
export interface CommitResult {
  inserted: number[];
  duplicates: number;
  refusedTokens: string[];
  refusedAlerts: number;
}

/** One group commit: everything the ingest stage gathered since the last one. */
/** A baseline seal a host's agent told (collector/src/continuity.ts), written with the next commit. */
export interface SealRow {
  hostId: string;
  agentId: string;
  generation: number;
  sha256: string;
  at: number;
}

export interface CommitWork {
  alerts: AlertBatch[];
  hellos: HelloRow[];
  heartbeats: HeartbeatRow[];
  /** Baseline seals told: written in the commit's transaction, by the writer, never on the event loop. */
  seals: SealRow[];
  /** Agents heard from (alerts) and when, for last_seen. */
  seen: Map<string, number>;
  quarantine: QuarantineRow[];
  bindings: TokenBinding[];
}

export interface AlertQuery {
  limit: number;
  since?: number;
  /** ms, exclusive */
  until?: number;
  host?: string;
  rule?: string;
  severity?: string[];
  status?: string[];
  /** The `next` cursor of the previous page ("ts.id"), or the uuid of its last alert: return older ones. */
  before?: string;
  /** Free text the document must contain (case-insensitive). */
  text?: string;
  /** The members of one group (store/groups.ts). */
  of?: GroupMember;
}

/** A quarantined alert as the API shows it: the row, with its id and an ISO time. */
export interface QuarantineView extends Omit<QuarantineRow, 'received'> {
  id: number;
  truncated: boolean;
  received: string;
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
/** Characters of a quarantined alert's JSON kept: enough to see what the agent sent, bounded. */
export const QUARANTINE_TEXT_CHARS = 16 * 1024;
/** Quarantined alerts kept at most; the oldest go first (a broken agent cannot fill the disk). */
export const QUARANTINE_MAX_ROWS = 10_000;
/** ... and per agent: one hostile agent cannot push every other agent's rows out. */
export const QUARANTINE_MAX_ROWS_PER_AGENT = 1_000;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Alerts stored by another collector over the same database, as they commit (PostgreSQL only). */
export type RemoteAlertsListener = (rows: AlertRow[]) => void;

/** A host's recorded continuity (Store.hostHistory): the agent and seal heard last, the highest generation, and whether the seal asked about was ever told. */
export interface HostHistory {
  lastAgentId: string;
  maxGeneration: number;
  sealKnown: boolean;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the data lives, for logs: a file path, or a URL without its password. */
  readonly location: string;
  /** What opening upgraded (e.g. "schema 1 to 2, 1200 alerts in 0.4 s"), for the caller to log; null if nothing. */
  readonly upgraded: string | null;
  /** Set by ingest while it floods; indexing behind ingest steps aside meanwhile. */
  readonly pressure: IngestPressure;

  /**
   * Commits one group in one transaction; resolves once it is durable, with the alerts newly
   * inserted. Rejects, having committed nothing, on any error. At most two in flight; they
   * commit, and settle, in the order they were made.
   */
  commit(work: CommitWork): Promise<CommitResult>;

  /** Creates a token and returns it: the only time it exists outside the holder's hands. */
  createToken(name: string, role: Role, now?: number): Promise<string>;
  listTokens(): Promise<TokenInfo[]>;
  /** Revokes the active token of that name; false when there is none. Committed when it resolves. */
  revokeToken(name: string, now?: number): Promise<boolean>;
  /** A new secret for the active token of that name (same row, binding kept); undefined if none is active. */
  rotateToken(name: string): Promise<{ token: string; info: TokenInfo } | undefined>;
  /** From the token view (see above). */
  lookupToken(token: string): TokenInfo | undefined;
  /** Brings the token view up to date with what was committed before the call (absent where the view
   * is the database itself). Askers share one read, at most one every 50 ms: an agent with a token
   * the view lacks asks, and waits for it rather than being refused on an old view. */
  catchUpTokens?(): Promise<void>;
  lookupTokenHash(hash: string): TokenInfo | undefined;
  /** The active token an agent id is bound to, if any (token view). */
  tokenOfAgent(agentId: string): TokenInfo | undefined;
  /** Changes whenever a token is created, bound, rotated or revoked (token view). */
  tokensVersion(): string;

  /** A page of alerts, newest first; undefined when `before` names no alert. */
  queryAlerts(q: AlertQuery): Promise<{ docs: string[]; next: string | null } | undefined>;
  /** Groups of the alerts the filters select (store/groups.ts). */
  alertGroups(q: GroupQuery): Promise<GroupPage>;
  /** The alerts an id names: a key (`ots~uuid`) one; a uuid every alert that carries it, newest first. */
  findAlerts(id: string): Promise<Array<{ id: number; key: string; doc: string }>>;
  /** Sets the workflow status of one alert (row and document, with its history); the new document, or undefined. */
  setStatus(rowId: number, status: WorkflowStatus, by: string, at?: number): Promise<string | undefined>;
  /** The row ids the API's ids name (keys or uuids, as findAlerts), and the ids that named none. */
  resolveAlertIds(ids: readonly string[]): Promise<{ rows: number[]; missing: string[] }>;
  /** How many alerts the filter selects now, and the row id bound that freezes that selection (workflow.ts). */
  previewBulk(filter: BulkFilter): Promise<BulkPreview>;
  /** A status or an assignee on many alerts, in chunked transactions, each changed row with its history (workflow.ts). */
  bulkWorkflow(sel: BulkSelection, change: WorkflowChange, by: string, at?: number): Promise<BulkResult>;
  /** An alert's workflow history (status changes, notes, assignees), in the order written. */
  alertHistory(rowId: number): Promise<HistoryEntry[]>;
  /** A note in an alert's workflow history; false when there is no such row. */
  addNote(rowId: number, text: string, by: string, at?: number): Promise<boolean>;

  listQuarantine(q: { limit: number; agentId?: string; before?: number }): Promise<QuarantineView[]>;
  quarantineCount(): Promise<number>;

  listAgents(): Promise<AgentView[]>;
  /** Marks offline the agents whose presence lapsed; each is reported by one collector only. */
  markOffline(now: number, missed: number): Promise<Array<{ agentId: string; hostname: string | null; lastSeen: number }>>;
  /** What was recorded of a host (collector/src/continuity.ts), `seal` looked up among the seals told; null when never heard of. */
  hostHistory(hostId: string, seal?: { generation: number; sha256: string }): Promise<HostHistory | null>;
  fleet(): Promise<FleetSummary>;
  exceptionCounts(): Promise<Array<{ ruleId: string; listId: string; itemId: string; count: number }>>;
  healthy(): Promise<boolean>;

  /** Calls `listener` with the alerts other collectors store (never this one's own: ingest reports those). */
  onRemoteAlerts(listener: RemoteAlertsListener): void;

  /** Stops background work (after the commit in progress) and closes the database. */
  close(): Promise<void>;
}

/** Token names: a host name or a person's, safe in logs and URLs. */
export function checkTokenName(name: string, role: string): void {
  if (!TOKEN_NAME.test(name)) {
    throw new LdgError('LDG_ERR_TOKEN_NAME', `token name ${JSON.stringify(name)} must be 1-128 letters, digits and . _ @ - (e.g. the agent's host name)`);
  }
  if (role !== 'agent' && role !== 'admin') throw new LdgError('LDG_ERR_USAGE', `--role must be agent or admin, not ${JSON.stringify(role)}`);
}

/** A fresh token's secret. */
export function newTokenSecret(): string {
  return `ldg_${randomBytes(32).toString('base64url')}`;
}

// The agent ↔ collector wire protocol: versioned JSON text frames over one WebSocket at /agent.
//
//   agent → collector: hello (once, first), alerts (batches), heartbeat
//   collector → agent: ack (after the store has committed), error (then the collector closes)
//
// Ordering contract: an agent numbers every alert with its spool sequence; a batch carries the
// sequence of its first alert and its alerts are consecutive (alerts[i] has sequence seq + i). The
// collector acks `upTo` = the last sequence it has durably stored, in the order batches arrived.
// After a reconnect the agent resends everything after the last ack; the collector stores each
// alert once, keyed by its original event time (`kibana.alert.original_time`) and
// `kibana.alert.uuid`, both derived from the event, so a resend is harmless.
//
// A batch is never refused for what is inside one alert: an alert that fails validateAlert is
// quarantined by the collector (kept apart, bounded, visible to the operator) and acked with the
// rest, and the ack lists it in `rejected`, so the agent drops it from its spool, counts it and
// delivery goes on. Refusing the batch instead would make the agent resend it forever and stall
// everything behind it. What is wrong with the frame itself (not JSON, wrong envelope, out of order,
// too big) is a client bug and still closes the connection.
//
// Every inbound message is validated here by hand-written checks that collect every problem (with
// its JSON path), so the peer's log says exactly what was wrong. Frames are bounded by
// MAX_FRAME_BYTES; a single alert by MAX_ALERT_BYTES; the shape of either by MESSAGE_BOUNDS, checked
// on the bytes before anything parses them (collector/src/frame.ts). The checks read fixed paths
// only and never serialise what they were given, so no value can make them throw.
import type { Alert, Severity, WorkflowStatus } from './ecs.js';
import type { JsonBounds } from './json-bounds.js';

/** Bumped on any incompatible change; both sides refuse a version they do not speak. */
export const PROTOCOL_VERSION = 1;

/** The path agents connect to (the collector's base URL plus this). */
export const AGENT_PATH = '/agent';

/** Largest frame either side accepts; the collector closes with 1009 past it. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Largest serialised alert; the agent shortens long strings in bigger ones before spooling. */
export const MAX_ALERT_BYTES = 64 * 1024;

/** Most alerts in one batch (the frame bound usually ends a batch first). */
export const MAX_BATCH_ALERTS = 1000;

/** How often agents send a heartbeat unless told otherwise. */
export const DEFAULT_HEARTBEAT_MS = 10_000;

/**
 * The longest heartbeat period an agent may announce. The collector marks an agent offline after a
 * few missed periods: a period of 2^53 ms would keep a silent agent "online" for ever.
 */
export const MAX_HEARTBEAT_MS = 10 * 60_000;

/**
 * The shape every agent message must keep, checked on its bytes before anything parses, walks or
 * serialises it (shared/json-bounds.ts): JSON.parse takes nesting 200,000 deep, JSON.stringify
 * throws at ~5,000 and SQLite's JSON functions refuse past 1,000. An ldguard alert nests 5 deep and
 * the agent shortens its long lists (serialiseAlert), so honest messages stay far inside. Numbers
 * must also lie within ±(2^53−1), where every integer is exact.
 */
export const MESSAGE_BOUNDS: Readonly<JsonBounds> = Object.freeze({ maxDepth: 64, maxKeys: 1000, maxItems: 10_000 });

/** An alert sits two levels inside its frame ({"alerts":[ALERT]}): its own bounds, as a document on its own. */
export const ALERT_BOUNDS: Readonly<JsonBounds> = Object.freeze({ ...MESSAGE_BOUNDS, maxDepth: MESSAGE_BOUNDS.maxDepth - 2 });

/** Close codes the collector uses, beside the standard 1007 (bad data), 1008 (policy), 1009 (too big). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  invalidData: 1007,
  policy: 1008,
  tooBig: 1009,
  /** A newer connection from the same agent id replaced this one. */
  replaced: 4000,
  /** The token was revoked while connected. */
  revoked: 4001,
  /** The token is bound to another agent id (one token per host). */
  agentMismatch: 4002,
  /** The agent id is bound to another token: a token cannot speak as another host. */
  agentClaimed: 4003,
  /** The connection used more than its share of the collector (connections, partial frames). */
  overShare: 4004,
  /** The collector failed handling this connection's message; it carries on with the others. */
  internal: 1011,
} as const;

/** The writer-attribution and event-source health an agent reports (see FileEvent.ldguard). */
export interface SourceHealth {
  /** The source in use: 'fanotify', 'inotify' (degraded: no writer pid), or 'none'. */
  name: string;
  /** True when the agent runs with less than full fidelity. */
  degraded: boolean;
  /** Why it is degraded, in words that name the fix. */
  reason?: string;
}

export interface AttributionHealth {
  degraded: boolean;
  reason?: string;
  /** Alerts so far per attribution kind (live_proc, exec_cache, fd_scan, unknown). */
  counts?: Record<string, number>;
}

/** Facts about the agent and its host, sent once per connection. */
export interface AgentFacts {
  agentId: string;
  version: string;
  hostname: string;
  host: {
    architecture?: string;
    ip?: string[];
    os?: { name?: string; version?: string; kernel?: string; family?: string; platform?: string; full?: string };
  };
  rules: { count: number; ids: string[] };
  /** The host's id (ECS host.id: its machine-id) and the agent's baseline seal; absent from agents
   * older than them. The collector judges a known host.id that returns with another agent id, a
   * lower baseline generation or a seal it never recorded (collector/src/continuity.ts). */
  hostId?: string;
  baseline?: BaselineSeal;
  /** sha256 (64 hex digits) of the loaded rule files and exception lists (agent/src/rules-digest.ts);
   * absent from agents older than it. */
  rulesDigest?: string;
  source: SourceHealth;
  attribution: AttributionHealth;
}

/** The agent's running health, sent with every heartbeat. */
export interface AgentHealth {
  /** Alerts in the spool not yet acked by the collector. */
  spoolDepth: number;
  spoolBytes: number;
  /** Alerts refused because the spool was full (counted since the agent started). */
  spoolOverflow: number;
  /** Torn or corrupt spool records skipped (counted since the agent started). */
  spoolTorn: number;
  /** Alerts the collector quarantined as invalid (acked and dropped from the spool), since the agent started. */
  alertsRejected?: number;
  /** Kernel events the source had to drop (queue overflow), since the agent started. */
  eventsLost: number;
  source: SourceHealth;
  attribution?: AttributionHealth;
  /** Events an exception list item spared (recorded, not paged), per rule and item, since the agent started. */
  exceptions?: ExceptionCount[];
  uptimeSec?: number;
  /** As AgentFacts.rulesDigest, now: a SIGHUP may have loaded other rules since the hello. */
  rulesDigest?: string;
  /** The baseline's seal now: an agent sends a heartbeat after each save of its baseline. */
  baseline?: BaselineSeal;
}

/**
 * The agent's baseline of loader files as saved last (agent/src/known-files.ts): the sha256 of the
 * file's bytes and its generation, which grows by one at each save and never goes back.
 */
export interface BaselineSeal {
  generation: number;
  sha256: string;
}

export interface ExceptionCount {
  ruleId: string;
  listId: string;
  itemId: string;
  count: number;
}

/** Bound on the exception counts one heartbeat may carry (rules × items on one host). */
export const MAX_EXCEPTION_COUNTS = 1000;

export interface HelloMessage {
  type: 'hello';
  v: number;
  agent: AgentFacts;
  /** The agent's heartbeat period: the collector marks it offline after a few missed ones. */
  heartbeatMs: number;
}

export interface AlertsMessage {
  type: 'alerts';
  v: number;
  /** Spool sequence of alerts[0]; alerts[i] has sequence seq + i. */
  seq: number;
  alerts: Alert[];
}

export interface HeartbeatMessage {
  type: 'heartbeat';
  v: number;
  health: AgentHealth;
}

export interface AckMessage {
  type: 'ack';
  v: number;
  /** Every alert with a sequence ≤ upTo is durably stored, or quarantined (then listed in `rejected`). */
  upTo: number;
  /**
   * Alerts of the acked batches that failed validation: stored in the collector's quarantine, not
   * with the alerts. The agent drops them like the others and counts them (never resends them).
   */
  rejected?: RejectedAlert[];
}

export interface RejectedAlert {
  seq: number;
  /** What was wrong, with JSON paths (at most MAX_REJECT_ERRORS, each shortened). */
  errors: string[];
}

export interface ErrorMessage {
  type: 'error';
  v: number;
  code: string;
  message: string;
}

export type AgentMessage = HelloMessage | AlertsMessage | HeartbeatMessage;
export type CollectorMessage = AckMessage | ErrorMessage;

/** Why a frame was refused: `json` (not JSON: close 1007) or `schema` (close 1008). */
export type ParseResult<T> = { ok: true; value: T } | { ok: false; kind: 'json' | 'schema'; errors: string[] };

/** An alert of a valid batch that failed validateAlert: index in the batch, and why. */
export interface InvalidAlert {
  index: number;
  errors: string[];
}

/** An agent message; for a batch, also the alerts that failed validation (to quarantine, not store). */
export type AgentParseResult = { ok: true; value: AgentMessage; invalid: InvalidAlert[] } | { ok: false; kind: 'json' | 'schema'; errors: string[] };

/** Errors per rejected alert sent back in an ack, and their length: the collector keeps the full list. */
export const MAX_REJECT_ERRORS = 5;
const MAX_REJECT_ERROR_CHARS = 300;

const MAX_ERRORS = 20;
const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
const STATUSES: readonly WorkflowStatus[] = ['open', 'acknowledged', 'closed'];
/** Alert ids are UUIDs in practice; this bound keeps odd ids out of logs and URLs. */
const ALERT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Collects problems with their JSON paths; stops recording after MAX_ERRORS. */
class Problems {
  readonly list: string[] = [];
  add(path: string, what: string): void {
    this.push(`${path || '(message)'}: ${what}`);
  }
  /** A problem already phrased with its path (an alert's, from validateAlert). */
  push(text: string): void {
    if (this.list.length < MAX_ERRORS) this.list.push(text);
    else if (this.list.length === MAX_ERRORS) this.list.push('… more problems not shown');
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `a string` : `${typeof v}`;
}

/** A value as an error message shows it: scalars as JSON (bounded), containers by kind, never walked. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return describe(v);
}

function obj(p: Problems, v: unknown, path: string): Record<string, unknown> | undefined {
  if (isObject(v)) return v;
  p.add(path, `expected an object, got ${describe(v)}`);
  return undefined;
}

function str(p: Problems, v: unknown, path: string, opts: { max?: number; optional?: boolean; min?: number } = {}): v is string {
  if (v === undefined && opts.optional) return true;
  if (typeof v !== 'string') {
    p.add(path, `expected a string, got ${describe(v)}`);
    return false;
  }
  if (v.length < (opts.min ?? 0)) {
    p.add(path, 'must not be empty');
    return false;
  }
  if (opts.max !== undefined && v.length > opts.max) {
    p.add(path, `longer than ${opts.max} characters`);
    return false;
  }
  return true;
}

function int(p: Problems, v: unknown, path: string, opts: { min?: number; max?: number; optional?: boolean } = {}): boolean {
  if (v === undefined && opts.optional) return true;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (opts.min ?? 0) || v > max) {
    p.add(path, `expected a whole number ≥ ${opts.min ?? 0}${opts.max === undefined ? '' : ` and ≤ ${max}`}, got ${show(v)}`);
    return false;
  }
  return true;
}

function bool(p: Problems, v: unknown, path: string): boolean {
  if (typeof v === 'boolean') return true;
  p.add(path, `expected true or false, got ${describe(v)}`);
  return false;
}

function strings(p: Problems, v: unknown, path: string, maxItems: number, maxLen: number, optional = false): boolean {
  if (v === undefined && optional) return true;
  if (!Array.isArray(v)) {
    p.add(path, `expected a list of strings, got ${describe(v)}`);
    return false;
  }
  if (v.length > maxItems) {
    p.add(path, `more than ${maxItems} items`);
    return false;
  }
  v.forEach((s, i) => str(p, s, `${path}[${i}]`, { max: maxLen }));
  return true;
}

function oneOf<T extends string>(p: Problems, v: unknown, path: string, allowed: readonly T[]): v is T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return true;
  p.add(path, `expected one of ${allowed.join(', ')}, got ${show(v)}`);
  return false;
}

function version(p: Problems, m: Record<string, unknown>): void {
  if (m.v !== PROTOCOL_VERSION) {
    p.add('v', `protocol version ${show(m.v)} is not spoken here (this side speaks ${PROTOCOL_VERSION}); run the same ldguard version on agent and collector`);
  }
}

function noExtraKeys(p: Problems, m: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(m)) if (!allowed.includes(k)) p.add(path ? `${path}.${k}` : k, 'unknown field');
}

function sourceHealth(p: Problems, v: unknown, path: string): void {
  const o = obj(p, v, path);
  if (!o) return;
  str(p, o.name, `${path}.name`, { min: 1, max: 64 });
  bool(p, o.degraded, `${path}.degraded`);
  str(p, o.reason, `${path}.reason`, { optional: true, max: 4096 });
}

function attributionHealth(p: Problems, v: unknown, path: string): void {
  const o = obj(p, v, path);
  if (!o) return;
  bool(p, o.degraded, `${path}.degraded`);
  str(p, o.reason, `${path}.reason`, { optional: true, max: 4096 });
  if (o.counts !== undefined) {
    const c = obj(p, o.counts, `${path}.counts`);
    if (c) {
      const keys = Object.keys(c);
      if (keys.length > 32) p.add(`${path}.counts`, 'more than 32 kinds');
      else for (const k of keys) int(p, c[k], `${path}.counts.${k}`);
    }
  }
}

/** Checks the fields the collector indexes and the dashboard shows; the rest is stored as sent. */
export function validateAlert(v: unknown, path = 'alert', problems?: Problems): string[] {
  const p = problems ?? new Problems();
  const a = obj(p, v, path);
  if (!a) return p.list;
  const ts = a['@timestamp'];
  if (str(p, ts, `${path}.@timestamp`, { max: 64 }) && Number.isNaN(Date.parse(ts))) {
    p.add(`${path}.@timestamp`, 'not an ISO 8601 date');
  }
  const ev = obj(p, a.event, `${path}.event`);
  if (ev && ev.kind !== 'signal') p.add(`${path}.event.kind`, `expected "signal", got ${show(ev.kind)}`);
  const rule = obj(p, a.rule, `${path}.rule`);
  if (rule) str(p, rule.name, `${path}.rule.name`, { min: 1, max: 1024 });
  const file = obj(p, a.file, `${path}.file`);
  if (file) str(p, file.path, `${path}.file.path`, { max: 8192 });
  if (a.host !== undefined) {
    const host = obj(p, a.host, `${path}.host`);
    if (host) str(p, host.name, `${path}.host.name`, { optional: true, max: 255 });
  }
  const kibana = obj(p, a.kibana, `${path}.kibana`);
  const ka = kibana && obj(p, kibana.alert, `${path}.kibana.alert`);
  if (ka) {
    if (str(p, ka.uuid, `${path}.kibana.alert.uuid`, { min: 1, max: 128 }) && !ALERT_ID.test(ka.uuid)) {
      p.add(`${path}.kibana.alert.uuid`, 'must be letters, digits and . _ : - (a UUID)');
    }
    oneOf(p, ka.severity, `${path}.kibana.alert.severity`, SEVERITIES);
    oneOf(p, ka.workflow_status, `${path}.kibana.alert.workflow_status`, STATUSES);
    const kr = obj(p, ka.rule, `${path}.kibana.alert.rule`);
    if (kr) {
      str(p, kr.rule_id, `${path}.kibana.alert.rule.rule_id`, { min: 1, max: 256 });
      str(p, kr.name, `${path}.kibana.alert.rule.name`, { min: 1, max: 1024 });
    }
  }
  return p.list;
}

function validateAgentFacts(p: Problems, v: unknown, path: string): void {
  const a = obj(p, v, path);
  if (!a) return;
  str(p, a.agentId, `${path}.agentId`, { min: 1, max: 128 });
  str(p, a.version, `${path}.version`, { min: 1, max: 64 });
  str(p, a.hostname, `${path}.hostname`, { min: 1, max: 255 });
  const host = obj(p, a.host, `${path}.host`);
  if (host) {
    str(p, host.architecture, `${path}.host.architecture`, { optional: true, max: 64 });
    strings(p, host.ip, `${path}.host.ip`, 256, 64, true);
    if (host.os !== undefined) {
      const os = obj(p, host.os, `${path}.host.os`);
      if (os) for (const k of Object.keys(os)) str(p, os[k], `${path}.host.os.${k}`, { max: 256 });
    }
  }
  const rules = obj(p, a.rules, `${path}.rules`);
  if (rules) {
    int(p, rules.count, `${path}.rules.count`);
    strings(p, rules.ids, `${path}.rules.ids`, 10_000, 256);
  }
  digest(p, a.rulesDigest, `${path}.rulesDigest`);
  str(p, a.hostId, `${path}.hostId`, { optional: true, min: 1, max: 128 });
  baselineSeal(p, a.baseline, `${path}.baseline`);
  sourceHealth(p, a.source, `${path}.source`);
  attributionHealth(p, a.attribution, `${path}.attribution`);
}

/** An optional baseline seal: a generation and a sha256. */
function baselineSeal(p: Problems, v: unknown, path: string): void {
  if (v === undefined) return;
  const b = obj(p, v, path);
  if (!b) return;
  int(p, b.generation, `${path}.generation`);
  if (b.sha256 === undefined) p.add(`${path}.sha256`, 'expected a sha256 as 64 lowercase hex digits, got nothing');
  else digest(p, b.sha256, `${path}.sha256`);
}

/** An optional sha256 in hex (the rules' digest). */
function digest(p: Problems, v: unknown, path: string): void {
  if (v === undefined) return;
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) p.add(path, `expected a sha256 as 64 lowercase hex digits, got ${show(v)}`);
}

function validateHealth(p: Problems, v: unknown, path: string): void {
  const h = obj(p, v, path);
  if (!h) return;
  for (const k of ['spoolDepth', 'spoolBytes', 'spoolOverflow', 'spoolTorn', 'eventsLost'] as const) int(p, h[k], `${path}.${k}`);
  int(p, h.alertsRejected, `${path}.alertsRejected`, { optional: true });
  int(p, h.uptimeSec, `${path}.uptimeSec`, { optional: true });
  digest(p, h.rulesDigest, `${path}.rulesDigest`);
  baselineSeal(p, h.baseline, `${path}.baseline`);
  sourceHealth(p, h.source, `${path}.source`);
  if (h.attribution !== undefined) attributionHealth(p, h.attribution, `${path}.attribution`);
  if (h.exceptions !== undefined) {
    if (!Array.isArray(h.exceptions) || h.exceptions.length > MAX_EXCEPTION_COUNTS) {
      p.add(`${path}.exceptions`, `expected an array of at most ${MAX_EXCEPTION_COUNTS} counts`);
    } else {
      h.exceptions.forEach((c, i) => {
        const o = obj(p, c, `${path}.exceptions[${i}]`);
        if (!o) return;
        for (const k of ['ruleId', 'listId', 'itemId'] as const) str(p, o[k], `${path}.exceptions[${i}].${k}`, { max: 256 });
        int(p, o.count, `${path}.exceptions[${i}].count`);
      });
    }
  }
}

function parseJson(data: string | Buffer): { ok: true; value: unknown } | { ok: false; kind: 'json'; errors: string[] } {
  try {
    return { ok: true, value: JSON.parse(typeof data === 'string' ? data : data.toString('utf8')) };
  } catch (err) {
    return { ok: false, kind: 'json', errors: [`not JSON: ${(err as Error).message}`] };
  }
}

/**
 * Validates a message an agent sent (the collector's side). The caller has checked its bounds
 * (MESSAGE_BOUNDS): the validation reads fixed paths only, but the collector then serialises and
 * stores what passed. `known`: alerts already found invalid, by index (they are not read again).
 */
export function parseAgentMessage(data: string | Buffer, known?: ReadonlyMap<number, string[]>): AgentParseResult {
  const json = parseJson(data);
  if (!json.ok) return json;
  return validateAgentMessage(json.value, known);
}

/**
 * Validates the envelope of a message and, for a batch, each alert on its own. A batch whose
 * envelope is right is accepted even if some alerts are not: those are listed in `invalid` (each
 * with its own problems) for the collector to quarantine. A wrong envelope refuses the message,
 * listing every problem found, the alerts' included.
 */
export function validateAgentMessage(value: unknown, known?: ReadonlyMap<number, string[]>): AgentParseResult {
  const p = new Problems();
  const invalid: InvalidAlert[] = [];
  const m = obj(p, value, '');
  if (m) {
    version(p, m);
    switch (m.type) {
      case 'hello':
        noExtraKeys(p, m, '', ['type', 'v', 'agent', 'heartbeatMs']);
        validateAgentFacts(p, m.agent, 'agent');
        int(p, m.heartbeatMs, 'heartbeatMs', { min: 100, max: MAX_HEARTBEAT_MS });
        break;
      case 'alerts':
        noExtraKeys(p, m, '', ['type', 'v', 'seq', 'alerts']);
        int(p, m.seq, 'seq', { min: 1 });
        if (!Array.isArray(m.alerts)) p.add('alerts', `expected a list of alerts, got ${describe(m.alerts)}`);
        else if (m.alerts.length === 0) p.add('alerts', 'must not be empty');
        else if (m.alerts.length > MAX_BATCH_ALERTS) p.add('alerts', `more than ${MAX_BATCH_ALERTS} alerts in one batch`);
        else {
          // The last sequence number is acked: it must stay an exact integer too.
          if (typeof m.seq === 'number' && m.seq > Number.MAX_SAFE_INTEGER - (m.alerts.length - 1)) p.add('seq', `the batch's last sequence passes 2^53−1`);
          m.alerts.forEach((a, i) => {
            const errors = known?.get(i) ?? validateAlert(a, `alerts[${i}]`);
            if (errors.length > 0) invalid.push({ index: i, errors });
          });
        }
        break;
      case 'heartbeat':
        noExtraKeys(p, m, '', ['type', 'v', 'health']);
        validateHealth(p, m.health, 'health');
        break;
      default:
        p.add('type', `expected "hello", "alerts" or "heartbeat", got ${show(m.type)}`);
    }
  }
  if (p.list.length === 0) return { ok: true, value: value as AgentMessage, invalid };
  for (const a of invalid) for (const e of a.errors) p.push(e);
  return { ok: false, kind: 'schema', errors: p.list };
}

/** The `rejected` entry an ack carries for an invalid alert: its sequence and its first problems, shortened. */
export function rejectedAlert(seq: number, errors: readonly string[]): RejectedAlert {
  return { seq, errors: errors.slice(0, MAX_REJECT_ERRORS).map((e) => (e.length > MAX_REJECT_ERROR_CHARS ? `${e.slice(0, MAX_REJECT_ERROR_CHARS)}…` : e)) };
}

/** Validates a message the collector sent (the agent's side). */
export function parseCollectorMessage(data: string | Buffer): ParseResult<CollectorMessage> {
  const json = parseJson(data);
  if (!json.ok) return json;
  const p = new Problems();
  const m = obj(p, json.value, '');
  if (m) {
    version(p, m);
    switch (m.type) {
      case 'ack':
        int(p, m.upTo, 'upTo');
        if (m.rejected !== undefined) {
          if (!Array.isArray(m.rejected)) p.add('rejected', `expected a list, got ${describe(m.rejected)}`);
          else if (m.rejected.length > MAX_BATCH_ALERTS * 64) p.add('rejected', 'too many entries');
          else {
            m.rejected.forEach((r, i) => {
              const o = obj(p, r, `rejected[${i}]`);
              if (!o) return;
              int(p, o.seq, `rejected[${i}].seq`, { min: 1 });
              strings(p, o.errors, `rejected[${i}].errors`, MAX_REJECT_ERRORS, MAX_REJECT_ERROR_CHARS + 1);
            });
          }
        }
        break;
      case 'error':
        str(p, m.code, 'code', { min: 1, max: 64 });
        str(p, m.message, 'message', { max: 4096 });
        break;
      default:
        p.add('type', `expected "ack" or "error", got ${show(m.type)}`);
    }
  }
  return p.list.length === 0 ? { ok: true, value: json.value as CollectorMessage } : { ok: false, kind: 'schema', errors: p.list };
}

/** Builds an alerts frame from alerts already serialised (the spool's records), without re-parsing. */
export function alertsFrame(seq: number, serialisedAlerts: readonly string[]): string {
  return `{"type":"alerts","v":${PROTOCOL_VERSION},"seq":${seq},"alerts":[${serialisedAlerts.join(',')}]}`;
}

/** Bytes the frame around a batch takes beside its alerts (with room for a 16-digit seq). */
export const ALERTS_FRAME_OVERHEAD = alertsFrame(1e15, []).length;

export function ackMessage(upTo: number, rejected?: RejectedAlert[]): AckMessage {
  return rejected && rejected.length > 0 ? { type: 'ack', v: PROTOCOL_VERSION, upTo, rejected } : { type: 'ack', v: PROTOCOL_VERSION, upTo };
}

export function errorMessageFrame(code: string, message: string): ErrorMessage {
  return { type: 'error', v: PROTOCOL_VERSION, code, message };
}

// Reading an agent's frame. Two ways to one outcome:
//
// - The general way (readAgentFrame): the frame's shape is checked on its bytes first
//   (shared/json-bounds.ts, MESSAGE_BOUNDS), before anything parses, walks or serialises it; then
//   JSON.parse, the protocol's validation, and each alert's bytes as sent (the collector stores
//   documents as the agent sent them, never serialised again). In a batch whose only values out of
//   bounds lie inside some of its alerts, those alerts are quarantined as their bytes and the
//   others go on: a batch is never refused for what is inside one alert (shared/protocol.ts).
//
// - The fast way (scanAlertsFrame), for alert batches, nearly all the traffic: one pass over the
//   bytes checks the JSON grammar and the same bounds, finds each alert's bytes, and decodes only
//   the fields validateAlert checks and ingest indexes or groups by; no object tree is built. At
//   20,000 alerts/s JSON.parse was the largest cost of the event loop (~11 µs an alert, and most of
//   its garbage); the scan costs ~5. It was bought for an ack-latency target since withdrawn, and measured again
//   when the bounds came (docs/collector-ingest.md, "Bounds first"): without it the collector's
//   durable throughput fell from 21-26k to 16-19k alerts/s on the bench's 2 cores. It stays while
//   that holds.
//
// Contract of the fast way: scanAlertsFrame returns a result only for a frame that the general way
// would accept whole, with no alert quarantined by ingest: within MESSAGE_BOUNDS, JSON.parse would
// accept it, validateAgentMessage would pass it with no invalid alert, each alert's agent.id is the
// sender's, and no alert carries a field the collector stamps (ldguard.received_from,
// ldguard.future_timestamp, ldguard.assignee, nested or dotted). The fields it returns are the ones JSON.parse would
// give. Anything else (not JSON, another message type, an envelope problem, an invalid, oversized or
// foreign alert, a duplicated or escaped key on a path it reads, nesting, width or a number past
// the bounds) gives undefined, and the caller takes the general way, which finds and words every
// problem. So it is only ever a faster way to the same outcome, never a second judge; its unit test
// checks that on valid frames and on every way of breaking one.
//
// The frame must be valid UTF-8 (`ws` checks text frames before handing them over); bytes ≥ 0x80
// are accepted inside strings only, as JSON.parse of the decoded text would.
import type { Severity, WorkflowStatus } from '../../shared/ecs.js';
import { checkJsonBounds } from '../../shared/json-bounds.js';
import { KEY_CHARS, cutKey, type GroupKeys } from './store/group-keys.js';
import {
  ALERT_BOUNDS, MAX_ALERT_BYTES, MAX_BATCH_ALERTS, MESSAGE_BOUNDS, PROTOCOL_VERSION, parseAgentMessage, validateAlert, type AgentMessage, type InvalidAlert,
} from '../../shared/protocol.js';

/** The text fields of an alert that ingest stores in their own columns, in this order. */
export const TEXT_FIELDS = ['uuid', 'host', 'ruleId', 'ruleName', 'severity', 'status'] as const;
/**
 * The group keys' text (store/group-keys.ts), found by the same pass so that SQLite's writer need
 * not parse the document again for them (that parse held its store at 19.6-22.5k alerts/s, 30-36k
 * without: docs/collector-ingest.md). Each is exactly what keysOfParsed gives: a string value cut
 * at KEY_CHARS code points, else null. summaryId is held_back_by's for a held-back record
 * (ScannedFrame.held), else ldguard.summary.id's.
 */
export const KEY_FIELDS = ['fileHash', 'executable', 'package', 'summaryId'] as const;
/** Fields per alert in ScannedFrame.spans and .texts: TEXT_FIELDS, then KEY_FIELDS. */
export const SCANNED_FIELDS = TEXT_FIELDS.length + KEY_FIELDS.length;
/** Int32s per alert in ScannedFrame.spans: the document's [start, end), then each field's (SCANNED_FIELDS). */
export const SPANS_PER_ALERT = 2 + 2 * SCANNED_FIELDS;

/**
 * An alerts frame that passed, as offsets into the frame rather than objects: a batch waiting for
 * its commit holds the frame and two typed arrays, not a dozen objects and strings per alert. At
 * 20,000 alerts/s those per-alert objects were what the garbage collector copied and promoted
 * while they waited, in scavenges of 15-45 ms and mark-compacts of up to 60 ms, several a second
 * once a queue had formed.
 */
export interface ScannedFrame {
  seq: number;
  count: number;
  /** The frame: every span is a byte range of it. */
  frame: Buffer;
  /**
   * Per alert (SPANS_PER_ALERT each): its document's bytes as sent, then the bytes of each
   * TEXT_FIELDS and KEY_FIELDS value (a JSON string without escapes is its text's UTF-8). Start -1:
   * the value is in `texts` (it had escapes, or is a key to cut) or, if not there, null (a host
   * without a name, a key that is absent or not a string).
   */
  spans: Int32Array;
  /** Per alert: @timestamp and the original time (originalTime()), ms. */
  times: Float64Array;
  /** Decoded values, by alert × SCANNED_FIELDS + field; undefined when there are none (the usual case). */
  texts: Map<number, string> | undefined;
  /** How many of the alerts are held-back records (ldguard.held_back_by present, any value: the quota counts them all). */
  heldBack: number;
  /** Per alert: 1 when it is a held-back record by the group keys (ldguard.held_back_by is a string), else 0. */
  held: Uint8Array;
}

/** One alert of a scanned frame with its fields decoded (for the live feed and for tests; ingest never needs it). */
export interface ScannedAlert {
  doc: Buffer;
  ts: number;
  ots: number;
  uuid: string;
  host: string | null;
  ruleId: string;
  ruleName: string;
  severity: Severity;
  status: WorkflowStatus;
}

export function scannedAlert(f: ScannedFrame, i: number): ScannedAlert {
  const at = i * SPANS_PER_ALERT;
  const text = scannedText(f, i);
  return {
    doc: f.frame.subarray(f.spans[at], f.spans[at + 1]),
    ts: f.times[2 * i]!,
    ots: f.times[2 * i + 1]!,
    uuid: text(0)!,
    host: text(1),
    ruleId: text(2)!,
    ruleName: text(3)!,
    severity: text(4) as Severity,
    status: text(5) as WorkflowStatus,
  };
}

/** Alert i's field (an index in TEXT_FIELDS, then KEY_FIELDS) as a string, or null. */
function scannedText(f: ScannedFrame, i: number): (field: number) => string | null {
  const at = i * SPANS_PER_ALERT;
  return (field) => {
    const s = f.spans[at + 2 + 2 * field]!;
    if (s >= 0) return f.frame.toString('utf8', s, f.spans[at + 3 + 2 * field]);
    return f.texts?.get(i * SCANNED_FIELDS + field) ?? null;
  };
}

/** Alert i's group keys, decoded (for tests: the writer takes the spans as they are); keysOfParsed's for its document. */
export function scannedKeys(f: ScannedFrame, i: number): GroupKeys {
  const text = scannedText(f, i);
  const T = TEXT_FIELDS.length;
  return { fileHash: text(T), executable: text(T + 1), package: text(T + 2), heldBack: f.held[i] === 1, summaryId: text(T + 3) };
}

/**
 * An alert's original event time in ms: kibana.alert.original_time, or @timestamp when that is
 * missing or not a date. Ingest and the schema 2 migration both use this, so that an alert stored
 * before the upgrade and resent after it has the same key.
 */
export function originalTime(originalTimeField: unknown, ts: number): number {
  const t = typeof originalTimeField === 'string' ? Date.parse(originalTimeField) : NaN;
  return Number.isFinite(t) ? t : ts;
}

/**
 * Nesting past this gives undefined (the general path handles it): it bounds the scanner's
 * recursion, and keeps what it accepts inside MESSAGE_BOUNDS (its depth 2 is an alert, the bounds'
 * 3; one level stricter costs nothing honest).
 */
const MAX_DEPTH = MESSAGE_BOUNDS.maxDepth - 2;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

// The values an alert's validation and its row need, each at one slot. Containers have a slot too:
// where they start, so that a missing `host` is told from a present one.
const S_TIMESTAMP = 0;
const S_EVENT = 1;
const S_EVENT_KIND = 2;
const S_RULE = 3;
const S_RULE_NAME = 4;
const S_FILE = 5;
const S_FILE_PATH = 6;
const S_HOST = 7;
const S_HOST_NAME = 8;
const S_KIBANA = 9;
const S_KALERT = 10;
const S_UUID = 11;
const S_SEVERITY = 12;
const S_STATUS = 13;
const S_ORIGINAL_TIME = 14;
const S_KRULE = 15;
const S_RULE_ID = 16;
const S_KRULE_NAME = 17;
const S_AGENT = 18;
const S_AGENT_ID = 19;
const S_LDGUARD = 20;
const S_RECEIVED_FROM = 21;
const S_FUTURE = 22;
const S_HELD_BACK = 23;
const S_ASSIGNEE = 24;
// The group keys' (KEY_FIELDS) and the objects on their paths.
const S_FILE_HASH = 25;
const S_SHA256 = 26;
const S_PROCESS = 27;
const S_EXECUTABLE = 28;
const S_FILE_PACKAGE = 29;
const S_PACKAGE_NAME = 30;
const S_SUMMARY = 31;
const S_SUMMARY_ID = 32;
const SLOTS = 33;

/** An object on a path we read: its keys of interest, each a leaf (slot) or a nested object. */
interface Target {
  keys: Buffer[];
  slots: number[];
  /** For each key: the nested target when the value must be an object we read into, else null. */
  children: Array<Target | null>;
  /**
   * Whether a value that is not an object is taken (as having none of the keys) rather than left to
   * the general path: validation reads no key under it, only the group keys do, and for them such
   * a value simply means no key (keysOfParsed).
   */
  optional: boolean;
}

function target(entries: Array<[string, number, Target | null]>, optional = false): Target {
  return { keys: entries.map(([k]) => Buffer.from(k)), slots: entries.map(([, s]) => s), children: entries.map(([, , c]) => c), optional };
}

const ALERT: Target = target([
  ['@timestamp', S_TIMESTAMP, null],
  ['event', S_EVENT, target([['kind', S_EVENT_KIND, null]])],
  ['rule', S_RULE, target([['name', S_RULE_NAME, null]])],
  ['file', S_FILE, target([['path', S_FILE_PATH, null], ['hash', S_FILE_HASH, target([['sha256', S_SHA256, null]], true)]])],
  ['process', S_PROCESS, target([['executable', S_EXECUTABLE, null]], true)],
  ['host', S_HOST, target([['name', S_HOST_NAME, null]])],
  ['agent', S_AGENT, target([['id', S_AGENT_ID, null]])],
  // To see that the agent wrote none of the collector's stamps (the general way drops them), and
  // which alerts are held-back records (they count against the token's quota, quota.ts).
  // And the group keys under it.
  ['ldguard', S_LDGUARD, target([
    ['received_from', S_RECEIVED_FROM, null], ['future_timestamp', S_FUTURE, null], ['held_back_by', S_HELD_BACK, null], ['assignee', S_ASSIGNEE, null],
    ['file_package', S_FILE_PACKAGE, target([['name', S_PACKAGE_NAME, null]], true)], ['summary', S_SUMMARY, target([['id', S_SUMMARY_ID, null]], true)],
  ])],
  ['kibana', S_KIBANA, target([
    ['alert', S_KALERT, target([
      ['uuid', S_UUID, null],
      ['severity', S_SEVERITY, null],
      ['workflow_status', S_STATUS, null],
      ['original_time', S_ORIGINAL_TIME, null],
      ['rule', S_KRULE, target([['rule_id', S_RULE_ID, null], ['name', S_KRULE_NAME, null]])],
    ])],
  ])],
]);

const DOTTED_LDGUARD = Buffer.from('ldguard.');

// Per alert being scanned: where each slot's value starts and ends (start -1: absent), and whether
// that value is a string without escapes (decoded from its bytes directly).
const starts = new Int32Array(SLOTS);
const ends = new Int32Array(SLOTS);
const plain = new Uint8Array(SLOTS);
/** Set by scanString: the string just scanned had a backslash. */
let escaped = false;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function skipSpace(buf: Buffer, i: number, n: number): number {
  while (i < n && isSpace(buf[i]!)) i++;
  return i;
}

function isHex(b: number): boolean {
  return (b >= ZERO && b <= NINE) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

/** The string starting at buf[i] (a quote): the index past its closing quote, or -1 if it is not a JSON string. */
function scanString(buf: Buffer, i: number, n: number): number {
  escaped = false;
  i++;
  while (i < n) {
    const b = buf[i]!;
    if (b === QUOTE) return i + 1;
    if (b === BACKSLASH) {
      escaped = true;
      const e = buf[i + 1];
      if (e === 0x75) {
        // \uXXXX
        if (i + 5 >= n || !isHex(buf[i + 2]!) || !isHex(buf[i + 3]!) || !isHex(buf[i + 4]!) || !isHex(buf[i + 5]!)) return -1;
        i += 6;
      } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
      } else {
        return -1;
      }
      continue;
    }
    if (b < 0x20) return -1;
    i++;
  }
  return -1;
}

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= ZERO && b <= NINE;
}

/** A JSON number at buf[i]: the index past it, or -1. */
function scanNumber(buf: Buffer, i: number, n: number): number {
  const start = i;
  const end = scanNumberText(buf, i, n);
  if (end < 0) return -1;
  // Within ±(2^53−1), as MESSAGE_BOUNDS says: only tokens long enough to leave it, or with an
  // exponent, are converted to be sure.
  let convert = end - start >= 16;
  for (let k = start; k < end && !convert; k++) convert = buf[k] === 0x65 || buf[k] === 0x45;
  if (convert && !(Math.abs(Number(buf.toString('latin1', start, end))) <= Number.MAX_SAFE_INTEGER)) return -1;
  return end;
}

function scanNumberText(buf: Buffer, i: number, n: number): number {
  if (buf[i] === MINUS) i++;
  if (i >= n) return -1;
  if (buf[i] === ZERO) i++;
  else if (isDigit(buf[i])) while (i < n && isDigit(buf[i])) i++;
  else return -1;
  if (buf[i] === DOT) {
    i++;
    if (!isDigit(buf[i])) return -1;
    while (i < n && isDigit(buf[i])) i++;
  }
  if (buf[i] === 0x65 || buf[i] === 0x45) {
    i++;
    if (buf[i] === PLUS || buf[i] === MINUS) i++;
    if (!isDigit(buf[i])) return -1;
    while (i < n && isDigit(buf[i])) i++;
  }
  return i;
}

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

function scanLiteral(buf: Buffer, i: number, n: number, lit: Buffer): number {
  if (i + lit.length > n) return -1;
  for (let k = 0; k < lit.length; k++) if (buf[i + k] !== lit[k]) return -1;
  return i + lit.length;
}

/** Any JSON value at buf[i] (no leading space), read for its extent only: the index past it, or -1. */
function scanValue(buf: Buffer, i: number, n: number, depth: number): number {
  const b = buf[i];
  if (b === QUOTE) return scanString(buf, i, n);
  if (b === OPEN_OBJECT) return scanObject(buf, i, n, depth + 1, null);
  if (b === OPEN_ARRAY) return scanArray(buf, i, n, depth + 1);
  if (b === MINUS || isDigit(b)) return scanNumber(buf, i, n);
  if (b === 0x74) return scanLiteral(buf, i, n, TRUE);
  if (b === 0x66) return scanLiteral(buf, i, n, FALSE);
  if (b === 0x6e) return scanLiteral(buf, i, n, NULL);
  return -1;
}

function scanArray(buf: Buffer, i: number, n: number, depth: number): number {
  if (depth > MAX_DEPTH) return -1;
  i = skipSpace(buf, i + 1, n);
  if (buf[i] === CLOSE_ARRAY) return i + 1;
  for (let items = 1; ; items++) {
    if (items > MESSAGE_BOUNDS.maxItems) return -1;
    i = scanValue(buf, i, n, depth);
    if (i < 0) return -1;
    i = skipSpace(buf, i, n);
    const b = buf[i];
    if (b === CLOSE_ARRAY) return i + 1;
    if (b !== COMMA) return -1;
    i = skipSpace(buf, i + 1, n);
  }
}

/** Which of the target's keys the bytes buf[start, end) are (a key without escapes), or -1. */
function keyIndex(t: Target, buf: Buffer, start: number, end: number): number {
  const len = end - start;
  for (let k = 0; k < t.keys.length; k++) {
    const key = t.keys[k]!;
    if (key.length !== len) continue;
    let j = 0;
    while (j < len && key[j] === buf[start + j]) j++;
    if (j === len) return k;
  }
  return -1;
}

/**
 * An object at buf[i]. With a target, records where its keys of interest have their values (in
 * `starts`/`ends`/`plain`), refusing (-1) a key of interest seen twice (JSON.parse keeps the last;
 * one reading is enough to be sure), a key with escapes (it could spell one of interest), and a
 * nested target whose value is not an object (the general path words that problem).
 */
function scanObject(buf: Buffer, i: number, n: number, depth: number, t: Target | null): number {
  if (depth > MAX_DEPTH) return -1;
  let seen = 0;
  i = skipSpace(buf, i + 1, n);
  if (buf[i] === CLOSE_OBJECT) return i + 1;
  for (let keys = 1; ; keys++) {
    if (keys > MESSAGE_BOUNDS.maxKeys) return -1;
    if (buf[i] !== QUOTE) return -1;
    const keyStart = i + 1;
    i = scanString(buf, i, n);
    if (i < 0) return -1;
    let k = -1;
    if (t) {
      if (escaped) return -1;
      // A stamp of the collector's written as a dotted key ("ldguard.received_from"): the general way drops it.
      if (t === ALERT && i - 1 - keyStart >= DOTTED_LDGUARD.length && buf.compare(DOTTED_LDGUARD, 0, DOTTED_LDGUARD.length, keyStart, keyStart + DOTTED_LDGUARD.length) === 0) return -1;
      k = keyIndex(t, buf, keyStart, i - 1);
      if (k >= 0) {
        if (seen & (1 << k)) return -1;
        seen |= 1 << k;
      }
    }
    i = skipSpace(buf, i, n);
    if (buf[i] !== COLON) return -1;
    i = skipSpace(buf, i + 1, n);
    const valueStart = i;
    if (k >= 0) {
      const child = t!.children[k]!;
      if (child && buf[i] === OPEN_OBJECT) {
        i = scanObject(buf, i, n, depth + 1, child);
      } else if (child && !child.optional) {
        return -1;
      } else {
        i = scanValue(buf, i, n, depth);
      }
      if (i < 0) return -1;
      const slot = t!.slots[k]!;
      starts[slot] = valueStart;
      ends[slot] = i;
      plain[slot] = buf[valueStart] === QUOTE && !escaped ? 1 : 0;
    } else {
      i = scanValue(buf, i, n, depth);
      if (i < 0) return -1;
    }
    i = skipSpace(buf, i, n);
    const b = buf[i];
    if (b === CLOSE_OBJECT) return i + 1;
    if (b !== COMMA) return -1;
    i = skipSpace(buf, i + 1, n);
  }
}

/** The value of a slot as JSON.parse would give it (undefined when absent). */
function valueOf(buf: Buffer, slot: number): unknown {
  const s = starts[slot]!;
  if (s < 0) return undefined;
  if (plain[slot]) return buf.toString('utf8', s + 1, ends[slot]! - 1);
  return JSON.parse(buf.toString('utf8', s, ends[slot]));
}

// The scan's output while it runs, copied to a ScannedFrame of the right size at the end.
const outSpans = new Int32Array(MAX_BATCH_ALERTS * SPANS_PER_ALERT);
const outTimes = new Float64Array(MAX_BATCH_ALERTS * 2);
let outTexts: Map<number, string> | undefined;
let outHeldBack = 0;
const outHeld = new Uint8Array(MAX_BATCH_ALERTS);

/** The slot of each TEXT_FIELDS value. */
const TEXT_SLOTS = [S_UUID, S_HOST_NAME, S_RULE_ID, S_RULE_NAME, S_SEVERITY, S_STATUS];

/**
 * Records the alert just scanned as alert `index` of the output, if validateAlert finds nothing
 * wrong with it. validateAlert reads only the slots' paths, so it is given an object with just
 * those: it judges that exactly as it would the whole alert. The decoded values are garbage at
 * once; what is kept is their offsets.
 */
function record(buf: Buffer, index: number, docStart: number, docEnd: number, agentId: Buffer): boolean {
  const has = (slot: number) => starts[slot]! >= 0;
  // Ingest quarantines an alert that names another agent, and rewrites one with stamps: not here.
  if (has(S_RECEIVED_FROM) || has(S_FUTURE) || has(S_ASSIGNEE) || !plain[S_AGENT_ID]) return false;
  const idStart = starts[S_AGENT_ID]! + 1;
  if (ends[S_AGENT_ID]! - 1 - idStart !== agentId.length || buf.compare(agentId, 0, agentId.length, idStart, ends[S_AGENT_ID]! - 1) !== 0) return false;
  const kr = has(S_KRULE) ? { rule_id: valueOf(buf, S_RULE_ID), name: valueOf(buf, S_KRULE_NAME) } : undefined;
  const ka = has(S_KALERT)
    ? { uuid: valueOf(buf, S_UUID), severity: valueOf(buf, S_SEVERITY), workflow_status: valueOf(buf, S_STATUS), original_time: valueOf(buf, S_ORIGINAL_TIME), rule: kr }
    : undefined;
  const a = {
    '@timestamp': valueOf(buf, S_TIMESTAMP),
    event: has(S_EVENT) ? { kind: valueOf(buf, S_EVENT_KIND) } : undefined,
    rule: has(S_RULE) ? { name: valueOf(buf, S_RULE_NAME) } : undefined,
    file: has(S_FILE) ? { path: valueOf(buf, S_FILE_PATH) } : undefined,
    host: has(S_HOST) ? { name: valueOf(buf, S_HOST_NAME) } : undefined,
    kibana: has(S_KIBANA) ? { alert: ka } : undefined,
  };
  if (validateAlert(a).length > 0) return false;
  const at = index * SPANS_PER_ALERT;
  outSpans[at] = docStart;
  outSpans[at + 1] = docEnd;
  // Valid: rule.name is what ingest stores as the rule name (kibana.alert.rule.name only stands in
  // for a missing rule.name, which validation refuses), and the host name is a string or absent.
  for (let f = 0; f < TEXT_SLOTS.length; f++) {
    const slot = TEXT_SLOTS[f]!;
    if (starts[slot]! >= 0 && plain[slot]) {
      outSpans[at + 2 + 2 * f] = starts[slot]! + 1;
      outSpans[at + 3 + 2 * f] = ends[slot]! - 1;
    } else {
      outSpans[at + 2 + 2 * f] = -1;
      outSpans[at + 3 + 2 * f] = -1;
      if (starts[slot]! >= 0) (outTexts ??= new Map()).set(index * SCANNED_FIELDS + f, valueOf(buf, slot) as string);
    }
  }
  if (has(S_HELD_BACK)) outHeldBack++;
  const held = isString(buf, S_HELD_BACK);
  outHeld[index] = held ? 1 : 0;
  const T = TEXT_FIELDS.length;
  recordKey(buf, index, T, S_SHA256);
  recordKey(buf, index, T + 1, S_EXECUTABLE);
  recordKey(buf, index, T + 2, S_PACKAGE_NAME);
  recordKey(buf, index, T + 3, held ? S_HELD_BACK : S_SUMMARY_ID);
  const ts = Date.parse(a['@timestamp'] as string);
  outTimes[2 * index] = ts;
  outTimes[2 * index + 1] = originalTime(ka!.original_time, ts);
  return true;
}

function isString(buf: Buffer, slot: number): boolean {
  return starts[slot]! >= 0 && buf[starts[slot]!] === QUOTE;
}

/**
 * A group key's value (field of SCANNED_FIELDS) as keysOfParsed reads it: text only if a string. A
 * string without escapes of at most KEY_CHARS bytes is at most KEY_CHARS code points, so it stays a
 * span; any other is decoded and cut (rare: escapes, or a path past 512 bytes).
 */
function recordKey(buf: Buffer, index: number, field: number, slot: number): void {
  const o = index * SPANS_PER_ALERT + 2 + 2 * field;
  outSpans[o] = -1;
  outSpans[o + 1] = -1;
  if (!isString(buf, slot)) return;
  if (plain[slot] && ends[slot]! - starts[slot]! - 2 <= KEY_CHARS) {
    outSpans[o] = starts[slot]! + 1;
    outSpans[o + 1] = ends[slot]! - 1;
    return;
  }
  (outTexts ??= new Map()).set(index * SCANNED_FIELDS + field, cutKey(valueOf(buf, slot) as string, KEY_CHARS));
}

const ENVELOPE_TYPE = Buffer.from('"alerts"');
const ENVELOPE = target([['type', 0, null], ['v', 1, null], ['seq', 2, null], ['alerts', 3, null]]);

/**
 * An alerts frame whose envelope and alerts are all valid, read without JSON.parse (see the top of
 * this file); undefined for anything else, which the caller then reads the general way.
 */
export function scanAlertsFrame(frame: Buffer, agentId: string): ScannedFrame | undefined {
  try {
    return scan(frame, Buffer.from(agentId));
  } catch {
    // A RangeError from a pathological frame, or anything unforeseen: the general path decides.
    return undefined;
  }
}

function scan(buf: Buffer, agentId: Buffer): ScannedFrame | undefined {
  const n = buf.length;
  let i = skipSpace(buf, 0, n);
  if (buf[i] !== OPEN_OBJECT) return undefined;
  i = skipSpace(buf, i + 1, n);
  let seen = 0;
  let type = false;
  let v: number | undefined;
  let seq: number | undefined;
  let count = -1;
  outTexts = undefined;
  outHeldBack = 0;
  for (;;) {
    if (buf[i] !== QUOTE) return undefined;
    const keyStart = i + 1;
    i = scanString(buf, i, n);
    if (i < 0 || escaped) return undefined;
    const k = keyIndex(ENVELOPE, buf, keyStart, i - 1);
    // Another key is an envelope problem (or not an alerts frame): the general path says which.
    if (k < 0 || seen & (1 << k)) return undefined;
    seen |= 1 << k;
    i = skipSpace(buf, i, n);
    if (buf[i] !== COLON) return undefined;
    i = skipSpace(buf, i + 1, n);
    const at = i;
    if (k === 3) {
      if (buf[i] !== OPEN_ARRAY) return undefined;
      count = 0;
      i = skipSpace(buf, i + 1, n);
      if (buf[i] === CLOSE_ARRAY) return undefined; // empty: an envelope problem
      for (;;) {
        if (buf[i] !== OPEN_OBJECT || count === MAX_BATCH_ALERTS) return undefined;
        starts.fill(-1);
        const start = i;
        i = scanObject(buf, i, n, 2, ALERT);
        if (i < 0 || i - start > MAX_ALERT_BYTES) return undefined;
        if (!record(buf, count, start, i, agentId)) return undefined;
        count += 1;
        i = skipSpace(buf, i, n);
        if (buf[i] === CLOSE_ARRAY) break;
        if (buf[i] !== COMMA) return undefined;
        i = skipSpace(buf, i + 1, n);
      }
      i++;
    } else {
      i = scanValue(buf, i, n, 1);
      if (i < 0) return undefined;
      if (k === 0) type = i - at === ENVELOPE_TYPE.length && buf.compare(ENVELOPE_TYPE, 0, ENVELOPE_TYPE.length, at, i) === 0;
      else if (buf[at] === MINUS || isDigit(buf[at])) {
        // A JSON number: Number() reads its text as JSON.parse does.
        const x = Number(buf.toString('latin1', at, i));
        if (k === 1) v = x;
        else seq = x;
      } else {
        return undefined;
      }
    }
    i = skipSpace(buf, i, n);
    if (buf[i] === CLOSE_OBJECT) break;
    if (buf[i] !== COMMA) return undefined;
    i = skipSpace(buf, i + 1, n);
  }
  if (skipSpace(buf, i + 1, n) !== n) return undefined;
  if (!type || v !== PROTOCOL_VERSION || seq === undefined || !Number.isSafeInteger(seq) || seq < 1 || count < 0) return undefined;
  return { seq, count, frame: buf, spans: outSpans.slice(0, count * SPANS_PER_ALERT), times: outTimes.slice(0, count * 2), texts: outTexts, heldBack: outHeldBack, held: outHeld.slice(0, count) };
}

export type FrameRead =
  | { ok: true; value: AgentMessage; invalid: InvalidAlert[]; raw: Buffer[] | undefined }
  | { ok: false; kind: 'json' | 'schema' | 'bounds'; errors: string[] };

/** An agent's text frame, read the general way (see the top of this file). Never throws. */
export function readAgentFrame(data: Buffer): FrameRead {
  const bounds = checkJsonBounds(data, MESSAGE_BOUNDS, { elementsOf: 'alerts' });
  if (bounds.ok) {
    const parsed = parseAgentMessage(data);
    if (!parsed.ok) return parsed;
    const spans = bounds.elements;
    const raw = parsed.value.type === 'alerts' && spans && spans.length === 2 * parsed.value.alerts.length
      ? Array.from({ length: spans.length / 2 }, (_, i) => data.subarray(spans[2 * i], spans[2 * i + 1]))
      : undefined;
    return { ...parsed, raw };
  }
  // The rare path (a frame out of bounds) finds the alerts with alertSlices: unlike the bounds
  // scan, it keeps no state per level, however deep the frame nests.
  const refused: FrameRead = { ok: false, kind: 'bounds', errors: [`${bounds.error} (at byte ${bounds.at})`] };
  const slices = alertSlices(data);
  if (!slices) return refused;
  const out = new Map<number, string[]>();
  slices.forEach((s, i) => {
    const r = checkJsonBounds(s, ALERT_BOUNDS);
    if (!r.ok) out.set(i, [`alerts[${i}]: ${r.error} (at byte ${r.at} of the alert); an alert must keep within the protocol's bounds`]);
  });
  if (out.size === 0) return refused;
  // The frame with each such alert replaced by null: what is left must keep the bounds on its own.
  const parts: Buffer[] = [];
  let at = 0;
  for (const i of out.keys()) {
    const start = slices[i]!.byteOffset - data.byteOffset;
    parts.push(data.subarray(at, start), NULL);
    at = start + slices[i]!.length;
  }
  parts.push(data.subarray(at));
  const rest = Buffer.concat(parts);
  if (!checkJsonBounds(rest, MESSAGE_BOUNDS).ok) return refused;
  const parsed = parseAgentMessage(rest, out);
  if (!parsed.ok) return parsed;
  if (parsed.value.type !== 'alerts' || parsed.value.alerts.length !== slices.length) return refused;
  return { ...parsed, raw: slices };
}

/**
 * Each alert's bytes in a frame out of bounds (readAgentFrame's rare path), so that those within
 * them are stored as sent and the others quarantined as sent.
 *
 * Contract: it returns one slice per element of the top-level "alerts" array (the last such
 * member, as JSON.parse keeps the last of duplicate keys), sharing the frame's memory, or
 * undefined when anything is unexpected (a key written with escapes, a count other than `count`
 * when given). On a frame that is not JSON its slices mean nothing, but it never throws and keeps
 * no state per level, however deep the frame nests.
 */
export function alertSlices(frame: Buffer, count?: number): Buffer[] | undefined {
  let found: Buffer[] | undefined;
  let depth = 0;
  // At depth 1: whether the next string is a key (after '{' or ','), and whether the last key was "alerts".
  let expectKey = false;
  let keyIsAlerts = false;
  // The elements of an "alerts" array, while inside it (depth 2), and where the current one began.
  let collecting: Buffer[] | undefined;
  let elementStart = -1;
  for (let i = 0; i < frame.length; i++) {
    const b = frame[i]!;
    if (isSpace(b)) continue;
    if (collecting && depth === 2 && elementStart < 0 && b !== COMMA && b !== CLOSE_ARRAY) elementStart = i;
    switch (b) {
      case QUOTE: {
        const after = skipQuoted(frame, i);
        if (depth === 1 && expectKey) {
          keyIsAlerts = after - i === ALERTS_KEY.length && frame.compare(ALERTS_KEY, 0, ALERTS_KEY.length, i, after) === 0;
          expectKey = false;
        }
        i = after - 1;
        break;
      }
      case OPEN_ARRAY:
        if (depth === 1 && keyIsAlerts) {
          collecting = [];
          elementStart = -1;
        }
        depth++;
        break;
      case OPEN_OBJECT:
        depth++;
        if (depth === 1) expectKey = true;
        break;
      case CLOSE_ARRAY:
      case CLOSE_OBJECT:
        if (collecting && depth === 2) {
          // The alerts array's `]`: its last element ends here (none when it is empty).
          if (elementStart >= 0) collecting.push(frame.subarray(elementStart, trimEnd(frame, elementStart, i)));
          found = collecting;
          collecting = undefined;
        }
        depth--;
        break;
      case COMMA:
        if (depth === 1) expectKey = true;
        else if (collecting && depth === 2) {
          collecting.push(frame.subarray(elementStart, trimEnd(frame, elementStart, i)));
          elementStart = -1;
        }
        break;
      default:
        break;
    }
  }
  return found && (count === undefined || found.length === count) ? found : undefined;
}

const ALERTS_KEY = Buffer.from('"alerts"');

/** Index just past the string that starts at `at` (a quote), in a frame known to be JSON. */
function skipQuoted(buf: Buffer, at: number): number {
  let i = at + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, i);
    if (q < 0) return buf.length;
    // A quote preceded by an odd number of backslashes is escaped.
    let n = 0;
    while (buf[q - 1 - n] === BACKSLASH) n++;
    if (n % 2 === 0) return q + 1;
    i = q + 1;
  }
}

function trimEnd(buf: Buffer, start: number, end: number): number {
  let e = end;
  while (e > start && isSpace(buf[e - 1]!)) e--;
  return e;
}

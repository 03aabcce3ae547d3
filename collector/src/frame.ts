// Reading an agent's frame: its bounds first, then JSON.parse and the protocol's validation, and
// for an alerts batch each alert's bytes as sent (the collector stores documents as the agent sent
// them, never serialised again).
//
// Order matters: nothing walks, serialises or stores a value before checkJsonBounds has passed it
// (see MESSAGE_BOUNDS). One exception keeps delivery going: an alerts batch whose only values out
// of bounds lie inside some of its alerts is read on without them, and those alerts are quarantined
// as their bytes, never parsed into the stored rows. A batch is never refused for what is inside
// one alert (shared/protocol.ts), and an older agent that sends such an alert is not made to resend
// it for ever.
//
// This replaced a 571-line scanner that read valid frames without building their objects, bought
// for an ack-latency target (p99 50 ms at 20,000 alerts/s) that has been withdrawn; the collector's
// bench rows with and without it are in docs/collector-ingest.md.
import { checkJsonBounds } from '../../shared/json-bounds.js';
import {
  ALERT_BOUNDS, MESSAGE_BOUNDS, parseAgentMessage, type AgentMessage, type InvalidAlert,
} from '../../shared/protocol.js';

export type FrameRead =
  | { ok: true; value: AgentMessage; invalid: InvalidAlert[]; raw: Buffer[] | undefined }
  | { ok: false; kind: 'json' | 'schema' | 'bounds'; errors: string[] };

const NULL = Buffer.from('null');

/** An agent's text frame, read in the order above. Never throws. */
export function readAgentFrame(data: Buffer): FrameRead {
  const bounds = checkJsonBounds(data, MESSAGE_BOUNDS);
  if (bounds.ok) {
    const parsed = parseAgentMessage(data);
    if (!parsed.ok) return parsed;
    return { ...parsed, raw: parsed.value.type === 'alerts' ? alertSlices(data, parsed.value.alerts.length) : undefined };
  }
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
 * An alert's original event time in ms: kibana.alert.original_time, or @timestamp when that is
 * missing or not a date. Ingest and the schema 2 migration both use this, so that an alert stored
 * before the upgrade and resent after it has the same key.
 */
export function originalTime(originalTimeField: unknown, ts: number): number {
  const t = typeof originalTimeField === 'string' ? Date.parse(originalTimeField) : NaN;
  return Number.isFinite(t) ? t : ts;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/**
 * The general path's slices: each alert's bytes inside a frame JSON.parse accepted, so the
 * document is stored exactly as sent without serialising the parsed object again.
 *
 * Contract: it returns one slice per element of the top-level "alerts" array (the last such
 * member, as JSON.parse keeps the last of duplicate keys), sharing the frame's memory, or
 * undefined when anything is unexpected (a key written with escapes, a count other than `count`
 * when given): the caller then serialises the parsed alerts. On a frame that is not JSON its
 * slices mean nothing, but it never throws and never recurses (readAgentFrame parses afterwards).
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

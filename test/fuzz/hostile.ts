// Hostile agent messages for test/fuzz/hostile-agent.test.ts: fast-check arbitraries of small
// descriptors, and the pure builders that turn a descriptor into the bytes an attacker sends.
//
// Why descriptors and not the payloads themselves: a counterexample has to be readable and
// replayable. `{ kind: 'deep', target: 'hello.agent.x', depth: 5000, shape: 'array' }` says what
// broke the collector; 20 kB of brackets does not. The builders are deterministic, so the
// descriptor is the whole case, and shrinking moves the numbers in it (depth, keys, items) towards
// the smallest one that still fails.
//
// The texts are built as strings, never as objects passed to JSON.stringify: a value nested 20,000
// deep would overflow this process's stack before it ever reached the collector, and numbers past
// 2^53, duplicated keys, escaped keys or invalid UTF-8 cannot be said through JSON.stringify at all.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { makeAlert, makeFacts } from '../helpers/delivery.js';

/** The agent id and host name of the honest agent that every attacker tries to harm or impersonate. */
export const HONEST_ID = 'honest-agent';
export const HONEST_HOST = 'honest-host';
export const HONEST_TOKEN_NAME = 'honest';

/** Attackers with a token of their own (bound to `attacker-N` before any attack); see the test's arena. */
export const OWNED_TOKENS = 4;
export const attackerId = (n: number): string => `attacker-${n}`;

/** Stands in for the hostile value in a message, then replaced by its text. */
const HOLE = '@@HOSTILE@@';

// ---------------------------------------------------------------------------------------------
// Valid messages, the base every hostile one is cut from.

type Json = any;

export function helloObject(agentId: string, hostname = `${agentId}-host`): Json {
  return { type: 'hello', v: 1, agent: makeFacts(agentId, hostname), heartbeatMs: 10_000 };
}

export function heartbeatObject(): Json {
  return {
    type: 'heartbeat', v: 1,
    health: { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false }, attribution: { degraded: false, counts: { live_proc: 1 } }, uptimeSec: 5 },
  };
}

/** An attacker's alert: its uuid is the attacker's own (`atk-...`), never one of the honest agent's. */
export function attackerAlert(uuid: string, host = 'attacker-host'): Json {
  return makeAlert({ uuid, host });
}

export function alertsObject(seq: number, uuids: string[], host?: string): Json {
  return { type: 'alerts', v: 1, seq, alerts: uuids.map((u) => attackerAlert(u, host)) };
}

/** Sets `path` (dotted; `alerts.0.x` indexes arrays) in a copy of `obj` to `value`, creating objects on the way. */
export function withPath(obj: Json, path: string, value: unknown): Json {
  const copy = structuredClone(obj);
  const keys = path.split('.');
  let at = copy;
  for (const k of keys.slice(0, -1)) {
    if (at[k] === null || typeof at[k] !== 'object') at[k] = {};
    at = at[k];
  }
  at[keys.at(-1)!] = value;
  return copy;
}

/** JSON text of `obj` with the value at `path` replaced by the raw text `raw` (which may be anything). */
export function spliced(obj: Json, path: string, raw: string): string {
  return JSON.stringify(withPath(obj, path, HOLE)).replace(`"${HOLE}"`, () => raw);
}

// ---------------------------------------------------------------------------------------------
// Values: nesting, width, length.

export type Shape = 'object' | 'array' | 'mixed';

/** `depth` levels of nesting around a null, as text. */
export function nested(depth: number, shape: Shape): string {
  switch (shape) {
    case 'object':
      return '{"a":'.repeat(depth) + 'null' + '}'.repeat(depth);
    case 'array':
      return '['.repeat(depth) + ']'.repeat(depth);
    case 'mixed': {
      const half = Math.ceil(depth / 2);
      return '[{"a":'.repeat(half) + 'null' + '}]'.repeat(half);
    }
  }
}

export function wide(keys: number): string {
  const parts: string[] = [];
  for (let i = 0; i < keys; i++) parts.push(`"k${i}":${i}`);
  return `{${parts.join(',')}}`;
}

export function longArray(items: number): string {
  return `[${new Array<string>(items).fill('0').join(',')}]`;
}

export function longString(chars: number): string {
  return `"${'A'.repeat(chars)}"`;
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each is a plain object so that fast-check prints it as the counterexample.

/** Where a hostile value goes: the message it is in and the dotted path inside that message. */
export const TARGETS = [
  'hello.agent.x', // an unknown field of the agent facts (the schema lets them through)
  'hello.agent.host.x',
  'hello.agent.host.os',
  'hello.agent.host.ip',
  'hello.agent.rules.ids',
  'hello.agent.source.x',
  'hello.agent.attribution.counts',
  'hello.agent.attribution.x',
  'heartbeat.health.x',
  'heartbeat.health.source.x',
  'heartbeat.health.attribution',
  'heartbeat.health.attribution.counts',
  'alerts.alerts.0.x',
  'alerts.alerts.0.process.args',
  'alerts.alerts.0.kibana.alert.rule.tags',
  'alerts.alerts.0.ldguard',
  'alerts.alerts',
] as const;
export type Target = (typeof TARGETS)[number];

/** Fields whose type is wrong in a message, each message's own fields (dotted; alerts.0 is the first alert). */
export const FIELDS = {
  hello: ['type', 'v', 'agent', 'heartbeatMs', 'agent.agentId', 'agent.version', 'agent.hostname', 'agent.host', 'agent.host.architecture', 'agent.host.ip',
    'agent.host.os', 'agent.host.os.name', 'agent.rules', 'agent.rules.count', 'agent.rules.ids', 'agent.source', 'agent.source.name', 'agent.source.degraded',
    'agent.source.reason', 'agent.attribution', 'agent.attribution.degraded', 'agent.attribution.counts', 'agent.attribution.counts.live_proc'],
  heartbeat: ['type', 'v', 'health', 'health.spoolDepth', 'health.spoolBytes', 'health.spoolOverflow', 'health.spoolTorn', 'health.eventsLost', 'health.alertsRejected',
    'health.uptimeSec', 'health.source', 'health.source.name', 'health.source.degraded', 'health.attribution', 'health.attribution.counts'],
  alerts: ['type', 'v', 'seq', 'alerts', 'alerts.0', 'alerts.0.@timestamp', 'alerts.0.event', 'alerts.0.event.kind', 'alerts.0.rule', 'alerts.0.rule.name', 'alerts.0.file',
    'alerts.0.file.path', 'alerts.0.host', 'alerts.0.host.name', 'alerts.0.kibana', 'alerts.0.kibana.alert', 'alerts.0.kibana.alert.uuid', 'alerts.0.kibana.alert.severity',
    'alerts.0.kibana.alert.workflow_status', 'alerts.0.kibana.alert.original_time', 'alerts.0.kibana.alert.rule', 'alerts.0.kibana.alert.rule.rule_id',
    'alerts.0.kibana.alert.rule.name'],
} as const;
export type MessageKind = keyof typeof FIELDS;

/** Values of every type, as JSON text; some are not JSON at all (NaN, Infinity) and some parse to surprises (1e400 is Infinity). */
export const ODD_VALUES = [
  'null', 'true', 'false', '0', '-1', '-0', '1.5', '1e308', '-1e308', '1e400', '-1e400', '1e-400', '9007199254740992', '9007199254740993', '-9007199254740993',
  '123456789012345678901234567890', '""', '"x"', '"NaN"', '"Infinity"', '"-0"', '"1e999"', '"\\u0000"', '"\\ud800"', '"2024-13-45T99:99:99Z"', '[]', '{}', '[null]', '{"":""}',
  '[[[[[[[[]]]]]]]]', 'NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '01', '+1', '.5', '1.', '"\\ud800\\udc00"',
] as const;

/** Numbers where the fields want whole numbers: past 2^53, negative, fractions, exponents, and text that only looks like one. */
export const NUMBER_FIELDS = {
  hello: ['v', 'heartbeatMs', 'agent.rules.count', 'agent.attribution.counts.live_proc'],
  heartbeat: ['v', 'health.spoolDepth', 'health.spoolBytes', 'health.eventsLost', 'health.uptimeSec', 'health.attribution.counts.live_proc'],
  alerts: ['v', 'seq'],
} as const;
export const NUMBERS = [
  '0', '-1', '-0', '1.0', '1e0', '1e21', '9007199254740991', '9007199254740992', '9007199254740993', '18446744073709551616', '-9223372036854775808', '1e400', '-1e400',
  '1e-400', '0.1', '99999999999999999999999', '4294967296', '2147483648', '-2147483649', 'NaN', 'Infinity', '"1"', '"9007199254740993"', '[1]',
] as const;

/** Keys a message says with \u escapes (the same message to JSON.parse; not to a scanner that compares bytes). */
export const ESCAPABLE = ['type', 'v', 'seq', 'alerts', 'agent', 'agentId', 'health', 'kibana', 'alert', 'uuid', 'severity', 'host', 'name', 'hello', 'heartbeat'] as const;

/** Bytes that are not UTF-8: overlong, surrogate halves, past U+10FFFF, stray continuations, cut sequences. */
export const BAD_UTF8: number[][] = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3]];

export type Attack =
  // Family 1: size and shape
  | { kind: 'deep'; target: Target; depth: number; shape: Shape }
  | { kind: 'wide'; target: Target; keys: number }
  | { kind: 'longArray'; target: Target; items: number }
  | { kind: 'longString'; target: Target; chars: number }
  // Family 2: malformed envelopes
  | { kind: 'wrongType'; message: MessageKind; field: string; value: string }
  | { kind: 'number'; message: MessageKind; field: string; text: string }
  | { kind: 'escapedKeys'; message: MessageKind; keys: string[] }
  | { kind: 'duplicateKey'; message: MessageKind; field: string; value: string; first: boolean }
  | { kind: 'binary'; payload: 'random' | 'valid-json'; bytes: number[] }
  | { kind: 'invalidUtf8'; message: MessageKind; bytes: number[] }
  // Family 3: forged identities
  | { kind: 'helloAsHonest'; token: 'fresh' | 'owned'; hostname: string; then: 'nothing' | 'alerts' | 'heartbeat' }
  | { kind: 'alertsNamingHonest'; count: number; receivedFrom: 'none' | 'honest' | 'string' | 'deep' | 'array'; agentIdField: boolean; hostField: boolean }
  | { kind: 'smuggledId'; token: 'fresh' | 'owned'; how: 'duplicate-after' | 'duplicate-before' | 'escaped' }
  // Family 4: floods
  | { kind: 'heartbeatFlood'; count: number }
  | { kind: 'alertsFlood'; batches: number; perBatch: number }
  | { kind: 'connectionFlood'; count: number; say: 'nothing' | 'hello' | 'hello-other-id' }
  | { kind: 'upgradeFlood'; count: number; auth: 'none' | 'unknown' | 'admin' }
  | { kind: 'partialFrame'; declared: number; sent: number; afterHello: boolean }
  | { kind: 'unfinishedFragments'; fragments: number; afterHello: boolean }
  | { kind: 'hugeDeclaredLength'; exponent: number }
  | { kind: 'oversizedControl'; opcode: 'ping' | 'pong' | 'close'; length: number }
  | { kind: 'partialUpgrade'; count: number };

// Every attacker connection but the forged ones says hello as its own attacker id first; then the
// hostile message is the one a family's descriptor builds.

/** The hostile message of a size-and-shape attack, and whether its connection says a valid hello before it. */
export function shapeFrame(a: Extract<Attack, { kind: 'deep' | 'wide' | 'longArray' | 'longString' }>, self: string, uuid: (i: number) => string): { helloFirst: boolean; text: string } {
  const raw = a.kind === 'deep' ? nested(a.depth, a.shape) : a.kind === 'wide' ? wide(a.keys) : a.kind === 'longArray' ? longArray(a.items) : longString(a.chars);
  const [message, ...rest] = a.target.split('.');
  const path = rest.join('.');
  const base = message === 'hello' ? helloObject(self) : message === 'heartbeat' ? heartbeatObject() : alertsObject(1, [uuid(0)]);
  return { helloFirst: message !== 'hello', text: spliced(base, path, raw) };
}

function baseMessage(m: MessageKind, self: string, uuid: (i: number) => string): Json {
  return m === 'hello' ? helloObject(self) : m === 'heartbeat' ? heartbeatObject() : alertsObject(1, [uuid(0)]);
}

/** Escapes every occurrence of `"key"` (as a key or a value) with \u escapes for all its letters. */
export function escapeKeys(text: string, keys: readonly string[]): string {
  let out = text;
  for (const k of keys) {
    const esc = [...k].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
    out = out.split(`"${k}"`).join(`"${esc}"`);
  }
  return out;
}

/** Text with `"field": value` said twice in its object: before the real one (`first`) or after it (JSON.parse keeps the last). */
export function duplicateKey(obj: Json, field: string, value: string, first: boolean): string {
  const keys = field.split('.');
  const last = keys.at(-1)!;
  const hole = `${HOLE}dup`;
  // Put a marker key next to the field, then turn the marker into the duplicate.
  const parentPath = keys.slice(0, -1).join('.');
  const parent = parentPath ? parentPath.split('.').reduce((o: Json, k) => o?.[k], obj) : obj;
  const copy = parentPath ? withPath(obj, parentPath, reorder(parent, last, hole, first)) : reorder(obj, last, hole, first);
  return JSON.stringify(copy).replace(`"${hole}":"${HOLE}"`, () => `${JSON.stringify(last)}:${value}`);
}

function reorder(parent: Json, key: string, hole: string, first: boolean): Json {
  const out: Json = {};
  if (first) out[hole] = HOLE;
  for (const [k, v] of Object.entries(parent ?? {})) out[k] = v;
  if (!(key in out)) out[key] = null;
  if (!first) out[hole] = HOLE;
  return out;
}

/** The hostile frame of a malformed-envelope attack; binary and invalid UTF-8 ones are bytes. */
export function envelopeFrame(a: Extract<Attack, { kind: 'wrongType' | 'number' | 'escapedKeys' | 'duplicateKey' | 'binary' | 'invalidUtf8' }>, self: string, uuid: (i: number) => string):
  { helloFirst: boolean; data: string | Buffer; binary: boolean } {
  switch (a.kind) {
    case 'wrongType':
      return { helloFirst: a.message !== 'hello', data: spliced(baseMessage(a.message, self, uuid), a.field, a.value), binary: false };
    case 'number':
      return { helloFirst: a.message !== 'hello', data: spliced(baseMessage(a.message, self, uuid), a.field, a.text), binary: false };
    case 'escapedKeys':
      return { helloFirst: a.message !== 'hello', data: escapeKeys(JSON.stringify(baseMessage(a.message, self, uuid)), a.keys), binary: false };
    case 'duplicateKey':
      return { helloFirst: a.message !== 'hello', data: duplicateKey(baseMessage(a.message, self, uuid), a.field, a.value, a.first), binary: false };
    case 'binary':
      return { helloFirst: true, data: a.payload === 'valid-json' ? Buffer.from(JSON.stringify(alertsObject(1, [uuid(0)]))) : Buffer.from(a.bytes), binary: true };
    case 'invalidUtf8': {
      const text = JSON.stringify(withPath(baseMessage(a.message, self, uuid), a.message === 'alerts' ? 'alerts.0.file.path' : a.message === 'hello' ? 'agent.hostname' : 'health.source.name', `a${HOLE}b`));
      const [before, after] = text.split(HOLE) as [string, string];
      return { helloFirst: a.message !== 'hello', data: Buffer.concat([Buffer.from(before), Buffer.from(a.bytes), Buffer.from(after)]), binary: false };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries, one per family (one property each).

const target = fc.constantFrom(...TARGETS);
const messageKind = fc.constantFrom<MessageKind>('hello', 'heartbeat', 'alerts');

export const shapeAttack: fc.Arbitrary<Attack> = fc.oneof(
  fc.record({ kind: fc.constant('deep' as const), target, depth: fc.integer({ min: 100, max: 20_000 }), shape: fc.constantFrom<Shape>('object', 'array', 'mixed') }),
  fc.record({ kind: fc.constant('wide' as const), target, keys: fc.integer({ min: 1000, max: 60_000 }) }),
  fc.record({ kind: fc.constant('longArray' as const), target, items: fc.integer({ min: 1000, max: 300_000 }) }),
  fc.record({ kind: fc.constant('longString' as const), target, chars: fc.integer({ min: 10_000, max: 1_100_000 }) }),
);

export const envelopeAttack: fc.Arbitrary<Attack> = fc.oneof(
  messageKind.chain((message) => fc.record({ kind: fc.constant('wrongType' as const), message: fc.constant(message), field: fc.constantFrom<string>(...FIELDS[message]), value: fc.constantFrom<string>(...ODD_VALUES) })),
  messageKind.chain((message) => fc.record({ kind: fc.constant('number' as const), message: fc.constant(message), field: fc.constantFrom<string>(...NUMBER_FIELDS[message]), text: fc.constantFrom<string>(...NUMBERS) })),
  fc.record({ kind: fc.constant('escapedKeys' as const), message: messageKind, keys: fc.subarray([...ESCAPABLE], { minLength: 1 }) }),
  messageKind.chain((message) => fc.record({
    kind: fc.constant('duplicateKey' as const), message: fc.constant(message), field: fc.constantFrom<string>(...FIELDS[message]),
    value: fc.constantFrom<string>(...ODD_VALUES, '"alerts"', '"hello"', '"heartbeat"', '1', '2'), first: fc.boolean(),
  })),
  fc.record({ kind: fc.constant('binary' as const), payload: fc.constantFrom<'random' | 'valid-json'>('random', 'valid-json'), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 }) }),
  fc.record({ kind: fc.constant('invalidUtf8' as const), message: messageKind, bytes: fc.constantFrom(...BAD_UTF8) }),
);

export const forgeryAttack: fc.Arbitrary<Attack> = fc.oneof(
  fc.record({
    kind: fc.constant('helloAsHonest' as const), token: fc.constantFrom<'fresh' | 'owned'>('fresh', 'owned'), hostname: fc.constantFrom(HONEST_HOST, 'evil-host'),
    then: fc.constantFrom<'nothing' | 'alerts' | 'heartbeat'>('nothing', 'alerts', 'heartbeat'),
  }),
  fc.record({
    kind: fc.constant('alertsNamingHonest' as const), count: fc.integer({ min: 1, max: 20 }),
    receivedFrom: fc.constantFrom<'none' | 'honest' | 'string' | 'deep' | 'array'>('none', 'honest', 'string', 'deep', 'array'), agentIdField: fc.boolean(), hostField: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('smuggledId' as const), token: fc.constantFrom<'fresh' | 'owned'>('fresh', 'owned'), how: fc.constantFrom<'duplicate-after' | 'duplicate-before' | 'escaped'>('duplicate-after', 'duplicate-before', 'escaped') }),
);

export const floodAttack: fc.Arbitrary<Attack> = fc.oneof(
  fc.record({ kind: fc.constant('heartbeatFlood' as const), count: fc.integer({ min: 100, max: 4000 }) }),
  fc.record({ kind: fc.constant('alertsFlood' as const), batches: fc.integer({ min: 10, max: 400 }), perBatch: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('connectionFlood' as const), count: fc.integer({ min: 5, max: 80 }), say: fc.constantFrom<'nothing' | 'hello' | 'hello-other-id'>('nothing', 'hello', 'hello-other-id') }),
  fc.record({ kind: fc.constant('upgradeFlood' as const), count: fc.integer({ min: 5, max: 100 }), auth: fc.constantFrom<'none' | 'unknown' | 'admin'>('none', 'unknown', 'admin') }),
  fc.integer({ min: 2, max: 1_000_000 }).chain((declared) => fc.record({
    kind: fc.constant('partialFrame' as const), declared: fc.constant(declared), sent: fc.integer({ min: 0, max: Math.min(declared - 1, 65_536) }), afterHello: fc.boolean(),
  })),
  fc.record({ kind: fc.constant('unfinishedFragments' as const), fragments: fc.integer({ min: 1, max: 200 }), afterHello: fc.boolean() }),
  fc.record({ kind: fc.constant('hugeDeclaredLength' as const), exponent: fc.integer({ min: 20, max: 63 }) }),
  fc.record({ kind: fc.constant('oversizedControl' as const), opcode: fc.constantFrom<'ping' | 'pong' | 'close'>('ping', 'pong', 'close'), length: fc.integer({ min: 126, max: 70_000 }) }),
  fc.record({ kind: fc.constant('partialUpgrade' as const), count: fc.integer({ min: 1, max: 30 }) }),
);

// ---------------------------------------------------------------------------------------------
// WebSocket frames by hand, for what a well-behaved client library refuses to send.

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/**
 * A client frame (masked, as RFC 6455 requires of clients; the key is zero, so the payload goes as
 * it is). `declared` announces another length than the payload's: a frame cut short, or one that
 * claims more than any server accepts.
 */
export function clientFrame(opcode: number, payload: Buffer, o: { fin?: boolean; declared?: bigint | number } = {}): Buffer {
  const len = BigInt(o.declared ?? payload.length);
  const head: number[] = [((o.fin ?? true) ? 0x80 : 0) | opcode];
  if (len < 126n) head.push(0x80 | Number(len));
  else if (len < 65_536n) head.push(0x80 | 126, Number(len >> 8n), Number(len & 0xffn));
  else {
    head.push(0x80 | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((len >> BigInt(8 * i)) & 0xffn));
  }
  head.push(0, 0, 0, 0);
  return Buffer.concat([Buffer.from(head), payload]);
}

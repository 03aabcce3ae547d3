// Reading an agent's frame (collector/src/frame.ts). The general way (readAgentFrame): bounds
// first (shared/json-bounds.ts), so nothing past them is parsed into what the collector walks or
// stores, and an alert out of bounds costs only itself. The fast way (scanAlertsFrame) against it:
// whatever the fast way accepts, the general way and ingest accept whole, with the same documents
// and fields; what the agent sends, it accepts; anything else it leaves to the general way. The
// group keys it finds for SQLite's writer (store/group-keys.ts) are keysOfParsed's of the document,
// on every frame it takes here.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alertSlices, originalTime, readAgentFrame, scanAlertsFrame, scannedAlert, scannedKeys, type ScannedAlert } from '../../collector/src/frame.js';
import { KEY_CHARS, keysOfParsed } from '../../collector/src/store/group-keys.js';
import { checkJsonBounds } from '../../shared/json-bounds.js';
import { MAX_ALERT_BYTES, MAX_BATCH_ALERTS, MESSAGE_BOUNDS, alertsFrame, type AlertsMessage } from '../../shared/protocol.js';
import { makeAlert, makeFacts } from '../helpers/delivery.js';

/** The sender every frame here comes from (makeAlert's agent.id). */
const SENDER = 'agent-test';

type Doc = Record<string, any>;

interface View {
  seq: number;
  alerts: ScannedAlert[];
}

const STAMPED = /^ldguard\.(received_from|future_timestamp|assignee)(\.|$)/;

/**
 * What the general way and ingest make of a frame, in the fast way's terms; undefined when they
 * would not take the batch whole (ingest quarantines an alert of another agent, and rewrites one
 * carrying the collector's stamps).
 */
function general(frame: Buffer): View | undefined {
  const r = readAgentFrame(frame);
  if (!r.ok || r.value.type !== 'alerts' || r.invalid.length > 0) return undefined;
  const m = r.value as AlertsMessage;
  const slices = r.raw;
  if (slices?.some((s) => s.length > MAX_ALERT_BYTES)) return undefined; // quarantined as oversized
  for (const a of m.alerts as unknown as Doc[]) {
    if (a.agent?.id !== SENDER) return undefined;
    const ldg = a.ldguard;
    if (ldg && typeof ldg === 'object' && !Array.isArray(ldg) && Object.keys(ldg).some((k) => STAMPED.test(`ldguard.${k}`))) return undefined;
    if (Object.keys(a).some((k) => STAMPED.test(k))) return undefined;
  }
  return {
    seq: m.seq,
    alerts: m.alerts.map((a, i) => {
      const ka = a.kibana.alert as Doc;
      const ts = Date.parse(a['@timestamp']);
      return {
        doc: slices ? slices[i]! : Buffer.from(JSON.stringify(a)),
        ts,
        ots: originalTime(ka.original_time, ts),
        uuid: ka.uuid,
        host: (a.host as Doc | undefined)?.name ?? null,
        ruleId: ka.rule.rule_id,
        ruleName: (a.rule as Doc | undefined)?.name ?? ka.rule.name,
        severity: ka.severity,
        status: ka.workflow_status,
      };
    }),
  };
}

/** The fast path never accepts what the general path would not take whole, and agrees on what it does accept. */
function expectSound(frame: Buffer): View | undefined {
  const scanned = scanAlertsFrame(frame, SENDER);
  if (!scanned) return undefined;
  const fast = { seq: scanned.seq, alerts: Array.from({ length: scanned.count }, (_, i) => scannedAlert(scanned, i)) };
  expect(fast).toEqual(general(frame));
  // The group keys SQLite's writer stores from the scan, as it would have read them from the document.
  for (let i = 0; i < scanned.count; i++) expect(scannedKeys(scanned, i)).toEqual(keysOfParsed(JSON.parse(fast.alerts[i]!.doc.toString()), KEY_CHARS));
  // What is kept until the commit refers to the frame only: no copies, no strings unless escaped.
  expect(scanned.frame).toBe(frame);
  return fast;
}

const frameOf = (alerts: unknown[], seq = 1) => Buffer.from(alertsFrame(seq, alerts.map((a) => JSON.stringify(a))));

describe('scanAlertsFrame', () => {
  it('reads the agent\'s batches as the general path does, each document the bytes as sent', () => {
    const alerts = [makeAlert(), makeAlert({ host: 'db-2', severity: 'critical' }), makeAlert({ path: '/lib64/ld-linux-x86-64.so.2' })];
    const frame = frameOf(alerts, 41);
    const fast = expectSound(frame);
    expect(fast?.seq).toBe(41);
    expect(fast?.alerts.map((a) => JSON.parse(a.doc.toString()) as unknown)).toEqual(alerts);
    expect(fast?.alerts[1]).toMatchObject({ host: 'db-2', severity: 'critical', status: 'open', ruleName: 'Dynamic Linker Creation' });
    // The documents are views of the frame, not copies.
    expect(fast?.alerts[0]!.doc.buffer).toBe(frame.buffer);
  });

  it('accepts a batch of held-back records and summaries as the general path does, and counts the records', () => {
    const plain = makeAlert({ agentId: SENDER });
    const record = { ...makeAlert({ agentId: SENDER }), ldguard: { attribution: 'live_proc', source: 'fanotify', held_back_by: plain.kibana.alert.uuid } };
    const summary = { ...makeAlert({ agentId: SENDER }), ldguard: { attribution: 'live_proc', source: 'fanotify', summary: { id: plain.kibana.alert.uuid, update: 1, final: false, held_back: 2, groups: [], new_groups: [], groups_total: 1 } } };
    const frame = frameOf([plain, record, summary, record]);
    expect(expectSound(frame)?.alerts).toHaveLength(4);
    expect(scanAlertsFrame(frame, SENDER)!.heldBack).toBe(2);
    expect(scanAlertsFrame(frameOf([plain]), SENDER)!.heldBack).toBe(0);
  });

  it('accepts what JSON allows beside the agent\'s compact form: spaces, escapes in values, other unicode, numbers in any notation', () => {
    const a = makeAlert({ host: 'hôte-\u{1F600}' }) as unknown as Doc;
    a.rule.name = 'quote " backslash \\ tab \t and \u2028';
    a.process.pid = 1.5e3;
    expect(expectSound(Buffer.from(JSON.stringify({ type: 'alerts', v: 1, seq: 7, alerts: [a] }, null, 2)))?.alerts[0]).toMatchObject({ host: 'hôte-\u{1F600}', ruleName: a.rule.name });
    // Envelope in another order, numbers written otherwise.
    const text = `\n{ "alerts" : [ ${JSON.stringify(makeAlert())} ] , "seq" : 1.2e1, "v" : 1.0 , "type":"alerts" }\t`;
    expect(expectSound(Buffer.from(text))?.seq).toBe(12);
    // An escaped value is decoded (the uuid as JSON.parse reads it).
    const b = makeAlert({ uuid: 'abc-1' });
    const escaped = frameOf([b]).toString().replace('"abc-1"', '"\\u0061bc-1"');
    expect(expectSound(Buffer.from(escaped))?.alerts[0]!.uuid).toBe('abc-1');
  });

  it('finds the group keys as keysOfParsed reads them, whatever the values at their paths', () => {
    const T = 6; // TEXT_FIELDS.length: the keys' spans follow the text fields'
    // 600 code points, 895 UTF-16 units, 1,485 bytes: cut at 512 code points, inside the astral run.
    const astral = `/opt/${'x'.repeat(300)}${'😀'.repeat(295)}`;
    const astralCut = `/opt/${'x'.repeat(300)}${'😀'.repeat(KEY_CHARS - 305)}`;
    const cutInside = `/o/${'x'.repeat(KEY_CHARS - 4)}😀😀tail`; // the cut falls between the two astral characters
    const base = (): Doc => {
      const a = makeAlert() as unknown as Doc;
      a.file.hash = { sha256: 'abc' };
      a.ldguard.file_package = { manager: 'dpkg', name: 'libc6' };
      a.ldguard.summary = { id: 'sum-1', update: 1 };
      return a;
    };
    const values: unknown[] = [42, -1.5e3, true, false, null, {}, { x: 'y' }, [], ['/bin/sh'], '', 'é', 'a"b\\c\u0001\u2028é', astral, cutInside,
      'x'.repeat(KEY_CHARS), 'x'.repeat(KEY_CHARS + 1), 'é'.repeat(300)];
    const paths = [['file', 'hash', 'sha256'], ['file', 'hash'], ['process', 'executable'], ['process'], ['ldguard', 'file_package', 'name'],
      ['ldguard', 'file_package'], ['ldguard', 'held_back_by'], ['ldguard', 'summary', 'id'], ['ldguard', 'summary']];
    const docs: Doc[] = [];
    for (const path of paths) {
      for (const v of values) {
        const a = base();
        let o = a;
        for (const k of path.slice(0, -1)) o = o[k];
        o[path.at(-1)!] = v;
        docs.push(a);
        // The same beside a held-back mark, and with the path removed.
        const held = structuredClone(a);
        if (path[1] !== 'held_back_by') held.ldguard.held_back_by = 'sum-2';
        docs.push(held);
      }
      const gone = base();
      let o = gone;
      for (const k of path.slice(0, -1)) o = o[k];
      delete o[path.at(-1)!];
      docs.push(gone);
    }
    const frame = frameOf(docs);
    const scanned = scanAlertsFrame(frame, SENDER)!;
    expect(scanned.count).toBe(docs.length);
    expectSound(frame);
    // Not only equal to keysOfParsed, but what it should be (keysOfParsed itself is group-keys.test.ts's).
    const keyOf = (a: Doc) => scannedKeys(scanned, docs.indexOf(a));
    expect(keyOf(docs[0]!)).toEqual({ fileHash: null, executable: '/usr/bin/cp', package: 'libc6', heldBack: false, summaryId: 'sum-1' });
    const exe = (v: unknown) => docs.find((a) => a.process?.executable === v && !a.ldguard.held_back_by)!;
    expect(keyOf(exe(astral)).executable).toBe(astralCut);
    expect(Array.from(keyOf(exe(astral)).executable!)).toHaveLength(KEY_CHARS);
    expect(keyOf(exe(cutInside)).executable).toBe(`/o/${'x'.repeat(KEY_CHARS - 4)}😀`);
    expect(keyOf(exe('é'.repeat(300))).executable).toBe('é'.repeat(300));
    // A record names its summary by a string only: null or a number is no mark (its own summary id stands).
    const heldBy = (v: unknown) => docs.find((a) => a.ldguard.held_back_by === v && a.ldguard.summary?.id === 'sum-1' && a.process.executable === '/usr/bin/cp')!;
    expect(keyOf(heldBy('sum-2'))).toMatchObject({ heldBack: true, summaryId: 'sum-2' });
    expect(keyOf(heldBy(null))).toMatchObject({ heldBack: false, summaryId: 'sum-1' });
    expect(keyOf(heldBy(42))).toMatchObject({ heldBack: false, summaryId: 'sum-1' });
    // The usual alert's keys are spans of the frame, not strings.
    expect(scanned.spans[2 + 2 * (T + 1)]).toBeGreaterThan(0);
    // A value written with escapes is decoded.
    const escapedFrame = Buffer.from(frameOf([base()]).toString().replace('"/usr/bin/cp"', '"\\/usr\\u002fbin/c\\u0070"'));
    expect(scannedKeys(scanAlertsFrame(escapedFrame, SENDER)!, 0).executable).toBe('/usr/bin/cp');
    expectSound(escapedFrame);
    // A key on a key's path seen twice, or written with escapes: left to the general path, which
    // reads it as JSON.parse does (the last one).
    const good = frameOf([base()]).toString();
    for (const [name, text] of [
      ['a duplicated executable', good.replace('"executable":"/usr/bin/cp"', '"executable":"/usr/bin/cp","executable":"/tmp/x"')],
      ['a duplicated process', good.replace('"process":{', '"process":{"executable":"/tmp/x"},"process":{')],
      ['a duplicated held-back mark', good.replace('"ldguard":{', '"ldguard":{"held_back_by":"a","held_back_by":null,')],
      ['an executable key with escapes', good.replace('"executable":"/usr/bin/cp"', '"executable":"/usr/bin/cp","ex\\u0065cutable":"/tmp/x"')],
      ['a summary id key with escapes', good.replace('"id":"sum-1"', '"\\u0069d":"sum-1"')],
    ]) {
      expect(scanAlertsFrame(Buffer.from(text!), SENDER), name).toBeUndefined();
      expect(general(Buffer.from(text!)), name).toBeDefined();
    }
  });

  it('leaves to the general path every frame it is not sure of', () => {
    const good = frameOf([makeAlert()]).toString();
    const cases: Array<[string, string]> = [
      ['not JSON', good.slice(0, -1)],
      ['trailing garbage', `${good}x`],
      ['two values', `${good}${good}`],
      ['another message type', JSON.stringify({ type: 'heartbeat', v: 1, health: {} })],
      ['an unknown envelope field', good.replace('{"type"', '{"extra":1,"type"')],
      ['a duplicated envelope field', good.replace('{"type"', '{"seq":5,"type"')],
      ['an envelope key with escapes', good.replace('"seq"', '"s\\u0065q"')],
      ['another version', good.replace('"v":1', '"v":2')],
      ['seq 0', good.replace('"seq":1', '"seq":0')],
      ['seq not whole', good.replace('"seq":1', '"seq":1.5')],
      ['seq as a string', good.replace('"seq":1', '"seq":"1"')],
      ['no alerts', alertsFrame(1, [])],
      ['an alert that is not an object', alertsFrame(1, ['"x"'])],
      ['an invalid alert', good.replace('"severity":"low"', '"severity":"urgent"')],
      ['a duplicated key on a path validation reads', good.replace('"severity":"low"', '"severity":"low","severity":"nope"')],
      ['a key with escapes that could be one validation reads', good.replace('"severity":"low"', '"severity":"low","sev\\u0065rity":"urgent"')],
      ['a raw control character in a string', good.replace('Dynamic Linker Creation', 'Dynamic\tLinker')],
      ['a bad escape', good.replace('Dynamic Linker Creation', 'Dynamic \\x Linker')],
      ['a number with a leading zero', good.replace('"risk_score":21', '"risk_score":021')],
      ['a bare word', good.replace('"risk_score":21', '"risk_score":nul')],
      ['a trailing comma', good.replace('"risk_score":21', '"risk_score":21,')],
      ['a byte order mark', `\uFEFF${good}`],
    ];
    // A container read twice: JSON.parse keeps the second, which lacks what the first had.
    const twice = JSON.stringify(makeAlert()).slice(0, -1) + ',"kibana":{"alert":{"uuid":"x"}}}';
    cases.push(['a duplicated object on a path validation reads', alertsFrame(1, [twice])]);
    for (const [name, text] of cases) {
      const frame = Buffer.from(text);
      expect(scanAlertsFrame(frame, SENDER), name).toBeUndefined();
      expectSound(frame);
    }
    // An oversized alert (quarantined by the general path) and too many alerts.
    const big = makeAlert() as unknown as Doc;
    big.process.command_line = 'x'.repeat(MAX_ALERT_BYTES);
    expect(scanAlertsFrame(frameOf([big]), SENDER)).toBeUndefined();
    expect(scanAlertsFrame(frameOf(Array.from({ length: MAX_BATCH_ALERTS + 1 }, () => makeAlert())), SENDER)).toBeUndefined();
    // Past the bounds (the general way quarantines such an alert): nesting, width, numbers.
    const deep = makeAlert() as unknown as Doc;
    deep.extra = JSON.parse(`${'['.repeat(2000)}${']'.repeat(2000)}`);
    const wide = makeAlert() as unknown as Doc;
    wide.extra = Array.from({ length: MESSAGE_BOUNDS.maxItems + 1 }, () => 0);
    const keys = makeAlert() as unknown as Doc;
    keys.extra = Object.fromEntries(Array.from({ length: MESSAGE_BOUNDS.maxKeys + 1 }, (_, i) => [`k${i}`, 0]));
    for (const [name, a] of [['deep', deep], ['wide', wide], ['many keys', keys]] as const) {
      expect(scanAlertsFrame(frameOf([a]), SENDER), name).toBeUndefined();
      expect(general(frameOf([a])), name).toBeUndefined();
    }
    const huge = frameOf([makeAlert()]).toString().replace('"risk_score":21', '"risk_score":9007199254740993');
    expect(scanAlertsFrame(Buffer.from(huge), SENDER)).toBeUndefined();
    // Not the sender's, or carrying a stamp of the collector's: ingest quarantines or rewrites it.
    const foreign = makeAlert({ agentId: 'agent-other' });
    const stamped = { ...makeAlert(), ldguard: { received_from: { agent_id: SENDER } } };
    const flagged = { ...makeAlert(), ldguard: { future_timestamp: false } };
    const dotted = { ...makeAlert(), 'ldguard.received_from.agent_id': SENDER };
    // The assignee is the workflow's (store/workflow.ts): an agent cannot pre-assign its alert.
    const assigned = { ...makeAlert(), ldguard: { assignee: 'mallory' } };
    const noAgent = makeAlert() as unknown as Doc;
    delete noAgent.agent;
    for (const [name, a] of [['another agent', foreign], ['received_from', stamped], ['future_timestamp', flagged], ['dotted', dotted], ['assignee', assigned], ['no agent', noAgent]] as const) {
      expect(scanAlertsFrame(frameOf([a]), SENDER), name).toBeUndefined();
      expectSound(frameOf([a]));
    }
    expect(scanAlertsFrame(frameOf([makeAlert()]), 'agent-tes')).toBeUndefined();
  });

  // The paths validation reads, and others, set to values of every JSON type (or removed).
  const PATHS = [
    ['@timestamp'], ['event'], ['event', 'kind'], ['rule'], ['rule', 'name'], ['file'], ['file', 'path'], ['host'], ['host', 'name'],
    ['kibana'], ['kibana', 'alert'], ['kibana', 'alert', 'uuid'], ['kibana', 'alert', 'severity'], ['kibana', 'alert', 'workflow_status'],
    ['kibana', 'alert', 'original_time'], ['kibana', 'alert', 'rule'], ['kibana', 'alert', 'rule', 'rule_id'], ['kibana', 'alert', 'rule', 'name'],
    ['process', 'args'], ['process', 'parent'], ['ldguard'], ['ldguard', 'received_from'], ['agent'], ['agent', 'id'], ['x'],
    // The group keys' (frame.ts's KEY_FIELDS) and the objects on their paths.
    ['file', 'hash'], ['file', 'hash', 'sha256'], ['process'], ['process', 'executable'], ['ldguard', 'file_package'], ['ldguard', 'file_package', 'name'],
    ['ldguard', 'held_back_by'], ['ldguard', 'summary'], ['ldguard', 'summary', 'id'],
  ];
  const value = fc.oneof(
    fc.jsonValue(),
    fc.constantFrom(undefined, 'signal', 'low', 'critical', 'open', 'closed', 'web-1', SENDER, '2026-11-26T10:00:00.000Z', 'not a date', '', 'a'.repeat(300), 'é\u2028"\\',
      'x'.repeat(KEY_CHARS + 1), `${'😀'.repeat(KEY_CHARS - 1)}é😀`, 'é'.repeat(KEY_CHARS)),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
  );

  it('agrees with the general path on alerts with any field set to anything', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...PATHS), value), { maxLength: 3 }), fc.integer({ min: 1, max: 2 ** 40 }), (edits, seq) => {
      const a = makeAlert() as unknown as Doc;
      // With every group key present, so that an edit can reach below each.
      a.file.hash = { sha256: 'abc' };
      a.ldguard.file_package = { name: 'libc6' };
      a.ldguard.summary = { id: 'sum-1' };
      for (const [path, v] of edits) {
        let o: Doc | undefined = a;
        for (const k of path.slice(0, -1)) o = o !== null && typeof o === 'object' && !Array.isArray(o) ? o[k] : undefined;
        if (o === null || typeof o !== 'object' || Array.isArray(o)) continue;
        if (v === undefined) delete o[path.at(-1)!];
        else o[path.at(-1)!] = v;
      }
      expectSound(frameOf([makeAlert(), a], seq));
    }), { numRuns: 500 });
  });

  it('never accepts a frame cut, spliced or overwritten anywhere', () => {
    const good = frameOf([makeAlert(), makeAlert({ host: 'h2' })]);
    fc.assert(fc.property(fc.nat(good.length - 1), fc.nat(good.length - 1), fc.uint8Array({ minLength: 0, maxLength: 4 }), (at, to, bytes) => {
      const [from, end] = at <= to ? [at, to] : [to, at];
      expectSound(Buffer.concat([good.subarray(0, from), Buffer.from(bytes), good.subarray(end)]));
      expectSound(good.subarray(0, at));
    }), { numRuns: 2000 });
  });
});

const deep = (n: number, leaf = '1') => `${'{"a":'.repeat(n)}${leaf}${'}'.repeat(n)}`;
const hello = (agent: string) => Buffer.from(`{"type":"hello","v":1,"heartbeatMs":10000,"agent":${agent}}`);

describe('checkJsonBounds', () => {
  it('passes what keeps the bounds and names the first bound broken, with its byte', () => {
    const b = MESSAGE_BOUNDS;
    expect(checkJsonBounds(deep(64), b)).toEqual({ ok: true });
    expect(checkJsonBounds(deep(65), b)).toMatchObject({ ok: false, error: 'nested deeper than 64 levels', at: 5 * 64 });
    expect(checkJsonBounds(`[${'[]'.repeat(0)}${Array.from({ length: 10_000 }, () => 0).join(',')}]`, b)).toEqual({ ok: true });
    expect(checkJsonBounds(`[${Array.from({ length: 10_001 }, () => 0).join(',')}]`, b)).toMatchObject({ ok: false, error: 'an array with more than 10000 items' });
    const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',')}}`;
    expect(checkJsonBounds(keys(1000), b)).toEqual({ ok: true });
    expect(checkJsonBounds(keys(1001), b)).toMatchObject({ ok: false, error: 'an object with more than 1000 keys' });
    expect(checkJsonBounds('[9007199254740991,-9007199254740991,1.5,0.12345678901234567,1e3]', b)).toEqual({ ok: true });
    for (const n of ['9007199254740992', '-9007199254740993', '1e400', '2E20']) expect(checkJsonBounds(`{"x":${n}}`, b)).toMatchObject({ ok: false, error: `a number beyond ±(2^53−1): ${n}` });
    // Structure inside strings is text, escaped quotes included.
    expect(checkJsonBounds(JSON.stringify({ s: `"${'['.repeat(5000)}\\"{`, n: '99999999999999999999' }), b)).toEqual({ ok: true });
  });

  it('agrees with a recursive measure on any JSON, and never throws on any bytes', () => {
    const measure = (v: unknown, d = 0): boolean => {
      if (typeof v === 'number') return Math.abs(v) <= Number.MAX_SAFE_INTEGER;
      if (Array.isArray(v)) return d < 4 && v.length <= 3 && v.every((x) => measure(x, d + 1));
      if (v && typeof v === 'object') return d < 4 && Object.keys(v).length <= 3 && Object.values(v).every((x) => measure(x, d + 1));
      return true;
    };
    const small = { maxDepth: 4, maxKeys: 3, maxItems: 3 };
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
      expect(checkJsonBounds(JSON.stringify(v), small).ok).toBe(measure(v));
    }), { seed: 16, numRuns: 2000 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      checkJsonBounds(Buffer.from(bytes), small);
    }), { seed: 16, numRuns: 2000 });
  });
});

describe('readAgentFrame', () => {
  it('refuses a hello or heartbeat out of bounds before anything walks it (F1: 5,000 deep killed the collector)', () => {
    const facts = JSON.stringify(makeFacts()).replace('"host":{', `"host":{"x":${deep(5000)},`);
    expect(readAgentFrame(hello(facts))).toMatchObject({ ok: false, kind: 'bounds' });
    const beat = Buffer.from(`{"type":"heartbeat","v":1,"health":${deep(1500)}}`);
    expect(readAgentFrame(beat)).toMatchObject({ ok: false, kind: 'bounds', errors: [expect.stringContaining('nested deeper than 64 levels')] });
    // An escaped key is JSON's business: it reads as the key it spells, and its bounds still hold.
    const escaped = Buffer.from(`{"type":"alerts","v":1,"seq":1,"\\u0061lerts":[${deep(5000)}]}`);
    expect(readAgentFrame(escaped)).toMatchObject({ ok: false, kind: 'bounds' });
  });

  it('reads a batch with an alert out of bounds without it: that alert is invalid with its bytes kept, the others go on', () => {
    const good = [makeAlert(), makeAlert()].map((a) => JSON.stringify(a));
    const bad = `{"kibana":${deep(3000)}}`;
    const r = readAgentFrame(Buffer.from(alertsFrame(7, [good[0]!, bad, good[1]!])));
    if (!r.ok || r.value.type !== 'alerts') throw new Error(`expected a batch, got ${JSON.stringify(r)}`);
    expect(r.value.seq).toBe(7);
    expect(r.invalid).toEqual([{ index: 1, errors: [expect.stringContaining('alerts[1]: nested deeper than 62 levels')] }]);
    expect(r.value.alerts[1]).toBeNull();
    expect(r.raw!.map((b) => b.toString())).toEqual([good[0], bad, good[1]]);
    // Out of bounds in the envelope itself: refused whole.
    expect(readAgentFrame(Buffer.from(`{"type":"alerts","v":1,"seq":1,"x":${deep(100)},"alerts":[${good[0]}]}`))).toMatchObject({ ok: false, kind: 'bounds' });
  });

  it('reads a frame that keeps the bounds as JSON.parse does, each alert the bytes as sent', () => {
    const alerts = [makeAlert(), makeAlert({ path: '/lib/ld-linux-\u202e.so.2' })].map((a) => JSON.stringify(a));
    const r = readAgentFrame(Buffer.from(alertsFrame(1, alerts)));
    if (!r.ok || r.value.type !== 'alerts') throw new Error('expected a batch');
    expect(r.value).toEqual(JSON.parse(alertsFrame(1, alerts)));
    expect(r.raw!.map((b) => b.toString())).toEqual(alerts);
    expect(r.invalid).toEqual([]);
  });

  it('refuses an announced heartbeat period past 10 minutes (F8: 2^53−1 kept an agent online for ever) and a batch whose last sequence passes 2^53−1', () => {
    const h = (ms: number) => Buffer.from(JSON.stringify({ type: 'hello', v: 1, heartbeatMs: ms, agent: makeFacts() }));
    expect(readAgentFrame(h(600_000)).ok).toBe(true);
    expect(readAgentFrame(h(600_001))).toMatchObject({ ok: false, kind: 'schema', errors: [expect.stringContaining('heartbeatMs')] });
    expect(readAgentFrame(Buffer.from(alertsFrame(Number.MAX_SAFE_INTEGER, [JSON.stringify(makeAlert()), JSON.stringify(makeAlert())]))))
      .toMatchObject({ ok: false, kind: 'schema', errors: [expect.stringContaining('2^53−1')] });
  });
});

describe('alertSlices', () => {
  it('slices the last "alerts" member and gives up on what it cannot be sure of', () => {
    const frame = Buffer.from('{"alerts":[1],"type":"alerts","alerts":[ {"a":"]"} , [2,{"b":"\\""}] ]}');
    expect(alertSlices(frame, 2)!.map(String)).toEqual(['{"a":"]"}', '[2,{"b":"\\""}]']);
    expect(alertSlices(frame, 3)).toBeUndefined();
    expect(alertSlices(Buffer.from('{"\\u0061lerts":[1]}'))).toBeUndefined();
  });
});

describe('originalTime', () => {
  it('takes kibana.alert.original_time, else @timestamp', () => {
    expect(originalTime('2026-01-01T00:00:00.000Z', 5)).toBe(Date.parse('2026-01-01T00:00:00.000Z'));
    expect(originalTime('not a date', 5)).toBe(5);
    expect(originalTime(undefined, 5)).toBe(5);
  });
});

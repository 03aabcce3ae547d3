// The collector's fast reading of alert frames (collector/src/frame.ts) against the general path
// (JSON.parse, validateAgentMessage, alertSlices): whatever the fast path accepts, the general
// path accepts with no invalid alert and the same documents and fields; what the agent sends, it
// accepts; anything else it leaves to the general path.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alertSlices, originalTime, scanAlertsFrame, scannedAlert, type ScannedAlert } from '../../collector/src/frame.js';
import { MAX_ALERT_BYTES, MAX_BATCH_ALERTS, alertsFrame, parseAgentMessage, type AlertsMessage } from '../../shared/protocol.js';
import { makeAlert } from '../helpers/delivery.js';

type Doc = Record<string, any>;

interface View {
  seq: number;
  alerts: ScannedAlert[];
}

/** What the general path makes of a frame, in the fast path's terms; undefined when it would not take the batch whole. */
function general(frame: Buffer): View | undefined {
  const r = parseAgentMessage(frame);
  if (!r.ok || r.value.type !== 'alerts' || r.invalid.length > 0) return undefined;
  const m = r.value as AlertsMessage;
  const slices = alertSlices(frame, m.alerts.length);
  if (slices?.some((s) => s.length > MAX_ALERT_BYTES)) return undefined; // quarantined as oversized
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
  const scanned = scanAlertsFrame(frame);
  if (!scanned) return undefined;
  const fast = { seq: scanned.seq, alerts: Array.from({ length: scanned.count }, (_, i) => scannedAlert(scanned, i)) };
  expect(fast).toEqual(general(frame));
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
      expect(scanAlertsFrame(frame), name).toBeUndefined();
      expectSound(frame);
    }
    // An oversized alert (quarantined by the general path) and too many alerts.
    const big = makeAlert() as unknown as Doc;
    big.process.command_line = 'x'.repeat(MAX_ALERT_BYTES);
    expect(scanAlertsFrame(frameOf([big]))).toBeUndefined();
    expect(scanAlertsFrame(frameOf(Array.from({ length: MAX_BATCH_ALERTS + 1 }, () => makeAlert())))).toBeUndefined();
    // Nesting deeper than the scanner follows (JSON.parse takes it): the general path decides.
    const deep = makeAlert() as unknown as Doc;
    deep.extra = JSON.parse(`${'['.repeat(2000)}${']'.repeat(2000)}`);
    expect(scanAlertsFrame(frameOf([deep]))).toBeUndefined();
    expect(general(frameOf([deep]))).toBeDefined();
  });

  // The paths validation reads, and others, set to values of every JSON type (or removed).
  const PATHS = [
    ['@timestamp'], ['event'], ['event', 'kind'], ['rule'], ['rule', 'name'], ['file'], ['file', 'path'], ['host'], ['host', 'name'],
    ['kibana'], ['kibana', 'alert'], ['kibana', 'alert', 'uuid'], ['kibana', 'alert', 'severity'], ['kibana', 'alert', 'workflow_status'],
    ['kibana', 'alert', 'original_time'], ['kibana', 'alert', 'rule'], ['kibana', 'alert', 'rule', 'rule_id'], ['kibana', 'alert', 'rule', 'name'],
    ['process', 'args'], ['process', 'parent'], ['ldguard'], ['x'],
  ];
  const value = fc.oneof(
    fc.jsonValue(),
    fc.constantFrom(undefined, 'signal', 'low', 'critical', 'open', 'closed', 'web-1', '2026-11-26T10:00:00.000Z', 'not a date', '', 'a'.repeat(300), 'é\u2028"\\'),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
  );

  it('agrees with the general path on alerts with any field set to anything', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(...PATHS), value), { maxLength: 3 }), fc.integer({ min: 1, max: 2 ** 40 }), (edits, seq) => {
      const a = makeAlert() as unknown as Doc;
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

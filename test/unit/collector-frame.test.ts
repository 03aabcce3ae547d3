// Reading an agent's frame (collector/src/frame.ts) and the bounds under it (shared/json-bounds.ts):
// nothing past the bounds is parsed into what the collector walks or stores, an alert out of bounds
// costs only itself, and every frame that keeps them reads as JSON.parse reads it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alertSlices, originalTime, readAgentFrame } from '../../collector/src/frame.js';
import { checkJsonBounds } from '../../shared/json-bounds.js';
import { MESSAGE_BOUNDS, alertsFrame } from '../../shared/protocol.js';
import { makeAlert, makeFacts } from '../helpers/delivery.js';

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

// The wire protocol's validators (what the collector accepts) and the sink's pure helpers.
import { describe, expect, it } from 'vitest';
import { collectorUrl, serialiseAlert } from '../../agent/src/sink/websocket.js';
import {
  ALERTS_FRAME_OVERHEAD, MAX_ALERT_BYTES, MAX_BATCH_ALERTS, PROTOCOL_VERSION, alertsFrame, parseAgentMessage,
  parseCollectorMessage, rejectedAlert, validateAlert, type AgentHealth,
} from '../../shared/protocol.js';
import { makeAlert, makeFacts } from '../helpers/delivery.js';

// Alerts are mangled by path to make them invalid.
 
type Doc = Record<string, any>;

const health: AgentHealth = { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false } };

function errorsOf(msg: unknown): string[] {
  const r = parseAgentMessage(JSON.stringify(msg));
  if (r.ok) throw new Error('expected a refusal');
  return r.errors;
}

describe('agent messages', () => {
  it('accepts a hello, an alerts batch and a heartbeat as the sink sends them', () => {
    const hello = { type: 'hello', v: PROTOCOL_VERSION, agent: makeFacts(), heartbeatMs: 10_000 };
    expect(parseAgentMessage(JSON.stringify(hello))).toEqual({ ok: true, value: hello, invalid: [] });
    const alerts = [makeAlert(), makeAlert({ severity: 'critical' })];
    const frame = alertsFrame(41, alerts.map((a) => JSON.stringify(a)));
    const parsed = parseAgentMessage(Buffer.from(frame));
    expect(parsed).toEqual({ ok: true, value: { type: 'alerts', v: PROTOCOL_VERSION, seq: 41, alerts }, invalid: [] });
    expect(parseAgentMessage(JSON.stringify({ type: 'heartbeat', v: 1, health })).ok).toBe(true);
  });

  it('tells bad JSON (close 1007) from a bad schema (close 1008)', () => {
    expect(parseAgentMessage('{"type":"hello",')).toMatchObject({ ok: false, kind: 'json' });
    expect(parseAgentMessage('{"type":"nope","v":1}')).toMatchObject({ ok: false, kind: 'schema' });
  });

  it('collects every problem with its path, not just the first', () => {
    const bad = makeAlert() as unknown as Doc;
    bad.kibana.alert.severity = 'urgent';
    bad.kibana.alert.uuid = 'has spaces/and slashes';
    delete bad['@timestamp'];
    const errors = errorsOf({ type: 'alerts', v: 1, seq: 0, alerts: [makeAlert(), bad], extra: true });
    expect(errors).toEqual(expect.arrayContaining([
      'extra: unknown field',
      expect.stringMatching(/^seq: expected a whole number ≥ 1/),
      expect.stringMatching(/^alerts\[1\]\.@timestamp: expected a string/),
      expect.stringMatching(/^alerts\[1\]\.kibana\.alert\.severity: expected one of low, medium, high, critical/),
      expect.stringMatching(/^alerts\[1\]\.kibana\.alert\.uuid: must be letters/),
    ]));
    expect(errors.some((e) => e.startsWith('alerts[0]'))).toBe(false);
  });

  it('refuses another protocol version, naming the fix', () => {
    expect(errorsOf({ type: 'heartbeat', v: 2, health })[0]).toMatch(/^v: protocol version 2 .*run the same ldguard version/);
  });

  it('bounds batches: not empty, not more than MAX_BATCH_ALERTS', () => {
    expect(errorsOf({ type: 'alerts', v: 1, seq: 1, alerts: [] })).toEqual(['alerts: must not be empty']);
    const many = Array.from({ length: MAX_BATCH_ALERTS + 1 }, () => ({}));
    expect(errorsOf({ type: 'alerts', v: 1, seq: 1, alerts: many })).toEqual([`alerts: more than ${MAX_BATCH_ALERTS} alerts in one batch`]);
  });

  it('refuses a hello without facts and a heartbeat with negative counters', () => {
    expect(errorsOf({ type: 'hello', v: 1, heartbeatMs: 5 })).toEqual(expect.arrayContaining([
      'agent: expected an object, got undefined',
      expect.stringMatching(/^heartbeatMs: expected a whole number ≥ 100/),
    ]));
    expect(errorsOf({ type: 'heartbeat', v: 1, health: { ...health, eventsLost: -1 } })).toEqual([expect.stringMatching(/^health\.eventsLost/)]);
  });

  it("carries the rules' digest in the hello and the heartbeat, and refuses one that is no sha256", () => {
    const digest = 'a'.repeat(64);
    const hello = { type: 'hello', v: PROTOCOL_VERSION, agent: { ...makeFacts(), rulesDigest: digest }, heartbeatMs: 10_000 };
    expect(parseAgentMessage(JSON.stringify(hello))).toMatchObject({ ok: true, value: hello });
    const beat = { type: 'heartbeat', v: PROTOCOL_VERSION, health: { ...health, rulesDigest: digest } };
    expect(parseAgentMessage(JSON.stringify(beat))).toMatchObject({ ok: true });
    expect(errorsOf({ ...hello, agent: { ...makeFacts(), rulesDigest: 'A'.repeat(64) } })).toEqual([expect.stringMatching(/^agent\.rulesDigest: expected a sha256/)]);
    expect(errorsOf({ ...beat, health: { ...health, rulesDigest: 42 } })).toEqual([expect.stringMatching(/^health\.rulesDigest: expected a sha256/)]);
  });

  it('refuses an alert that is not a signal or lacks the fields the store indexes', () => {
    const a = makeAlert() as unknown as Doc;
    a.event.kind = 'event';
    delete a.kibana.alert.rule.rule_id;
    expect(validateAlert(a)).toEqual([
      'alert.event.kind: expected "signal", got "event"',
      'alert.kibana.alert.rule.rule_id: expected a string, got undefined',
    ]);
    expect(validateAlert(makeAlert())).toEqual([]);
    expect(validateAlert(null)).toEqual(['alert: expected an object, got null']);
  });

  it('stops listing problems after twenty', () => {
    const alerts = Array.from({ length: 30 }, () => ({ kibana: 1 }));
    const errors = errorsOf({ type: 'alerts', v: 1, seq: 0, alerts });
    expect(errors).toHaveLength(21);
    expect(errors.at(-1)).toBe('… more problems not shown');
  });

  it('accepts a batch whose envelope is right even with invalid alerts, listing each (for the quarantine)', () => {
    const bad = makeAlert() as unknown as Doc;
    bad.kibana.alert.severity = 'urgent';
    const alerts = [makeAlert(), bad, 'not an alert', makeAlert()];
    const r = parseAgentMessage(JSON.stringify({ type: 'alerts', v: 1, seq: 10, alerts }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.invalid).toEqual([
      { index: 1, errors: [expect.stringMatching(/^alerts\[1\]\.kibana\.alert\.severity: expected one of/)] },
      { index: 2, errors: ['alerts[2]: expected an object, got a string'] },
    ]);
    expect(rejectedAlert(11, ['x'.repeat(1000), 'b', 'c', 'd', 'e', 'f'])).toEqual({ seq: 11, errors: ['x'.repeat(300) + '…', 'b', 'c', 'd', 'e'] });
  });
});

describe('collector messages', () => {
  it('accepts acks and errors, refuses anything else', () => {
    expect(parseCollectorMessage('{"type":"ack","v":1,"upTo":7}')).toEqual({ ok: true, value: { type: 'ack', v: 1, upTo: 7 } });
    const withRejected = { type: 'ack', v: 1, upTo: 9, rejected: [{ seq: 8, errors: ['alert.rule: expected an object, got undefined'] }] };
    expect(parseCollectorMessage(JSON.stringify(withRejected))).toEqual({ ok: true, value: withRejected });
    expect(parseCollectorMessage('{"type":"ack","v":1,"upTo":9,"rejected":[{"seq":0,"errors":[]}]}').ok).toBe(false);
    expect(parseCollectorMessage('{"type":"ack","v":1,"upTo":9,"rejected":{}}').ok).toBe(false);
    expect(parseCollectorMessage('{"type":"error","v":1,"code":"LDG_ERR_X","message":"m"}').ok).toBe(true);
    expect(parseCollectorMessage('{"type":"ack","v":1,"upTo":-1}').ok).toBe(false);
    expect(parseCollectorMessage('{"type":"welcome","v":1}').ok).toBe(false);
    expect(parseCollectorMessage('nope')).toMatchObject({ ok: false, kind: 'json' });
  });
});

describe('frames', () => {
  it('ALERTS_FRAME_OVERHEAD covers the envelope of any batch', () => {
    expect(alertsFrame(123456789012345, []).length).toBeLessThanOrEqual(ALERTS_FRAME_OVERHEAD);
  });
});

describe('sink helpers', () => {
  it('appends /agent to a base URL and keeps an explicit path', () => {
    expect(collectorUrl('ws://127.0.0.1:8750').href).toBe('ws://127.0.0.1:8750/agent');
    expect(collectorUrl('wss://collector.example:8750/').href).toBe('wss://collector.example:8750/agent');
    expect(collectorUrl('wss://collector.example/ldguard/agent').pathname).toBe('/ldguard/agent');
    expect(collectorUrl('ws://[::1]:9000').href).toBe('ws://[::1]:9000/agent');
    expect(collectorUrl('ws://localhost:9000').pathname).toBe('/agent');
  });

  it('refuses plain ws:// to a remote host unless allow_insecure, naming the option', () => {
    expect(() => collectorUrl('ws://collector.example:8750')).toThrow(/LDG_ERR_INSECURE_COLLECTOR.*allow_insecure = true/);
    expect(() => collectorUrl('ws://10.1.2.3:8750')).toThrow(/LDG_ERR_INSECURE_COLLECTOR/);
    expect(collectorUrl('ws://collector.example:8750', true).href).toBe('ws://collector.example:8750/agent');
    expect(() => collectorUrl('http://127.0.0.1:8750')).toThrow(/LDG_ERR_COLLECTOR_URL.*wss:\/\//);
    expect(() => collectorUrl('not a url')).toThrow(/LDG_ERR_COLLECTOR_URL/);
  });

  it('shortens a huge alert (a megabyte command line) so it fits one frame, and says so', () => {
    const a = makeAlert();
    a.process.command_line = 'A'.repeat(2_000_000);
    a.process.args = Array.from({ length: 5000 }, (_, i) => `arg${i}`);
    const json = serialiseAlert(a);
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(MAX_ALERT_BYTES);
    const back = JSON.parse(json) as Doc;
    expect(back.ldguard.truncated).toBe(true);
    expect(back.kibana.alert.uuid).toBe(a.kibana.alert.uuid);
    expect(back.process.command_line).toMatch(/^A+…$/);
    expect(validateAlert(back)).toEqual([]);
    // An ordinary alert goes through untouched.
    const b = makeAlert();
    expect(serialiseAlert(b)).toBe(JSON.stringify(b));
  });

  it('refuses to spool an alert the collector would refuse, as a bug to report', () => {
    const a = makeAlert() as unknown as Doc;
    a.kibana.alert.severity = 'bad';
    expect(() => serialiseAlert(a as never)).toThrow(/LDG_ERR_ALERT_INVALID.*severity/);
  });
});

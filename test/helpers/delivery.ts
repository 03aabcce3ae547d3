// Helpers for the delivery tests: alerts and agent facts shaped as the pipeline builds them, a
// logger the test can read, and polling.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { Alert } from '../../shared/ecs.js';
import type { AgentFacts } from '../../shared/protocol.js';

export function makeAlert(over: { uuid?: string; host?: string; ruleId?: string; severity?: Alert['kibana']['alert']['severity']; time?: string; path?: string; pid?: number; agentId?: string } = {}): Alert {
  const uuid = over.uuid ?? randomUUID();
  const time = over.time ?? new Date().toISOString();
  const ruleId = over.ruleId ?? '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
  const path = over.path ?? '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
  const event = {
    id: `ev-${uuid}`,
    kind: 'event' as const,
    category: ['file'] as ['file'],
    type: ['creation' as const],
    action: 'creation' as const,
    dataset: 'endpoint.events.file' as const,
    module: 'endpoint' as const,
    created: time,
    outcome: 'success' as const,
  };
  return {
    '@timestamp': time,
    event: { ...event, kind: 'signal' },
    file: { path, name: path.split('/').pop()!, directory: path.slice(0, path.lastIndexOf('/')), extension: '2', size: 240936, mode: '0755', owner: 'root' },
    process: {
      pid: over.pid ?? 4242,
      name: 'cp',
      executable: '/usr/bin/cp',
      args: ['cp', '/tmp/evil.so', path],
      command_line: `cp /tmp/evil.so ${path}`,
      parent: { pid: 4000, name: 'bash', executable: '/usr/bin/bash' },
      user: { id: '0', name: 'root' },
    },
    user: { id: '0', name: 'root' },
    host: { name: over.host ?? 'web-1', hostname: over.host ?? 'web-1', os: { type: 'linux', kernel: '6.1.0' } },
    agent: { id: over.agentId ?? 'agent-test', type: 'ldguard', version: '0.1.0' },
    ecs: { version: '8.11.0' },
    ldguard: { attribution: 'live_proc', source: 'fanotify' },
    rule: {
      id: ruleId,
      uuid: ruleId,
      name: 'Dynamic Linker Creation',
      description: 'Detects the creation of a dynamic linker (ld.so).',
      version: '1',
      ruleset: 'ldguard',
    },
    kibana: {
      alert: {
        uuid,
        original_time: time,
        reason: 'file event with process cp, file ld-linux-x86-64.so.2, by root on web-1 created low alert Dynamic Linker Creation.',
        severity: over.severity ?? 'low',
        risk_score: 21,
        workflow_status: 'open',
        original_event: event,
        rule: {
          rule_id: ruleId,
          uuid: ruleId,
          name: 'Dynamic Linker Creation',
          type: 'eql',
          from: 'now-9m',
          interval: '5m',
          max_signals: 100,
          tags: ['Domain: Endpoint', 'OS: Linux'],
          version: 1,
        },
      },
    },
  };
}

/**
 * The i-th alert of the dashboard query tests' corpus (the SQLite and the PostgreSQL reads are
 * tested on the same one): 7 hosts, 4 severities, a rare rule every 100th, every 10th 500 s late
 * (alerts a spool delivers late), and one path with HTML in it.
 */
export function corpusAlert(i: number, t0: number): { alert: Alert; ts: number; host: string; ruleId: string; severity: Alert['kibana']['alert']['severity'] } {
  const host = `web-${i % 7}`;
  const severity = (['low', 'medium', 'high', 'critical'] as const)[i % 4]!;
  const ruleId = i % 100 === 0 ? 'rare-rule' : 'rule-a';
  const ts = t0 + i * 1000 - (i % 10 === 0 ? 500_000 : 0);
  const path = i === 1234 ? '/usr/lib64/ld-linux-<img src=x onerror=alert(1)>.so' : `/usr/lib64/ld-linux-x86-64.so.${i}`;
  return { alert: makeAlert({ host, ruleId, severity, time: new Date(ts).toISOString(), path, pid: 10_000 + i }), ts, host, ruleId, severity };
}

export function makeFacts(agentId = 'agent-test', hostname = 'web-1'): AgentFacts {
  return {
    agentId,
    version: '0.1.0',
    hostname,
    host: { architecture: 'x86_64', os: { name: 'Debian GNU/Linux', version: '12', kernel: '6.1.0' } },
    rules: { count: 1, ids: ['06d555e4-c8ce-4d90-90e1-ec7f66df5a6a'] },
    source: { name: 'fanotify', degraded: false },
    attribution: { degraded: false, counts: { live_proc: 1 } },
  };
}

/** A pino logger whose JSON lines the test can read. */
export function captureLog(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/** Polls `fn` until it returns a truthy value or `ms` pass (then throws with `what`). */
export async function waitFor<T>(fn: () => T | Promise<T>, ms: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// Builds the alert document for an event that matched a rule, shaped like an Elastic Security alert
// (the event's ECS fields, event.kind "signal", ECS rule.* and threat.*, kibana.alert.*) so it can
// be indexed into Elastic as is. Pure: the caller passes the clock.
import { createHash } from 'node:crypto';
import type { Alert, FileEvent } from './ecs.js';
import type { Rule } from './rule.js';

/**
 * The alert's id is derived from the rule and the event, as Kibana derives its alert ids, so the
 * same event judged twice (a replay after a crash) gives the same id and the collector stores it once.
 */
export function alertId(ruleId: string, event: { event?: { id?: unknown } }, extra = ''): string {
  const key = typeof event.event?.id === 'string' ? event.event.id : JSON.stringify(event);
  const h = createHash('sha256').update(`${ruleId}\0${key}\0${extra}`).digest('hex');
  // Formatted as a version-5-style UUID so tools that expect a UUID accept it.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * The alert shares the event's and the rule's nested objects rather than copying them (a deep copy
 * was a third of an alert's cost on the agent's latency path): the caller must not change the event
 * afterwards, and rules are frozen.
 */
export function buildAlert(event: FileEvent, rule: Rule, nowIso: string): Alert {
  const uuid = alertId(rule.ruleId, event);
  // An excepted event is recorded as Kibana leaves an alert closed by "close alerts matching this
  // exception": on record, out of every open queue, and saying why.
  const excepted = event.ldguard?.excepted_by;
  const { event: ev, ...rest } = event;
  const threat = rule.threat.length > 0 ? (rule.threat as Alert['threat']) : undefined;
  return {
    ...rest,
    '@timestamp': nowIso,
    event: { ...ev, kind: 'signal' },
    rule: {
      id: rule.ruleId,
      uuid: rule.ruleId,
      name: rule.name,
      description: rule.description,
      version: String(rule.version),
      ruleset: 'ldguard',
      ...(rule.references.length ? { reference: [...rule.references] } : {}),
      ...(rule.license ? { license: rule.license } : {}),
      ...(rule.author.length ? { author: [...rule.author] } : {}),
    },
    ...(threat ? { threat } : {}),
    kibana: {
      alert: {
        uuid,
        original_time: event['@timestamp'],
        reason: excepted ? `${reason(event, rule)} Excepted by list ${excepted.list_id}, item ${excepted.item_id}: recorded, not paged.` : reason(event, rule),
        severity: rule.severity,
        risk_score: rule.riskScore,
        workflow_status: excepted ? 'closed' : 'open',
        original_event: { ...ev },
        rule: {
          rule_id: rule.ruleId,
          uuid: rule.ruleId,
          name: rule.name,
          type: 'eql',
          from: rule.from,
          interval: rule.interval,
          max_signals: rule.maxSignals,
          tags: [...rule.tags],
          ...(threat ? { threat } : {}),
          version: rule.version,
        },
      },
    },
  };
}

/** Kibana's reason sentence for EQL alerts: "file event with process …, file …, by … on … created … alert …". */
function reason(e: FileEvent, rule: Rule): string {
  // Events from `ldguard match` are arbitrary JSON: read every field defensively.
  const category = ([] as unknown[]).concat(e.event?.category ?? 'event')[0];
  const parts = [`${String(category)} event`];
  if (e.process?.name) parts.push(`with process ${e.process.name},`);
  if (e.process?.parent?.name) parts.push(`parent process ${e.process.parent.name},`);
  if (e.file?.name) parts.push(`file ${e.file.name},`);
  if (e.user?.name) parts.push(`by ${e.user.name}`);
  if (e.host?.name) parts.push(`on ${e.host.name}`);
  parts.push(`created ${rule.severity} alert ${rule.name}.`);
  return parts.join(' ');
}

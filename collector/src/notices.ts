// The collector's own alerts: what an agent did that an analyst must see, in the same list as the
// agents' alerts, not only as a counter in /metrics. An agent token lives on a host that may be
// the one under attack, so a token that tries to speak as another host, or a host whose alerts
// are refused, is itself a finding.
//
// Bounded: one alert per kind and token per window (NOTICE_WINDOW_MS); the rest of the window is
// counted (Metrics.noticesSuppressed), so a hostile agent retrying in a loop cannot flood the store.
// The alert's key is (the window's start, a uuid derived from kind, token and window), so a restart
// inside a window, or a second collector, stores it once. A notice about one host's continuity
// (continuity.ts) or one silence is keyed by what it is about (Notice.key) instead of the token:
// one alert per replacement, rollback, unknown seal or silence, not one per token and window.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { AlertRow } from './store/store.js';

export type NoticeKind = 'identity_refused' | 'alerts_quarantined' | 'held_back_quota' | 'agent_replaced' | 'baseline_rolled_back' | 'baseline_unknown' | 'agent_silent';

/** One alert per kind and token per this long. */
export const NOTICE_WINDOW_MS = 5 * 60_000;

/** The agent_id column of the collector's own alerts: no agent sent them. */
export const COLLECTOR_SENDER = 'ldguard-collector';

const RULES: Record<NoticeKind, { id: string; name: string; severity: 'medium' | 'high'; risk: number; description: string }> = {
  identity_refused: {
    id: 'ldguard-collector-identity-refused',
    name: 'Agent Identity Refused by the Collector',
    severity: 'high',
    risk: 73,
    description: 'An agent token tried to speak as an agent id bound to another token, or its own binding was contradicted. ' +
      'The token may have been copied from its host: check that host, and rotate or revoke the token (ldguard token rotate|revoke).',
  },
  alerts_quarantined: {
    id: 'ldguard-collector-alerts-quarantined',
    name: 'Agent Alerts Quarantined by the Collector',
    severity: 'medium',
    risk: 47,
    description: 'The collector refused alerts from this token (invalid, out of bounds, or naming another agent) and kept them in the quarantine (GET /api/quarantine). ' +
      'A build mismatch explains some; an alert that names another agent does not.',
  },
  held_back_quota: {
    id: 'ldguard-collector-held-back-quota',
    name: 'Agent Held-Back Records Over Quota',
    severity: 'medium',
    risk: 47,
    description: 'This token sent more held-back records (matches past a rule\'s max_signals, ldguard.held_back_by) than held_back_quota_per_token allows; ' +
      'the excess was acked and counted (ldguard_collector_held_back_over_quota_total) but not stored. A host flooding the rule is under attack or misconfigured: ' +
      'look at it (its alerts file keeps every record), then raise held_back_quota_per_token if the flood was legitimate.',
  },
  agent_replaced: {
    id: 'ldguard-collector-agent-replaced',
    name: 'Known Host Returned with a New Agent Id',
    severity: 'high',
    risk: 73,
    description: 'A host the collector knows (host.id) connected with another agent id: its agent state dir (agent id, baseline) was wiped or replaced, ' +
      'which is how an intruder with root makes a planted loader look like part of a first run. Find out who reinstalled or reset the agent.',
  },
  baseline_rolled_back: {
    id: 'ldguard-collector-baseline-rolled-back',
    name: 'Agent Baseline Generation Went Back',
    severity: 'high',
    risk: 73,
    description: 'A host\'s agent reported a baseline generation lower than one it reported before. Generations only grow: the baseline was deleted ' +
      'or an older copy was put back while the agent was down. Check the loaders of that host against its packages.',
  },
  baseline_unknown: {
    id: 'ldguard-collector-baseline-unknown',
    name: 'Agent Baseline Not as Reported',
    severity: 'high',
    risk: 73,
    description: 'A host\'s agent reported a baseline whose sha256, at a generation already recorded, its agent never reported: the baseline was edited ' +
      'while the agent was down. Check the loaders of that host against its packages.',
  },
  agent_silent: {
    id: 'ldguard-collector-agent-silent',
    name: 'Agent Went Silent',
    severity: 'medium',
    risk: 47,
    description: 'An agent sent nothing for longer than its heartbeat period allows (offline_after_missed_heartbeats): it was stopped, killed, ' +
      'or cut off from the collector. While it is silent nothing on that host is watched.',
  },
};

export interface Notice {
  kind: NoticeKind;
  tokenName: string;
  /** The agent id the connection said it was (may be forged). */
  claimedAgentId: string | null;
  remote: string;
  reason: string;
  /** What the notice is about, when not the token (a host, a silence): its dedupe key. */
  key?: string;
  /** The host it is about (host.id, host.name), when it is about one. */
  host?: { id?: string; name?: string };
}

function uuidFrom(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export class Notices {
  private readonly seen = new Map<string, number>();
  private readonly host = hostname();

  /** The alert row for `n`, or undefined when this kind and token already had one in this window. */
  take(n: Notice, now = Date.now()): AlertRow | undefined {
    const window = now - (now % NOTICE_WINDOW_MS);
    const key = `${n.kind}\u0000${n.key ?? n.tokenName}`;
    // A keyed notice is about one thing (a seal, a silence): once per process, not once per window.
    if (this.seen.get(key) === window || (n.key !== undefined && this.seen.has(key))) return undefined;
    this.seen.set(key, n.key === undefined ? window : -1);
    // Windows gone by are forgotten, so the map holds at most the tokens of two windows.
    if (this.seen.size > 10_000) for (const [k, w] of this.seen) if (w < window) this.seen.delete(k);
    const rule = RULES[n.kind];
    const uuid = uuidFrom(n.key === undefined ? `${n.kind}|${n.tokenName}|${window}` : `${n.kind}|key|${n.key}`);
    const at = new Date(now).toISOString();
    const doc = {
      '@timestamp': at,
      event: { kind: 'signal', category: ['host'], type: ['denied'], action: n.kind, dataset: 'ldguard.collector', module: 'ldguard' },
      message: `${rule.name}: token "${n.tokenName}" from ${n.remote}: ${n.reason}`,
      host: n.host ? { ...(n.host.id ? { id: n.host.id } : {}), name: n.host.name ?? this.host } : { name: this.host },
      rule: { id: rule.id, name: rule.name, description: rule.description, ruleset: 'ldguard', version: '1' },
      ldguard: { notice: { kind: n.kind, token_name: n.tokenName, claimed_agent_id: n.claimedAgentId, remote: n.remote, reason: n.reason.slice(0, 2000) } },
      kibana: {
        alert: {
          uuid,
          original_time: new Date(n.key === undefined ? window : now).toISOString(),
          reason: `${rule.name}: ${n.reason.slice(0, 500)}`,
          severity: rule.severity,
          risk_score: rule.risk,
          workflow_status: 'open',
          rule: { rule_id: rule.id, uuid: rule.id, name: rule.name, type: 'ldguard', version: 1 },
        },
      },
    };
    return {
      uuid, ts: now, ots: n.key === undefined ? window : now, host: n.host?.name ?? this.host, ruleId: rule.id, ruleName: rule.name, severity: rule.severity, status: 'open',
      agentId: COLLECTOR_SENDER, tokenName: n.tokenName, received: now, future: false, doc: Buffer.from(JSON.stringify(doc)),
    };
  }
}

// Tampering an agent cannot see alone. Root on a host can wipe the agent's whole state dir (its
// agent id, its baseline and the baseline's seal) or put back an older copy; the agent then starts
// as if for the first time, or trusts an old baseline. The collector remembers, per host.id, each
// baseline seal (generation, sha256) the host's agent told it, in hellos and in the heartbeat the
// agent sends after each save, and judges each new seal against that history:
//   - agent_replaced: a known host.id says hello with another agent.id (the state dir was wiped,
//     or another agent speaks for the host);
//   - baseline_rolled_back: a generation lower than the highest recorded (generations only grow);
//   - baseline_unknown: a seal never recorded at a generation the collector already passed or
//     holds (same generation, other bytes: the baseline was edited and the generation kept).
// A higher generation with a seal never heard is progress made while the agent could not reach
// the collector (saves are told best-effort): recorded, not an alert. So an edit that also bumps
// the generation and rewrites the seal passes here; the agent's own seal check catches the edits
// that do not rewrite the seal (agent/src/known-files.ts).
// Agents older than this (no hostId or baseline in their facts) are accepted and not judged.
// Pure: the history is the store's (Store.hostHistory, asked about the seal told), the notices are
// the server's to record.
import type { BaselineSeal } from '../../shared/protocol.js';
import type { HostHistory } from './store/store.js';

export type ContinuityKind = 'agent_replaced' | 'baseline_rolled_back' | 'baseline_unknown';

export interface ContinuityFinding {
  kind: ContinuityKind;
  reason: string;
}

/**
 * What is wrong with a host's seal against its history; `hello`: told in a hello (only a hello
 * can bring another agent id: a connection speaks for one agent).
 */
export function judgeSeal(history: HostHistory | null, told: { hostId: string; agentId: string; baseline?: BaselineSeal }, hello: boolean): ContinuityFinding[] {
  if (!history) return [];
  const out: ContinuityFinding[] = [];
  const { hostId, agentId, baseline } = told;
  if (hello && history.lastAgentId !== agentId) {
    out.push({ kind: 'agent_replaced', reason: `host ${hostId} was agent ${history.lastAgentId} and now says it is agent ${agentId}: the agent's state dir was wiped or replaced, or another agent speaks for this host` });
  }
  if (!baseline) return out;
  if (baseline.generation < history.maxGeneration) {
    out.push({ kind: 'baseline_rolled_back', reason: `host ${hostId}'s agent ${agentId} has baseline generation ${baseline.generation}, lower than ${history.maxGeneration} recorded before: the baseline was deleted or an older copy put back` });
  } else if (baseline.generation === history.maxGeneration && !history.sealKnown) {
    out.push({ kind: 'baseline_unknown', reason: `host ${hostId}'s agent ${agentId} has baseline generation ${baseline.generation} with sha256 ${baseline.sha256}, which its agent never reported: the baseline was edited` });
  }
  return out;
}

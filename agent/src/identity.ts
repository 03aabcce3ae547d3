// The agent's id: random, made once and kept in the state dir, so it survives restarts and
// upgrades and names this host's agent to the collector (ECS agent.id).
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function agentId(stateDir: string): string {
  const file = join(stateDir, 'agent-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
  } catch {
    // first start: make one below
  }
  const id = randomUUID();
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

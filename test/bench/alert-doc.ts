// The alert document the collector bench sends and stores: shaped and sized like the agent's
// (about 2 kB of JSON), every alert new (its times, uuid, event id, process, file name). Shared by
// the load client (over WebSocket) and the store step (straight into the store).
import { randomUUID } from 'node:crypto';

export const SEED = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

export interface Varying { now: string; uuid: string; eventId: string; entity: string; counter: string; pid: string | number; inode: string }

/** An alert shaped and sized like the agent's (about 2 kB of JSON). */
export function alert(agent: number, i: number, v?: Varying): Record<string, unknown> {
  const now = v?.now ?? new Date().toISOString();
  const uuid = v?.uuid ?? randomUUID();
  const name = `ld-linux-x86-64.so.2.load${agent}-${v?.counter ?? i}`;
  return {
    '@timestamp': now,
    event: { kind: 'signal', category: ['file'], type: ['creation'], action: 'creation', dataset: 'endpoint.events.file', module: 'endpoint', created: now, id: v?.eventId ?? randomUUID() },
    file: { path: `/usr/lib64/${name}`, name, directory: '/usr/lib64', size: 4, mode: '0755', owner: 'root', group: 'root', inode: v?.inode ?? String(1000 + i), hash: { sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' } },
    process: { pid: v?.pid ?? 4242 + i, name: 'cp', executable: '/usr/bin/cp', args: ['cp', '/tmp/x', `/usr/lib64/${name}`], working_directory: '/root', entity_id: v?.entity ?? randomUUID().replace(/-/g, ''), parent: { pid: 4000, name: 'bash', executable: '/usr/bin/bash' }, user: { id: '0', name: 'root' }, group: { id: '0', name: 'root' } },
    host: { name: `load-agent-${agent}`, id: `load-agent-${agent}`, os: { name: 'Debian GNU/Linux', version: '12', kernel: '6.1.0', family: 'debian', platform: 'debian', type: 'linux' }, architecture: 'x86_64', ip: ['127.0.0.1'] },
    agent: { id: `load-agent-${agent}`, type: 'ldguard', version: '0.1.0', name: `load-agent-${agent}` },
    rule: { id: SEED, name: 'Dynamic Linker (ld.so) Creation', description: 'This rule detects the creation of the dynamic linker (ld.so) file.', severity: 'low', risk_score: 21, tags: ['Domain: Endpoint', 'OS: Linux', 'Tactic: Defense Evasion'] },
    kibana: { alert: { uuid, severity: 'low', workflow_status: 'open', risk_score: 21, reason: `file event with process cp, file ${name}, by root on load-agent-${agent} created low alert Dynamic Linker (ld.so) Creation.`, rule: { rule_id: SEED, name: 'Dynamic Linker (ld.so) Creation', uuid: SEED, version: 1 }, original_time: now } },
    ldguard: { attribution: 'exec_cache', source: 'fanotify' },
    ecs: { version: '8.11.0' },
  };
}

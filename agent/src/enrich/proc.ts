// ECS process fields from the facts the source gathered (live /proc or the exec cache). Nothing
// here reads /proc: that happened in the source, at the moment of the event, because later the
// writer may be gone or be another program.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { EcsProcess, EcsProcessParent } from '../../../shared/ecs.js';
import type { ProcFacts } from '../source/source.js';
import type { NameTable } from './users.js';

// Linux reports start times in clock ticks; USER_HZ is 100 on every architecture Linux ships.
const USER_HZ = 100;

/** Boot time in ms since the epoch, from /proc/stat's btime (read once: it does not change). */
export const BOOT_MS: number = (() => {
  try {
    const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
    return m ? Number(m[1]) * 1000 : 0;
  } catch {
    return 0;
  }
})();

/**
 * Stable for a process's lifetime and unique across pid reuse: the same (host, pid, start time)
 * always gives the same id, as Elastic Defend's entity_id does.
 */
export function entityId(hostId: string, pid: number, startTicks: number | null): string {
  return createHash('sha256').update(`${hostId}\0${pid}\0${startTicks ?? 'unknown'}`).digest('base64url').slice(0, 32);
}

function commandLine(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function ecsParent(p: ProcFacts, hostId: string): EcsProcessParent {
  return {
    pid: p.pid,
    entity_id: entityId(hostId, p.pid, p.startTicks),
    ...(p.exe ? { executable: p.exe } : {}),
    ...(p.comm ? { name: p.comm } : {}),
    ...(p.args.length ? { args: [...p.args], command_line: commandLine(p.args) } : {}),
  };
}

// (uid_t)-1: the kernel's "no id", which the addon reports when nothing knew the writer's ids.
const NO_ID = 4294967295;

export function ecsProcess(
  p: ProcFacts,
  parent: ProcFacts | null,
  hostId: string,
  names: { users: NameTable; groups: NameTable },
): EcsProcess {
  const user = p.euid === NO_ID ? undefined : names.users.name(p.euid);
  const group = p.egid === NO_ID ? undefined : names.groups.name(p.egid);
  const out: EcsProcess = {
    pid: p.pid,
    entity_id: entityId(hostId, p.pid, p.startTicks),
    ...(p.exe ? { executable: p.exe } : {}),
    ...(p.comm ? { name: p.comm } : {}),
    args: [...p.args],
    args_count: p.args.length,
    ...(p.args.length ? { command_line: commandLine(p.args) } : {}),
    ...(p.cwd ? { working_directory: p.cwd } : {}),
    ...(p.startTicks !== null && BOOT_MS ? { start: new Date(BOOT_MS + (p.startTicks * 1000) / USER_HZ).toISOString() } : {}),
    ...(p.euid === NO_ID ? {} : { user: { id: String(p.euid), ...(user ? { name: user } : {}) } }),
    ...(p.egid === NO_ID ? {} : { group: { id: String(p.egid), ...(group ? { name: group } : {}) } }),
  };
  if (parent) out.parent = ecsParent(parent, hostId);
  else if (p.ppid > 0) out.parent = { pid: p.ppid };
  return out;
}

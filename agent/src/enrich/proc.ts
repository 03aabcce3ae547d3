// ECS process fields from the facts the source gathered (live /proc or the exec cache). Nothing
// here reads /proc: that happened in the source, at the moment of the event, because later the
// writer may be gone or be another program.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { EcsProcess, EcsProcessParent } from '../../../shared/ecs.js';
import { displayPath, fromBytes } from '../byte-path.js';
import type { ProcFacts } from '../source/source.js';
import type { NameTable } from './users.js';

// Linux reports start times in clock ticks; USER_HZ is 100 on every architecture Linux ships.
export const USER_HZ = 100;

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

// Built from the arguments as shown (procText): as lossless as they are.
function commandLine(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The text fields of a process as alerts show them. */
interface ProcText {
  exe: string | null;
  comm: string | null;
  args: readonly string[];
  cwd: string | null;
}

/** Splits cmdline bytes as the addon splits them: one argument per NUL, none after a final NUL. */
function splitArgs(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; ) {
    const end = b.indexOf(0, i);
    const stop = end < 0 ? b.length : end;
    out.push(b.subarray(i, stop));
    i = stop + 1;
  }
  return out;
}

/**
 * Each field whose bytes are not UTF-8 (the source then gave them as rawExe, rawComm, rawArgs,
 * rawCwd) escaped as byte-path.ts escapes paths: every byte outside a well-formed sequence as
 * \xNN and, in that field only, every backslash as \x5c. Arguments are fields one by one: a
 * UTF-8 argument beside a broken one stays as it is. Well-formed fields are returned untouched,
 * and a process without raw bytes (nearly all) costs one test.
 */
function procText(p: ProcFacts): ProcText {
  if (!p.rawExe && !p.rawComm && !p.rawArgs && !p.rawCwd) return p;
  return {
    exe: p.rawExe ? displayPath(p.rawExe) : p.exe,
    comm: p.rawComm ? displayPath(p.rawComm) : p.comm,
    args: p.rawArgs ? splitArgs(p.rawArgs).map((a) => displayPath(fromBytes(a))) : p.args,
    cwd: p.rawCwd ? displayPath(p.rawCwd) : p.cwd,
  };
}

/**
 * Under --root the agent sees the host's files at ROOT/…, and /proc/PID/exe of a host process
 * says ROOT/usr/bin/cp; the host sees /usr/bin/cp, and the rules' exclusions are written for
 * that. So an executable or working directory under the root is reported as the host sees it,
 * as file.path is. One outside the root (a process of the agent's own side writing into the
 * mounted host: the container's cp, say) has no host path: it is reported as the agent sees it,
 * unchanged, and the event says so (ldguard.process_outside_root) rather than passing it off as
 * a host path. A deleted or memfd image ("/memfd:x (deleted)") is outside every root: as is.
 */
function inRoot(realRoot: string, path: string | null): string | null {
  if (path === null || realRoot === '/') return path;
  return path === realRoot ? '/' : path.startsWith(`${realRoot}/`) ? path.slice(realRoot.length) : path;
}

function rootedText(t: ProcText, realRoot: string): ProcText {
  if (realRoot === '/') return t;
  return { ...t, exe: inRoot(realRoot, t.exe), cwd: inRoot(realRoot, t.cwd) };
}

/** Whether the writer's executable lies outside --root (ldguard.process_outside_root). */
export function processOutsideRoot(p: ProcFacts | null, realRoot: string): boolean {
  const exe = p ? procText(p).exe : null;
  return realRoot !== '/' && exe !== null && exe !== realRoot && !exe.startsWith(`${realRoot}/`);
}

/** Whether an alert about this writer shows escaped bytes (ldguard.process_escaped). */
export function processEscaped(p: ProcFacts | null, parent: ProcFacts | null): boolean {
  const raw = (q: ProcFacts | null) => q !== null && Boolean(q.rawExe ?? q.rawComm ?? q.rawArgs ?? q.rawCwd);
  return raw(p) || raw(parent);
}

export function ecsParent(p: ProcFacts, hostId: string, realRoot = '/'): EcsProcessParent {
  const t = rootedText(procText(p), realRoot);
  return {
    pid: p.pid,
    entity_id: entityId(hostId, p.pid, p.startTicks),
    ...(t.exe ? { executable: t.exe } : {}),
    ...(t.comm ? { name: t.comm } : {}),
    ...(t.args.length ? { args: [...t.args], command_line: commandLine(t.args) } : {}),
  };
}

// (uid_t)-1: the kernel's "no id", which the addon reports when nothing knew the writer's ids.
const NO_ID = 4294967295;

export function ecsProcess(
  p: ProcFacts,
  parent: ProcFacts | null,
  hostId: string,
  names: { users: NameTable; groups: NameTable },
  realRoot = '/',
): EcsProcess {
  const user = p.euid === NO_ID ? undefined : names.users.name(p.euid);
  const group = p.egid === NO_ID ? undefined : names.groups.name(p.egid);
  const t = rootedText(procText(p), realRoot);
  const out: EcsProcess = {
    pid: p.pid,
    entity_id: entityId(hostId, p.pid, p.startTicks),
    ...(t.exe ? { executable: t.exe } : {}),
    ...(t.comm ? { name: t.comm } : {}),
    args: [...t.args],
    args_count: t.args.length,
    ...(t.args.length ? { command_line: commandLine(t.args) } : {}),
    ...(t.cwd ? { working_directory: t.cwd } : {}),
    ...(p.startTicks !== null && BOOT_MS ? { start: new Date(BOOT_MS + (p.startTicks * 1000) / USER_HZ).toISOString() } : {}),
    ...(p.euid === NO_ID ? {} : { user: { id: String(p.euid), ...(user ? { name: user } : {}) } }),
    ...(p.egid === NO_ID ? {} : { group: { id: String(p.egid), ...(group ? { name: group } : {}) } }),
  };
  if (parent) out.parent = ecsParent(parent, hostId, realRoot);
  else if (p.ppid > 0) out.parent = { pid: p.ppid };
  return out;
}

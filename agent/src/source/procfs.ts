// Reading a live process from /proc in JavaScript. Only the inotify fallback needs this (the
// fanotify source does it in C at the moment of the event); it is best effort: the process may be
// gone, or its pid reused, by the time we look.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { ProcFacts } from './source.js';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function link(path: string): string | null {
  try {
    return readlinkSync(path).replace(/ \(deleted\)$/, '');
  } catch {
    return null;
  }
}

export function readProc(pid: number): ProcFacts | null {
  const stat = read(`/proc/${pid}/stat`);
  const status = read(`/proc/${pid}/status`);
  if (!stat || !status) return null;
  // comm may hold spaces and parentheses: the fields after it start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ids = (key: string) => (new RegExp(`^${key}:\\s+(\\d+)\\s+(\\d+)`, 'm').exec(status) ?? []).slice(1).map(Number);
  const [uid = 0, euid = 0] = ids('Uid');
  const [gid = 0, egid = 0] = ids('Gid');
  const loginuid = Number(read(`/proc/${pid}/loginuid`) ?? NaN);
  return {
    pid,
    ppid: Number(fields[1]),
    exe: link(`/proc/${pid}/exe`),
    comm: read(`/proc/${pid}/comm`)?.replace(/\n$/, '') ?? null,
    args: (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1),
    cwd: link(`/proc/${pid}/cwd`),
    uid,
    gid,
    euid,
    egid,
    loginuid: Number.isFinite(loginuid) && loginuid !== 4294967295 ? loginuid : null,
    startTicks: Number(fields[19]) || null,
  };
}

/** Pids of live processes holding `path` open (a scan of every /proc/PID/fd: costly, used only on a match). */
export function holders(path: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    if (fds.some((fd) => link(`/proc/${pid}/fd/${fd}`) === path)) out.push(pid);
  }
  return out;
}

// Reading a live process from /proc in JavaScript. Only the inotify fallback needs this (the
// fanotify source does it in C at the moment of the event); it is best effort: the process may be
// gone, or its pid reused, by the time we look.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { isUtf8 } from '../byte-path.js';
import type { ProcFacts } from './source.js';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function readBytes(path: string): Buffer | null {
  try {
    return readFileSync(path);
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

const DELETED = Buffer.from(' (deleted)');

function linkBytes(path: string): Buffer | null {
  try {
    const b = readlinkSync(path, { encoding: 'buffer' });
    return b.length > DELETED.length && b.subarray(b.length - DELETED.length).equals(DELETED) ? b.subarray(0, b.length - DELETED.length) : b;
  } catch {
    return null;
  }
}

// A text field as the addon gives it: the UTF-8 decoding, and the exact bytes only when they are
// not UTF-8 (native.ts ProcInfo); enrich/proc.ts escapes those.
function text(b: Buffer | null): { text: string | null; raw?: Buffer } {
  if (b === null) return { text: null };
  return isUtf8(b) ? { text: b.toString('utf8') } : { text: b.toString('utf8'), raw: b };
}

export function readProc(pid: number): ProcFacts | null {
  const stat = readBytes(`/proc/${pid}/stat`)?.toString('latin1');
  const status = read(`/proc/${pid}/status`);
  if (!stat || !status) return null;
  // comm may hold spaces and parentheses: the fields after it start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ids = (key: string) => (new RegExp(`^${key}:\\s+(\\d+)\\s+(\\d+)`, 'm').exec(status) ?? []).slice(1).map(Number);
  const [uid = 0, euid = 0] = ids('Uid');
  const [gid = 0, egid = 0] = ids('Gid');
  const loginuid = Number(read(`/proc/${pid}/loginuid`) ?? NaN);
  const commBytes = readBytes(`/proc/${pid}/comm`);
  const exe = text(linkBytes(`/proc/${pid}/exe`));
  const comm = text(commBytes && commBytes[commBytes.length - 1] === 0x0a ? commBytes.subarray(0, -1) : commBytes);
  const cmdline = readBytes(`/proc/${pid}/cmdline`) ?? Buffer.alloc(0);
  const cwd = text(linkBytes(`/proc/${pid}/cwd`));
  return {
    pid,
    ppid: Number(fields[1]),
    exe: exe.text,
    comm: comm.text,
    args: cmdline.toString('utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1),
    cwd: cwd.text,
    uid,
    gid,
    euid,
    egid,
    loginuid: Number.isFinite(loginuid) && loginuid !== 4294967295 ? loginuid : null,
    startTicks: Number(fields[19]) || null,
    ...(exe.raw ? { rawExe: exe.raw } : {}),
    ...(comm.raw ? { rawComm: comm.raw } : {}),
    ...(isUtf8(cmdline) ? {} : { rawArgs: cmdline }),
    ...(cwd.raw ? { rawCwd: cwd.raw } : {}),
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

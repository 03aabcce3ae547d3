// Figures from samples, and the cost of processes read from /proc. Pure helpers apart from the
// /proc readers, which return undefined for a process that is gone rather than throw.
import { readFileSync, readdirSync } from 'node:fs';

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of sorted values (p in 0..100). */
function rank(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: rank(s, 50), p99: rank(s, 99), max: s[s.length - 1]! };
}

export function median(values: readonly number[]): number {
  return summarize(values)?.p50 ?? NaN;
}

export const ratio = (a: number | undefined | null, b: number | undefined | null): number | null =>
  a === undefined || a === null || b === undefined || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b;

const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts in clock ticks of 1/100 s on Linux

/** utime + stime of a process (all its threads, kernel threads too) in seconds. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The comm field may hold spaces and parentheses: split after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS; // fields 14 and 15 of the full line
  } catch {
    return undefined;
  }
}

/** Sum over processes; a vanished one counts as zero (its time is then under-reported: noted by callers). */
export function cpuOf(pids: readonly number[]): number {
  return pids.reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0);
}

function statusKb(pid: number, key: string): number | undefined {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Peak resident set (VmHWM) in MB; undefined for kernel threads and gone processes. */
export const peakRssMb = (pid: number): number | undefined => {
  const kb = statusKb(pid, 'VmHWM');
  return kb === undefined ? undefined : kb / 1024;
};

export const rssMb = (pid: number): number | undefined => {
  const kb = statusKb(pid, 'VmRSS');
  return kb === undefined ? undefined : kb / 1024;
};

/** Pids of processes whose comm is exactly `comm` (kernel threads included: kauditd). */
export function pidsByComm(comm: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === comm) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Descendants of pid (children, grandchildren…), from /proc/<pid>/task/<tid>/children. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tids) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean)) {
        out.push(Number(k));
        walk(Number(k));
      }
    }
  };
  walk(pid);
  return out;
}

/** Rounds for display; null and NaN show as '–'. */
export function fmt(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return v.toFixed(digits);
}

export function pct(num: number, den: number): string {
  if (den === 0) return '–';
  const p = (100 * num) / den;
  return `${p === 100 || p === 0 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** Processes created since boot (the `processes` line of /proc/stat). */
export function forksSinceBoot(): number {
  const m = /^processes (\d+)/m.exec(readFileSync('/proc/stat', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

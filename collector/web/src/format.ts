// How values read: times with their zone (stamp), the date when it is not today, sizes in
// binary units, durations in words. Pure functions of their input (and of `now`; time and fullTime of
// the login's zone, zone.ts).

import type { TimeZonePref } from './api-types.js';
import { zone } from './zone.js';

const pad = (n: number) => String(n).padStart(2, '0');

/** Minutes east of UTC in force at `d` (the browser's zone; a test injects a fixed or DST rule). */
export type OffsetOf = (d: Date) => number;
const browserOffset: OffsetOf = (d) => -d.getTimezoneOffset();

export interface StampOptions {
  zone: TimeZonePref;
  /** The local zone's rule; the browser's by default. */
  offsetOf?: OffsetOf;
  millis?: boolean;
  /** Leave out the date when it is `now`'s date in the same zone (the list's compact form). */
  now?: Date;
}

/**
 * The one way the dashboard writes an instant: `2026-12-07 11:52:03 UTC` or, local,
 * `2026-12-07 12:52:03 +01:00` with the offset in force at that instant (so a time on the other
 * side of a DST change carries its own). Never without a zone: a bare local time read next to
 * `ldguard tail`'s UTC is an hour off without saying so. Pure: the offset rule is injected.
 */
export function stamp(ms: number, o: StampOptions): string {
  const d = new Date(ms);
  const off = o.zone === 'utc' ? 0 : o.offsetOf ? o.offsetOf(d) : browserOffset(d);
  const label = o.zone === 'utc' ? 'UTC' : `${off < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  // The wall clock of that zone, read through the UTC getters of a shifted instant.
  const w = new Date(ms + off * 60_000);
  const ymd = `${w.getUTCFullYear()}-${pad(w.getUTCMonth() + 1)}-${pad(w.getUTCDate())}`;
  const hms = `${pad(w.getUTCHours())}:${pad(w.getUTCMinutes())}:${pad(w.getUTCSeconds())}${o.millis ? `.${String(w.getUTCMilliseconds()).padStart(3, '0')}` : ''}`;
  if (o.now) {
    const n = new Date(o.now.getTime() + off * 60_000);
    if (n.getUTCFullYear() === w.getUTCFullYear() && n.getUTCMonth() === w.getUTCMonth() && n.getUTCDate() === w.getUTCDate()) return `${hms} ${label}`;
  }
  return `${ymd} ${hms} ${label}`;
}

/** The zone's label alone ('UTC' or '+01:00' at `ms`), for an axis whose ticks are bare clock times. */
export function zoneLabel(ms: number, z: TimeZonePref = zone(), offsetOf?: OffsetOf): string {
  return stamp(ms, { zone: z, ...(offsetOf ? { offsetOf } : {}) }).split(' ')[2]!;
}

/** An instant in the login's zone, without the date when it is today there (the list's column). */
export function time(iso: string | undefined, now = new Date()): string {
  if (!iso) return '—';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return stamp(ms, { zone: zone(), now });
}

/** An instant in the login's zone, with its date and milliseconds (detail, history, tooltips). */
export function fullTime(iso: string | undefined): string {
  if (!iso) return '—';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return stamp(ms, { zone: zone(), millis: true });
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(s)) return iso;
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

export function duration(sec: number | null | undefined): string {
  if (sec === null || sec === undefined) return '—';
  if (sec < 60) return `${Math.round(sec)} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min`;
  if (sec < 86_400) return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
  return `${Math.floor(sec / 86_400)} d ${Math.floor((sec % 86_400) / 3600)} h`;
}

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]} (${n.toLocaleString('en')} bytes)`;
}

export function count(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : n.toLocaleString('en');
}

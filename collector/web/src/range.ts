// A custom time range ("Between…") in the address bar and in the form. The form's datetime-local
// inputs carry no zone: they are read in the zone the page shows times in (zone.ts). The address
// bar carries instants with their zone (ISO 8601 in UTC, ending in Z), so a link shared with a
// colleague who shows times in another zone selects the same alerts; opened, each bound is written
// back into the form in that colleague's zone.
import { zone } from './zone.js';

/** A datetime-local value: no zone. */
const WALL = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,3})?)?$/;

/** The instant a bound names: a form value read in the page's zone, or an instant with its zone; NaN if neither. */
export function instantOf(v: string | undefined): number {
  if (!v) return NaN;
  if (WALL.test(v)) return Date.parse(zone() === 'utc' ? `${v}Z` : v);
  return /(Z|[+-]\d\d:\d\d)$/.test(v) ? Date.parse(v) : NaN;
}

/** A form value for the address bar: the instant, in UTC with its Z (left as it is when it names none). */
export function boundToUrl(v: string): string {
  const t = instantOf(v);
  return Number.isNaN(t) ? v : new Date(t).toISOString();
}

const pad = (n: number) => String(n).padStart(2, '0');

/** A bound from the address bar for the form: a datetime-local value in the page's zone ('' when it names no instant). */
export function boundFromUrl(v: string): string {
  if (WALL.test(v)) return v; // a link from before bounds carried their zone: as it was written
  const t = instantOf(v);
  if (Number.isNaN(t)) return '';
  const d = new Date(t);
  const utc = zone() === 'utc';
  const [y, mo, da, h, mi, s] = utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  return `${y}-${pad(mo)}-${pad(da)}T${pad(h)}:${pad(mi)}${s ? `:${pad(s)}` : ''}`;
}

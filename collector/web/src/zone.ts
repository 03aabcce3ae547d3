// The zone the dashboard shows times in: UTC (the default, as `ldguard tail` and the journal show
// them) or the browser's local zone with its offset. The choice is the login's, kept by the
// collector (PUT /ui/api/prefs) and handed over with the session; this module only holds it for
// the page's formatters (format.ts), so the views need not pass it around.
import type { TimeZonePref } from './api-types.js';

let current: TimeZonePref = 'utc';

export function setZone(z: TimeZonePref): void {
  current = z;
}

export function zone(): TimeZonePref {
  return current;
}

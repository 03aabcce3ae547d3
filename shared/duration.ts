// Durations as people type them on a command line or in a query: 30s, 15m, 2h, 7d, 500ms.
import { LdgError } from './errors.js';

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "90s", "15m", "2h", "7d", "250ms" (a bare number is seconds) → milliseconds; `what` names the option in errors. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new LdgError('LDG_ERR_USAGE', `${what} ${JSON.stringify(text)} is not a duration; write e.g. 30s, 15m, 2h or 7d`);
  return Number(m[1]) * UNITS[(m[2] ?? 's') as keyof typeof UNITS];
}

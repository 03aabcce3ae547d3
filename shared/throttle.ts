// Elastic runs the rule every `interval` and keeps at most `max_signals` alerts per run. A streaming
// agent keeps the same promise per rule, per host, per interval window: the first max_signals alerts
// of a window pass; the rest are held back, counted, and reported in one summary alert when the
// window ends, naming how many and which paths. Nothing goes over silently. Pure: the caller passes
// the clock, so the agent uses wall time and `ldguard match` uses the events' own timestamps.
import type { Alert } from './ecs.js';
import { alertId } from './alert.js';

/** How many distinct paths a summary names; the count covers them all. */
export const SUMMARY_PATHS = 100;

interface Window {
  start: number;
  end: number;
  passed: number;
  heldBack: number;
  paths: Set<string>;
  last?: Alert;
}

export interface ThrottleRule {
  ruleId: string;
  intervalMs: number;
  maxSignals: number;
}

export class Throttle {
  private readonly windows = new Map<string, Window>();
  /** Summaries of windows that a later alert closed, waiting for the next flush(). */
  private pending: Alert[] = [];

  /** Returns the alert when it may go out, or null when it was held back (and counted). */
  admit(alert: Alert, rule: ThrottleRule, nowMs: number): Alert | null {
    const key = `${rule.ruleId}\0${alert.host?.id ?? alert.host?.name ?? ''}`;
    let w = this.windows.get(key);
    const start = Math.floor(nowMs / rule.intervalMs) * rule.intervalMs;
    if (!w || w.start !== start) {
      // A new window; an old one still holding a count is flushed by the caller's next flush().
      if (w && w.heldBack > 0) this.pending.push(summarise(w));
      w = { start, end: start + rule.intervalMs, passed: 0, heldBack: 0, paths: new Set() };
      this.windows.set(key, w);
    }
    if (w.passed < rule.maxSignals) {
      w.passed++;
      return alert;
    }
    w.heldBack++;
    w.last = alert;
    if (w.paths.size < SUMMARY_PATHS && alert.file?.path) w.paths.add(alert.file.path);
    return null;
  }

  /** When the earliest window holding alerts back ends (its summary is due then); null if none. */
  nextDue(): number | null {
    if (this.pending.length > 0) return 0;
    let due: number | null = null;
    for (const w of this.windows.values()) if (w.heldBack > 0 && (due === null || w.end < due)) due = w.end;
    return due;
  }

  /** Summary alerts for every window that has ended by nowMs (all of them with `all`). */
  flush(nowMs: number, all = false): Alert[] {
    const out = this.pending;
    this.pending = [];
    for (const [key, w] of this.windows) {
      if (!all && w.end > nowMs) continue;
      if (w.heldBack > 0) out.push(summarise(w));
      this.windows.delete(key);
    }
    return out;
  }
}

function summarise(w: Window): Alert {
  const base = w.last!;
  const paths = [...w.paths];
  const summary = structuredClone(base);
  const window = { start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString() };
  summary.kibana.alert.uuid = alertId(base.kibana.alert.rule.rule_id, base, `summary:${w.start}`);
  summary.kibana.alert.reason =
    `${w.heldBack} more alert(s) of rule ${base.kibana.alert.rule.name} on ${base.host?.name ?? 'this host'} ` +
    `were held back between ${window.start} and ${window.end} (max_signals ${w.passed} per ${base.kibana.alert.rule.interval}); ` +
    `paths: ${paths.join(', ')}${w.heldBack > paths.length ? ', …' : ''}`;
  summary.ldguard = { ...summary.ldguard, summary: { held_back: w.heldBack, paths, window } };
  return summary;
}

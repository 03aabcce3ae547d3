// Elastic runs the rule every `interval` and keeps at most `max_signals` alerts per run. A streaming
// agent keeps the same promise per rule, per host, per interval window: the first max_signals alerts
// of a window page as alerts. What comes after is never dropped: each is a *held-back record*, the
// alert itself with `ldguard.held_back_by` (the uuid of the window's first summary) and
// `kibana.alert.building_block_type: "default"` (Elastic's mark for an alert that is kept and
// searchable but not shown in the default alerts view, so it pages no one). The caller writes the
// records wherever alerts go (alerts file, spool, collector): every matching event is recorded.
//
// Summaries page instead, shaped like Elastic's suppressed alerts (kibana.alert.suppression.*):
// - the first one the moment the cap is reached (the records point at it, so it exists first);
// - an update whenever a record opens a new group, at most one per UPDATE_EVERY_MS per rule and host
//   (due at once when none went out in the last second, else when that second ends: within 1 s);
// - a final one when the window ends, with every count.
// Groups are keyed by (process.executable, file.hash.sha256, or file.target_path for a symlink; the
// path when neither is known), so a flood of one decoy opens one group and cannot bury a different
// file: that file opens a group of its own, and the next update names it (its file and process are
// the update's own file and process fields, and its reason says so).
//
// Linking summaries: the collector stores by (original time, uuid, sender) and ignores duplicates,
// so an update cannot overwrite the summary before it. Each summary therefore has its own uuid, and
// all of a window's summaries share `ldguard.summary.id`, the uuid of the first one, which is also
// what the records carry in `held_back_by`. One id to search for finds the window's summaries and
// records alike, and the latest summary is the one with the highest `ldguard.summary.update` (the
// final one says `final: true`). Chosen over rewriting one document because the collector's store
// is append-only by design (resends are ignored, not merged), and every update was shown to someone.
//
// Never held back: an alert the caller marks `neverHold` (a write to the loader the host's own
// binaries name as their interpreter, agent/src/enrich/interp.ts). It passes and does not use up
// the window's budget.
//
// Pure: no I/O and no clock of its own. The caller passes the time, so the agent uses wall time and
// `ldguard match` the events' own timestamps; the caller asks nextDue() when to call due() again.
import type { Alert } from './ecs.js';
import { alertId } from './alert.js';

/** Summary updates per rule and host: at most one per this many ms. */
export const UPDATE_EVERY_MS = 1_000;
/** How many groups one summary lists (each ~300-500 bytes: this keeps a summary well under an alert's 64 KiB). */
export const SUMMARY_GROUPS = 50;

export interface ThrottleRule {
  ruleId: string;
  intervalMs: number;
  maxSignals: number;
}

/** One entry of Elastic's kibana.alert.suppression.terms. */
export interface SuppressionTerm {
  field: string;
  value: string[];
}

/** A group of held-back records as a summary lists it. */
export interface SummaryGroup {
  terms: SuppressionTerm[];
  docs_count: number;
  start: string;
  end: string;
  /** The first record of the group: its file and uuid. */
  first: { path: string; uuid: string };
}

/** ldguard.summary on a summary alert. */
export interface SummaryFacts {
  /** The uuid of the window's first summary: shared by all its summaries, and the records' held_back_by. */
  id: string;
  /** 0 for the first summary, then 1, 2 …; the highest is the latest. */
  update: number;
  final: boolean;
  held_back: number;
  window: { start: string; end: string };
  /** Groups opened since the previous summary (at most SUMMARY_GROUPS; the rest go in the next). */
  new_groups: SummaryGroup[];
  /** All groups of the window so far, the first SUMMARY_GROUPS opened; `groups_total` counts them all. */
  groups: SummaryGroup[];
  groups_total: number;
}

export interface Admitted {
  /** What to emit, in this order: a summary first when this alert reached the cap, then the alert or its record. */
  out: Alert[];
  heldBack: boolean;
}

interface Group {
  key: string;
  terms: SuppressionTerm[];
  count: number;
  start: number;
  end: number;
  first: Alert;
}

interface Window {
  start: number;
  end: number;
  rule: ThrottleRule;
  passed: number;
  heldBack: number;
  /** Time of the first and last held-back record (suppression start/end). */
  firstHeld: number;
  lastHeld: number;
  /** The first summary's uuid, once the cap was reached. */
  summaryId?: string;
  updates: number;
  lastSent: number;
  groups: Map<string, Group>;
  /** Groups opened since the last summary, oldest first. */
  unannounced: Group[];
}

/** The group a held-back alert belongs to: (executable, sha256 | symlink target | path). */
export function groupTerms(a: Alert): SuppressionTerm[] {
  const terms: SuppressionTerm[] = [{ field: 'process.executable', value: a.process?.executable ? [a.process.executable] : [] }];
  const f = a.file;
  if (f?.type === 'symlink' && f.target_path !== undefined) terms.push({ field: 'file.target_path', value: [f.target_path] });
  else if (f?.hash?.sha256) terms.push({ field: 'file.hash.sha256', value: [f.hash.sha256] });
  else terms.push({ field: 'file.path', value: f?.path ? [f.path] : [] });
  return terms;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class Throttle {
  private readonly windows = new Map<string, Window>();
  /** Final summaries of windows that a later alert replaced, waiting for the next due(). */
  private pending: Alert[] = [];

  /**
   * Judges one alert at nowMs. Under the cap (or neverHold) it goes out as is; past it, as a
   * held-back record, preceded by the window's first summary when it is the first one held back.
   */
  admit(alert: Alert, rule: ThrottleRule, nowMs: number, neverHold = false): Admitted {
    const key = `${rule.ruleId}\0${alert.host?.id ?? alert.host?.name ?? ''}`;
    let w = this.windows.get(key);
    const start = Math.floor(nowMs / rule.intervalMs) * rule.intervalMs;
    if (!w || w.start !== start) {
      // The old window's final summary goes out with the caller's next due().
      if (w && w.heldBack > 0) this.pending.push(summarise(w, true));
      w = { start, end: start + rule.intervalMs, rule, passed: 0, heldBack: 0, firstHeld: 0, lastHeld: 0, updates: 0, lastSent: -Infinity, groups: new Map(), unannounced: [] };
      this.windows.set(key, w);
    }
    if (neverHold) return { out: [alert], heldBack: false };
    if (w.passed < rule.maxSignals) {
      w.passed++;
      return { out: [alert], heldBack: false };
    }
    const out: Alert[] = [];
    const terms = groupTerms(alert);
    const gkey = JSON.stringify(terms);
    let g = w.groups.get(gkey);
    if (!g) {
      g = { key: gkey, terms, count: 0, start: nowMs, end: nowMs, first: alert };
      w.groups.set(gkey, g);
      w.unannounced.push(g);
    }
    g.count++;
    g.end = nowMs;
    if (w.heldBack === 0) w.firstHeld = nowMs;
    w.heldBack++;
    w.lastHeld = nowMs;
    if (w.summaryId === undefined) {
      // The cap is reached: the first summary goes out now, before the record that points at it.
      w.summaryId = summaryUuid(w, alert, 0);
      out.push(this.send(w, nowMs, false));
    }
    out.push({
      ...alert,
      kibana: { alert: { ...alert.kibana.alert, building_block_type: 'default' } },
      ldguard: { ...alert.ldguard, held_back_by: w.summaryId },
    });
    return { out, heldBack: true };
  }

  /** When due() next has something to give: a summary update or a window's end; null if nothing (no timer needed). */
  nextDue(): number | null {
    if (this.pending.length > 0) return 0;
    let due: number | null = null;
    for (const w of this.windows.values()) {
      if (w.heldBack === 0) continue;
      const at = w.unannounced.length > 0 ? Math.min(w.end, w.lastSent + UPDATE_EVERY_MS) : w.end;
      if (due === null || at < due) due = at;
    }
    return due;
  }

  /** Summaries due by nowMs: updates naming new groups, and final ones of windows that ended (all windows with `all`). */
  due(nowMs: number, all = false): Alert[] {
    const out = this.pending;
    this.pending = [];
    for (const [key, w] of this.windows) {
      if (all || w.end <= nowMs) {
        if (w.heldBack > 0) out.push(summarise(w, true));
        this.windows.delete(key);
      } else if (w.unannounced.length > 0 && nowMs >= w.lastSent + UPDATE_EVERY_MS) {
        out.push(this.send(w, nowMs, false));
      }
    }
    return out;
  }

  private send(w: Window, nowMs: number, final: boolean): Alert {
    w.lastSent = nowMs;
    return summarise(w, final);
  }
}

function summaryUuid(w: Window, base: Alert, update: number): string {
  return alertId(w.rule.ruleId, base, `summary:${w.start}:${update}`);
}

function groupView(g: Group): SummaryGroup {
  return {
    terms: g.terms,
    docs_count: g.count,
    start: iso(g.start),
    end: iso(g.end),
    first: { path: g.first.file?.path ?? '', uuid: g.first.kibana.alert.uuid },
  };
}

function describe(g: Group): string {
  const what = g.terms.map((t) => `${t.field} ${t.value[0] ?? '-'}`).join(', ');
  return `${g.first.file?.path ?? '?'} (${what}; ${g.count} record(s))`;
}

/**
 * A summary alert. Its file, process and user fields are those of the first record of the first
 * group it announces (so a person reading it sees the new file), or of the window's first group.
 * The summary consumes the window's unannounced groups (up to SUMMARY_GROUPS).
 */
function summarise(w: Window, final: boolean): Alert {
  const fresh = w.unannounced.splice(0, SUMMARY_GROUPS);
  const all = [...w.groups.values()];
  const base = (fresh[0] ?? all[0]!).first;
  const update = w.updates++;
  const window = { start: iso(w.start), end: iso(w.end) };
  const id = w.summaryId!;
  const uuid = update === 0 ? id : summaryUuid(w, base, update);
  const { building_block_type: _bb, ...kalert } = base.kibana.alert as Alert['kibana']['alert'];
  const name = kalert.rule.name;
  const host = base.host?.name ?? 'this host';
  const head = final
    ? `final count: ${w.heldBack} alert(s) of rule ${name} on ${host} were held back between ${window.start} and ${window.end}`
    : `${w.heldBack} alert(s) of rule ${name} on ${host} held back so far in the window ${window.start} to ${window.end}`;
  const named = fresh.length > 0 ? `; new: ${fresh.map(describe).join('; ')}${w.unannounced.length > 0 ? `; ${w.unannounced.length} more new group(s) in the next update` : ''}` : '';
  const summary: SummaryFacts = {
    id,
    update,
    final,
    held_back: w.heldBack,
    window,
    new_groups: fresh.map(groupView),
    groups: all.slice(0, SUMMARY_GROUPS).map(groupView),
    groups_total: all.length,
  };
  // Events of `ldguard match` are arbitrary JSON: ldguard may be missing.
  const { held_back_by: _hb, ...ldguard } = base.ldguard ?? ({} as Alert['ldguard']);
  return {
    ...base,
    kibana: {
      alert: {
        ...kalert,
        uuid,
        reason: `${head} (max_signals ${w.rule.maxSignals} per ${kalert.rule.interval}); ${w.groups.size} group(s) by process.executable and file hash${named}. Search ldguard.held_back_by:${id} for every record.`,
        suppression: {
          terms: fresh[0]?.terms ?? all[0]!.terms,
          start: iso(w.firstHeld),
          end: iso(w.lastHeld),
          docs_count: w.heldBack,
        },
      },
    },
    ldguard: { ...ldguard, summary },
  };
}

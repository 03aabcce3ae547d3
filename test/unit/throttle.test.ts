// max_signals per rule, host and window (shared/throttle.ts), on data: every alert past the cap is
// still given back as a held-back record; summaries go out at the cap, on each new group (at most
// one per second) and at the window's end; a flood of one decoy cannot bury a different file.
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../shared/ecs.js';
import { SUMMARY_GROUPS, Throttle, UPDATE_EVERY_MS } from '../../shared/throttle.js';

const rule = { ruleId: 'r', intervalMs: 300_000, maxSignals: 3 };
const t0 = 1_800_000_000_000 - (1_800_000_000_000 % 300_000);

function alertFor(i: number, o: { host?: string; exe?: string; sha?: string; target?: string } = {}): Alert {
  return {
    host: { name: o.host ?? 'h1' },
    process: { executable: o.exe ?? '/usr/bin/cp' },
    file: { path: `/lib/ld-linux-${i}.so`, name: '', directory: '/lib', ...(o.target ? { type: 'symlink', target_path: o.target } : { hash: { sha256: o.sha ?? 'aa' } }) },
    event: { id: `e${i}` },
    kibana: { alert: { uuid: `u${i}`, original_time: new Date(t0).toISOString(), rule: { rule_id: 'r', name: 'R', interval: '5m' } } },
    ldguard: { attribution: 'live_proc', source: 'fanotify' },
  } as unknown as Alert;
}

const summaries = (out: Alert[]) => out.filter((a) => a.ldguard.summary);
const records = (out: Alert[]) => out.filter((a) => a.ldguard.held_back_by);

describe('Throttle: max_signals per rule, host and window', () => {
  it('passes max_signals alerts, then gives every later one back as a held-back record of the first summary', () => {
    const t = new Throttle();
    const out: Alert[] = [];
    for (let i = 0; i < 6; i++) out.push(...t.admit(alertFor(i), rule, t0 + i).out);
    expect(out.slice(0, 3).map((a) => a.kibana.alert.uuid)).toEqual(['u0', 'u1', 'u2']);
    expect(out.slice(0, 3).every((a) => a.ldguard.held_back_by === undefined && a.kibana.alert.building_block_type === undefined)).toBe(true);
    // The cap is reached at the 4th: its summary comes first, then the records pointing at it.
    const [first] = summaries(out);
    expect(out[3]).toBe(first);
    const id = first!.ldguard.summary!.id;
    expect(first!.kibana.alert.uuid).toBe(id);
    expect(records(out).map((a) => a.kibana.alert.uuid)).toEqual(['u3', 'u4', 'u5']);
    expect(records(out).every((a) => a.ldguard.held_back_by === id && a.kibana.alert.building_block_type === 'default')).toBe(true);
    expect(first!.kibana.alert.suppression).toEqual({
      terms: [{ field: 'process.executable', value: ['/usr/bin/cp'] }, { field: 'file.hash.sha256', value: ['aa'] }],
      start: new Date(t0 + 3).toISOString(),
      end: new Date(t0 + 3).toISOString(),
      docs_count: 1,
    });
    // Identical decoys open no new group: nothing is due before the window's end.
    expect(t.nextDue()).toBe(t0 + 300_000);
    expect(t.due(t0 + 299_999)).toEqual([]);
    const [final, ...more] = t.due(t0 + 300_000);
    expect(more).toEqual([]);
    expect(final!.ldguard.summary).toMatchObject({ id, update: 1, final: true, held_back: 3, groups_total: 1 });
    expect(final!.kibana.alert.suppression!.docs_count).toBe(3);
    expect(final!.kibana.alert.suppression!.end).toBe(new Date(t0 + 5).toISOString());
    expect(final!.kibana.alert.uuid).not.toBe(id); // its own uuid: the collector ignores a repeated one
    expect(t.nextDue()).toBeNull(); // nothing held back: no timer needed
    // A new window starts with a fresh budget.
    expect(t.admit(alertFor(7), rule, t0 + 300_001).heldBack).toBe(false);
  });

  it('names a different file behind a flood of one decoy in an update within a second', () => {
    const t = new Throttle();
    let now = t0;
    for (let i = 0; i < 200; i++) t.admit(alertFor(i), rule, now++);
    expect(t.due(now)).toEqual([]); // the decoys opened one group, announced by the first summary
    const odd = t.admit(alertFor(999, { exe: '/tmp/evil', sha: 'bb' }), rule, now);
    expect(odd.heldBack).toBe(true);
    const due = t.nextDue()!;
    expect(due - now).toBeLessThanOrEqual(UPDATE_EVERY_MS);
    t.admit(alertFor(1000), rule, now + 1);
    const [update] = t.due(due);
    expect(update!.file.path).toBe('/lib/ld-linux-999.so');
    expect(update!.kibana.alert.reason).toContain('/lib/ld-linux-999.so');
    expect(update!.ldguard.summary!.new_groups.map((g) => g.first.path)).toEqual(['/lib/ld-linux-999.so']);
    expect(update!.kibana.alert.suppression!.terms).toEqual([{ field: 'process.executable', value: ['/tmp/evil'] }, { field: 'file.hash.sha256', value: ['bb'] }]);
    expect(update!.ldguard.summary!.update).toBe(1);
    expect(update!.ldguard.summary!.held_back).toBe(199);
  });

  it('sends at most one update per second per rule and host, and queues groups past SUMMARY_GROUPS for the next', () => {
    const t = new Throttle();
    for (let i = 0; i < 3; i++) t.admit(alertFor(i), rule, t0);
    const opening = summaries(t.admit(alertFor(3, { sha: 's3' }), rule, t0).out);
    expect(opening).toHaveLength(1);
    for (let i = 4; i < 4 + SUMMARY_GROUPS + 5; i++) t.admit(alertFor(i, { sha: `s${i}` }), rule, t0 + 10);
    expect(t.nextDue()).toBe(t0 + UPDATE_EVERY_MS);
    expect(t.due(t0 + UPDATE_EVERY_MS - 1)).toEqual([]);
    const [u1] = t.due(t0 + UPDATE_EVERY_MS);
    expect(u1!.ldguard.summary!.new_groups).toHaveLength(SUMMARY_GROUPS);
    expect(t.nextDue()).toBe(t0 + 2 * UPDATE_EVERY_MS);
    const [u2] = t.due(t0 + 2 * UPDATE_EVERY_MS);
    expect(u2!.ldguard.summary!.new_groups).toHaveLength(5);
    expect(u2!.ldguard.summary!.groups_total).toBe(SUMMARY_GROUPS + 6);
    expect(new Set([opening[0], u1, u2].map((s) => s!.kibana.alert.uuid)).size).toBe(3);
    expect(new Set([opening[0], u1, u2].map((s) => s!.ldguard.summary!.id)).size).toBe(1);
  });

  it('groups symlinks by their target, and keeps one budget per host', () => {
    const t = new Throttle();
    for (let i = 0; i < 3; i++) t.admit(alertFor(i), rule, t0);
    const a = t.admit(alertFor(3, { target: '/tmp/x' }), rule, t0);
    expect(summaries(a.out)[0]!.kibana.alert.suppression!.terms[1]).toEqual({ field: 'file.target_path', value: ['/tmp/x'] });
    expect(t.admit(alertFor(4, { host: 'h2' }), rule, t0).heldBack).toBe(false);
  });

  it('never holds back an alert the caller marks, and it does not use up the budget', () => {
    const t = new Throttle();
    for (let i = 0; i < 3; i++) t.admit(alertFor(i), rule, t0);
    const loader = t.admit(alertFor(50), rule, t0 + 1, true);
    expect(loader).toEqual({ out: [alertFor(50)], heldBack: false });
    expect(t.admit(alertFor(51), rule, t0 + 2).heldBack).toBe(true);
  });

  it('gives the final summary of a window that a later alert replaced at the next due()', () => {
    const t = new Throttle();
    for (let i = 0; i < 5; i++) t.admit(alertFor(i), rule, t0);
    t.admit(alertFor(9), rule, t0 + 300_000);
    expect(t.nextDue()).toBe(0);
    const [final] = t.due(t0 + 300_000);
    expect(final!.ldguard.summary).toMatchObject({ final: true, held_back: 2 });
  });
});

// The storage quota for held-back records. An agent records every match past a rule's max_signals
// (shared/throttle.ts), so a hostile or flooded agent could otherwise fill the store with records
// that page no one. Each token may have `limit` of them accepted per collector run; past that they
// are acked (the agent goes on, and keeps them in its own alerts file), counted in /metrics and
// alerted once per notice window, but not stored. Alerts and summaries are never subject to it.
//
// Counted as received, resends included: the count bounds what a token can make the store hold,
// and an honest agent resends little. Kept in memory: a collector restart gives each token its
// quota again (it bounds the growth per run; the store's size is watched by its own pressure gauge).
export class HeldBackQuota {
  private readonly used = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Takes n from the token's quota when all n fit; otherwise takes nothing and returns false. */
  takeAll(token: string, n: number): boolean {
    const u = this.used.get(token) ?? 0;
    if (u + n > this.limit) return false;
    this.used.set(token, u + n);
    return true;
  }

  /** Takes one; false when the token's quota is used up. */
  take(token: string): boolean {
    return this.takeAll(token, 1);
  }
}

/** Whether an alert is a held-back record: ldguard.held_back_by, nested or dotted (Elasticsearch reads both as the field). */
export function isHeldBack(a: unknown): boolean {
  if (a === null || typeof a !== 'object') return false;
  const doc = a as Record<string, unknown>;
  const ldg = doc.ldguard;
  if (ldg !== null && typeof ldg === 'object' && (ldg as Record<string, unknown>).held_back_by !== undefined) return true;
  return Object.keys(doc).some((k) => k === 'ldguard.held_back_by' || k.startsWith('ldguard.held_back_by.'));
}

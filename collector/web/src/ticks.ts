// The y axis of a count chart: integer ticks in steps of 1, 2 or 5 × 10^k, from 0 to a top tick at
// or above the largest count. Pure (no DOM), so a unit test pins it: a max of 5 reads 0 1 2 3 4 5,
// never the 0 1 3 4 5 that quarters of a rounded-up maximum gave.

/** Ticks for counts up to `max`, at most `maxTicks` intervals (so maxTicks + 1 labels). */
export function niceTicks(max: number, maxTicks = 5): number[] {
  const top = Math.max(1, Math.ceil(Number.isFinite(max) ? max : 0));
  let step = 1;
  // The smallest 1/2/5 step that covers `top` in maxTicks intervals; never below 1: counts are whole.
  for (let p = 1; ; p *= 10) {
    const s = [1, 2, 5].map((m) => m * p).find((x) => Math.ceil(top / x) <= maxTicks);
    if (s !== undefined) {
      step = s;
      break;
    }
  }
  const n = Math.ceil(top / step);
  return Array.from({ length: n + 1 }, (_, i) => i * step);
}

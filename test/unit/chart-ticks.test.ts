// The overview chart's y axis (collector/web/src/ticks.ts): whole-number ticks in 1/2/5 × 10^k
// steps, the top one at or above the largest count.
import { describe, expect, it } from 'vitest';
import { niceTicks } from '../../collector/web/src/ticks.js';

describe('niceTicks', () => {
  it('reads 0 1 2 3 4 5 for a maximum of 5 (the issue: it read 0 1 3 4 5)', () => {
    expect(niceTicks(5)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('gives an axis for an empty chart', () => {
    expect(niceTicks(0)).toEqual([0, 1]);
  });

  it('uses 1, 2 or 5 × 10^k steps', () => {
    expect(niceTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(11)).toEqual([0, 5, 10, 15]);
    expect(niceTicks(100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(101)).toEqual([0, 50, 100, 150]);
    expect(niceTicks(4321)).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
  });

  it('keeps every tick an integer, evenly spaced, with the top at or above the max, for 0..20,000', () => {
    for (let max = 0; max <= 20_000; max++) {
      const t = niceTicks(max);
      const step = t[1]! - t[0]!;
      expect(t[0]).toBe(0);
      expect(t.at(-1)).toBeGreaterThanOrEqual(max);
      expect(t.length - 1).toBeLessThanOrEqual(5);
      // The top tick is the first multiple of the step at or above max: no empty interval on top.
      expect(t.at(-1)! - step).toBeLessThan(Math.max(1, max));
      expect(/^(1|2|5)0*$/.test(String(step))).toBe(true);
      t.forEach((x, i) => expect(x).toBe(i * step));
    }
  });
});

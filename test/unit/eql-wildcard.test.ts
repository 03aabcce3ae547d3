// The wildcard matcher against a plain reference implementation (property tests), plus the
// inputs that make backtracking matchers blow up.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileEql, compileWildcard } from '../../shared/eql/index.js';

/**
 * Reference: the textbook recursive definition of EQL wildcards over code points, memoised.
 * Case-insensitive mode lowercases both strings whole (the alphabet below has no characters whose
 * lowercase form changes length, where per-character and whole-string folding would differ).
 */
function referenceMatch(pattern: string, value: string, caseInsensitive: boolean): boolean {
  const p = Array.from(caseInsensitive ? pattern.toLowerCase() : pattern);
  const v = Array.from(caseInsensitive ? value.toLowerCase() : value);
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = i * (v.length + 1) + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    if (i === p.length) result = j === v.length;
    else if (p[i] === '*') result = go(i + 1, j) || (j < v.length && go(i, j + 1));
    else if (j === v.length) result = false;
    else result = (p[i] === '?' || p[i] === v[j]) && go(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}

// Small alphabet so that random patterns and values collide often: letters in both cases, a
// non-ASCII letter pair, path characters, the wildcards themselves (literal in values) and an
// astral character (two UTF-16 units, one character for `?`).
const ALPHABET = ['a', 'A', 'b', 'B', 'é', 'É', '/', '.', '*', '?', '\u{1F600}'];
const text = (maxLength: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength });

describe('compileWildcard', () => {
  for (const caseInsensitive of [false, true]) {
    it(`agrees with the reference matcher (${caseInsensitive ? 'case-insensitive' : 'case-sensitive'})`, () => {
      fc.assert(
        fc.property(text(8), text(12), (pattern, value) => {
          expect(compileWildcard(pattern, caseInsensitive)(value)).toBe(referenceMatch(pattern, value, caseInsensitive));
        }),
        { numRuns: 5000 },
      );
    });

    it(`agrees on values built to match the pattern (${caseInsensitive ? 'case-insensitive' : 'case-sensitive'})`, () => {
      // Random values rarely match long patterns; build matching-ish values by filling each
      // wildcard, then check both matchers agree (and usually say true).
      const filled = fc.tuple(text(8), fc.array(text(3), { minLength: 8, maxLength: 8 })).map(([pattern, fills]) => {
        let k = 0;
        const value = Array.from(pattern)
          .map((ch) => (ch === '*' ? fills[k++ % 8]! : ch === '?' ? 'b' : ch))
          .join('');
        return [pattern, value] as const;
      });
      fc.assert(
        fc.property(filled, ([pattern, value]) => {
          expect(compileWildcard(pattern, caseInsensitive)(value)).toBe(referenceMatch(pattern, value, caseInsensitive));
        }),
        { numRuns: 3000 },
      );
    });
  }

  it('matches the cases from the reference by hand', () => {
    expect(compileWildcard('/lib/ld-linux*.so*', true)('/LIB/LD-LINUX-X86-64.SO.2')).toBe(true);
    expect(compileWildcard('/lib/ld-linux*.so*', false)('/LIB/LD-LINUX-X86-64.SO.2')).toBe(false);
    expect(compileWildcard('*', false)('')).toBe(true);
    expect(compileWildcard('', false)('')).toBe(true);
    expect(compileWildcard('', false)('a')).toBe(false);
    expect(compileWildcard('?', false)('')).toBe(false);
    expect(compileWildcard('a**b', false)('ab')).toBe(true);
    expect(compileWildcard('a*', true)('A')).toBe(true);
    expect(compileWildcard('É*', true)('été')).toBe(true);
  });

  it('stays linear-ish on inputs that make backtracking regexes exponential', () => {
    // A regex such as /^.*a.*a.*a.*a.*a.*a.*a.*a.*b$/ takes exponential time here; the two-pointer
    // matcher does at most pattern × value steps. The suite's timeout catches a regression.
    const value = 'a'.repeat(20_000);
    expect(compileWildcard('*a*a*a*a*a*a*a*a*b', false)(value)).toBe(false);
    expect(compileWildcard('*a*a*a*a*a*a*a*a*b', true)(value.toUpperCase())).toBe(false);
    expect(compileWildcard('*a*a*a*a*a*a*a*a*a', false)(value)).toBe(true);
    expect(compileWildcard('*?*?*?*?*?*?*?*?*b', false)(value)).toBe(false);
    const q = compileEql('file where file.path like~ "*a*a*a*a*a*a*a*a*a*a*b"');
    expect(q.match({ event: { category: 'file' }, file: { path: `/${value}` } })).toBe(false);
  });
});

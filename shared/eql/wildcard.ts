// EQL wildcard matching (`like`, `like~`, `:`) and the case folding shared by the
// case-insensitive operators.
//
// Semantics (EQL syntax reference, "Wildcards"): `*` matches zero or more characters of any kind,
// `/` included; `?` matches exactly one character; the pattern must match the whole value; there is
// no escape, so a literal `*` or `?` cannot be expressed.
//
// File names are attacker-chosen, so the matcher must not backtrack exponentially (a regex built
// from `*a*a*a*b` does on "aaaa…"). It uses the greedy two-pointer glob algorithm: on a mismatch it
// only ever returns to the most recent `*`, which is enough because a later `*` can absorb
// anything an earlier one could. Worst case O(pattern × value), no allocation per call.
//
// A "character" for `?` is a Unicode code point, as in Lucene's wildcard query: `?` matches an
// emoji (two UTF-16 code units) in a file name as one character.

const STAR = -1;
const ONE = -2;

let foldTable: Uint16Array | undefined;

/**
 * Simple case folding, per UTF-16 code unit: a unit maps to its lowercase form when that form is a
 * single unit, otherwise to itself. Built once (65 536 entries) on first use so matching can fold
 * without allocating a lowercased copy of every value. Code points outside the BMP are not folded.
 */
export function caseFoldTable(): Uint16Array {
  if (foldTable !== undefined) return foldTable;
  const table = new Uint16Array(65536);
  for (let c = 0; c < 65536; c++) {
    const lower = String.fromCharCode(c).toLowerCase();
    table[c] = lower.length === 1 ? lower.charCodeAt(0) : c;
  }
  foldTable = table;
  return table;
}

/** Folds a whole string with the same table; for compile-time preparation only (it allocates). */
export function foldString(s: string): string {
  const table = caseFoldTable();
  let out = '';
  for (let i = 0; i < s.length; i++) out += String.fromCharCode(table[s.charCodeAt(i)]!);
  return out;
}

/** FNV-1a over the folded code units: lets `in~` find candidates without lowercasing the value. */
export function foldedHash(s: string, table: Uint16Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ table[s.charCodeAt(i)]!, 0x01000193);
  return h >>> 0;
}

/** True when `value` folds to `folded` (which was folded with the same table). */
export function foldedEquals(value: string, folded: string, table: Uint16Array): boolean {
  if (value.length !== folded.length) return false;
  for (let i = 0; i < value.length; i++) {
    if (table[value.charCodeAt(i)] !== folded.charCodeAt(i)) return false;
  }
  return true;
}

/** True when the string contains EQL wildcard characters. */
export function hasWildcard(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

/**
 * Compiles an EQL wildcard pattern once into a matcher. Case-insensitive matchers fold both sides
 * with {@link caseFoldTable}; the pattern is folded here, the value unit by unit while matching.
 */
export function compileWildcard(pattern: string, caseInsensitive: boolean): (value: string) => boolean {
  const fold = caseInsensitive ? caseFoldTable() : undefined;
  const units: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charCodeAt(i);
    if (c === 0x2a /* * */) {
      // `**` means the same as `*`; collapsing keeps the backtracking bound tight.
      if (units[units.length - 1] !== STAR) units.push(STAR);
    } else if (c === 0x3f /* ? */) {
      units.push(ONE);
    } else {
      units.push(fold === undefined ? c : fold[c]!);
    }
  }
  const p = Int32Array.from(units);

  if (!units.includes(STAR) && !units.includes(ONE)) {
    // No wildcard: plain (folded) equality.
    const literal = caseInsensitive ? foldString(pattern) : pattern;
    return fold === undefined ? (value) => value === literal : (value) => foldedEquals(value, literal, fold);
  }
  return (value) => globMatch(p, value, fold);
}

/** Length in code units of the code point starting at `i` (a valid surrogate pair counts 2). */
function codePointLength(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return 2;
  }
  return 1;
}

function globMatch(p: Int32Array, value: string, fold: Uint16Array | undefined): boolean {
  const pn = p.length;
  const vn = value.length;
  let pi = 0;
  let vi = 0;
  // Where the last `*` was seen and how much of the value it has absorbed so far.
  let starP = -1;
  let starV = 0;
  while (vi < vn) {
    if (pi < pn) {
      const pc = p[pi]!;
      if (pc === STAR) {
        starP = pi++;
        starV = vi;
        continue;
      }
      if (pc === ONE) {
        vi += codePointLength(value, vi);
        pi++;
        continue;
      }
      const vc = fold === undefined ? value.charCodeAt(vi) : fold[value.charCodeAt(vi)]!;
      if (pc === vc) {
        pi++;
        vi++;
        continue;
      }
    }
    if (starP < 0) return false;
    // Let the last `*` absorb one more character and retry the rest of the pattern from there.
    starV += codePointLength(value, starV);
    vi = starV;
    pi = starP + 1;
  }
  while (pi < pn && p[pi] === STAR) pi++;
  return pi === pn;
}

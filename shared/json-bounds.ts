// The shape bounds of a JSON text, checked on its bytes before anything parses or walks it.
//
// Why: JSON.parse accepts nesting 200,000 deep, but JSON.stringify, structuredClone, SQLite's JSON
// functions and every recursive walk give up far earlier (stringify throws RangeError at ~5,000,
// SQLite refuses past 1,000). A message that parses can therefore still take a process down, or be
// stored as a row that every later read fails on. One linear pass over the bytes, with no recursion
// and memory bounded by maxDepth, refuses such a text before any of those run.
//
// Contract: for a text that JSON.parse accepts, checkJsonBounds returns ok exactly when no object
// or array nests deeper than maxDepth, no object has more than maxKeys members, no array more than
// maxItems elements, and every number lies within ±(2^53−1). On a text that is not JSON it may
// answer either way (JSON.parse, run afterwards, words that error); it never throws.

export interface JsonBounds {
  maxDepth: number;
  maxKeys: number;
  maxItems: number;
}

export type BoundsResult = { ok: true } | { ok: false; error: string; at: number };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const MINUS = 0x2d;

function isNumberByte(b: number): boolean {
  // digits, '-', '+', '.', 'e', 'E'
  return (b >= 0x30 && b <= 0x39) || b === MINUS || b === 0x2b || b === 0x2e || b === 0x65 || b === 0x45;
}

/** Checks `text` (UTF-8 bytes, or a string) against `bounds`; the first bound broken, with its byte offset. */
export function checkJsonBounds(text: Buffer | string, bounds: JsonBounds): BoundsResult {
  const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const n = buf.length;
  // Per open container: is it an object, and how many commas it has seen (members − 1).
  const isObject = new Uint8Array(bounds.maxDepth + 1);
  const commas = new Int32Array(bounds.maxDepth + 1);
  let depth = 0;
  let i = 0;
  while (i < n) {
    const b = buf[i]!;
    if (b === QUOTE) {
      // Strings are skipped whole: nothing inside one is structure (an escape skips its next byte).
      i++;
      while (i < n) {
        const c = buf[i]!;
        if (c === BACKSLASH) i += 2;
        else if (c === QUOTE) break;
        else i++;
      }
      i++;
      continue;
    }
    if (b === OPEN_OBJECT || b === OPEN_ARRAY) {
      if (depth === bounds.maxDepth) return { ok: false, error: `nested deeper than ${bounds.maxDepth} levels`, at: i };
      depth++;
      isObject[depth] = b === OPEN_OBJECT ? 1 : 0;
      commas[depth] = 0;
    } else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
      if (depth > 0) depth--;
    } else if (b === COMMA) {
      if (depth > 0) {
        const members = ++commas[depth]! + 1;
        if (isObject[depth] === 1 && members > bounds.maxKeys) return { ok: false, error: `an object with more than ${bounds.maxKeys} keys`, at: i };
        if (isObject[depth] === 0 && members > bounds.maxItems) return { ok: false, error: `an array with more than ${bounds.maxItems} items`, at: i };
      }
    } else if (b === MINUS || (b >= 0x30 && b <= 0x39)) {
      const start = i;
      let exponent = false;
      for (; i < n && isNumberByte(buf[i]!); i++) if (buf[i] === 0x65 || buf[i] === 0x45) exponent = true;
      // Up to 15 characters without an exponent cannot leave ±(2^53−1) (16 digits): only longer
      // tokens, and ones with an exponent, are converted to be sure.
      if (exponent || i - start >= 16) {
        const token = buf.toString('latin1', start, i);
        if (!(Math.abs(Number(token)) <= Number.MAX_SAFE_INTEGER)) return { ok: false, error: `a number beyond ±(2^53−1): ${token.slice(0, 40)}`, at: start };
      }
      continue;
    }
    i++;
  }
  return { ok: true };
}

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
//
// The same pass can report where the elements of one top-level member's array lie (`elementsOf`):
// the collector stores each alert of a batch as the bytes the agent sent, and a second pass over
// every frame to find them cost as much as this one (~4.5 µs for a 2 kB alert here).

export interface JsonBounds {
  maxDepth: number;
  maxKeys: number;
  maxItems: number;
}

export type BoundsResult =
  | {
    ok: true;
    /**
     * With `elementsOf`: [start, end) byte offsets of each element of that top-level member's
     * array (the last such member, as JSON.parse keeps the last of duplicate keys); undefined when
     * there is none, or when its key is written with escapes.
     */
    elements?: number[];
  }
  | { ok: false; error: string; at: number };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

// What each byte is to the scan outside strings; 0 (everything else) is skipped.
const STRING = 1;
const OPEN = 2;
const CLOSE = 3;
const COMMA = 4;
const NUMBER = 5;
const SPACE = 6;
const CLASS = new Uint8Array(256);
CLASS[QUOTE] = STRING;
CLASS[0x7b] = OPEN;
CLASS[0x5b] = OPEN;
CLASS[0x7d] = CLOSE;
CLASS[0x5d] = CLOSE;
CLASS[0x2c] = COMMA;
for (let b = 0x30; b <= 0x39; b++) CLASS[b] = NUMBER;
CLASS[0x2d] = NUMBER;
for (const b of [0x20, 0x0a, 0x0d, 0x09]) CLASS[b] = SPACE;

function isNumberByte(b: number): boolean {
  // digits, '-', '+', '.', 'e', 'E'
  return (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2b || b === 0x2e || b === 0x65 || b === 0x45;
}

/** Checks `text` (UTF-8 bytes, or a string) against `bounds`; the first bound broken, with its byte offset. */
export function checkJsonBounds(text: Buffer | string, bounds: JsonBounds, opts: { elementsOf?: string } = {}): BoundsResult {
  const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const n = buf.length;
  // Per open container: is it an object, and how many commas it has seen (members − 1).
  const isObject = new Uint8Array(bounds.maxDepth + 1);
  const commas = new Int32Array(bounds.maxDepth + 1);
  // elementsOf: the key as it appears in the text, whether the last key at depth 1 was it, the
  // array being collected (at depth 2), and where its current element began.
  const key = opts.elementsOf === undefined ? undefined : Buffer.from(JSON.stringify(opts.elementsOf));
  let keyAtDepth1 = false;
  let expectKey = false;
  let collecting: number[] | undefined;
  let elementStart = -1;
  let elements: number[] | undefined;
  const endElement = (end: number) => {
    let e = end;
    while (e > elementStart && CLASS[buf[e - 1]!] === SPACE) e--;
    collecting!.push(elementStart, e);
    elementStart = -1;
  };
  let depth = 0;
  let i = 0;
  while (i < n) {
    const b = buf[i]!;
    const k = CLASS[b]!;
    if (k === SPACE) {
      i++;
      continue;
    }
    if (collecting && depth === 2 && elementStart < 0 && k !== CLOSE && k !== COMMA) elementStart = i;
    if (k === STRING) {
      // Strings are skipped whole: nothing inside one is structure (an escape skips its next byte).
      const start = i;
      i++;
      while (i < n) {
        const c = buf[i]!;
        if (c === QUOTE) break;
        i += c === BACKSLASH ? 2 : 1;
      }
      i++;
      if (key && depth === 1 && expectKey) {
        keyAtDepth1 = i - start === key.length && buf.compare(key, 0, key.length, start, i) === 0;
        expectKey = false;
      }
      continue;
    }
    if (k === OPEN) {
      if (depth === bounds.maxDepth) return { ok: false, error: `nested deeper than ${bounds.maxDepth} levels`, at: i };
      depth++;
      isObject[depth] = b === 0x7b ? 1 : 0;
      commas[depth] = 0;
      if (depth === 1) expectKey = true;
      else if (depth === 2 && keyAtDepth1 && b === 0x5b) {
        collecting = [];
        elementStart = -1;
      }
    } else if (k === CLOSE) {
      if (collecting && depth === 2) {
        if (elementStart >= 0) endElement(i);
        elements = collecting;
        collecting = undefined;
      }
      if (depth > 0) depth--;
    } else if (k === COMMA) {
      if (depth > 0) {
        const members = ++commas[depth]! + 1;
        if (isObject[depth] === 1 && members > bounds.maxKeys) return { ok: false, error: `an object with more than ${bounds.maxKeys} keys`, at: i };
        if (isObject[depth] === 0 && members > bounds.maxItems) return { ok: false, error: `an array with more than ${bounds.maxItems} items`, at: i };
        if (depth === 1) expectKey = true;
        else if (collecting && depth === 2 && elementStart >= 0) endElement(i);
      }
    } else if (k === NUMBER) {
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
  return elements ? { ok: true, elements } : { ok: true };
}

// Finds each alert's bytes inside a received alerts frame, so that the collector stores the
// document exactly as the agent sent it without serialising the parsed object again. Profiling the
// collector at 20,000 alerts/s put JSON.stringify, the UTF-8 encoding of its result and the garbage
// both leave at ~35 µs an alert on the event loop: more than parsing the frame. A slice of the
// frame costs a scan of its bytes (strings, most of them, are skipped with indexOf) and a copy.
//
// Contract: call it only on a frame JSON.parse accepted (so the text is valid JSON, and `ws` has
// checked it is valid UTF-8), with the number of alerts the parsed message has. It returns one
// slice per element of the top-level "alerts" array (the last such member, as JSON.parse keeps the
// last of duplicate keys), sharing the frame's memory, or undefined when anything is unexpected (a
// key written with escapes, a different count): the caller then serialises the parsed alerts.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const KEY = Buffer.from('"alerts"');

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** Index just past the string that starts at `at` (a quote). */
function skipString(buf: Buffer, at: number): number {
  let i = at + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, i);
    if (q < 0) return buf.length;
    // A quote preceded by an odd number of backslashes is escaped.
    let n = 0;
    while (buf[q - 1 - n] === BACKSLASH) n++;
    if (n % 2 === 0) return q + 1;
    i = q + 1;
  }
}

export function alertSlices(frame: Buffer, count: number): Buffer[] | undefined {
  let found: Buffer[] | undefined;
  let depth = 0;
  // At depth 1: whether the next string is a key (after '{' or ','), and whether the last key was "alerts".
  let expectKey = false;
  let keyIsAlerts = false;
  // The elements of an "alerts" array, while inside it (depth 2), and where the current one began.
  let collecting: Buffer[] | undefined;
  let elementStart = -1;
  for (let i = 0; i < frame.length; i++) {
    const b = frame[i]!;
    if (isSpace(b)) continue;
    if (collecting && depth === 2 && elementStart < 0 && b !== COMMA && b !== CLOSE_ARRAY) elementStart = i;
    switch (b) {
      case QUOTE: {
        const after = skipString(frame, i);
        if (depth === 1 && expectKey) {
          keyIsAlerts = after - i === KEY.length && frame.compare(KEY, 0, KEY.length, i, after) === 0;
          expectKey = false;
        }
        i = after - 1;
        break;
      }
      case OPEN_ARRAY:
        if (depth === 1 && keyIsAlerts) {
          collecting = [];
          elementStart = -1;
        }
        depth++;
        break;
      case OPEN_OBJECT:
        depth++;
        if (depth === 1) expectKey = true;
        break;
      case CLOSE_ARRAY:
      case CLOSE_OBJECT:
        if (collecting && depth === 2) {
          // The alerts array's `]`: its last element ends here (none when it is empty).
          if (elementStart >= 0) collecting.push(frame.subarray(elementStart, trimEnd(frame, elementStart, i)));
          found = collecting;
          collecting = undefined;
        }
        depth--;
        break;
      case COMMA:
        if (depth === 1) expectKey = true;
        else if (collecting && depth === 2) {
          collecting.push(frame.subarray(elementStart, trimEnd(frame, elementStart, i)));
          elementStart = -1;
        }
        break;
      default:
        break;
    }
  }
  return found && found.length === count ? found : undefined;
}

function trimEnd(buf: Buffer, start: number, end: number): number {
  let e = end;
  while (e > start && isSpace(buf[e - 1]!)) e--;
  return e;
}

// Paths whose bytes are not UTF-8. Linux names are bytes: an attacker can create
// "/lib64/ld-linux-x86-64.so.2\xff", which no JS string names (decoding writes U+FFFD). Such a
// path travels through the agent as a Buffer of its exact bytes, and every filesystem call on it
// takes that Buffer; every other path stays a string, so the common case costs nothing.
//
// What alerts carry is text (ECS strings are UTF-8): the path with each byte that is not part
// of a well-formed UTF-8 sequence written as \xNN (two lowercase hex digits), and, in those paths
// only, each backslash written as \x5c, so that every "\" of an escaped path begins an escape and
// the bytes can be recovered exactly. Well-formed paths are reported as they are (a literal
// backslash-x in one is rare and carries no flag); the event's ldguard.path_escaped tells which.
import { isUtf8 as nodeIsUtf8 } from 'node:buffer';
import { posix } from 'node:path';
import { toHostPath } from './watch-dirs.js';

/** A path on the agent's filesystem: a string, or a Buffer when its bytes are not UTF-8. */
export type FsPath = string | Buffer;

const SLASH = Buffer.from('/');

/** Length of the well-formed UTF-8 sequence starting at b[i] (RFC 3629), 0 if there is none. */
function seqLen(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
  if (n < 0 || i + n >= b.length) return 0; // not a lead byte, or cut short by the end
  // The second byte's range excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
  const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
  const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
  const c1 = b[i + 1]!;
  if (c1 < lo || c1 > hi) return 0;
  for (let k = 2; k <= n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  return n + 1;
}

/** Whether b is well-formed UTF-8 (and so a string names it exactly): Node's own check (simdutf,
 * the same RFC 3629 rules as seqLen), as the rescan asks it of every name in /usr/lib. */
export function isUtf8(b: Buffer): boolean {
  return nodeIsUtf8(b);
}

/** The path as text: itself when it is a string, else escaped as described above. */
export function displayPath(p: FsPath): string {
  if (typeof p === 'string') return p;
  let out = '';
  let start = 0;
  for (let i = 0; i < p.length; ) {
    const n = seqLen(p, i);
    if (n === 1 && p[i] !== 0x5c) {
      i++;
      continue;
    }
    if (n > 1) {
      i += n;
      continue;
    }
    out += p.toString('utf8', start, i) + '\\x' + p[i]!.toString(16).padStart(2, '0');
    start = ++i;
  }
  return out + p.toString('utf8', start);
}

/**
 * A map key for p, distinct for distinct byte paths: a string path is its own key; a byte path's
 * key starts with NUL, which no path contains, and holds one char per byte.
 */
export function pathKey(p: FsPath): string {
  return typeof p === 'string' ? p : '\0' + p.toString('latin1');
}

/** dir/name, a Buffer only when either part is. A byte path that turns out UTF-8 becomes a string. */
export function joinPath(dir: FsPath, name: FsPath): FsPath {
  if (typeof dir === 'string' && typeof name === 'string') return posix.join(dir, name);
  const d = typeof dir === 'string' ? Buffer.from(dir) : dir;
  const joined = Buffer.concat([d, ...(d.length > 0 && d[d.length - 1] === 0x2f ? [] : [SLASH]), typeof name === 'string' ? Buffer.from(name) : name]);
  return isUtf8(joined) ? joined.toString('utf8') : joined;
}

/** A name read as bytes (readdir with encoding 'buffer'): a string unless it is not UTF-8. */
export function fromBytes(b: Buffer): FsPath {
  return isUtf8(b) ? b.toString('utf8') : b;
}

/** The parent directory and last name of p, each a string unless it is not UTF-8. */
export function splitPath(p: FsPath): { dir: FsPath; name: FsPath } {
  if (typeof p === 'string') return { dir: posix.dirname(p), name: posix.basename(p) };
  const slash = p.lastIndexOf(0x2f);
  return { dir: fromBytes(slash <= 0 ? SLASH : p.subarray(0, slash)), name: fromBytes(p.subarray(slash + 1)) };
}

/** The path of an event's file: its exact bytes when the addon gave rawDir or rawName. */
export function eventPath(e: { dir: string; name: string; rawDir?: Buffer; rawName?: Buffer }): FsPath {
  return joinPath(e.rawDir ?? e.dir, e.rawName ?? e.name);
}

/** The host's view of a real path under realRoot (watch-dirs' toHostPath, on bytes too). */
export function hostPathOf(realRoot: string, real: FsPath): FsPath {
  if (typeof real === 'string') return toHostPath(realRoot, real);
  if (realRoot === '/') return real;
  const prefix = Buffer.from(realRoot + '/');
  return real.subarray(0, prefix.length).equals(prefix) ? real.subarray(realRoot.length) : real;
}

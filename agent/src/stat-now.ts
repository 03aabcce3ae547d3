// One lstat per path per turn of the event loop. Several steps look at a new file while its event
// is handled (the rescan dedupe, the wait for its write, the alert's file facts); on a quiet host
// each syscall on that path costs tens of µs of a latency budget measured in hundreds. A result is
// forgotten as soon as the current turn ends, so no step ever sees facts from an earlier moment.
// A path whose bytes are not UTF-8 is a Buffer (byte-path.ts), keyed by its bytes.
import { lstatSync, type Stats } from 'node:fs';
import { pathKey, type FsPath } from './byte-path.js';

const turn = new Map<string, Stats | null>();

/** lstat(2) of path, or null when it cannot be read (gone, say). */
export function lstatNow(path: FsPath): Stats | null {
  const key = pathKey(path);
  const hit = turn.get(key);
  if (hit !== undefined) return hit;
  let st: Stats | null;
  try {
    st = lstatSync(path);
  } catch {
    st = null;
  }
  if (turn.size === 0) queueMicrotask(() => turn.clear());
  turn.set(key, st);
  return st;
}

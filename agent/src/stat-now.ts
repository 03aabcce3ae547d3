// One lstat per path per turn of the event loop. Several steps look at a new file while its event
// is handled (the rescan dedupe, the wait for its write, the alert's file facts); on a quiet host
// each syscall on that path costs tens of µs of a latency budget measured in hundreds. A result is
// forgotten as soon as the current turn ends, so no step ever sees facts from an earlier moment.
import { lstatSync, type Stats } from 'node:fs';

const turn = new Map<string, Stats | null>();

/** lstat(2) of path, or null when it cannot be read (gone, say). */
export function lstatNow(path: string): Stats | null {
  const hit = turn.get(path);
  if (hit !== undefined) return hit;
  let st: Stats | null;
  try {
    st = lstatSync(path);
  } catch {
    st = null;
  }
  if (turn.size === 0) queueMicrotask(() => turn.clear());
  turn.set(path, st);
  return st;
}

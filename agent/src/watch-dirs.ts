// The directories to watch, resolved the way the host inside --root resolves them: a symlink's
// absolute target is taken inside the root, never on the agent's own filesystem, so a container
// root whose /lib points at /usr/lib is watched at ROOT/usr/lib, not at the agent's /usr/lib.
// On merged-/usr systems /lib and /usr/lib are one directory: it is watched once, under its real
// path, so one file gives one event.
import { lstatSync, realpathSync } from 'node:fs';
import { resolveInRoot } from './root-path.js';
import { posix } from 'node:path';

export interface WatchDir {
  /** The directory on the agent's filesystem (what the kernel marks). */
  real: string;
  /** The same directory as the host sees it (what alerts report). */
  host: string;
  /** The configured names that led here (e.g. /lib and /usr/lib). */
  aliases: string[];
}

/** A directory's real path on the agent's filesystem, resolved inside root; null when it does not exist (or is not a directory). */
export function resolveDirInRoot(root: string, hostPath: string): string | null {
  const real = resolvePathInRoot(root, hostPath);
  try {
    return real !== null && lstatSync(real).isDirectory() ? real : null;
  } catch {
    return null;
  }
}

/** A path's real place on the agent's filesystem, every symlink resolved inside root (the last one too); null when it does not exist. */
export function resolvePathInRoot(root: string, hostPath: string): string | null {
  const real = posix.join(root, resolveInRoot(root, hostPath));
  try {
    lstatSync(real);
    return real;
  } catch {
    return null;
  }
}

/** The distinct real directories behind the configured host paths, with their host names. */
export function resolveWatchDirs(root: string, hostPaths: readonly string[]): { dirs: WatchDir[]; missing: string[] } {
  const realRoot = realpathSync(root);
  const byReal = new Map<string, WatchDir>();
  const missing: string[] = [];
  for (const h of hostPaths) {
    const real = resolveDirInRoot(realRoot, h);
    if (!real) {
      missing.push(h);
      continue;
    }
    const existing = byReal.get(real);
    if (existing) existing.aliases.push(h);
    else byReal.set(real, { real, host: toHostPath(realRoot, real), aliases: [h] });
  }
  return { dirs: [...byReal.values()], missing };
}

/** The host's view of a path under the real root. */
export function toHostPath(realRoot: string, real: string): string {
  if (realRoot === '/') return real;
  if (real === realRoot) return '/';
  return real.startsWith(realRoot + '/') ? real.slice(realRoot.length) : real;
}

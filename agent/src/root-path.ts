// Host paths resolved the way the host inside --root resolves them: a symlink's absolute target is
// taken inside the root, never on the agent's own filesystem, and `..` stops at the root, as
// chroot(2) resolves. One resolver for the watched directories (watch-dirs.ts) and for the loader
// the root's binaries name (enrich/interp.ts).
import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';

const MAX_HOPS = 40; // as the kernel's ELOOP bound

/**
 * A host path resolved inside the root: every symlink followed (an absolute target starts again at
 * the root, `..` stops at it), the last component too unless `keepLast`. Returns the host path.
 */
export function resolveInRoot(root: string, hostPath: string, keepLast = false): string {
  let todo = hostPath.split('/').filter(Boolean);
  let done: string[] = [];
  let hops = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = `/${[...done, part].join('/')}`;
    if (keepLast && todo.length === 0) {
      done.push(part);
      break;
    }
    let target: string | undefined;
    try {
      if (lstatSync(posix.join(root, host)).isSymbolicLink()) target = readlinkSync(posix.join(root, host));
    } catch {
      // missing: the rest is taken as written
    }
    if (target === undefined) {
      done.push(part);
      continue;
    }
    if (++hops > MAX_HOPS) return host;
    if (target.startsWith('/')) done = [];
    todo = [...target.split('/').filter(Boolean), ...todo];
  }
  return `/${done.join('/')}`;
}


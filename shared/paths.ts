// Where the installed tree lives, whether we run from dist/ (built) or from source (vitest).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The folder holding ldguard's package.json: the checkout, or /opt/ldguard once installed. */
export function findRepoRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ldguard') {
      return (root = dir);
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('ldguard: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** The rules shipped with ldguard. */
export function bundledRulesDir(): string {
  return join(findRepoRoot(), 'shared', 'rules');
}

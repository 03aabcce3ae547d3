// Where the installed tree lives, whether we run from dist/ (built) or from source (vitest).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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

/** Revisions of Elastic's "Dynamic Linker (ld.so) Creation" that ldguard ships (shared/rules-upstream/README.md). */
export const RULE_REVISIONS = ['seed', 'v1', 'current'] as const;
export type RuleRevision = (typeof RULE_REVISIONS)[number];

/**
 * The bundled rules with one revision of Elastic's rule: the seed is shared/rules as it is; an
 * upstream revision replaces shared/rules/linux (the seed) and keeps ldguard's own rules. Never two
 * revisions at once: they share a rule_id, and the loader refuses the pair.
 */
export function bundledRulePaths(revision: RuleRevision): string[] {
  const dir = bundledRulesDir();
  if (revision === 'seed') return [dir];
  const others = readdirSync(dir)
    .filter((n) => n !== 'linux')
    .sort()
    .map((n) => join(dir, n));
  return [...others, join(findRepoRoot(), 'shared', 'rules-upstream', `defense_evasion_ld_so_creation.${revision}.toml`)];
}

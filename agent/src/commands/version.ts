// `ldguard version`: which ldguard, and which Node.js runs it (a release bundle's own, or the host's).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findRepoRoot } from '../../../shared/paths.js';
import { VERSION } from '../../../shared/version.js';

export async function run(_argv: string[]): Promise<number> {
  const bundle = join(findRepoRoot(), 'BUNDLE');
  const bundled = existsSync(bundle) && process.execPath === join(findRepoRoot(), 'bin', 'node');
  const floor = existsSync(bundle) ? /^floor (.*)$/m.exec(readFileSync(bundle, 'utf8'))?.[1] : undefined;
  process.stdout.write(
    `ldguard ${VERSION}\n` +
      `node ${process.version} (${bundled ? 'bundled' : 'the host\'s'}: ${process.execPath})\n` +
      (floor ? `runs on ${floor}\n` : ''),
  );
  return 0;
}

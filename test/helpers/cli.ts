// The built `ldguard` CLI for end-to-end tests. test/global-setup.ts builds dist/ once per run, so
// tests start the JavaScript the installed product runs.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findRepoRoot } from '../../shared/paths.js';

export const CLI = join(findRepoRoot(), 'dist/agent/src/cli.js');

/** Path of dist/agent/src/cli.js. */
export function cliPath(): string {
  return CLI;
}

/**
 * Makes the collector's database at `db` when it is not there yet (`ldguard db init`), as the
 * collector's first start would: token commands never create one.
 */
export function initDb(db: string): void {
  if (db.includes('://') || existsSync(db)) return;
  const r = spawnSync(process.execPath, [CLI, 'db', 'init', '--db', db], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldguard db init --db ${db} failed: ${r.stderr}`);
}

// The built `ldguard` CLI for end-to-end tests. test/global-setup.ts builds dist/ once per run, so
// tests start the JavaScript the installed product runs.
import { join } from 'node:path';
import { findRepoRoot } from '../../shared/paths.js';

export const CLI = join(findRepoRoot(), 'dist/agent/src/cli.js');

/** Path of dist/agent/src/cli.js. */
export function cliPath(): string {
  return CLI;
}

// The built `ldguard` CLI for end-to-end tests, rebuilt first when any source is newer than it, so a
// test never runs yesterday's code. One build at a time across test processes (a lock folder).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { findRepoRoot } from '../../shared/paths.js';

const ROOT = findRepoRoot();
const CLI = join(ROOT, 'dist/agent/src/cli.js');
const SOURCES = ['agent/src', 'collector/src', 'shared'];

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function stale(): boolean {
  if (!existsSync(CLI)) return true;
  const built = statSync(CLI).mtimeMs;
  return SOURCES.some((d) => existsSync(join(ROOT, d)) && newestSource(join(ROOT, d)) > built);
}

let checked = false;

/** Path of dist/agent/src/cli.js, built now if missing or older than the sources. */
export function cliPath(): string {
  if (checked) return CLI;
  if (stale()) {
    const lock = join(ROOT, 'dist', '.build-lock');
    mkdirSync(join(ROOT, 'dist'), { recursive: true });
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        mkdirSync(lock);
        break;
      } catch {
        // Another test process is building; a lock older than 3 minutes is left from a crash.
        if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 180_000) rmSync(lock, { recursive: true, force: true });
        if (Date.now() > deadline) throw new Error(`waited 3 minutes for ${lock}; remove it if no build runs`);
        execFileSync('sleep', ['0.2']);
      }
    }
    try {
      if (stale()) {
        try {
          // tsc still writes the JavaScript when another module has type errors; the typecheck
          // step of `npm test` reports those.
          execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
        } catch (err) {
          if (!existsSync(CLI)) throw err;
        }
      }
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
  checked = true;
  return CLI;
}

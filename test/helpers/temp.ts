// Temporary folders that outlive no test: each is removed when the test that made it ends, pass or
// fail; one made outside a test (a file's top level, a describe body, a beforeAll) when its file
// ends. Only test files use this: agent.ts and writers.ts are shared with the bench, which runs
// outside vitest, so they clean up after themselves instead.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished, TestRunner } from 'vitest';

const atFileEnd: Array<() => unknown> = [];

// Registered as this module loads, i.e. while the importing test file is being collected (vitest
// loads it afresh for each file), so it is the file's first afterAll and, after-hooks running as a
// stack, its last: the daemons and watchers the file's own hooks stop are gone before their folders.
afterAll(async () => {
  const errors: unknown[] = [];
  for (const fn of atFileEnd.splice(0).reverse()) {
    try {
      await fn();
    } catch (e) {
      errors.push(e); // the other steps still run
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'test cleanup failed');
});

/**
 * Runs `fn` when the current test ends (after its afterEach hooks), pass or fail; outside a test,
 * when the file ends. Steps run in the reverse order of registration, so stop a process registered
 * after its folder before the folder goes.
 */
export function whenDone(fn: () => unknown): void {
  if (TestRunner.getCurrentTest()) onTestFinished(async () => void (await fn()));
  else atFileEnd.push(fn);
}

/** Removes `path` and all in it when done (see whenDone); returns `path`. */
export function removeWhenDone(path: string): string {
  // The retries cover a child killed just before, still closing files in it (ENOTEMPTY).
  whenDone(() => rmSync(path, { recursive: true, force: true, maxRetries: 5 }));
  return path;
}

/** A new folder under the system's temporary directory, removed when done (see whenDone). */
export function tempDir(prefix: string): string {
  return removeWhenDone(mkdtempSync(join(tmpdir(), prefix)));
}

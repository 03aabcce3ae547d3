// Tests that start the real CLI (agent, collector, match, tail) run the built JavaScript in dist/,
// as the installed product does. Build it once per test run so it is never stale
// (LDGUARD_TEST_NO_BUILD=1 skips this when dist/ was just built by hand).
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  if (process.env.LDGUARD_TEST_NO_BUILD === '1') return;
  // As `npm run build`: the server side, then the dashboard page's scripts.
  for (const project of ['tsconfig.build.json', 'collector/web/tsconfig.json']) {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', project], { stdio: 'inherit' });
  }
}

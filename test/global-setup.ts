// Tests that start the real CLI (agent, collector, match, tail) run the built JavaScript in dist/,
// as the installed product does. Build it once per test run so it is never stale.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}

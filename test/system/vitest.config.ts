// `npm run test:system`: the system test alone. It boots a Debian machine and installs ldguard in
// it twice (9 to 11.5 minutes with the Debian root to build, 4 to 7.5 once it is cached), so the
// default `npm test` leaves it out (vitest.config.ts); test/system/README.md says why and how.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/system/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 5 * 60_000,
    hookTimeout: 25 * 60_000,
    // Timings and unit scores are printed from the test: show them.
    silent: false,
  },
});

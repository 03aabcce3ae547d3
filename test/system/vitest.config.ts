// `npm run test:system`: the system test alone. It boots a Debian machine and installs ldguard in
// it twice (7 to 11 minutes), so the default `npm test` leaves it out (see vitest.config.ts).
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

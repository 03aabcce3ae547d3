import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The system test boots a Debian machine under systemd-nspawn and installs ldguard in it:
    // `npm run test:system` (test/system/vitest.config.ts).
    exclude: [...configDefaults.exclude, 'test/system/**'],
    globalSetup: ['test/global-setup.ts'],
    // Kernel and end-to-end tests start real processes and watch real directories: one file at a
    // time keeps their timing honest on a 2-core machine.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});

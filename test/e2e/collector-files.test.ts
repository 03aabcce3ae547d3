// F11: what the collector leaves on disk beside its database must be as private as the database.
// Outside systemd (no UMask=0077) a collector started from a shell has umask 022: every file it
// creates in the database's folder, SQLite's -wal and -shm files and the dashboard's search index
// included, must still be 0600, readable by nobody else.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/delivery.js';
import { startDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';

describe('files the collector creates', () => {
  it.each([
    ['a new folder', false],
    ['a folder where an older version left the search index 0644', true],
  ])('are all 0600 in a 0700 folder, under umask 022: %s', async (_, old) => {
    const dir = join(tempDir('ldg-files-'), 'db');
    if (old) {
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, 'collector.search.db'), '', { mode: 0o644 });
    }
    const db = join(dir, 'collector.db');
    const collector = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db], { readyMs: 15_000, umask: 0o022 });
    try {
      // The search index is opened by its worker thread just after ready.
      await waitFor(() => existsSync(join(dir, 'collector.search.db-wal')), 10_000, 'the search index to be open');
      const files = readdirSync(dir);
      expect(files).toEqual(expect.arrayContaining(['collector.db', 'collector.db-wal', 'collector.search.db', 'collector.hosts.db']));
      const modes = Object.fromEntries(files.map((f) => [f, (statSync(join(dir, f)).mode & 0o777).toString(8)]));
      expect(modes).toEqual(Object.fromEntries(files.map((f) => [f, '600'])));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
    } finally {
      await collector.stop();
    }
  });
});

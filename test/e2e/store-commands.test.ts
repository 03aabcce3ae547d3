// The store commands as an operator meets them (issue 23): `ldguard token` finds the collector's
// database through its config, never makes one where none is, and leaves nothing root's in the
// folder of a collector that runs as another user; `ldguard db backup` copies a database while it is
// written, 0600.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CLI, initDb } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('ldguard token and ldguard db', () => {
  it('refuses a database that is not there, naming the fix, and makes none', () => {
    const db = join(tempDir('ldg-nodb-'), 'collector.db');
    const r = cli(['token', 'list', '--db', db]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('LDG_ERR_NO_DATABASE');
    expect(r.stderr).toContain('ldguard db init');
    expect(existsSync(db)).toBe(false);
  });

  it('reads db from the collector config (a relative path, relative to the file)', () => {
    const dir = tempDir('ldg-cfgdb-');
    writeFileSync(join(dir, 'collector.toml'), 'listen = "127.0.0.1:8750"\ndb = "data/c.db"\ntls_cert = "tls_missing.pem"\ntls_key = "tls_missing.key"\n');
    expect(cli(['db', 'init', '--config', join(dir, 'collector.toml')]).status).toBe(0);
    expect(existsSync(join(dir, 'data/c.db'))).toBe(true);
    const made = cli(['token', 'create', '--config', join(dir, 'collector.toml'), '--name', 'web-1']);
    expect(made.status, made.stderr).toBe(0);
    expect(cli(['token', 'list', '--json', '--db', join(dir, 'data/c.db')]).stdout).toContain('"name":"web-1"');
  });

  it.skipIf(!isRoot)('leaves every file of a database owned by another user that user\'s (skipped: chown needs root)', () => {
    const dir = tempDir('ldg-owner-');
    const db = join(dir, 'ldguard.db');
    initDb(db);
    // The collector's dynamic user, as systemd would give it the state directory.
    for (const f of readdirSync(dir)) chownSync(join(dir, f), 61234, 61234);
    chownSync(dir, 61234, 61234);
    // A reader holding the database open keeps SQLite's -wal and -shm in place while root works.
    const holder = new Database(db);
    holder.pragma('journal_mode = WAL');
    try {
      expect(cli(['token', 'create', '--db', db, '--name', 'web-2']).status).toBe(0);
      expect(cli(['token', 'list', '--db', db]).status).toBe(0);
      const files = readdirSync(dir);
      expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
      for (const f of files) expect([f, statSync(join(dir, f)).uid]).toEqual([f, 61234]);
    } finally {
      holder.close();
    }
  });

  it('backs a database up while it is open, 0600, and never over a file; PostgreSQL is pg_dump\'s', () => {
    const dir = tempDir('ldg-backup-');
    const db = join(dir, 'ldguard.db');
    initDb(db);
    expect(cli(['token', 'create', '--db', db, '--name', 'web-3']).status).toBe(0);
    const writer = new Database(db);
    try {
      const to = join(dir, 'copy.db');
      const r = cli(['db', 'backup', '--db', db, '--to', to]);
      expect(r.status, r.stderr).toBe(0);
      expect((statSync(to).mode & 0o777).toString(8)).toBe('600');
      const copy = new Database(to, { readonly: true });
      expect((copy.prepare('SELECT name FROM tokens').all() as Array<{ name: string }>).map((t) => t.name)).toContain('web-3');
      copy.close();
      expect(cli(['db', 'backup', '--db', db, '--to', to]).stderr).toMatch(/exists already/);
    } finally {
      writer.close();
    }
    expect(cli(['db', 'backup', '--db', 'postgres://u@h/db', '--to', join(dir, 'x')]).stderr).toMatch(/pg_dump/);
  });
});

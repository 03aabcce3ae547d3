// Dashboard authentication against a real collector database, SQLite and a throwaway PostgreSQL
// cluster alike: scrypt passwords, sessions stored hashed that expire and die with their token, the
// append-only audit log, and login rate limits.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AUTH_DEFAULTS, Auth, LoginLimiter, checkPasswordStrength, hashPassword, verifyPassword } from '../../collector/src/auth.js';
import { PostgresCredentials } from '../../collector/src/credentials/postgres.js';
import { SqliteCredentials } from '../../collector/src/credentials/sqlite.js';
import { PostgresStore } from '../../collector/src/store/postgres.js';
import { SqliteStore } from '../../collector/src/store/sqlite.js';
import type { Store } from '../../collector/src/store/store.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

describe('password hashing', () => {
  it('verifies the password it hashed, with a salt of its own each time', async () => {
    const a = await hashPassword('correct horse battery staple');
    const b = await hashPassword('correct horse battery staple');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('horse');
    expect(await verifyPassword('correct horse battery staple', a)).toBe(true);
    expect(await verifyPassword('correct horse battery stapl', a)).toBe(false);
    expect(await verifyPassword('x', 'not a hash')).toBe(false);
  });

  it('refuses short passwords and ones padded with spaces', () => {
    expect(checkPasswordStrength('short')).toMatch(/at least 12/);
    expect(checkPasswordStrength(' twelve chars ok')).toMatch(/white space/);
    expect(checkPasswordStrength('a long enough passphrase')).toBeUndefined();
  });
});

/** One backend's store, an Auth over its credentials, and the raw rows a test may look at. */
interface Backend {
  store: Store;
  auth: Auth;
  /** Rows of a query on the database itself (SQL written for both engines). */
  rows: (sql: string) => Promise<Array<Record<string, unknown>>>;
  close: () => Promise<void>;
}

const noPostgres = postgresUnavailable();
let cluster: TestPostgres | undefined;
let dbs = 0;

async function open(kind: 'sqlite' | 'postgres'): Promise<Backend> {
  if (kind === 'sqlite') {
    const store = SqliteStore.open(join(tempDir('ldg-web-auth-'), 'c.db'));
    const db = new Database(store.path);
    return {
      store, auth: new Auth(new SqliteCredentials(db)),
      rows: async (sql) => {
        const st = db.prepare(sql);
        if (st.reader) return st.all() as Array<Record<string, unknown>>;
        st.run();
        return [];
      },
      close: async () => {
        db.close();
        await store.close();
      },
    };
  }
  const store = await PostgresStore.open(await cluster!.createDb(`auth${++dbs}`));
  const pool = store.newPool('ldguard-test', 2);
  return {
    store, auth: new Auth(new PostgresCredentials(pool)),
    rows: async (sql) => (await pool.query(sql)).rows as Array<Record<string, unknown>>,
    close: async () => {
      await pool.end();
      await store.close();
    },
  };
}

describe.each(['sqlite', 'postgres'] as const)('Auth on %s', (kind) => {
  let b: Backend;
  let store: Store;
  let auth: Auth;
  let adminToken: string;

  beforeAll(async () => {
    // Once for the file: a cluster started inside a test would be stopped when that test ends.
    if (kind === 'postgres' && !noPostgres) cluster ??= await startPostgres();
  }, 60_000);

  beforeEach(async (ctx) => {
    if (kind === 'postgres' && noPostgres) return ctx.skip(noPostgres);
    b = await open(kind);
    ({ store, auth } = b);
    adminToken = await store.createToken('alice', 'admin');
    await store.createToken('host-1', 'agent');
  }, 60_000);

  afterEach(async () => {
    await b?.close();
    b = undefined as unknown as Backend;
  });

  it('accepts only active admin tokens', async () => {
    expect((await auth.checkToken(adminToken))?.name).toBe('alice');
    expect(await auth.checkToken('ldg_wrong')).toBeUndefined();
    const agentToken = await store.createToken('host-2', 'agent');
    expect(await auth.checkToken(agentToken)).toBeUndefined();
    await store.revokeToken('alice');
    expect(await auth.checkToken(adminToken)).toBeUndefined();
  });

  it('sets a password only for an active admin name and checks it', async () => {
    await expect(auth.setPassword('host-1', 'a long enough passphrase')).rejects.toThrow(/LDG_ERR_PASSWD_NAME/);
    await expect(auth.setPassword('alice', 'short')).rejects.toThrow(/LDG_ERR_PASSWD_WEAK/);
    await auth.setPassword('alice', 'a long enough passphrase');
    expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
    expect(await auth.checkPassword('alice', 'a long enough passphrasE')).toBeUndefined();
    expect(await auth.checkPassword('nobody', 'a long enough passphrase')).toBeUndefined();
    // Rotating keeps the password (it follows the row); revoking disables it.
    await store.rotateToken('alice');
    expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
    await store.revokeToken('alice');
    expect(await auth.checkPassword('alice', 'a long enough passphrase')).toBeUndefined();
  });

  it('keeps sessions hashed, ends them on logout, expiry, idleness, rotation and revocation', async () => {
    const admin = (await auth.checkToken(adminToken))!;
    const t0 = Date.now();
    const { cookie, session } = await auth.createSession(admin, t0);
    expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect((await auth.session(cookie, t0 + 1000))?.name).toBe('alice');
    expect(await auth.session(`${cookie}x`, t0)).toBeUndefined();
    // The database holds no cookie value, only its hash.
    const stored = JSON.stringify(await b.rows('SELECT * FROM web_sessions'));
    expect(stored).toContain(createHash('sha256').update(cookie).digest('hex'));
    expect(stored).not.toContain(cookie);
    // Idle too long.
    expect(await auth.session(cookie, t0 + AUTH_DEFAULTS.sessionIdleMs + 1)).toBeUndefined();
    expect(await auth.session(cookie, t0 + 1000)).toBeUndefined(); // deleted, not just refused
    // Past the absolute limit, even if used all along.
    const s2 = await auth.createSession(admin, t0);
    for (let t = t0; t < t0 + AUTH_DEFAULTS.sessionMaxMs; t += AUTH_DEFAULTS.sessionIdleMs / 2) expect(await auth.session(s2.cookie, t)).toBeDefined();
    expect(await auth.session(s2.cookie, t0 + AUTH_DEFAULTS.sessionMaxMs)).toBeUndefined();
    // Logout.
    const c = await auth.createSession(admin, t0);
    await auth.endSession(c.cookie);
    expect(await auth.session(c.cookie, t0)).toBeUndefined();
    // Rotating the admin token ends its sessions.
    const d = await auth.createSession(admin, Date.now());
    const rotated = (await store.rotateToken('alice'))!;
    expect(await auth.session(d.cookie)).toBeUndefined();
    // Revoking it too.
    const e = await auth.createSession((await auth.checkToken(rotated.token))!, Date.now());
    expect(await auth.session(e.cookie)).toBeDefined();
    await store.revokeToken('alice');
    expect(await auth.session(e.cookie)).toBeUndefined();
    expect(await b.rows('SELECT * FROM web_sessions')).toEqual([]);
  });

  it('ends the sessions of a name whose password changes', async () => {
    await auth.setPassword('alice', 'a long enough passphrase');
    const { cookie } = await auth.createSession((await auth.checkToken(adminToken))!);
    await auth.setPassword('alice', 'another long passphrase');
    expect(await auth.session(cookie)).toBeUndefined();
  });

  it('keeps an audit log that refuses changes: passwd and logins in order, no secret', async () => {
    await auth.setPassword('alice', 'a long enough passphrase', 'cli:root');
    const admin = await auth.checkPassword('alice', 'a long enough passphrase');
    await auth.recordLogin({ from: '10.0.0.1', how: 'password', admin, name: 'alice' });
    await auth.recordLogin({ from: '10.0.0.2', how: 'password', admin: undefined, name: 'a long enough passphrase' });
    await auth.recordLogin({ from: '10.0.0.3', how: 'token', admin: undefined, token: adminToken.slice(0, -1) });
    const log = await auth.audit.list();
    expect(log.map((r) => [r.actor, r.action, r.tokenName])).toEqual([
      ['cli:root', 'passwd', 'alice'], ['web:10.0.0.1', 'login', 'alice'], ['web:10.0.0.2', 'login-failed', null], ['web:10.0.0.3', 'login-failed', null],
    ]);
    expect(JSON.stringify(log)).not.toMatch(/passphrase|ldg_/);
    await expect(b.rows('DELETE FROM audit_log')).rejects.toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
    await expect(b.rows("UPDATE audit_log SET actor = 'someone else'")).rejects.toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
    if (kind === 'postgres') await expect(b.rows('TRUNCATE audit_log')).rejects.toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
    expect(await auth.audit.list()).toHaveLength(4);
  });
});

describe('a password belongs to one admin token, not to its name', () => {
  it('dies with its token: a token re-created under the same name does not inherit it', async () => {
    const store = SqliteStore.open(join(tempDir('ldg-web-auth-'), 'c.db'));
    const db = new Database(store.path);
    try {
      const auth = new Auth(new SqliteCredentials(db));
      await store.createToken('admin', 'admin');
      await auth.setPassword('admin', 'a long enough passphrase');
      await store.revokeToken('admin');
      await store.createToken('admin', 'admin');
      expect(await auth.checkPassword('admin', 'a long enough passphrase')).toBeUndefined();
      // Revoking deleted it; it is not merely unreachable.
      expect(db.prepare('SELECT count(*) AS n FROM web_passwords').get()).toEqual({ n: 0 });
    } finally {
      db.close();
      await store.close();
    }
  });

  it('migrates passwords kept by name: each goes to the active admin token it was set for, or is dropped', async () => {
    const store = SqliteStore.open(join(tempDir('ldg-web-auth-'), 'c.db'));
    const db = new Database(store.path);
    try {
      const t0 = Date.now() - 60_000;
      await store.createToken('alice', 'admin', t0); // password set after: kept
      await store.createToken('bob', 'admin', t0);
      await store.revokeToken('bob', t0 + 1000);
      await store.createToken('bob', 'admin', t0 + 3000); // password set for the old bob (t0 + 2000): dropped
      await store.createToken('carol', 'admin', t0);
      await store.revokeToken('carol', t0 + 5000); // no active token: dropped
      await store.createToken('host-1', 'agent', t0); // not an admin: dropped
      // The shape web_passwords had before passwords were bound to tokens.
      db.exec('CREATE TABLE web_passwords (name TEXT PRIMARY KEY, hash TEXT NOT NULL, updated INTEGER NOT NULL)');
      const put = db.prepare('INSERT INTO web_passwords (name, hash, updated) VALUES (?, ?, ?)');
      const pw = await hashPassword('a long enough passphrase');
      put.run('alice', pw, t0 + 1000);
      put.run('bob', pw, t0 + 2000);
      put.run('carol', pw, t0 + 2000);
      put.run('host-1', pw, t0 + 2000);

      const auth = new Auth(new SqliteCredentials(db));
      expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
      expect(await auth.checkPassword('bob', 'a long enough passphrase')).toBeUndefined();
      expect(await auth.checkPassword('carol', 'a long enough passphrase')).toBeUndefined();
      expect(await auth.checkPassword('host-1', 'a long enough passphrase')).toBeUndefined();
      expect(db.prepare('SELECT count(*) AS n FROM web_passwords').get()).toEqual({ n: 1 });
      // Run again (another process opening the same database): nothing changes.
      new SqliteCredentials(db);
      expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
    } finally {
      db.close();
      await store.close();
    }
  });
});

describe('LoginLimiter', () => {
  it('allows a burst per address, then one attempt per refill, and caps everyone together', () => {
    const t0 = 1_000_000;
    const l = new LoginLimiter(AUTH_DEFAULTS, t0);
    for (let i = 0; i < AUTH_DEFAULTS.loginPerAddressBurst; i++) expect(l.take('10.0.0.1', t0)).toBe(0);
    const wait = l.take('10.0.0.1', t0);
    expect(wait).toBeGreaterThan(0);
    expect(l.take('10.0.0.2', t0)).toBe(0); // another address is not held back
    expect(l.take('10.0.0.1', t0 + wait * 1000)).toBe(0);
    // Many addresses together hit the global bucket.
    let refused = 0;
    for (let i = 0; i < AUTH_DEFAULTS.loginGlobalBurst + 10; i++) if (l.take(`10.1.${i >> 8}.${i & 255}`, t0 + wait * 1000) > 0) refused++;
    expect(refused).toBeGreaterThan(0);
  });
});

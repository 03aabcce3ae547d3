// Dashboard authentication against a real collector database: scrypt passwords, sessions stored
// hashed that expire and die with their token, and login rate limits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUTH_DEFAULTS, Auth, LoginLimiter, checkPasswordStrength, hashPassword, verifyPassword } from '../../collector/src/auth.js';
import { SqliteStore as Store } from '../../collector/src/store/sqlite.js';
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

describe('Auth', () => {
  let dir: string;
  let store: Store;
  let db: Database.Database;
  let auth: Auth;
  let adminToken: string;

  beforeEach(async () => {
    dir = tempDir('ldg-web-auth-');
    store = Store.open(join(dir, 'c.db'));
    adminToken = await store.createToken('alice', 'admin');
    await store.createToken('host-1', 'agent');
    db = new Database(store.path);
    auth = new Auth(db);
  });

  afterEach(async () => {
    db.close();
    await store.close();
  });

  it('accepts only active admin tokens', async () => {
    expect(auth.checkToken(adminToken)?.name).toBe('alice');
    expect(auth.checkToken('ldg_wrong')).toBeUndefined();
    const agentToken = await store.createToken('host-2', 'agent');
    expect(auth.checkToken(agentToken)).toBeUndefined();
    await store.revokeToken('alice');
    expect(auth.checkToken(adminToken)).toBeUndefined();
  });

  it('sets a password only for an active admin name and checks it', async () => {
    await expect(auth.setPassword('host-1', 'a long enough passphrase')).rejects.toThrow(/LDG_ERR_PASSWD_NAME/);
    await expect(auth.setPassword('alice', 'short')).rejects.toThrow(/LDG_ERR_PASSWD_WEAK/);
    await auth.setPassword('alice', 'a long enough passphrase');
    expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
    expect(await auth.checkPassword('alice', 'a long enough passphrasE')).toBeUndefined();
    expect(await auth.checkPassword('nobody', 'a long enough passphrase')).toBeUndefined();
    // Revoking the token disables its password.
    await store.revokeToken('alice');
    expect(await auth.checkPassword('alice', 'a long enough passphrase')).toBeUndefined();
  });

  it('keeps sessions hashed, ends them on logout, expiry, idleness and revocation', async () => {
    const admin = auth.checkToken(adminToken)!;
    const t0 = Date.now();
    const { cookie, session } = auth.createSession(admin, t0);
    expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(auth.session(cookie, t0 + 1000)?.name).toBe('alice');
    expect(auth.session(`${cookie}x`, t0)).toBeUndefined();
    // The database holds no cookie value, only its hash.
    db.pragma('wal_checkpoint(TRUNCATE)');
    expect(readFileSync(store.path).includes(Buffer.from(cookie))).toBe(false);
    // Idle too long.
    expect(auth.session(cookie, t0 + AUTH_DEFAULTS.sessionIdleMs + 1)).toBeUndefined();
    expect(auth.session(cookie, t0 + 1000)).toBeUndefined(); // deleted, not just refused
    // Past the absolute limit, even if used all along.
    const b = auth.createSession(admin, t0);
    for (let t = t0; t < t0 + AUTH_DEFAULTS.sessionMaxMs; t += AUTH_DEFAULTS.sessionIdleMs / 2) expect(auth.session(b.cookie, t)).toBeDefined();
    expect(auth.session(b.cookie, t0 + AUTH_DEFAULTS.sessionMaxMs)).toBeUndefined();
    // Logout.
    const c = auth.createSession(admin, t0);
    auth.endSession(c.cookie);
    expect(auth.session(c.cookie, t0)).toBeUndefined();
    // Revoking the admin token ends its sessions.
    const d = auth.createSession(admin, Date.now());
    await store.revokeToken('alice');
    expect(auth.session(d.cookie)).toBeUndefined();
  });

  it('ends the sessions of a name whose password changes', async () => {
    await auth.setPassword('alice', 'a long enough passphrase');
    const { cookie } = auth.createSession(auth.checkToken(adminToken)!);
    await auth.setPassword('alice', 'another long passphrase');
    expect(auth.session(cookie)).toBeUndefined();
  });
});

describe('a password belongs to one admin token, not to its name', () => {
  it('dies with its token: a token re-created under the same name does not inherit it', async () => {
    const store = Store.open(join(tempDir('ldg-web-auth-'), 'c.db'));
    const db = new Database(store.path);
    try {
      const auth = new Auth(db);
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
    const store = Store.open(join(tempDir('ldg-web-auth-'), 'c.db'));
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

      const auth = new Auth(db);
      expect((await auth.checkPassword('alice', 'a long enough passphrase'))?.name).toBe('alice');
      expect(await auth.checkPassword('bob', 'a long enough passphrase')).toBeUndefined();
      expect(await auth.checkPassword('carol', 'a long enough passphrase')).toBeUndefined();
      expect(await auth.checkPassword('host-1', 'a long enough passphrase')).toBeUndefined();
      expect(db.prepare('SELECT count(*) AS n FROM web_passwords').get()).toEqual({ n: 1 });
      // Run again (another process opening the same database): nothing changes.
      new Auth(db);
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

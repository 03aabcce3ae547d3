// Who may use the dashboard: people holding an active admin token, or the password that
// `ldguard token passwd` set for an admin token's name. Contracts:
//
// - Passwords are stored as scrypt(N=2^15, r=8, p=1) with a random 16-byte salt per name, never in
//   clear; verification runs scrypt off the event loop (libuv's pool) and compares in constant time.
//   An unknown name costs the same scrypt as a known one, so timing does not tell names apart.
// - A session is a random 256-bit cookie value; the database keeps only its SHA-256 (a stolen
//   database opens no session), the admin token it stands for, a CSRF token, and two deadlines: an
//   absolute one and an idle one. Revoking the admin token ends its sessions at their next request.
// - Login attempts are rate-limited per client address and overall (token buckets) before any
//   scrypt runs, so guessing is slow and a flood of logins cannot starve the collector's CPU.
//
// Tables live in the collector's database (created here, IF NOT EXISTS): web_passwords and
// web_sessions. This module writes them on the main thread's own connection; they are small and
// rare writes, like the token table's.
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type Database from 'better-sqlite3';
import { LdgError } from '../../shared/errors.js';
import { hashToken, type TokenInfo } from './store/sqlite.js';

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 1024;

/** Defaults, each visible here; the collector uses them as they are. */
export const AUTH_DEFAULTS = {
  sessionMaxMs: 12 * 3600_000, // a session ends this long after login, used or not
  sessionIdleMs: 60 * 60_000, // ... or after this long without a request
  touchEveryMs: 60_000, // last_used is written at most this often per session (a write per request would be waste)
  loginPerAddressBurst: 10, // login attempts one client address may make at once
  loginPerAddressPerMin: 10, // ... and then per minute
  loginGlobalBurst: 60, // login attempts from everyone at once (each costs ~60 ms of scrypt)
  loginGlobalPerMin: 120, // ... and then per minute
};

const SCRYPT = { N: 1 << 15, r: 8, p: 1, keylen: 32, maxmem: 64 * 1024 * 1024 };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS web_passwords (
  name TEXT PRIMARY KEY,
  hash TEXT NOT NULL,      -- scrypt$N$r$p$salt$key (base64url)
  updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS web_sessions (
  hash TEXT PRIMARY KEY,   -- SHA-256 of the cookie value, never the value
  name TEXT NOT NULL,      -- the admin token's name: who acts (recorded on workflow changes)
  token_hash TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL,
  expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires);
`;

function scrypt(password: string, salt: Buffer, o: typeof SCRYPT): Promise<Buffer> {
  const opts: ScryptOptions = { N: o.N, r: o.r, p: o.p, maxmem: o.maxmem };
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, o.keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** `scrypt$N$r$p$salt$key`: the parameters travel with the hash so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/.exec(stored);
  if (!m) return false;
  const want = Buffer.from(m[5]!, 'base64url');
  const key = await scrypt(password, Buffer.from(m[4]!, 'base64url'), { N: Number(m[1]), r: Number(m[2]), p: Number(m[3]), keylen: want.length, maxmem: SCRYPT.maxmem });
  return key.length === want.length && timingSafeEqual(key, want);
}

/** Checked by `ldguard token passwd` before hashing; the message names what to change. */
export function checkPasswordStrength(password: string): string | undefined {
  if (password.length < PASSWORD_MIN_LENGTH) return `the password must be at least ${PASSWORD_MIN_LENGTH} characters long`;
  if (password.length > PASSWORD_MAX_LENGTH) return `the password must be at most ${PASSWORD_MAX_LENGTH} characters long`;
  if (/^\s|\s$/.test(password)) return 'the password must not begin or end with white space (it is easy to lose in a terminal)';
  return undefined;
}

export interface Session {
  name: string;
  tokenHash: string;
  csrf: string;
  created: number;
  expires: number;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

export class Auth {
  private readonly stmts;
  /** Spent by unknown names so they cost as much as known ones. */
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly db: Database.Database, private readonly opts = AUTH_DEFAULTS) {
    db.exec(SCHEMA);
    this.stmts = {
      activeAdmin: db.prepare(`SELECT hash, name, role, created, revoked FROM tokens WHERE name = ? AND role = 'admin' AND revoked IS NULL`),
      tokenByHash: db.prepare('SELECT hash, name, role, created, revoked FROM tokens WHERE hash = ?'),
      setPassword: db.prepare(`INSERT INTO web_passwords (name, hash, updated) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`),
      password: db.prepare('SELECT hash FROM web_passwords WHERE name = ?'),
      insertSession: db.prepare(`INSERT INTO web_sessions (hash, name, token_hash, csrf, created, last_used, expires)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      session: db.prepare('SELECT name, token_hash, csrf, created, last_used, expires FROM web_sessions WHERE hash = ?'),
      touch: db.prepare('UPDATE web_sessions SET last_used = ? WHERE hash = ?'),
      deleteSession: db.prepare('DELETE FROM web_sessions WHERE hash = ?'),
      deleteOthers: db.prepare('DELETE FROM web_sessions WHERE name = ?'),
      purge: db.prepare('DELETE FROM web_sessions WHERE expires < ? OR last_used < ?'),
    };
  }

  /** The active admin token of that name, if any. */
  activeAdmin(name: string): TokenInfo | undefined {
    return this.stmts.activeAdmin.get(name) as TokenInfo | undefined;
  }

  /**
   * Sets (or replaces) the password of an active admin token's name and ends that name's
   * sessions (a changed password should log everyone out).
   */
  async setPassword(name: string, password: string, now = Date.now()): Promise<void> {
    if (!this.activeAdmin(name)) {
      throw new LdgError('LDG_ERR_PASSWD_NAME', `no active admin token named ${JSON.stringify(name)}; create one first (ldguard token create --name ${name} --role admin) or see ldguard token list`);
    }
    const weak = checkPasswordStrength(password);
    if (weak) throw new LdgError('LDG_ERR_PASSWD_WEAK', `${weak}; choose another`);
    const hash = await hashPassword(password);
    this.db.transaction(() => {
      this.stmts.setPassword.run(name, hash, now);
      this.stmts.deleteOthers.run(name);
    })();
  }

  /** The admin token a name + password stands for, or undefined (wrong, unknown, or token revoked). */
  async checkPassword(name: string, password: string): Promise<TokenInfo | undefined> {
    const row = name.length <= 128 && password.length <= PASSWORD_MAX_LENGTH ? (this.stmts.password.get(name) as { hash: string } | undefined) : undefined;
    if (!row) {
      // Same work as a real check, so response time does not reveal which names exist.
      this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(password.slice(0, PASSWORD_MAX_LENGTH), await this.dummyHash);
      return undefined;
    }
    if (!(await verifyPassword(password, row.hash))) return undefined;
    return this.activeAdmin(name);
  }

  /** The admin token itself, or undefined (unknown, revoked, or an agent token). */
  checkToken(token: string): TokenInfo | undefined {
    if (token.length > 256) return undefined;
    const t = this.stmts.tokenByHash.get(hashToken(token)) as TokenInfo | undefined;
    return t && t.revoked === null && t.role === 'admin' ? t : undefined;
  }

  /** Opens a session for an admin token; returns the cookie value (shown to no one else). */
  createSession(admin: TokenInfo, now = Date.now()): { cookie: string; session: Session } {
    const cookie = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    const expires = now + this.opts.sessionMaxMs;
    this.stmts.purge.run(now, now - this.opts.sessionIdleMs);
    this.stmts.insertSession.run(sha256(cookie), admin.name, admin.hash, csrf, now, now, expires);
    return { cookie, session: { name: admin.name, tokenHash: admin.hash, csrf, created: now, expires } };
  }

  /** The live session for a cookie value, or undefined (unknown, expired, idle too long, or its token revoked). */
  session(cookie: string | undefined, now = Date.now()): Session | undefined {
    if (!cookie || cookie.length > 100) return undefined;
    const key = sha256(cookie);
    const row = this.stmts.session.get(key) as { name: string; token_hash: string; csrf: string; created: number; last_used: number; expires: number } | undefined;
    if (!row) return undefined;
    const token = this.stmts.tokenByHash.get(row.token_hash) as TokenInfo | undefined;
    if (row.expires <= now || row.last_used + this.opts.sessionIdleMs <= now || !token || token.revoked !== null) {
      this.stmts.deleteSession.run(key);
      return undefined;
    }
    if (now - row.last_used >= this.opts.touchEveryMs) this.stmts.touch.run(now, key);
    return { name: row.name, tokenHash: row.token_hash, csrf: row.csrf, created: row.created, expires: Math.min(row.expires, now + this.opts.sessionIdleMs) };
  }

  endSession(cookie: string): void {
    this.stmts.deleteSession.run(sha256(cookie));
  }
}

/** Token buckets keyed by client address, plus one for everyone; `take` says whether to proceed. */
export class LoginLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private global: { tokens: number; at: number };

  constructor(private readonly opts = AUTH_DEFAULTS, now = Date.now()) {
    this.global = { tokens: opts.loginGlobalBurst, at: now };
  }

  /** Spends one attempt for `key`; returns 0 when allowed, else the seconds to wait. */
  take(key: string, now = Date.now()): number {
    const refill = (b: { tokens: number; at: number }, burst: number, perMin: number) => {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 60_000) * perMin);
      b.at = now;
    };
    if (this.buckets.size > 10_000) {
      // Forget addresses whose bucket has refilled: they lose nothing by it.
      for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 60_000) * this.opts.loginPerAddressPerMin >= this.opts.loginPerAddressBurst) this.buckets.delete(k);
    }
    let b = this.buckets.get(key);
    if (!b) this.buckets.set(key, (b = { tokens: this.opts.loginPerAddressBurst, at: now }));
    refill(b, this.opts.loginPerAddressBurst, this.opts.loginPerAddressPerMin);
    refill(this.global, this.opts.loginGlobalBurst, this.opts.loginGlobalPerMin);
    if (b.tokens < 1) return Math.ceil(((1 - b.tokens) * 60) / this.opts.loginPerAddressPerMin);
    if (this.global.tokens < 1) return Math.ceil(((1 - this.global.tokens) * 60) / this.opts.loginGlobalPerMin);
    b.tokens -= 1;
    this.global.tokens -= 1;
    return 0;
  }
}

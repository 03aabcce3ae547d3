// Who may use the dashboard: people holding an active admin token, or the password that
// `ldguard token passwd` set for one. Contracts:
//
// - A password belongs to one admin token row (web_passwords.token_hash), not to its name: it
//   follows the row through `ldguard token rotate` and dies when the row is revoked, so a token
//   re-created under the same name (install.sh does that) starts without one. Triggers on the
//   tokens table carry this out in the same transaction as the token change, whoever makes it.
// - Passwords are stored as scrypt(N=2^15, r=8, p=1) with a random 16-byte salt each, never in
//   clear; verification runs scrypt off the event loop (libuv's pool) and compares in constant time.
//   An unknown name costs the same scrypt as a known one, so timing does not tell names apart.
// - A session is a random 256-bit cookie value; the database keeps only its SHA-256 (a stolen
//   database opens no session), the admin token it stands for, a CSRF token, and two deadlines: an
//   absolute one and an idle one. Revoking or rotating the admin token ends its sessions (deleted
//   by the triggers; a session of a token that is gone is refused at its next request anyway).
// - Login attempts are rate-limited per client address and overall (token buckets) before any
//   scrypt runs, so guessing is slow and a flood of logins cannot starve the collector's CPU.
//
// - Password changes and dashboard logins are written to the audit log (audit.ts) in the same
//   transaction as what they record.
//
// Tables live in the collector's database (created here, IF NOT EXISTS): web_passwords and
// web_sessions. This module writes them on the main thread's own connection; they are small and
// rare writes, like the token table's.
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type Database from 'better-sqlite3';
import { LdgError } from '../../shared/errors.js';
import { AuditLog } from './audit.js';
import { hashToken, type TokenInfo } from './store/store.js';

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
  token_hash TEXT PRIMARY KEY, -- the admin token's row (tokens.hash): the password is that token's
  hash TEXT NOT NULL,          -- scrypt$N$r$p$salt$key (base64url)
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
CREATE INDEX IF NOT EXISTS web_sessions_token ON web_sessions (token_hash);
-- A token's dashboard credentials live and die with its row (see the top of this file). Only
-- changes of hash or revoked fire these: the agent binding's updates (agent_id) do not.
CREATE TRIGGER IF NOT EXISTS web_credentials_rotate AFTER UPDATE OF hash ON tokens
BEGIN
  UPDATE web_passwords SET token_hash = new.hash WHERE token_hash = old.hash;
  DELETE FROM web_sessions WHERE token_hash = old.hash;
END;
CREATE TRIGGER IF NOT EXISTS web_credentials_revoke AFTER UPDATE OF revoked ON tokens WHEN new.revoked IS NOT NULL
BEGIN
  DELETE FROM web_passwords WHERE token_hash = old.hash;
  DELETE FROM web_sessions WHERE token_hash = old.hash;
END;
CREATE TRIGGER IF NOT EXISTS web_credentials_delete AFTER DELETE ON tokens
BEGIN
  DELETE FROM web_passwords WHERE token_hash = old.hash;
  DELETE FROM web_sessions WHERE token_hash = old.hash;
END;
`;

/**
 * web_passwords was keyed by token name, so a password outlived its token and logged in to the next
 * token of that name. Each password goes to the active admin token of its name only if that token
 * already existed when the password was set (passwd needs an active admin token, and a name has one
 * at a time, so it was set for this one); otherwise it was set for an earlier token of the name, or
 * the name has none now, and it is dropped: its owner sets it again with `ldguard token passwd`.
 */
const MIGRATE_PASSWORDS_BY_NAME = `
CREATE TABLE web_passwords_by_token (token_hash TEXT PRIMARY KEY, hash TEXT NOT NULL, updated INTEGER NOT NULL);
INSERT INTO web_passwords_by_token (token_hash, hash, updated)
  SELECT t.hash, p.hash, p.updated FROM web_passwords p
  JOIN tokens t ON t.name = p.name AND t.role = 'admin' AND t.revoked IS NULL AND t.created <= p.updated;
DROP TABLE web_passwords;
ALTER TABLE web_passwords_by_token RENAME TO web_passwords;
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

/** How a dashboard login went, for the audit log (Auth.recordLogin). */
export interface LoginAttempt {
  /** The client's address. */
  from: string;
  how: 'token' | 'password';
  /** The admin token it logged in as; undefined when it failed. */
  admin: TokenInfo | undefined;
  /** The name typed (password logins). */
  name?: string;
  /** The token presented (token logins): only its row's name is recorded, never the token. */
  token?: string;
}

export class Auth {
  /** Password changes and logins are recorded here; `ldguard token` appends its own actions too. */
  readonly audit: AuditLog;
  private readonly stmts;
  /** Spent by unknown names so they cost as much as known ones. */
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly db: Database.Database, private readonly opts = AUTH_DEFAULTS) {
    // Immediate: two processes opening an old database at once migrate it once.
    db.transaction(() => {
      const cols = db.prepare("SELECT name FROM pragma_table_info('web_passwords')").all() as Array<{ name: string }>;
      if (cols.some((c) => c.name === 'name')) db.exec(MIGRATE_PASSWORDS_BY_NAME);
      db.exec(SCHEMA);
    }).immediate();
    this.audit = new AuditLog(db);
    this.stmts = {
      activeAdmin: db.prepare(`SELECT hash, name, role, created, revoked FROM tokens WHERE name = ? AND role = 'admin' AND revoked IS NULL`),
      tokenByHash: db.prepare('SELECT hash, name, role, created, revoked FROM tokens WHERE hash = ?'),
      setPassword: db.prepare(`INSERT INTO web_passwords (token_hash, hash, updated) VALUES (?, ?, ?)
        ON CONFLICT (token_hash) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`),
      // The password of the active admin token of a name: only that token's row counts.
      password: db.prepare(`SELECT p.hash AS password, t.hash AS tokenHash FROM tokens t JOIN web_passwords p ON p.token_hash = t.hash
        WHERE t.name = ? AND t.role = 'admin' AND t.revoked IS NULL`),
      insertSession: db.prepare(`INSERT INTO web_sessions (hash, name, token_hash, csrf, created, last_used, expires)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      session: db.prepare('SELECT name, token_hash, csrf, created, last_used, expires FROM web_sessions WHERE hash = ?'),
      touch: db.prepare('UPDATE web_sessions SET last_used = ? WHERE hash = ?'),
      deleteSession: db.prepare('DELETE FROM web_sessions WHERE hash = ?'),
      deleteOthers: db.prepare('DELETE FROM web_sessions WHERE token_hash = ?'),
      purge: db.prepare('DELETE FROM web_sessions WHERE expires < ? OR last_used < ?'),
    };
  }

  /** The active admin token of that name, if any. */
  activeAdmin(name: string): TokenInfo | undefined {
    return this.stmts.activeAdmin.get(name) as TokenInfo | undefined;
  }

  /**
   * Sets (or replaces) the password of the active admin token of that name and ends that token's
   * sessions (a changed password should log everyone out). With `actor`, records it in the audit
   * log in the same transaction.
   */
  async setPassword(name: string, password: string, actor?: string, now = Date.now()): Promise<void> {
    const noAdmin = () => new LdgError('LDG_ERR_PASSWD_NAME', `no active admin token named ${JSON.stringify(name)}; create one first (ldguard token create --name ${name} --role admin) or see ldguard token list`);
    const admin = this.activeAdmin(name);
    if (!admin) throw noAdmin();
    const weak = checkPasswordStrength(password);
    if (weak) throw new LdgError('LDG_ERR_PASSWD_WEAK', `${weak}; choose another`);
    const hash = await hashPassword(password);
    this.db.transaction(() => {
      // Revoked or rotated during the scrypt: refused rather than given to another token's row.
      const still = this.stmts.tokenByHash.get(admin.hash) as TokenInfo | undefined;
      if (!still || still.revoked !== null) throw noAdmin();
      this.stmts.setPassword.run(admin.hash, hash, now);
      this.stmts.deleteOthers.run(admin.hash);
      if (actor !== undefined) this.audit.append({ actor, action: 'passwd', tokenName: name, detail: 'dashboard password set; its sessions ended' }, now);
    }).immediate();
  }

  /** The admin token a name + password stands for, or undefined (wrong, unknown, or token revoked). */
  async checkPassword(name: string, password: string): Promise<TokenInfo | undefined> {
    const row = name.length <= 128 && password.length <= PASSWORD_MAX_LENGTH ? (this.stmts.password.get(name) as { password: string; tokenHash: string } | undefined) : undefined;
    if (!row) {
      // Same work as a real check, so response time does not reveal which names exist.
      this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(password.slice(0, PASSWORD_MAX_LENGTH), await this.dummyHash);
      return undefined;
    }
    if (!(await verifyPassword(password, row.password))) return undefined;
    // The row the password belongs to, read again after the scrypt: revoked or rotated meanwhile
    // means no (never another token of the same name).
    const t = this.stmts.tokenByHash.get(row.tokenHash) as TokenInfo | undefined;
    return t && t.revoked === null ? t : undefined;
  }

  /**
   * Records a dashboard login in the audit log. A failure names the token only when what was typed
   * is an admin token's name (or the token presented is known): an arbitrary string typed as the
   * name may be a password typed in the wrong field, and stays out of the log.
   */
  recordLogin(a: LoginAttempt, now = Date.now()): void {
    const actor = `web:${a.from}`;
    if (a.admin) {
      this.audit.append({ actor, action: 'login', tokenName: a.admin.name, detail: `dashboard login by ${a.how}` }, now);
      return;
    }
    let tokenName: string | null = null;
    let detail: string;
    if (a.how === 'password') {
      tokenName = a.name !== undefined && a.name.length <= 128 && this.activeAdmin(a.name) ? a.name : null;
      detail = tokenName ? 'wrong password' : 'no admin token has the name typed';
    } else {
      const t = a.token && a.token.length <= 256 ? (this.stmts.tokenByHash.get(hashToken(a.token)) as TokenInfo | undefined) : undefined;
      tokenName = t?.name ?? null;
      // A rotated token's old secret matches no row any more: it is an unknown token here.
      detail = !t ? 'unknown token' : t.revoked !== null ? 'revoked token' : `a token of role ${t.role}, not admin`;
    }
    this.audit.append({ actor, action: 'login-failed', tokenName, detail: `dashboard login by ${a.how}: ${detail}` }, now);
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

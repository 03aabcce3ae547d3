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
// Storage is a CredentialStore (credentials/store.ts): the SQLite file of a single collector, or
// the PostgreSQL database every collector over it shares, where a session opened on one collector
// is valid on all, and a logout, password change or revocation on one holds at the next request on
// every other (nothing here is cached).
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { LdgError } from '../../shared/errors.js';
import type { AuditEntry, AuditRow, CredentialStore } from './credentials/store.js';
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
  readonly audit: { append: (e: AuditEntry, now?: number) => Promise<void>; list: () => Promise<AuditRow[]> };
  /** Spent by unknown names so they cost as much as known ones. */
  private dummyHash: Promise<string> | undefined;

  constructor(private readonly creds: CredentialStore, private readonly opts = AUTH_DEFAULTS) {
    this.audit = { append: (e, now = Date.now()) => creds.appendAudit(e, now), list: () => creds.listAudit() };
  }

  /** The active admin token of that name, if any. */
  activeAdmin(name: string): Promise<TokenInfo | undefined> {
    return this.creds.activeAdmin(name);
  }

  /**
   * Sets (or replaces) the password of the active admin token of that name and ends that token's
   * sessions (a changed password should log everyone out). With `actor`, records it in the audit
   * log in the same transaction.
   */
  async setPassword(name: string, password: string, actor?: string, now = Date.now()): Promise<void> {
    const noAdmin = () => new LdgError('LDG_ERR_PASSWD_NAME', `no active admin token named ${JSON.stringify(name)}; create one first (ldguard token create --name ${name} --role admin) or see ldguard token list`);
    const admin = await this.creds.activeAdmin(name);
    if (!admin) throw noAdmin();
    const weak = checkPasswordStrength(password);
    if (weak) throw new LdgError('LDG_ERR_PASSWD_WEAK', `${weak}; choose another`);
    const hash = await hashPassword(password);
    // Revoked or rotated during the scrypt: refused rather than given to another token's row.
    const audit = actor === undefined ? undefined : { actor, action: 'passwd' as const, tokenName: name, detail: 'dashboard password set; its sessions ended' };
    if (!(await this.creds.setPassword(admin.hash, hash, now, audit))) throw noAdmin();
  }

  /** The admin token a name + password stands for, or undefined (wrong, unknown, or token revoked). */
  async checkPassword(name: string, password: string): Promise<TokenInfo | undefined> {
    const row = name.length <= 128 && password.length <= PASSWORD_MAX_LENGTH ? await this.creds.passwordOf(name) : undefined;
    if (!row) {
      // Same work as a real check, so response time does not reveal which names exist.
      this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(password.slice(0, PASSWORD_MAX_LENGTH), await this.dummyHash);
      return undefined;
    }
    if (!(await verifyPassword(password, row.password))) return undefined;
    // The row the password belongs to, read again after the scrypt: revoked or rotated meanwhile
    // means no (never another token of the same name).
    const t = await this.creds.tokenByHash(row.tokenHash);
    return t && t.revoked === null ? t : undefined;
  }

  /**
   * Records a dashboard login in the audit log. A failure names the token only when what was typed
   * is an admin token's name (or the token presented is known): an arbitrary string typed as the
   * name may be a password typed in the wrong field, and stays out of the log.
   */
  async recordLogin(a: LoginAttempt, now = Date.now()): Promise<void> {
    const actor = `web:${a.from}`;
    if (a.admin) {
      await this.creds.appendAudit({ actor, action: 'login', tokenName: a.admin.name, detail: `dashboard login by ${a.how}` }, now);
      return;
    }
    let tokenName: string | null = null;
    let detail: string;
    if (a.how === 'password') {
      tokenName = a.name !== undefined && a.name.length <= 128 && (await this.creds.activeAdmin(a.name)) ? a.name : null;
      detail = tokenName ? 'wrong password' : 'no admin token has the name typed';
    } else {
      const t = a.token && a.token.length <= 256 ? await this.creds.tokenByHash(hashToken(a.token)) : undefined;
      tokenName = t?.name ?? null;
      // A rotated token's old secret matches no row any more: it is an unknown token here.
      detail = !t ? 'unknown token' : t.revoked !== null ? 'revoked token' : `a token of role ${t.role}, not admin`;
    }
    await this.creds.appendAudit({ actor, action: 'login-failed', tokenName, detail: `dashboard login by ${a.how}: ${detail}` }, now);
  }

  /** The admin token itself, or undefined (unknown, revoked, or an agent token). */
  async checkToken(token: string): Promise<TokenInfo | undefined> {
    if (token.length > 256) return undefined;
    const t = await this.creds.tokenByHash(hashToken(token));
    return t && t.revoked === null && t.role === 'admin' ? t : undefined;
  }

  /** Opens a session for an admin token; returns the cookie value (shown to no one else). */
  async createSession(admin: TokenInfo, now = Date.now()): Promise<{ cookie: string; session: Session }> {
    const cookie = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    const expires = now + this.opts.sessionMaxMs;
    await this.creds.createSession({ key: sha256(cookie), name: admin.name, tokenHash: admin.hash, csrf, created: now, expires }, now, now - this.opts.sessionIdleMs);
    return { cookie, session: { name: admin.name, tokenHash: admin.hash, csrf, created: now, expires } };
  }

  /** The live session for a cookie value, or undefined (unknown, expired, idle too long, or its token revoked). */
  async session(cookie: string | undefined, now = Date.now()): Promise<Session | undefined> {
    if (!cookie || cookie.length > 100) return undefined;
    const key = sha256(cookie);
    const row = await this.creds.session(key);
    if (!row) return undefined;
    if (row.expires <= now || row.lastUsed + this.opts.sessionIdleMs <= now || !row.tokenActive) {
      await this.creds.endSession(key);
      return undefined;
    }
    if (now - row.lastUsed >= this.opts.touchEveryMs) await this.creds.touchSession(key, now);
    return { name: row.name, tokenHash: row.tokenHash, csrf: row.csrf, created: row.created, expires: Math.min(row.expires, now + this.opts.sessionIdleMs) };
  }

  endSession(cookie: string): Promise<void> {
    return this.creds.endSession(sha256(cookie));
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

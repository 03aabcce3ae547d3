// What the dashboard's Auth (collector/src/auth.ts) needs of a database: passwords, sessions and
// the audit log, over the tokens table the collector's store keeps. Two implementations: SQLite
// (sqlite.ts, the collector's file; synchronous underneath) and PostgreSQL (postgres.ts, shared by
// every collector over the database, so a login on one is a session on all).
//
// Contracts both keep (auth.ts states why):
// - A password and the sessions of an admin token live and die with its row: rotating the token
//   moves the password and ends the sessions, revoking or deleting it deletes both. The database
//   does this (triggers), in the token change's own transaction, whoever makes the change.
// - Sessions are keyed by the SHA-256 of the cookie; no cookie value is ever stored.
// - Dashboard preferences (web_prefs) are keyed by the admin token's name, the login an analyst
//   knows, so they outlast a rotation or a re-created token of that name; they hold nothing secret.
// - The audit log is append-only (audit.ts): the database refuses UPDATE and DELETE of its rows.
// - Every method reads or writes the database itself, never a cache: a logout, a password change
//   or a revocation made through one collector holds at the next request on every other.
import type { WebPrefs } from '../../web/src/api-types.js';
import type { TokenInfo } from '../store/store.js';

export type AuditAction = 'create' | 'rotate' | 'revoke' | 'passwd' | 'login' | 'login-failed';

export interface AuditEntry {
  actor: string;
  action: AuditAction;
  tokenName: string | null;
  detail: string;
}

export interface AuditRow extends AuditEntry {
  at: number;
}

export interface NewSession {
  /** SHA-256 of the cookie value. */
  key: string;
  name: string;
  tokenHash: string;
  csrf: string;
  created: number;
  expires: number;
}

export interface SessionRow {
  name: string;
  tokenHash: string;
  csrf: string;
  created: number;
  lastUsed: number;
  expires: number;
  /** The admin token the session stands for is still there and not revoked. */
  tokenActive: boolean;
}

export interface CredentialStore {
  /** The active admin token of that name, if any. */
  activeAdmin(name: string): Promise<TokenInfo | undefined>;
  tokenByHash(hash: string): Promise<TokenInfo | undefined>;
  /** The password hash of the active admin token of that name, and that token's row (its hash). */
  passwordOf(name: string): Promise<{ password: string; tokenHash: string } | undefined>;
  /**
   * In one transaction: if the token row `tokenHash` is still active, sets its password, ends its
   * sessions and appends `audit` (when given); false, changing nothing, when it is not.
   */
  setPassword(tokenHash: string, passwordHash: string, now: number, audit?: AuditEntry): Promise<boolean>;
  /** Inserts a session after deleting those expired by `now` or idle since before `idleBefore`. */
  createSession(s: NewSession, now: number, idleBefore: number): Promise<void>;
  session(key: string): Promise<SessionRow | undefined>;
  touchSession(key: string, now: number): Promise<void>;
  endSession(key: string): Promise<void>;
  appendAudit(e: AuditEntry, now: number): Promise<void>;
  /** Every row, oldest first. */
  listAudit(): Promise<AuditRow[]>;
  /** The preferences saved for a login name; DEFAULT_PREFS when it saved none. */
  prefs(name: string): Promise<WebPrefs>;
  /** Saves a login name's preferences whole (the last writer wins). */
  setPrefs(name: string, prefs: WebPrefs, now: number): Promise<void>;
}

/** What a login that never chose sees: UTC, as `ldguard tail` and the journal write times. */
export const DEFAULT_PREFS: Readonly<WebPrefs> = Object.freeze({ timeZone: 'utc' });

/** A stored row as preferences: a value this version does not know reads as the default. */
export function prefsOf(timeZone: string | undefined): WebPrefs {
  return { timeZone: timeZone === 'local' ? 'local' : DEFAULT_PREFS.timeZone };
}

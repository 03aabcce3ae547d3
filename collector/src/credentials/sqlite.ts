// The dashboard's credentials in the collector's SQLite file (see store.ts for the contracts).
// Tables are created here (IF NOT EXISTS), on the connection given: web_passwords, web_sessions,
// web_prefs and audit_log through audit.ts. Writes are small and rare, like the token table's; they run on
// that connection, synchronously, and the promises are settled when they are done.
import type Database from 'better-sqlite3';
import { AuditLog } from '../audit.js';
import type { TokenInfo } from '../store/store.js';
import type { WebPrefs } from '../../web/src/api-types.js';
import { prefsOf, type AuditEntry, type AuditRow, type CredentialStore, type NewSession, type SessionRow } from './store.js';

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
CREATE TABLE IF NOT EXISTS web_prefs (
  name TEXT PRIMARY KEY,   -- the admin token's name: a login keeps its choices across rotations
  time_zone TEXT NOT NULL CHECK (time_zone IN ('utc', 'local')),
  updated INTEGER NOT NULL
);
-- A token's dashboard credentials live and die with its row (auth.ts). Only changes of hash or
-- revoked fire these: the agent binding's updates (agent_id) do not.
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

export class SqliteCredentials implements CredentialStore {
  private readonly audit: AuditLog;
  private readonly stmts;

  constructor(private readonly db: Database.Database) {
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
      session: db.prepare(`SELECT s.name, s.token_hash AS tokenHash, s.csrf, s.created, s.last_used AS lastUsed, s.expires,
        t.hash IS NOT NULL AND t.revoked IS NULL AS tokenActive
        FROM web_sessions s LEFT JOIN tokens t ON t.hash = s.token_hash WHERE s.hash = ?`),
      touch: db.prepare('UPDATE web_sessions SET last_used = ? WHERE hash = ?'),
      deleteSession: db.prepare('DELETE FROM web_sessions WHERE hash = ?'),
      deleteOthers: db.prepare('DELETE FROM web_sessions WHERE token_hash = ?'),
      purge: db.prepare('DELETE FROM web_sessions WHERE expires < ? OR last_used < ?'),
      prefs: db.prepare('SELECT time_zone AS timeZone FROM web_prefs WHERE name = ?'),
      setPrefs: db.prepare(`INSERT INTO web_prefs (name, time_zone, updated) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone, updated = excluded.updated`),
    };
  }

  async activeAdmin(name: string): Promise<TokenInfo | undefined> {
    return this.stmts.activeAdmin.get(name) as TokenInfo | undefined;
  }

  async tokenByHash(hash: string): Promise<TokenInfo | undefined> {
    return this.stmts.tokenByHash.get(hash) as TokenInfo | undefined;
  }

  async passwordOf(name: string): Promise<{ password: string; tokenHash: string } | undefined> {
    return this.stmts.password.get(name) as { password: string; tokenHash: string } | undefined;
  }

  async setPassword(tokenHash: string, passwordHash: string, now: number, audit?: AuditEntry): Promise<boolean> {
    return this.db.transaction(() => {
      const still = this.stmts.tokenByHash.get(tokenHash) as TokenInfo | undefined;
      if (!still || still.revoked !== null) return false;
      this.stmts.setPassword.run(tokenHash, passwordHash, now);
      this.stmts.deleteOthers.run(tokenHash);
      if (audit) this.audit.append(audit, now);
      return true;
    }).immediate();
  }

  async createSession(s: NewSession, now: number, idleBefore: number): Promise<void> {
    this.stmts.purge.run(now, idleBefore);
    this.stmts.insertSession.run(s.key, s.name, s.tokenHash, s.csrf, s.created, s.created, s.expires);
  }

  async session(key: string): Promise<SessionRow | undefined> {
    const row = this.stmts.session.get(key) as (Omit<SessionRow, 'tokenActive'> & { tokenActive: number }) | undefined;
    return row && { ...row, tokenActive: row.tokenActive === 1 };
  }

  async touchSession(key: string, now: number): Promise<void> {
    this.stmts.touch.run(now, key);
  }

  async endSession(key: string): Promise<void> {
    this.stmts.deleteSession.run(key);
  }

  async appendAudit(e: AuditEntry, now: number): Promise<void> {
    this.audit.append(e, now);
  }

  async listAudit(): Promise<AuditRow[]> {
    return this.audit.list();
  }

  async prefs(name: string): Promise<WebPrefs> {
    return prefsOf((this.stmts.prefs.get(name) as { timeZone: string } | undefined)?.timeZone);
  }

  async setPrefs(name: string, prefs: WebPrefs, now: number): Promise<void> {
    this.stmts.setPrefs.run(name, prefs.timeZone, now);
  }
}

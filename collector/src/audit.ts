// The audit log of credentials: who created, rotated or revoked a token, set a dashboard password,
// or logged in to the dashboard (or failed to), and when. Contracts:
//
// - Append-only: triggers refuse UPDATE and DELETE, so no code path (ours or a slip at the sqlite3
//   prompt) rewrites history by accident. It does not stop someone who can write the database file
//   (root, the collector's user): they can drop the triggers. The log is for the record, not a seal.
// - No secret ever enters it: not a token, not its hash, not a password. Callers pass names and
//   short descriptions only; a failed login records the name typed only when it is an admin
//   token's name (a password typed into the name field is a common slip, see Auth.recordLogin).
// - Written after the change it records, on the writer's connection, in the change's own
//   transaction where the writer has one (passwd, logins); `ldguard token create|rotate|revoke`
//   append right after the Store commits the change, so a crash in between can lose the row, never
//   the change.
// - Bounded by its writers: the CLI is run by hand, and dashboard logins are rate-limited before
//   anything is written (LoginLimiter: at most 120 a minute from everyone), so a flood of failed
//   logins grows it by ~10 MB a day at worst.
//
// This file is the SQLite table (created here, IF NOT EXISTS), used by credentials/sqlite.ts; the
// PostgreSQL one is the store's migration 3 (store/postgres.ts), refused changes the same way.
import type Database from 'better-sqlite3';
import type { AuditEntry, AuditRow } from './credentials/store.js';

export type { AuditAction, AuditEntry, AuditRow } from './credentials/store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,   -- ms since the epoch
  actor TEXT NOT NULL,   -- cli:USER for ldguard token, web:ADDRESS for the dashboard
  action TEXT NOT NULL,  -- create | rotate | revoke | passwd | login | login-failed
  token_name TEXT,       -- the token acted on; null when unknown (a failed login with a name no token has)
  detail TEXT            -- a short human description; never a secret
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'LDG_ERR_AUDIT_APPEND_ONLY: the audit log is append-only; its rows are never changed');
END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'LDG_ERR_AUDIT_APPEND_ONLY: the audit log is append-only; its rows are never deleted');
END;
`;

export class AuditLog {
  private readonly stmts;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      append: db.prepare('INSERT INTO audit_log (at, actor, action, token_name, detail) VALUES (?, ?, ?, ?, ?)'),
      list: db.prepare('SELECT at, actor, action, token_name AS tokenName, detail FROM audit_log ORDER BY id'),
    };
  }

  append(e: AuditEntry, now = Date.now()): void {
    this.stmts.append.run(now, e.actor, e.action, e.tokenName, e.detail);
  }

  /** Every row, oldest first. */
  list(): AuditRow[] {
    return this.stmts.list.all() as AuditRow[];
  }
}

// The dashboard's credentials in PostgreSQL, shared by every collector over the database (see
// store.ts for the contracts). The tables, the triggers that take a token's password and sessions
// along with its row, and the append-only audit log are the store's migration 3
// (store/postgres.ts, CREDENTIALS_MIGRATION); the logins' preferences (web_prefs) its migration 5.
// Each call is one round trip on the pool given (its owner closes it), except setPassword, a
// transaction that reads the token row FOR SHARE: a concurrent revoke or rotation waits for it, or
// it sees the change and refuses.
import type pg from 'pg';
import type { TokenInfo } from '../store/store.js';
import type { WebPrefs } from '../../web/src/api-types.js';
import { prefsOf, type AuditEntry, type AuditRow, type CredentialStore, type NewSession, type SessionRow } from './store.js';
import { inTransaction } from '../store/pg-tx.js';
import { TOKEN_COLUMNS, tokenInfo, type TokenDbRow } from '../store/postgres.js';

export class PostgresCredentials implements CredentialStore {
  constructor(private readonly pool: pg.Pool) {}

  async activeAdmin(name: string): Promise<TokenInfo | undefined> {
    const { rows } = await this.pool.query<TokenDbRow>(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE name = $1 AND role = 'admin' AND revoked IS NULL`, [name]);
    return rows[0] && tokenInfo(rows[0]);
  }

  async tokenByHash(hash: string): Promise<TokenInfo | undefined> {
    const { rows } = await this.pool.query<TokenDbRow>(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE hash = $1`, [hash]);
    return rows[0] && tokenInfo(rows[0]);
  }

  async passwordOf(name: string): Promise<{ password: string; tokenHash: string } | undefined> {
    const { rows } = await this.pool.query<{ password: string; tokenHash: string }>(`SELECT p.hash AS password, t.hash AS "tokenHash"
      FROM tokens t JOIN web_passwords p ON p.token_hash = t.hash WHERE t.name = $1 AND t.role = 'admin' AND t.revoked IS NULL`, [name]);
    return rows[0];
  }

  async setPassword(tokenHash: string, passwordHash: string, now: number, audit?: AuditEntry): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      // Nothing written for a token revoked meanwhile (the rollback of an empty transaction is its commit).
      const still = await c.query('SELECT 1 FROM tokens WHERE hash = $1 AND revoked IS NULL FOR SHARE', [tokenHash]);
      if (still.rowCount === 0) return false;
      await c.query(`INSERT INTO web_passwords (token_hash, hash, updated) VALUES ($1, $2, $3)
        ON CONFLICT (token_hash) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`, [tokenHash, passwordHash, now]);
      await c.query('DELETE FROM web_sessions WHERE token_hash = $1', [tokenHash]);
      if (audit) await this.append(c, audit, now);
      return true;
    });
  }

  async createSession(s: NewSession, now: number, idleBefore: number): Promise<void> {
    // One statement: the purge and the insert commit together.
    await this.pool.query(`WITH purge AS (DELETE FROM web_sessions WHERE expires < $7 OR last_used < $8)
      INSERT INTO web_sessions (hash, name, token_hash, csrf, created, last_used, expires) VALUES ($1, $2, $3, $4, $5, $5, $6)`,
    [s.key, s.name, s.tokenHash, s.csrf, s.created, s.expires, now, idleBefore]);
  }

  async session(key: string): Promise<SessionRow | undefined> {
    const { rows } = await this.pool.query<Record<string, string | boolean>>(`SELECT s.name, s.token_hash, s.csrf, s.created, s.last_used, s.expires,
      t.hash IS NOT NULL AND t.revoked IS NULL AS active
      FROM web_sessions s LEFT JOIN tokens t ON t.hash = s.token_hash WHERE s.hash = $1`, [key]);
    const r = rows[0];
    return r && {
      name: r.name as string, tokenHash: r.token_hash as string, csrf: r.csrf as string, created: Number(r.created), lastUsed: Number(r.last_used),
      expires: Number(r.expires), tokenActive: r.active === true,
    };
  }

  async touchSession(key: string, now: number): Promise<void> {
    await this.pool.query('UPDATE web_sessions SET last_used = greatest(last_used, $2) WHERE hash = $1', [key, now]);
  }

  async endSession(key: string): Promise<void> {
    await this.pool.query('DELETE FROM web_sessions WHERE hash = $1', [key]);
  }

  async appendAudit(e: AuditEntry, now: number): Promise<void> {
    await this.append(this.pool, e, now);
  }

  private async append(c: pg.Pool | pg.PoolClient, e: AuditEntry, now: number): Promise<void> {
    await c.query('INSERT INTO audit_log (at, actor, action, token_name, detail) VALUES ($1, $2, $3, $4, $5)', [now, e.actor, e.action, e.tokenName, e.detail]);
  }

  async listAudit(): Promise<AuditRow[]> {
    const { rows } = await this.pool.query<{ at: string; actor: string; action: AuditRow['action']; tokenName: string | null; detail: string }>(
      'SELECT at, actor, action, token_name AS "tokenName", detail FROM audit_log ORDER BY id');
    return rows.map((r) => ({ ...r, at: Number(r.at) }));
  }

  async prefs(name: string): Promise<WebPrefs> {
    const { rows } = await this.pool.query<{ time_zone: string }>('SELECT time_zone FROM web_prefs WHERE name = $1', [name]);
    return prefsOf(rows[0]?.time_zone);
  }

  async setPrefs(name: string, prefs: WebPrefs, now: number): Promise<void> {
    await this.pool.query(`INSERT INTO web_prefs (name, time_zone, updated) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone, updated = excluded.updated`, [name, prefs.timeZone, now]);
  }
}

// One transaction on a pooled PostgreSQL client, for every PostgreSQL module (the store, the
// dashboard's credentials and reads): begun, the work, committed; rolled back on any error, and the
// client back in the pool either way.
import type pg from 'pg';

/** `begin`: the statement that opens it ('BEGIN READ ONLY' for reads). */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query(begin);
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

// A database taken back to the schema before the group keys (SQLite 5, PostgreSQL migration 6),
// the rows kept: what an older collector left, for the fill that the next open runs
// (collector/src/store/group-fill.ts). Used by the migration test and the group reads bench.
import Database from 'better-sqlite3';
import pg from 'pg';

export async function undoGroupKeys(kind: 'sqlite' | 'postgres', db: string): Promise<void> {
  if (kind === 'sqlite') {
    const d = new Database(db);
    d.exec(`DROP TRIGGER alerts_held_group; DROP INDEX alerts_g_rule; DROP INDEX alerts_g_hash; DROP INDEX alerts_g_executable; DROP INDEX alerts_g_package;
      DROP INDEX alerts_summary; DROP INDEX alerts_unfilled;
      ALTER TABLE alerts DROP COLUMN file_hash; ALTER TABLE alerts DROP COLUMN executable; ALTER TABLE alerts DROP COLUMN package;
      ALTER TABLE alerts DROP COLUMN held_back; ALTER TABLE alerts DROP COLUMN summary_id; UPDATE meta SET value = '5' WHERE key = 'schema'`);
    d.close();
    return;
  }
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  try {
    // Dropping a column drops its indexes; the two on older columns go by name.
    await c.query(`DROP TRIGGER alerts_held_group ON alerts; DROP FUNCTION ldguard_held_group(); DROP INDEX alerts_g_rule, alerts_g_sender;
      ALTER TABLE alerts DROP COLUMN file_hash, DROP COLUMN executable, DROP COLUMN package, DROP COLUMN held_back, DROP COLUMN summary_id;
      DELETE FROM ldguard_schema WHERE version >= 7`);
  } finally {
    await c.end();
  }
}

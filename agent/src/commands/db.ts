// `ldguard db init|backup`: the collector's database outside the collector. init makes (or
// migrates) it as the collector's first start would, for install scripts and tokens made before
// the collector runs; backup copies a SQLite database consistently while the collector writes it.
import { chmodSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { commandDb, INSTALLED_CONFIG } from '../../../collector/src/config.js';
import { isDbUrl, openStore, ownLikeTheDatabase } from '../../../collector/src/store/open.js';
import { LdgError } from '../../../shared/errors.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard db init [--db FILE|URL] [--config FILE]
       ldguard db backup --to FILE [--db FILE] [--config FILE]

  init     creates the collector's database, or migrates it to this version's schema, and exits
           (what the collector's first start does). PostgreSQL: the schema in an existing database.
  backup   copies a SQLite database to FILE (0600) while the collector runs, as one consistent
           snapshot (SQLite's online backup); FILE must not exist. For PostgreSQL use pg_dump.

  --db FILE|URL   the collector's database; default: the db of --config FILE, or of
                  ${INSTALLED_CONFIG} when it exists
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values } = parseOptions(`db ${sub}`, rest, { db: { type: 'string' }, config: { type: 'string' }, to: { type: 'string' } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const db = commandDb(values.db, values.config);
  switch (sub) {
    case 'init': {
      const store = await openStore(db, { onMigrate: (m) => process.stderr.write(`${m}\n`) });
      await store.close();
      process.stderr.write(`${store.upgraded ? `migrated (${store.upgraded})` : 'ready'}: ${store.location}\n`);
      return 0;
    }
    case 'backup': {
      const to = values.to;
      if (!to) throw new LdgError('LDG_ERR_USAGE', "ldguard db backup needs --to FILE. Run 'ldguard db --help'");
      if (isDbUrl(db)) throw new LdgError('LDG_ERR_USAGE', `${db.replace(/\/\/[^@/]*@/, '//…@')} is PostgreSQL: back it up with pg_dump (and keep a replica), not ldguard db backup`);
      if (!existsSync(db)) throw new LdgError('LDG_ERR_NO_DATABASE', `no collector database at ${db}; set db in ${INSTALLED_CONFIG} or pass --db`);
      if (existsSync(to)) throw new LdgError('LDG_ERR_USAGE', `${to} exists already; give a new file (a backup never overwrites one)`);
      const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
      const conn = new Database(db, { fileMustExist: true });
      const mask = process.umask(0o077); // the copy holds token hashes and every alert: root's alone from its first byte
      try {
        conn.pragma('busy_timeout = 5000');
        const r = await conn.backup(to);
        chmodSync(to, 0o600);
        process.stderr.write(`backed up ${db} to ${to} (${r.totalPages} pages)\n`);
      } finally {
        process.umask(mask);
        conn.close();
        ownLikeTheDatabase(db);
      }
      return 0;
    }
    default:
      throw new LdgError('LDG_ERR_USAGE', `ldguard db: unknown subcommand ${JSON.stringify(sub)}; use init or backup`);
  }
}

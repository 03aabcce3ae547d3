// `ldguard db init|backup|copy`: the collector's database outside the collector. init makes (or
// migrates) it as the collector's first start would, for install scripts and tokens made before
// the collector runs; backup copies a SQLite database consistently while the collector writes it;
// copy moves a stopped site's SQLite database into PostgreSQL (collector/src/store/copy.ts).
import { chmodSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { commandDb, INSTALLED_CONFIG } from '../../../collector/src/config.js';
import { copyToPostgres, type CopyResult } from '../../../collector/src/store/copy.js';
import { isDbUrl, openStore, ownLikeTheDatabase, parseDb } from '../../../collector/src/store/open.js';
import { LdgError } from '../../../shared/errors.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard db init [--db FILE|URL] [--config FILE]
       ldguard db backup --to FILE [--db FILE] [--config FILE]
       ldguard db copy --to postgres://USER@HOST:PORT/DB [--from FILE] [--config FILE] [--json] [--batch N]

  init     creates the collector's database, or migrates it to this version's schema, and exits
           (what the collector's first start does). PostgreSQL: the schema in an existing database.
  backup   copies a SQLite database to FILE (0600) while the collector runs, as one consistent
           snapshot (SQLite's online backup); FILE must not exist. For PostgreSQL use pg_dump.
  copy     copies a STOPPED collector's SQLite database (--from) into PostgreSQL (--to, also
           postgresql://; PG* variables and the password file PGPASSFILE or ~/.pgpass are used as
           by the collector): alerts as stored (same ids and document bytes), workflow status and
           history, tokens (hashes) with their agent bindings and revocations, agents, host seals
           and the quarantine. The target's schema is made by the collector's own migrations; a
           target holding other data is refused. Stop the collector first (systemctl stop
           ldguard-collector): a database in use is refused. Resumable: run the same command again
           after an interruption and it goes on where it stopped; run on a finished copy, it only
           checks it. Checked: rows and a sha256 per table on both sides, printed (a mismatch is an
           error naming the table). The dashboard's passwords and audit log are copied; its
           sessions are not (log in again).
           Progress on stderr; the summary on stdout, as JSON with --json. --batch N: alerts per
           transaction (default 5000).

  --db FILE|URL   the collector's database; default: the db of --config FILE, or of
                  ${INSTALLED_CONFIG} when it exists
  --from FILE     copy: the SQLite file to copy; default: as --db
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values } = parseOptions(`db ${sub}`, rest, {
    db: { type: 'string' }, config: { type: 'string' }, to: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean' }, batch: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (sub === 'copy') return copy(commandDb(values.from ?? values.db, values.config), values.to, values.batch, values.json === true);
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
      throw new LdgError('LDG_ERR_USAGE', `ldguard db: unknown subcommand ${JSON.stringify(sub)}; use init, backup or copy`);
  }
}

async function copy(from: string, to: string | undefined, batch: string | undefined, json: boolean): Promise<number> {
  if (!to) throw new LdgError('LDG_ERR_USAGE', "ldguard db copy needs --to postgres://USER@HOST:PORT/DATABASE. Run 'ldguard db --help'");
  if (parseDb(to).kind !== 'postgres') throw new LdgError('LDG_ERR_USAGE', `ldguard db copy --to ${to}: give a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE); to copy a SQLite file to another file, use ldguard db backup`);
  if (isDbUrl(from)) throw new LdgError('LDG_ERR_USAGE', `ldguard db copy --from ${from.replace(/\/\/[^@/]*@/, '//…@')}: the source is a SQLite file (the stopped collector's database)`);
  const batchRows = batch === undefined ? undefined : Number(batch);
  if (batchRows !== undefined && !(Number.isInteger(batchRows) && batchRows >= 1 && batchRows <= 100_000)) {
    throw new LdgError('LDG_ERR_USAGE', `--batch ${batch}: give a whole number of alerts per transaction, 1 to 100000 (default 5000)`);
  }
  let shown = 0;
  const result = await copyToPostgres({
    from, to, ...(batchRows ? { batchRows } : {}),
    onMigrate: (m) => process.stderr.write(`${m}\n`),
    // At most a line a second, and the first and last batch's: a resumed or killed copy shows where it was.
    onProgress: (p) => {
      const now = performance.now();
      if (shown !== 0 && now - shown < 1000 && p.done < p.total) return;
      shown = now;
      process.stderr.write(`copied ${p.done}/${p.total} alerts (${Math.round(p.rowsPerSec)} rows/s)\n`);
    },
  });
  process.stdout.write(json ? `${JSON.stringify(result)}\n` : summary(result));
  const bad = result.checks.filter((c) => !c.ok).map((c) => c.table);
  if (bad.length > 0) {
    throw new LdgError('LDG_ERR_DB_COPY_MISMATCH', `the copy in ${result.to} does not match ${from} in ${bad.join(', ')} (rows or sha256 differ, see above). Nothing was deleted: find what changed the target, or copy again into a new database`);
  }
  return 0;
}

function summary(r: CopyResult): string {
  const lines = [`copied ${r.from} to ${r.to}: ${r.copied} alerts in this run${r.resumedAt ? `, ${r.resumedAt} were there from an earlier run` : ''} (${r.seconds.toFixed(1)} s)`];
  const width = Math.max(...r.checks.map((c) => c.table.length));
  for (const c of r.checks) {
    lines.push(c.ok
      ? `  ok        ${c.table.padEnd(width)}  ${String(c.source.rows).padStart(9)} rows  sha256 ${c.source.sha256}`
      : `  MISMATCH  ${c.table.padEnd(width)}  source ${c.source.rows} rows sha256 ${c.source.sha256}; target ${c.target.rows} rows sha256 ${c.target.sha256}`);
  }
  lines.push('not copied:', ...r.notCopied.map((n) => `  ${n}`));
  return `${lines.join('\n')}\n`;
}

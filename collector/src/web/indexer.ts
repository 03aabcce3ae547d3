// The dashboard's search index and counts, kept in a database of their own beside the collector's
// (collector.db → collector.search.db) and filled behind ingest, never inside it:
//
//   alerts_fts  FTS5 over a few fields of each alert (SEARCH_FIELDS), rowid = -alerts.id: FTS5
//               walks its doclists in ascending rowid order fastest (5x on a prefix query over
//               a million alerts), and ascending -id is newest first, the order search shows
//   by_minute   alerts per minute (the overview's chart)
//   by_hour     alerts per hour, host, rule and severity (top hosts, top rules, facets)
//   rules       rule id → name
//   state       the last alerts.id indexed (the cursor)
//
// Why apart: indexing costs about as much as storing (FTS5 ~100 µs an alert here), and the
// collector promises 20,000 durable alerts a second. Done in the writer's transaction it would
// halve that; done as writes to the same file it would hold the one write lock and delay acks.
// Here it takes only its own file's lock, reads the alerts through WAL snapshots (which never block
// the writer), runs in a worker thread at the lowest CPU priority, and catches up when ingest
// leaves it room. The cost is a lag: a new alert is searchable and counted a fraction of a second
// after it is stored, later under a flood; lag() says how far behind it is, and the page shows it.
//
// Everything here is derived: the file can be deleted while the collector is stopped and is
// rebuilt from the alerts table at the next start.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The ECS fields free-text search looks in (the page's client-side match for live alerts uses the same list). */
export const SEARCH_FIELDS = [
  'host.name', 'file.path', 'file.hash.sha256', 'process.name', 'process.executable', 'process.command_line', 'process.pid',
  'process.parent.name', 'process.parent.executable', 'process.parent.pid', 'user.name', 'process.user.name', 'rule.name',
  'kibana.alert.uuid', 'ldguard.attribution', 'ldguard.source',
  // A summary's id finds its held-back records (shared/throttle.ts): the dashboard lists them under it.
  'ldguard.held_back_by',
] as const;

/** Bumped whenever the tables below change: an older search database is dropped and rebuilt. */
const SIDE_VERSION = 2;

const SIDE_SCHEMA = `
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Contentless: the text lives in the alerts table; the index keeps tokens and rowids only.
-- Prefix indexes for 2 to 6 characters: search-as-you-type on a word that is in every alert
-- ("linux", "lib64") reads one prefix doclist instead of merging the doclists of every term that
-- starts that way. They cost ~30% more indexing time, which the indexer spends in the background.
CREATE VIRTUAL TABLE IF NOT EXISTS alerts_fts USING fts5(text, content='', prefix='2 3 4 5 6', tokenize='unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS by_minute (minute INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS by_hour (
  hour INTEGER NOT NULL, host TEXT NOT NULL, rule_id TEXT NOT NULL, severity TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (hour, host, rule_id, severity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rules (rule_id TEXT PRIMARY KEY, name TEXT);
`;

/** collector.db → collector.search.db (beside it, so it shares its folder's 0700). */
export function searchDbPath(mainPath: string): string {
  const base = basename(mainPath);
  const stem = base.endsWith('.db') ? base.slice(0, -3) : base;
  return join(dirname(mainPath), `${stem}.search.db`);
}

function pick(doc: unknown, path: string): unknown {
  let v: unknown = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** The text indexed for one alert document: its SEARCH_FIELDS values joined by spaces. */
export function searchText(doc: unknown): string {
  const out: string[] = [];
  for (const f of SEARCH_FIELDS) {
    const v = pick(doc, f);
    if (typeof v === 'string' || typeof v === 'number') out.push(String(v).slice(0, 4096));
  }
  return out.join(' ');
}

/**
 * The FTS5 query for what a person typed, or undefined when it has nothing to search for. Each
 * word must match (AND); inside a word, the pieces between punctuation form a phrase, and the last
 * piece of the last word is a prefix (search as you type): `ld-lin` → `"ld lin"*`, which finds
 * /lib64/ld-linux-x86-64.so.2. Only letters and digits reach FTS5, so no input can inject syntax.
 */
export function ftsQuery(input: string): string | undefined {
  const words = input.normalize('NFKC').toLowerCase().split(/\s+/).filter(Boolean).slice(0, 8);
  const parts: string[] = [];
  words.forEach((w, i) => {
    const toks = w.match(/[\p{L}\p{N}]+/gu)?.slice(0, 16);
    if (!toks) return;
    const isLast = i === words.length - 1;
    // A one-letter prefix would merge the doclists of a large share of all terms: while the
    // person is still typing ("ld-l"), search for what comes before it.
    if (isLast && toks.length > 1 && toks.at(-1)!.length === 1) toks.pop();
    const prefix = isLast && toks.at(-1)!.length >= 2;
    parts.push(`"${toks.join(' ')}"${prefix ? '*' : ''}`);
  });
  return parts.length ? parts.join(' AND ') : undefined;
}

/**
 * The index holds the alerts' searched text (paths, command lines, user names): as private as the
 * collector's database. Created 0600 here, before SQLite, whatever the umask (outside systemd it is
 * usually 022); SQLite gives the -wal and -shm files the database file's mode. A file an older
 * version left readable by others (it let SQLite create it under the umask) is narrowed to 0600,
 * with its -wal and -shm.
 */
function makePrivate(path: string): void {
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

interface SourceRow {
  id: number;
  ts: number;
  host: string | null;
  rule_id: string;
  rule_name: string | null;
  severity: string;
  doc: string;
}

export class Indexer {
  private readonly db: Database.Database;
  private readonly stmts;

  /** Opens (creating) the search database beside `mainPath` and attaches the collector's database to read it. */
  constructor(mainPath: string, sidePath = searchDbPath(mainPath)) {
    makePrivate(sidePath);
    this.db = new Database(sidePath);
    this.db.pragma('journal_mode = WAL');
    // Derived data: losing the last transactions to a power cut only means indexing them again.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('cache_size = -32768');
    const version = (() => {
      try {
        return (this.db.prepare("SELECT value FROM state WHERE key = 'version'").get() as { value: number } | undefined)?.value;
      } catch {
        return undefined; // a new file
      }
    })();
    if (version !== SIDE_VERSION) {
      this.db.exec('DROP TABLE IF EXISTS alerts_fts; DROP TABLE IF EXISTS by_minute; DROP TABLE IF EXISTS by_hour; DROP TABLE IF EXISTS rules; DROP TABLE IF EXISTS state;');
    }
    this.db.exec(SIDE_SCHEMA);
    this.db.prepare("INSERT OR REPLACE INTO state (key, value) VALUES ('version', ?)").run(SIDE_VERSION);
    this.db.prepare('ATTACH DATABASE ? AS m').run(mainPath);
    this.stmts = {
      cursor: this.db.prepare("SELECT value FROM state WHERE key = 'cursor'"),
      setCursor: this.db.prepare("INSERT INTO state (key, value) VALUES ('cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      next: this.db.prepare('SELECT id, ts, host, rule_id, rule_name, severity, doc FROM m.alerts WHERE id > ? ORDER BY id LIMIT ?'),
      maxId: this.db.prepare('SELECT coalesce(max(id), 0) AS id FROM m.alerts'),
      fts: this.db.prepare('INSERT INTO alerts_fts (rowid, text) VALUES (?, ?)'),
      minute: this.db.prepare('INSERT INTO by_minute (minute, n) VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET n = n + excluded.n'),
      hour: this.db.prepare(`INSERT INTO by_hour (hour, host, rule_id, severity, n) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (hour, host, rule_id, severity) DO UPDATE SET n = n + excluded.n`),
      rule: this.db.prepare('INSERT INTO rules (rule_id, name) VALUES (?, ?) ON CONFLICT (rule_id) DO UPDATE SET name = coalesce(excluded.name, name)'),
    };
  }

  get cursor(): number {
    return (this.stmts.cursor.get() as { value: number } | undefined)?.value ?? 0;
  }

  /** Alerts stored but not yet indexed. */
  lag(): number {
    return Math.max(0, (this.stmts.maxId.get() as { id: number }).id - this.cursor);
  }

  /**
   * Indexes up to `max` alerts past the cursor in one transaction; returns how many. The read of
   * the alerts is a WAL snapshot, so the collector's writer is never waited for nor delayed.
   */
  step(max = 500): number {
    return this.db.transaction(() => {
      const rows = this.stmts.next.all(this.cursor, max) as SourceRow[];
      if (rows.length === 0) return 0;
      // Counts are summed here first: one upsert per bucket rather than one per alert.
      const minutes = new Map<number, number>();
      const hours = new Map<string, [number, string, string, string, number]>();
      const rules = new Map<string, string | null>();
      for (const r of rows) {
        let doc: unknown;
        try {
          doc = JSON.parse(r.doc);
        } catch {
          doc = undefined; // stored documents are JSON; if one is not, it is still counted
        }
        this.stmts.fts.run(-r.id, searchText(doc));
        const minute = Math.floor(r.ts / 60_000);
        minutes.set(minute, (minutes.get(minute) ?? 0) + 1);
        const hour = Math.floor(r.ts / 3_600_000);
        const key = `${hour}\0${r.host ?? ''}\0${r.rule_id}\0${r.severity}`;
        const h = hours.get(key);
        if (h) h[4] += 1;
        else hours.set(key, [hour, r.host ?? '', r.rule_id, r.severity, 1]);
        if (!rules.has(r.rule_id) || r.rule_name) rules.set(r.rule_id, r.rule_name);
      }
      for (const [m, n] of minutes) this.stmts.minute.run(m, n);
      for (const h of hours.values()) this.stmts.hour.run(...h);
      for (const [id, name] of rules) this.stmts.rule.run(id, name);
      this.stmts.setCursor.run(rows.at(-1)!.id);
      return rows.length;
    })(); // deferred, not IMMEDIATE: that would take the write lock of the attached collector database too
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

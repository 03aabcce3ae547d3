// The keys alerts are grouped by (#22 item 2), as columns of the alerts table in both stores,
// filled when a row is written (ingest, `ldguard db copy`) and, for rows written before the
// columns existed, by a migration in batches (store/group-fill.ts).
//
//   by           column      from the document
//   rule         rule_id     kibana.alert.rule.rule_id (ingest's column since schema 1)
//   host         host        host.name (ingest's column: what the list shows)
//   hash         file_hash   file.hash.sha256
//   executable   executable  process.executable (the writer)
//   package      package     ldguard.file_package.name: the package the *file* belongs to, as the
//                            package database judged it once the package manager exited. Chosen over
//                            the writer's ldguard.package.name because the writer is already a key
//                            (executable, nearly one package per executable), while the file's
//                            package is what tells one glibc update on 2,000 hosts (libc6) apart
//                            from the rest. Absent (no key) for a writer that is not a package manager.
//   sender       token_name  the token the alert came through (ldguard.received_from.token_name):
//                            an agent token names one agent, and reads as a name, not a uuid
//
// Held-back records (shared/throttle.ts) carry held_back = 1 and the id of the summary they belong
// to (summary_id, which the summary carries too, held_back = 0). Their hash, executable and package
// keys are their summary's (set by a trigger when the record is written after its summary, as the
// agent sends them), so a record is counted and listed under its summary's group, never as a group
// of its own; rule, host and sender are the summary's already.
//
// One reader of a document for every writer (keysOfParsed): SQLite's writer thread runs its
// source, PostgreSQL's ingest, the fills and the copy call it. Text values only, cut at KEY_CHARS
// code points (a B-tree entry has a size limit: PostgreSQL's is ~2.7 kB); a document that is not
// JSON has no keys. Not in SQL: SQLite's JSON functions in the insert took ingest from 29,000 to
// 9,000 alerts/s at 100,000 rows (one JSON.parse in the writer thread costs far less). Yet that
// parse still held the SQLite store at 19.6-22.5k alerts/s through the scan's batches (30-36k
// without it, test/bench/store-ingest.ts). So for the batches the frame's scan read (nearly all),
// the scan finds the same keys on its way (frame.ts, KEY_FIELDS, held to keysOfParsed's result by
// its unit test), and the writer parses only the general way's rows.

/** The groupings the API and the dashboard offer, and the column each reads. */
export const GROUP_COLUMNS = {
  rule: 'rule_id',
  host: 'host',
  hash: 'file_hash',
  executable: 'executable',
  package: 'package',
  sender: 'token_name',
} as const;

export type GroupBy = keyof typeof GROUP_COLUMNS;
export const GROUP_BYS = Object.keys(GROUP_COLUMNS) as GroupBy[];

export function isGroupBy(v: string): v is GroupBy {
  return Object.hasOwn(GROUP_COLUMNS, v);
}

/** Code points of a key kept: a path of 512 is 2 kB at most in UTF-8, under PostgreSQL's index entry limit. */
export const KEY_CHARS = 512;

export interface GroupKeys {
  fileHash: string | null;
  executable: string | null;
  package: string | null;
  heldBack: boolean;
  summaryId: string | null;
}

/**
 * A key's text cut at keyChars code points, as keysOfParsed cuts it (which repeats this line: it
 * must stand alone). For the frame's scanner (frame.ts), which finds the keys without parsing; its
 * unit test holds the two to the same result.
 */
export function cutKey(v: string, keyChars: number): string {
  return v.length > keyChars ? Array.from(v).slice(0, keyChars).join('') : v;
}

/**
 * The keys of a parsed document. Self-contained (nothing from outside its body): SQLite's writer
 * thread, eval'd CommonJS, runs its source (sqlite.ts), so both stores read documents with this
 * one function.
 */
export function keysOfParsed(d: unknown, keyChars: number): GroupKeys {
  const at = (path: readonly string[]): unknown => {
    let v = d;
    for (const k of path) {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
      v = (v as Record<string, unknown>)[k];
    }
    return v;
  };
  const text = (path: readonly string[]): string | null => {
    const v = at(path);
    if (typeof v !== 'string') return null;
    return v.length > keyChars ? Array.from(v).slice(0, keyChars).join('') : v;
  };
  // A record names its summary (shared/throttle.ts): held_back_by as text. (quota.ts counts any
  // value, to bound storage; a record without a summary id has no summary to be filed under.)
  const heldBack = typeof at(['ldguard', 'held_back_by']) === 'string';
  return {
    fileHash: text(['file', 'hash', 'sha256']),
    executable: text(['process', 'executable']),
    package: text(['ldguard', 'file_package', 'name']),
    heldBack,
    summaryId: heldBack ? text(['ldguard', 'held_back_by']) : text(['ldguard', 'summary', 'id']),
  };
}

/** The group keys of a document (UTF-8 bytes or text); a document that is not JSON has none. */
export function groupKeysOf(doc: Buffer | string): GroupKeys {
  let d: unknown;
  try {
    d = JSON.parse(typeof doc === 'string' ? doc : doc.toString('utf8'));
  } catch {
    return { fileHash: null, executable: null, package: null, heldBack: false, summaryId: null };
  }
  return keysOfParsed(d, KEY_CHARS);
}

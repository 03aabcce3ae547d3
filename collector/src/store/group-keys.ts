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
// Two readers of a document, one rule: SQLite computes the keys in SQL (GROUP_KEYS_SQL, in the
// writer thread, with no copy of the document in JavaScript), PostgreSQL ingest and the copy in
// JavaScript (groupKeysOf) from the bytes it sends anyway. Both take text values only, cut at
// KEY_CHARS code points (a B-tree entry has a size limit: PostgreSQL's is ~2.7 kB), and read a
// document that is not JSON as having no keys.

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

const NO_KEYS: GroupKeys = { fileHash: null, executable: null, package: null, heldBack: false, summaryId: null };

function at(doc: unknown, path: readonly string[]): unknown {
  let v = doc;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

function text(doc: unknown, path: readonly string[]): string | null {
  const v = at(doc, path);
  if (typeof v !== 'string') return null;
  return v.length > KEY_CHARS ? Array.from(v).slice(0, KEY_CHARS).join('') : v;
}

/** The group keys of a document (UTF-8 bytes or text); a document that is not JSON has none. */
export function groupKeysOf(doc: Buffer | string): GroupKeys {
  let d: unknown;
  try {
    d = JSON.parse(typeof doc === 'string' ? doc : doc.toString('utf8'));
  } catch {
    return NO_KEYS;
  }
  // As quota.ts and SQLite's json_type: the field present, whatever its value, marks a record.
  const ldguard = at(d, ['ldguard']);
  const heldBack = ldguard !== null && typeof ldguard === 'object' && !Array.isArray(ldguard) && Object.hasOwn(ldguard, 'held_back_by');
  return {
    fileHash: text(d, ['file', 'hash', 'sha256']),
    executable: text(d, ['process', 'executable']),
    package: text(d, ['ldguard', 'file_package', 'name']),
    heldBack,
    summaryId: heldBack ? text(d, ['ldguard', 'held_back_by']) : text(d, ['ldguard', 'summary', 'id']),
  };
}

/**
 * groupKeysOf in SQLite's SQL, for a document `j` that is the text or NULL (not JSON: wrap it as
 * iif(json_valid(doc), doc, NULL)): the expressions of file_hash, executable, package, held_back
 * and summary_id, in that order.
 */
export function groupKeysSql(j: string): string {
  const t = (path: string) => `CASE WHEN json_type(${j}, '${path}') = 'text' THEN substr(${j} ->> '${path}', 1, ${KEY_CHARS}) END`;
  const held = `(json_type(${j}, '$.ldguard.held_back_by') IS NOT NULL)`;
  return [
    t('$.file.hash.sha256'),
    t('$.process.executable'),
    t('$.ldguard.file_package.name'),
    `CASE WHEN ${j} IS NULL THEN 0 ELSE ${held} END`,
    `CASE WHEN ${held} THEN ${t('$.ldguard.held_back_by')} ELSE ${t('$.ldguard.summary.id')} END`,
  ].join(', ');
}

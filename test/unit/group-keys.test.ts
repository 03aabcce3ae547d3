// The group keys have two readers (store/group-keys.ts): SQLite's SQL (groupKeysSql, in the writer
// thread and the fill) and JavaScript (groupKeysOf, PostgreSQL's ingest and fill, ldguard db
// copy). A database copied from one store to the other must group the same, so both must read
// every document alike, hostile ones included: values that are not text, arrays where objects
// are expected, a key past KEY_CHARS with characters outside the BMP at the cut, a held-back mark
// whose value is null, text that is not JSON.
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { KEY_CHARS, groupKeysOf, groupKeysSql, type GroupKeys } from '../../collector/src/store/group-keys.js';

const long = `/opt/${'x'.repeat(KEY_CHARS - 7)}😀😀tail`;
const DOCS: Array<[string, string]> = [
  ['plain', JSON.stringify({ file: { hash: { sha256: 'abc' } }, process: { executable: '/usr/bin/cp' }, ldguard: { file_package: { name: 'libc6' } } })],
  ['a summary', JSON.stringify({ ldguard: { summary: { id: 's-1' } } })],
  ['a record', JSON.stringify({ ldguard: { held_back_by: 's-1' } })],
  ['a record marked with null', JSON.stringify({ ldguard: { held_back_by: null, summary: { id: 'not-mine' } } })],
  ['numbers and objects where text is expected', JSON.stringify({ file: { hash: { sha256: 42 } }, process: { executable: { x: 1 } }, ldguard: { file_package: { name: true } } })],
  ['arrays where objects are expected', JSON.stringify({ file: [{ hash: { sha256: 'a' } }], process: ['/bin/sh'], ldguard: [] })],
  ['a key past the limit, cut inside astral characters', JSON.stringify({ process: { executable: long } })],
  ['escapes', JSON.stringify({ process: { executable: '/tmp/a"b\\c\u0001é' } })],
  ['not JSON', '{"file": {"hash": '],
  ['empty', '{}'],
];

function sqliteKeys(doc: string): GroupKeys {
  const db = new Database(':memory:');
  try {
    const r = db.prepare(`SELECT ${groupKeysSql('j')} FROM (SELECT iif(json_valid(?), ?, NULL) AS j)`).raw().get(doc, doc) as [string | null, string | null, string | null, number, string | null];
    return { fileHash: r[0], executable: r[1], package: r[2], heldBack: r[3] === 1, summaryId: r[4] };
  } finally {
    db.close();
  }
}

describe('group keys', () => {
  it.each(DOCS)('SQLite and JavaScript read %s alike', (_name, doc) => {
    expect(sqliteKeys(doc)).toEqual(groupKeysOf(doc));
  });

  it('reads what it should', () => {
    expect(groupKeysOf(DOCS[0]![1])).toEqual({ fileHash: 'abc', executable: '/usr/bin/cp', package: 'libc6', heldBack: false, summaryId: null });
    expect(groupKeysOf(DOCS[2]![1])).toMatchObject({ heldBack: true, summaryId: 's-1' });
    expect(groupKeysOf(DOCS[3]![1])).toMatchObject({ heldBack: true, summaryId: null });
    const cut = groupKeysOf(DOCS[6]![1]).executable!;
    expect(Array.from(cut)).toHaveLength(KEY_CHARS);
    expect(cut.endsWith('😀😀')).toBe(true);
    expect(groupKeysOf(Buffer.from(DOCS[8]![1]))).toEqual({ fileHash: null, executable: null, package: null, heldBack: false, summaryId: null });
  });
});

// The group keys' reader (store/group-keys.ts): SQLite's writer thread runs keysOfParsed from its
// source text (it cannot import), PostgreSQL's ingest, the fills and the copy call it. So its
// source must stand alone, and it must read hostile documents as the stores expect: values that are
// not text, arrays where objects are expected, a key past KEY_CHARS with characters outside the
// BMP at the cut, a held-back mark whose value is null, escapes, text that is not JSON.
import { describe, expect, it } from 'vitest';
import { KEY_CHARS, groupKeysOf, keysOfParsed, type GroupKeys } from '../../collector/src/store/group-keys.js';

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

/** As the writer thread gets it: the function's source alone, evaluated where nothing else is in scope. */
const fromSource = new Function(`return (${keysOfParsed.toString()})`)() as typeof keysOfParsed;

function threadKeys(doc: string): GroupKeys {
  let d: unknown;
  try {
    d = JSON.parse(doc);
  } catch {
    return { fileHash: null, executable: null, package: null, heldBack: false, summaryId: null };
  }
  return fromSource(d, KEY_CHARS);
}

describe('group keys', () => {
  it.each(DOCS)('the writer thread\'s copy (the source alone) reads %s as groupKeysOf does', (_name, doc) => {
    expect(threadKeys(doc)).toEqual(groupKeysOf(doc));
  });

  it('reads what it should', () => {
    expect(groupKeysOf(DOCS[0]![1])).toEqual({ fileHash: 'abc', executable: '/usr/bin/cp', package: 'libc6', heldBack: false, summaryId: null });
    expect(groupKeysOf(DOCS[2]![1])).toMatchObject({ heldBack: true, summaryId: 's-1' });
    // Null names no summary: not filed as a record (its own summary id, if any, is read).
    expect(groupKeysOf(DOCS[3]![1])).toMatchObject({ heldBack: false, summaryId: 'not-mine' });
    const cut = groupKeysOf(DOCS[6]![1]).executable!;
    expect(Array.from(cut)).toHaveLength(KEY_CHARS);
    expect(cut.endsWith('😀😀')).toBe(true);
    expect(groupKeysOf(Buffer.from(DOCS[8]![1]))).toEqual({ fileHash: null, executable: null, package: null, heldBack: false, summaryId: null });
  });
});

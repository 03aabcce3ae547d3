// Parsing: the tree for valid queries, positioned errors for malformed ones, and a named refusal
// for every EQL construct ldguard does not run.

import { describe, expect, it } from 'vitest';
import { compileEql, EqlError, parseEql } from '../../shared/eql/index.js';

/** The EqlError thrown by compiling `source` (fails the test if none is thrown). */
function errorOf(source: string): EqlError {
  try {
    compileEql(source);
  } catch (err) {
    if (err instanceof EqlError) return err;
    throw err;
  }
  throw new Error(`expected an EqlError for: ${source}`);
}

describe('parse tree', () => {
  it('builds the tree of the seed query shape', () => {
    const ast = parseEql('file where a == "x" and not b in ("y", "z") or ?c.d like~ ("p*", "q?")');
    expect(ast.kind).toBe('query');
    expect(ast.category).toBe('file');
    const or = ast.condition;
    expect(or.kind).toBe('or');
    if (or.kind !== 'or') return;
    expect(or.left).toMatchObject({
      kind: 'and',
      left: { kind: 'compare', op: '==', value: 'x', field: { path: 'a' } },
      right: { kind: 'not', operand: { kind: 'in', caseInsensitive: false, values: ['y', 'z'], field: { path: 'b' } } },
    });
    expect(or.right).toMatchObject({
      kind: 'like',
      op: 'like~',
      caseInsensitive: true,
      patterns: ['p*', 'q?'],
      field: { path: 'c.d', segments: ['c', 'd'], optional: true },
    });
  });

  it('parses x not in (...) as not (x in (...))', () => {
    const a = parseEql('any where x not in~ ("a")').condition;
    const b = parseEql('any where not x in~ ("a")').condition;
    expect(a).toMatchObject({ kind: 'not', operand: { kind: 'in', caseInsensitive: true, values: ['a'] } });
    expect(b).toMatchObject({ kind: 'not', operand: { kind: 'in', caseInsensitive: true, values: ['a'] } });
  });

  it('records : as a case-insensitive pattern comparison', () => {
    expect(parseEql('any where x : "a*"').condition).toMatchObject({ kind: 'like', op: ':', caseInsensitive: true, patterns: ['a*'] });
    expect(parseEql('any where x like "a*"').condition).toMatchObject({ kind: 'like', op: 'like', caseInsensitive: false });
  });

  it('folds signs into number literals', () => {
    expect(parseEql('any where x == -5').condition).toMatchObject({ value: -5 });
    expect(parseEql('any where x >= - 2.5').condition).toMatchObject({ value: -2.5 });
    expect(parseEql('any where x in (+1, -1)').condition).toMatchObject({ values: [1, -1] });
  });

  it('records positions (1-based)', () => {
    const ast = parseEql('file where\n  process.name == "x"');
    expect(ast.condition).toMatchObject({ pos: { line: 2, column: 3 }, field: { pos: { line: 2, column: 3 } } });
  });

  it('accepts names that only look like keywords', () => {
    // `index`, `inode`, `nothing`, `order` start with keywords but are names.
    const q = compileEql('any where index == 1 and inode == 2 and nothing == 3 and order.by_x == 4');
    expect(q.fields).toEqual(['index', 'inode', 'nothing', 'order.by_x']);
    expect(q.match({ index: 1, inode: 2, nothing: 3, order: { by_x: 4 } })).toBe(true);
  });

  it('keeps a category named in capitals as written (categories are values, not keywords)', () => {
    expect(parseEql('FILE where true').category).toBe('FILE');
  });
});

describe('parse errors carry line, column and what was expected', () => {
  const cases: { source: string; line: number; column: number; expected: RegExp; detail?: RegExp }[] = [
    { source: 'file where process.name = "x"', line: 1, column: 25, expected: /==/, detail: /"=" is not an EQL operator/ },
    { source: 'file where a == 1 and\n  b ==\n', line: 3, column: 1, expected: /string, number, boolean or null/ },
    { source: 'file where a == "abc', line: 1, column: 17, expected: /closing "/, detail: /unterminated string/ },
    { source: 'file where a in ("x",)', line: 1, column: 22, expected: /string, number or boolean/ },
    { source: 'file where (a == 1', line: 1, column: 19, expected: /\)/ },
    { source: 'file where a == 1 AND b == 2', line: 1, column: 19, expected: /and, or/, detail: /lowercase/ },
    { source: 'file WHERE a == 1', line: 1, column: 6, expected: /where/, detail: /lowercase/ },
    { source: 'NOT x == 1', line: 1, column: 5, expected: /where/ },
    { source: 'file where NOT x == 1', line: 1, column: 16, expected: /operator/, detail: /lowercase/ },
    { source: 'file where a like 5', line: 1, column: 19, expected: /a string/, detail: /like compares strings only/ },
    { source: 'file where a : ("x", 1)', line: 1, column: 22, expected: /a string/ },
    { source: 'file where a == "\\q"', line: 1, column: 18, expected: /\\n/, detail: /unknown escape/ },
    { source: 'file where a == "\\u0041"', line: 1, column: 18, expected: /\\u\{/, detail: /\\u\{XXXX\}/ },
    { source: 'file where a == "\\u{1}"', line: 1, column: 18, expected: /2 to 8 hex/ },
    { source: "file where a == 'x'", line: 1, column: 17, expected: /double quotes/, detail: /single-quoted/ },
    { source: 'file where a == ?"x"', line: 1, column: 17, expected: /"""/, detail: /raw strings are not supported/ },
    { source: 'file where a == "x\ny"', line: 1, column: 19, expected: /closing "/, detail: /cannot span lines/ },
    { source: 'file where a <= null', line: 1, column: 17, expected: /string or number/, detail: /null/ },
    { source: 'file where a > true', line: 1, column: 16, expected: /string or number/, detail: /booleans/ },
    { source: 'file where a in ("x", null)', line: 1, column: 23, expected: /string, number or boolean/ },
    { source: 'file where "x" == a', line: 1, column: 12, expected: /field/ },
    { source: 'file where', line: 1, column: 11, expected: /condition/ },
    { source: '', line: 1, column: 1, expected: /event category/ },
    { source: 'file where a.in == 1', line: 1, column: 14, expected: /`in`/, detail: /keyword/ },
    { source: 'file where a == 1)', line: 1, column: 18, expected: /and, or/, detail: /unbalanced/ },
    { source: 'file where a == 12abc', line: 1, column: 19, expected: /and, or/ },
    { source: 'file where a == 9007199254740993', line: 1, column: 17, expected: /integer up to/ },
    { source: 'file where a == 1 /* open', line: 1, column: 19, expected: /\*\//, detail: /unterminated/ },
    { source: 'file where a == 1 # x', line: 1, column: 19, expected: /field/, detail: /unexpected character "#"/ },
    { source: 'file where a not like "x"', line: 1, column: 18, expected: /in or in~/ },
    { source: 'file where `` == 1', line: 1, column: 12, expected: /field name/ },
    { source: 'file where a in "x"', line: 1, column: 17, expected: /\(/ },
    { source: 'file\n\twhere a ==\t\t"x" and b\n', line: 3, column: 1, expected: /operator/ },
  ];

  for (const c of cases) {
    it(JSON.stringify(c.source), () => {
      const err = errorOf(c.source);
      expect(err.code).toBe('LDG_ERR_EQL_PARSE');
      expect({ line: err.line, column: err.column }).toEqual({ line: c.line, column: c.column });
      expect(err.expected).toMatch(c.expected);
      if (c.detail) expect(err.message).toMatch(c.detail);
      expect(err.message.startsWith(`LDG_ERR_EQL_PARSE: line ${c.line}, column ${c.column}: `)).toBe(true);
      expect(err.message.endsWith(`; expected ${err.expected}`)).toBe(true);
    });
  }

  it('is an Error named EqlError', () => {
    const err = errorOf('x');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('EqlError');
  });
});

describe('unsupported constructs are refused by name', () => {
  const cases: { source: string; names: RegExp; column: number }[] = [
    { source: 'sequence by process.entity_id [file where true] [process where true]', names: /"sequence" queries/, column: 1 },
    { source: 'sequence with maxspan=1m [file where true] [process where true]', names: /"sequence" queries/, column: 1 },
    { source: 'sample by host.id [file where true] [process where true]', names: /"sample" queries/, column: 1 },
    { source: 'join [file where true] [process where true]', names: /"join" queries/, column: 1 },
    { source: 'file where startsWith(file.path, "/lib")', names: /function calls such as startsWith\(\)/, column: 12 },
    { source: 'file where length(file.name) > 5', names: /function calls such as length\(\)/, column: 12 },
    { source: 'file where stringContains~(file.path, "ld")', names: /stringContains~\(\)/, column: 12 },
    { source: 'file where file.path == concat("a", "b")', names: /function calls such as concat\(\)/, column: 25 },
    { source: 'file where true | head 5', names: /pipes/, column: 17 },
    { source: 'file where (a == 1 | tail 1)', names: /pipes/, column: 20 },
    { source: 'file where true by process.entity_id', names: /"by"/, column: 17 },
    { source: 'file where true with maxspan=5m', names: /"with"/, column: 17 },
    { source: 'file where true until [process where true]', names: /"until"/, column: 17 },
    { source: 'file where process.pid + 1 == 2', names: /arithmetic \("\+"\)/, column: 24 },
    { source: 'file where process.pid == 1 * 2', names: /arithmetic \("\*"\)/, column: 29 },
    { source: 'file where process.pid == 4 % 2', names: /arithmetic \("%"\)/, column: 29 },
    { source: 'file where -process.pid == 1', names: /arithmetic \("-"\)/, column: 12 },
    { source: 'file where process.name == process.executable', names: /field to another field/, column: 28 },
    { source: 'file where process.name in ("a", process.executable)', names: /field to another field/, column: 34 },
    { source: 'file where process.name : ?process.executable', names: /field to another field/, column: 27 },
    { source: 'file where process.name regex "d.*"', names: /"regex"/, column: 25 },
    { source: 'file where process.name regex~ ("d.*")', names: /"regex~"/, column: 25 },
    { source: 'file where process.args[0] == "x"', names: /array indexing/, column: 24 },
    { source: 'process where descendant of [process where process.name == "x"]', names: /lineage/, column: 26 },
  ];

  for (const c of cases) {
    it(c.source, () => {
      const err = errorOf(c.source);
      expect(err.code).toBe('LDG_ERR_EQL_UNSUPPORTED');
      expect(err.message).toMatch(c.names);
      expect(err.line).toBe(1);
      expect(err.column).toBe(c.column);
      expect(err.message.startsWith(`LDG_ERR_EQL_UNSUPPORTED: line 1, column ${c.column}: `)).toBe(true);
    });
  }
});

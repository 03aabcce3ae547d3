// Operator semantics, with cases taken from the Elasticsearch EQL syntax reference where it gives
// them, and the null / array / type decisions documented in shared/eql/compile.ts.

import { describe, expect, it } from 'vitest';
import { compileEql } from '../../shared/eql/index.js';

/** Evaluates `condition` (an `any where` query) against a document holding `my_field: value`. */
function holds(condition: string, value: unknown): boolean {
  const doc = value === undefined ? {} : { my_field: value };
  return compileEql(`any where ${condition}`).match(doc);
}

describe('comparison operators', () => {
  it('== is case-sensitive and exact, wildcards are literal', () => {
    expect(holds('my_field == "svchost.exe"', 'svchost.exe')).toBe(true);
    expect(holds('my_field == "svchost.exe"', 'SVCHOST.EXE')).toBe(false);
    expect(holds('my_field == "cmd*.exe"', 'cmd64.exe')).toBe(false);
    expect(holds('my_field == "cmd*.exe"', 'cmd*.exe')).toBe(true);
  });

  it('!= is the negation of ==', () => {
    expect(holds('my_field != "a"', 'b')).toBe(true);
    expect(holds('my_field != "a"', 'a')).toBe(false);
    expect(holds('my_field != "a"', 'A')).toBe(true);
  });

  it('numbers compare numerically, ints and floats alike', () => {
    expect(holds('my_field == 4624', 4624)).toBe(true);
    expect(holds('my_field == 1', 1.0)).toBe(true);
    expect(holds('my_field == 1.5', 1.5)).toBe(true);
    expect(holds('my_field == -3', -3)).toBe(true);
    expect(holds('my_field == 1e3', 1000)).toBe(true);
    expect(holds('my_field == .5', 0.5)).toBe(true);
    expect(holds('my_field < 10', 9)).toBe(true);
    expect(holds('my_field < 10', 10)).toBe(false);
    expect(holds('my_field <= 10', 10)).toBe(true);
    expect(holds('my_field > -1', 0)).toBe(true);
    expect(holds('my_field >= 2.5', 2.5)).toBe(true);
    expect(holds('my_field >= 2.5', 2.4)).toBe(false);
  });

  it('strings order case-sensitively by code point', () => {
    expect(holds('my_field < "b"', 'a')).toBe(true);
    expect(holds('my_field > "a"', 'B')).toBe(false); // "B" (0x42) sorts before "a" (0x61)
    expect(holds('my_field >= "abc"', 'abc')).toBe(true);
    expect(holds('my_field > "ab"', 'abc')).toBe(true);
    // U+FFFF sorts before U+1F600 in code point (UTF-8) order, unlike UTF-16 code unit order.
    expect(holds('my_field < "\u{1F600}"', '\uFFFF')).toBe(true);
  });

  it('booleans match JSON booleans only', () => {
    expect(holds('my_field == true', true)).toBe(true);
    expect(holds('my_field == true', 'true')).toBe(false);
    expect(holds('my_field == false', false)).toBe(true);
    expect(holds('my_field != false', true)).toBe(true);
  });

  it('never coerces between strings and numbers', () => {
    expect(holds('my_field == 5', '5')).toBe(false);
    expect(holds('my_field == "5"', 5)).toBe(false);
    expect(holds('my_field > 1', '5')).toBe(false);
    expect(holds('my_field < "9"', 5)).toBe(false);
    expect(holds('my_field like "5*"', 55)).toBe(false);
    expect(holds('my_field in ("5")', 5)).toBe(false);
    // != is not (==), so a mismatched type is "not equal"
    expect(holds('my_field != 5', '5')).toBe(true);
  });
});

describe('pattern comparison (reference, "Wildcards")', () => {
  const cases: [string, string[], string[]][] = [
    ['my_field : "doc*"', ['doc', 'docs', 'document', 'DOC'], ['DOS']],
    ['my_field : "*doc"', ['adoc', 'asciidoc'], ['docs']],
    ['my_field : "d*c"', ['doc', 'disc'], ['dock']],
    ['my_field like "DOC*"', ['DOC', 'DOCS', 'DOCs', 'DOCUMENT'], ['DOS', 'doc']],
    ['my_field like "D*C"', ['DOC', 'DISC', 'DisC'], ['doc']],
    ['my_field : "doc?"', ['docs'], ['doc', 'document', 'DOS']],
    ['my_field : "?doc"', ['adoc'], ['asciidoc']],
    ['my_field : "d?c"', ['doc'], ['disc']],
    ['my_field like "DOC?"', ['DOCS', 'DOCs'], ['DOC', 'DOCUMENT', 'DOS']],
    // The reference lists `like "D?c"` as matching "DOC"; that contradicts `like` being
    // case-sensitive (c vs C), and we follow the operator's definition.
    ['my_field like "D?c"', ['DOc'], ['DOC', 'DISC']],
    ['my_field like~ "value*"', ['VALUE-1', 'value'], ['valu']],
    ['my_field : ("doc*", "f*o", "ba?", "qux")', ['DOCS', 'foo', 'FxxO', 'bar', 'QUX'], ['ba', 'quux']],
    ['my_field like ("Doc*", "F*O", "BA?", "QUX")', ['Doc', 'FOO', 'BAR', 'QUX'], ['doc', 'foo', 'qux']],
  ];
  for (const [condition, yes, no] of cases) {
    it(condition, () => {
      for (const v of yes) expect(holds(condition, v), `${v} should match`).toBe(true);
      for (const v of no) expect(holds(condition, v), `${v} should not match`).toBe(false);
    });
  }

  it('* matches across / and the whole value must match', () => {
    expect(holds('my_field like "/lib/*.so"', '/lib/a/b/c.so')).toBe(true);
    expect(holds('my_field like "/lib/*.so"', '/lib/a.so.1')).toBe(false);
    expect(holds('my_field like "lib"', '/lib/')).toBe(false);
  });

  it('? matches one character, an emoji included', () => {
    expect(holds('my_field like "?"', '\u{1F600}')).toBe(true);
    expect(holds('my_field like "??"', '\u{1F600}')).toBe(false);
  });

  it('does not match non-string values', () => {
    expect(holds('my_field : "*"', 5)).toBe(false);
    expect(holds('my_field like "*"', true)).toBe(false);
  });
});

describe('lookup operators (reference, "Lookup operators")', () => {
  it('in is case-sensitive', () => {
    expect(holds('my_field in ("Value-1", "VALUE2", "VAL3")', 'VALUE2')).toBe(true);
    expect(holds('my_field in ("Value-1", "VALUE2", "VAL3")', 'value2')).toBe(false);
  });

  it('in~ is case-insensitive', () => {
    expect(holds('my_field in~ ("value-1", "value2", "val3")', 'VALUE2')).toBe(true);
    expect(holds('my_field in~ ("value-1", "value2", "val3")', 'Val3')).toBe(true);
    expect(holds('my_field in~ ("value-1", "value2", "val3")', 'val4')).toBe(false);
    expect(holds('my_field in~ ("ÉTÉ")', 'été')).toBe(true);
  });

  it('not in and not in~, in both spellings', () => {
    expect(holds('my_field not in ("Value-1", "VALUE2", "VAL3")', 'value2')).toBe(true);
    expect(holds('my_field not in ("Value-1", "VALUE2", "VAL3")', 'VALUE2')).toBe(false);
    expect(holds('not my_field in ("Value-1", "VALUE2")', 'VALUE2')).toBe(false);
    expect(holds('my_field not in~ ("value-1", "value2", "val3")', 'VALUE2')).toBe(false);
    expect(holds('my_field not in~ ("value-1", "value2", "val3")', 'other')).toBe(true);
  });

  it('wildcards are literal characters in in and in~', () => {
    expect(holds('my_field in ("/dev/fd/*")', '/dev/fd/3')).toBe(false);
    expect(holds('my_field in ("/dev/fd/*")', '/dev/fd/*')).toBe(true);
    expect(holds('my_field in~ ("a?c")', 'abc')).toBe(false);
    expect(holds('my_field in~ ("a?c")', 'A?C')).toBe(true);
  });

  it('mixes numbers, booleans and strings, each matching its own type', () => {
    expect(holds('my_field in (1, 2, 3)', 2)).toBe(true);
    expect(holds('my_field in (1, 2, 3)', '2')).toBe(false);
    expect(holds('my_field in (-1, true)', -1)).toBe(true);
    expect(holds('my_field in (-1, true)', true)).toBe(true);
    expect(holds('my_field in (-1, true)', false)).toBe(false);
    expect(holds('my_field in~ ("A", 7)', 7)).toBe(true);
  });

  it('handles long lists', () => {
    const list = Array.from({ length: 500 }, (_, i) => `"/usr/bin/tool${i}"`).join(', ');
    expect(holds(`my_field in (${list})`, '/usr/bin/tool499')).toBe(true);
    expect(holds(`my_field in (${list})`, '/usr/bin/tool500')).toBe(false);
    expect(holds(`my_field in~ (${list})`, '/USR/BIN/TOOL250')).toBe(true);
    expect(holds(`my_field in~ (${list})`, '/USR/BIN/TOOL')).toBe(false);
  });
});

describe('null and missing fields', () => {
  // Missing, explicit null, empty array and array of nulls are all "no value" (an exists query
  // matches none of them); an empty string is a value.
  const missing: [string, unknown][] = [
    ['absent', undefined],
    ['null', null],
    ['[]', []],
    ['[null]', [null]],
  ];

  for (const [label, value] of missing) {
    it(`${label}: == null holds, != null does not, comparisons are false`, () => {
      expect(holds('my_field == null', value)).toBe(true);
      expect(holds('my_field != null', value)).toBe(false);
      expect(holds('my_field == "a"', value)).toBe(false);
      expect(holds('my_field in ("a")', value)).toBe(false);
      expect(holds('my_field like "*"', value)).toBe(false);
      expect(holds('my_field : "*"', value)).toBe(false);
      expect(holds('my_field < 5', value)).toBe(false);
      expect(holds('my_field >= 5', value)).toBe(false);
    });

    it(`${label}: not / != / not in hold, as bool must_not does`, () => {
      expect(holds('not my_field == "a"', value)).toBe(true);
      expect(holds('not (my_field == "a")', value)).toBe(true);
      expect(holds('my_field != "a"', value)).toBe(true);
      expect(holds('my_field not in ("a", "b")', value)).toBe(true);
      expect(holds('not my_field like~ "a*"', value)).toBe(true);
      expect(holds('not my_field < 5', value)).toBe(true);
    });
  }

  it('an empty string exists', () => {
    expect(holds('my_field != null', '')).toBe(true);
    expect(holds('my_field == null', '')).toBe(false);
    expect(holds('my_field == ""', '')).toBe(true);
  });

  it('false and 0 exist', () => {
    expect(holds('my_field != null', false)).toBe(true);
    expect(holds('my_field != null', 0)).toBe(true);
  });

  it('a missing parent object means a missing field', () => {
    const q = compileEql('any where process.parent.name == null');
    expect(q.match({})).toBe(true);
    expect(q.match({ process: null })).toBe(true);
    expect(q.match({ process: 'not an object' })).toBe(true);
    expect(q.match({ process: { parent: { name: 'bash' } } })).toBe(false);
  });

  it('?field reads the same as field', () => {
    expect(holds('?my_field == null', undefined)).toBe(true);
    expect(holds('?my_field == "a"', 'a')).toBe(true);
    expect(holds('not ?my_field like~ "a*"', undefined)).toBe(true);
  });
});

describe('multi-valued fields', () => {
  it('a comparison holds when any element holds', () => {
    expect(holds('my_field == "b"', ['a', 'b'])).toBe(true);
    expect(holds('my_field == "c"', ['a', 'b'])).toBe(false);
    expect(holds('my_field in ("x", "b")', ['a', 'b'])).toBe(true);
    expect(holds('my_field like "b*"', ['a', 'bee'])).toBe(true);
    expect(holds('my_field > 5', [1, 9])).toBe(true);
    expect(holds('my_field == "a"', [null, 'a'])).toBe(true);
    expect(holds('my_field == "a"', [['a']])).toBe(true);
  });

  it('!= holds only when no element equals', () => {
    expect(holds('my_field != "a"', ['a', 'b'])).toBe(false);
    expect(holds('my_field != "c"', ['a', 'b'])).toBe(true);
  });

  it('not in holds only when no element is in the list', () => {
    expect(holds('my_field not in ("a")', ['a', 'b'])).toBe(false);
    expect(holds('my_field not in ("c")', ['a', 'b'])).toBe(true);
  });

  it('a range holds when any element is in range, not necessarily the same one for both ends', () => {
    // As with Elasticsearch, `x > 5 and x < 3` can hold on [1, 9]: each comparison is separate.
    expect(holds('my_field > 5 and my_field < 3', [1, 9])).toBe(true);
  });
});

describe('logical operators', () => {
  const doc = { a: 1, b: 2 };
  const run = (c: string): boolean => compileEql(`any where ${c}`).match(doc);

  it('and, or, not and parentheses', () => {
    expect(run('a == 1 and b == 2')).toBe(true);
    expect(run('a == 1 and b == 3')).toBe(false);
    expect(run('a == 0 or b == 2')).toBe(true);
    expect(run('a == 0 or b == 0')).toBe(false);
    expect(run('not a == 0')).toBe(true);
    expect(run('not not a == 1')).toBe(true);
  });

  it('not binds tighter than and, and tighter than or', () => {
    // (not a == 1) and b == 3 → false; not (a == 1 and b == 3) would be true
    expect(run('not a == 1 and b == 3')).toBe(false);
    expect(run('not (a == 1 and b == 3)')).toBe(true);
    // a == 1 or (b == 0 and a == 0) → true; (a == 1 or b == 0) and a == 0 would be false
    expect(run('a == 1 or b == 0 and a == 0')).toBe(true);
    expect(run('(a == 1 or b == 0) and a == 0')).toBe(false);
  });

  it('where true / where false', () => {
    expect(compileEql('file where true').match({ event: { category: 'file' } })).toBe(true);
    expect(compileEql('file where true').match({ event: { category: 'process' } })).toBe(false);
    expect(compileEql('any where true').match({})).toBe(true);
    expect(compileEql('any where false').match({})).toBe(false);
  });
});

describe('event category', () => {
  it('tests that event.category includes the category', () => {
    const q = compileEql('process where process.name == "svchost.exe"');
    expect(q.match({ event: { category: 'process' }, process: { name: 'svchost.exe' } })).toBe(true);
    expect(q.match({ event: { category: ['process', 'network'] }, process: { name: 'svchost.exe' } })).toBe(true);
    expect(q.match({ event: { category: ['file'] }, process: { name: 'svchost.exe' } })).toBe(false);
    expect(q.match({ process: { name: 'svchost.exe' } })).toBe(false);
    expect(q.match({ event: { category: 'Process' }, process: { name: 'svchost.exe' } })).toBe(false);
  });

  it('any matches every category and documents without one', () => {
    const q = compileEql('any where network.protocol == "http"');
    expect(q.match({ network: { protocol: 'http' } })).toBe(true);
    expect(q.match({ event: { category: 'network' }, network: { protocol: 'http' } })).toBe(true);
    expect(q.match({ network: { protocol: 'dns' } })).toBe(false);
    expect(q.category).toBe('any');
    expect(q.fields).toEqual(['network.protocol']);
  });

  it('accepts quoted categories', () => {
    expect(compileEql('"my-event-category" where true').match({ event: { category: 'my-event-category' } })).toBe(true);
    expect(compileEql('""".my.event.category""" where true').category).toBe('.my.event.category');
  });
});

describe('field lookup', () => {
  const q = compileEql('any where process.parent.name == "bash"');

  it('reads nested objects, flat dotted keys and mixes of both', () => {
    expect(q.match({ process: { parent: { name: 'bash' } } })).toBe(true);
    expect(q.match({ 'process.parent.name': 'bash' })).toBe(true);
    expect(q.match({ process: { 'parent.name': 'bash' } })).toBe(true);
    expect(q.match({ 'process.parent': { name: 'bash' } })).toBe(true);
    expect(q.match({ process: { parent: { name: 'zsh' } } })).toBe(false);
  });

  it('descends through arrays of objects', () => {
    expect(q.match({ process: [{ parent: { name: 'zsh' } }, { parent: { name: 'bash' } }] })).toBe(true);
    expect(q.match({ process: { parent: [{ name: 'zsh' }] } })).toBe(false);
  });

  it('sees a value held under both spellings', () => {
    expect(q.match({ process: { parent: { name: 'zsh' } }, 'process.parent.name': 'bash' })).toBe(true);
    const neq = compileEql('any where process.parent.name != "bash"');
    expect(neq.match({ process: { parent: { name: 'zsh' } }, 'process.parent.name': 'bash' })).toBe(false);
  });

  it('does not read inherited properties', () => {
    const proto = compileEql('any where constructor != null');
    expect(proto.match({})).toBe(false);
    expect(compileEql('any where toString == null').match({})).toBe(true);
  });

  it('reads backquoted field names', () => {
    expect(compileEql('any where `my field` == 1').match({ 'my field': 1 })).toBe(true);
    expect(compileEql('any where `6myfield` == 1').match({ '6myfield': 1 })).toBe(true);
    expect(compileEql('any where `my-field`.`a``b` == 1').match({ 'my-field': { 'a`b': 1 } })).toBe(true);
    expect(compileEql('any where @timestamp != null').match({ '@timestamp': 'x' })).toBe(true);
  });

  it('ignores non-object documents', () => {
    expect(q.match(null)).toBe(false);
    expect(q.match('process.parent.name')).toBe(false);
    expect(q.match(42)).toBe(false);
  });

  it('does not modify the document', () => {
    const doc = { process: { parent: { name: 'bash' } } };
    const copy = structuredClone(doc);
    q.match(doc);
    expect(doc).toEqual(copy);
  });
});

describe('strings', () => {
  const q = (literal: string, value: string): boolean => holds(`my_field == ${literal}`, value);

  it('decodes the escapes of the reference', () => {
    expect(q('"example \\r of \\" escaped \\n characters"', 'example \r of " escaped \n characters')).toBe(true);
    expect(q('"a\\tb\\\\c"', 'a\tb\\c')).toBe(true);
    expect(q('"\\u{200f}"', '\u200f')).toBe(true);
    expect(q('"\\u{200F}"', '\u200f')).toBe(true);
    expect(q('"\\u{0000200f}"', '\u200f')).toBe(true);
    expect(q('"\\u{1F600}"', '\u{1F600}')).toBe(true);
  });

  it('keeps backslashes and quotes in """raw""" strings', () => {
    expect(q('"""Raw string with a literal double quote " and blackslash \\ included"""', 'Raw string with a literal double quote " and blackslash \\ included')).toBe(true);
    expect(q('"""C:\\Windows\\*"""', 'C:\\Windows\\*')).toBe(true);
    expect(q('"""ends with a quote""""', 'ends with a quote"')).toBe(true);
    expect(q('""""""', '')).toBe(true);
  });

  it('skips comments', () => {
    const c = compileEql('any where /* block /* nested */ */ my_field == 1 // trailing\n and other == 2');
    expect(c.match({ my_field: 1, other: 2 })).toBe(true);
    expect(c.match({ my_field: 1, other: 3 })).toBe(false);
  });
});

// Tokeniser for the EQL grammar of Elasticsearch (x-pack/plugin/eql/src/main/antlr/EqlBase.g4).
// It follows that grammar's lexical rules, including the parts ldguard later refuses (operators
// like `|`, `[`, arithmetic), so the parser can name an unsupported construct precisely instead of
// failing on an odd character.
//
// Lexical facts taken from the grammar and the EQL syntax reference:
// - keywords are lowercase only (`and`, not `AND`); the lexer keeps every word an `ident` and the
//   parser decides, case-sensitively, whether it is a keyword;
// - identifiers are [A-Za-z_@][A-Za-z0-9_]*; a word followed directly by `~` (`in~`, `like~`,
//   `endsWith~`) is one token;
// - `` `field name` `` is a quoted identifier, ``` `` ``` inside it is a literal backtick;
// - strings: "..." with escapes \b \t \n \f \r \" \' \\ and \u{XXXX} (2 to 8 hex digits; the
//   reference has no bare \uXXXX form); """raw""" strings without escapes; neither may span lines;
//   '...' and ?"..." are lexed only to be refused with a clear message, as Elasticsearch does;
// - // line comments and nestable /* block comments */.

import { EqlError } from './errors.js';

export type TokenKind = 'ident' | 'qident' | 'string' | 'number' | 'punct' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** ident: the word (with a trailing `~` if any); qident/string: the decoded value;
   *  number: the source text; punct: the operator; eof: ''. */
  readonly text: string;
  /** For numbers, the parsed value. */
  readonly value?: number;
  readonly line: number;
  readonly column: number;
}

// Longest first, so `<=` is not read as `<` then `=`.
const PUNCTUATION = ['==', '!=', '<=', '>=', '<', '>', '=', ':', '(', ')', ',', '.', '[', ']', '|', '+', '-', '*', '/', '%', '?', '!'];

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
const isLetter = (c: string | undefined): boolean =>
  c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
const isHex = (c: string | undefined): boolean =>
  c !== undefined && (isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));

export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;

  const fail = (at: number, detail: string, expected?: string): never => {
    // Recompute the line of `at`, which may be past the current token start inside a string.
    let l = 1;
    let ls = 0;
    for (let k = 0; k < at; k++) {
      if (source[k] === '\n') {
        l++;
        ls = k + 1;
      }
    }
    throw new EqlError('LDG_ERR_EQL_PARSE', l, at - ls + 1, detail, expected);
  };

  // Position of the token being read; set before it is consumed, since a quoted field name may
  // span lines.
  let tokLine = 1;
  let tokColumn = 1;
  const push = (kind: TokenKind, text: string, value?: number): void => {
    tokens.push({ kind, text, value, line: tokLine, column: tokColumn });
  };

  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];

    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      const open = i;
      let depth = 0;
      while (i < source.length) {
        if (source[i] === '/' && source[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (source[i] === '*' && source[i + 1] === '/') {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else {
          if (source[i] === '\n') {
            line++;
            lineStart = i + 1;
          }
          i++;
        }
      }
      if (depth !== 0) fail(open, 'unterminated /* comment', '*/');
      continue;
    }

    const start = i;
    tokLine = line;
    tokColumn = start - lineStart + 1;
    if (isLetter(c) || c === '_' || c === '@') {
      i++;
      while (i < source.length && (isLetter(source[i]) || isDigit(source[i]) || source[i] === '_')) i++;
      if (source[i] === '~') i++;
      push('ident', source.slice(start, i));
      continue;
    }

    if (c === '`') {
      i++;
      let name = '';
      for (;;) {
        if (i >= source.length) fail(start, 'unterminated quoted field name', 'a closing `');
        if (source[i] === '`') {
          if (source[i + 1] === '`') {
            name += '`';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (source[i] === '\n') {
          line++;
          lineStart = i + 1;
        }
        name += source[i];
        i++;
      }
      if (name === '') fail(start, 'empty quoted field name', 'a field name between the backticks');
      push('qident', name);
      continue;
    }

    if (c === '"') {
      if (next === '"' && source[i + 2] === '"') {
        // Raw string: everything up to the first `"""`, plus up to two more quotes that belong to
        // the content (grammar: '"""' (~[\r\n])*? '"""' '"'? '"'?).
        i += 3;
        const contentStart = i;
        while (i < source.length && !(source[i] === '"' && source[i + 1] === '"' && source[i + 2] === '"')) {
          if (source[i] === '\n' || source[i] === '\r') fail(i, 'a """raw string""" cannot span lines', '"""');
          i++;
        }
        if (i >= source.length) fail(start, 'unterminated """raw string"""', '"""');
        let end = i + 3;
        let extra = 0;
        while (extra < 2 && source[end] === '"') {
          end++;
          extra++;
        }
        const content = source.slice(contentStart, end - 3);
        i = end;
        push('string', content);
        continue;
      }
      i++;
      let value = '';
      for (;;) {
        const ch = source[i];
        if (ch === undefined) fail(start, 'unterminated string', 'a closing "');
        if (ch === '\n' || ch === '\r') fail(i, 'a string cannot span lines (write \\n for a newline)', 'a closing "');
        if (ch === '"') {
          i++;
          break;
        }
        if (ch === '\\') {
          const e = source[i + 1];
          switch (e) {
            case 'n': value += '\n'; i += 2; continue;
            case 't': value += '\t'; i += 2; continue;
            case 'r': value += '\r'; i += 2; continue;
            case 'b': value += '\b'; i += 2; continue;
            case 'f': value += '\f'; i += 2; continue;
            case '"': value += '"'; i += 2; continue;
            case "'": value += "'"; i += 2; continue;
            case '\\': value += '\\'; i += 2; continue;
            case 'u': {
              if (source[i + 2] !== '{') {
                fail(i, 'Unicode escapes are written \\u{XXXX} in EQL', '\\u{ followed by 2 to 8 hex digits and }');
              }
              let k = i + 3;
              while (isHex(source[k])) k++;
              const hex = source.slice(i + 3, k);
              if (source[k] !== '}' || hex.length < 2 || hex.length > 8) {
                fail(i, `invalid Unicode escape`, '\\u{ followed by 2 to 8 hex digits and }');
              }
              const cp = parseInt(hex, 16);
              if (cp > 0x10ffff) fail(i, `Unicode escape \\u{${hex}} is beyond U+10FFFF`, 'a code point up to 10FFFF');
              value += String.fromCodePoint(cp);
              i = k + 1;
              continue;
            }
            default:
              fail(i, `unknown escape sequence \\${e ?? ''}`, 'one of \\n \\r \\t \\b \\f \\" \\\' \\\\ \\u{XXXX}');
          }
        }
        value += ch;
        i++;
      }
      push('string', value);
      continue;
    }

    if (c === "'") {
      fail(i, 'single-quoted strings are not supported by EQL', 'a string in double quotes ("...")');
    }
    if (c === '?' && (next === '"' || next === "'")) {
      fail(i, '?"..." raw strings are not supported by Elasticsearch EQL', 'a raw string in triple double quotes ("""...""")');
    }

    // `.5` is a number unless it continues a field path (`a.b`): EQL numbers never follow a name.
    const prev = tokens[tokens.length - 1];
    const dotStartsNumber = c === '.' && isDigit(next) && !(prev !== undefined && (prev.kind === 'ident' || prev.kind === 'qident'));
    if (isDigit(c) || dotStartsNumber) {
      while (isDigit(source[i])) i++;
      if (source[i] === '.') {
        i++;
        while (isDigit(source[i])) i++;
      }
      if (source[i] === 'e' || source[i] === 'E') {
        let k = i + 1;
        if (source[k] === '+' || source[k] === '-') k++;
        if (isDigit(source[k])) {
          i = k;
          while (isDigit(source[i])) i++;
        }
      }
      // Like ANTLR, `5m` lexes as the number 5 then the word m (maxspan=5m); the parser rejects
      // the pair where it makes no sense.
      const text = source.slice(start, i);
      const value = Number(text);
      if (!Number.isFinite(value)) fail(start, `number ${text} is out of range`, 'a finite number');
      if (/^[0-9]+$/.test(text) && !Number.isSafeInteger(value)) {
        // Elasticsearch compares longs exactly; a double cannot, so refuse rather than round.
        fail(start, `integer ${text} is too large to compare exactly`, `an integer up to ${Number.MAX_SAFE_INTEGER}`);
      }
      push('number', text, value);
      continue;
    }

    const op = PUNCTUATION.find((p) => source.startsWith(p, i));
    if (op !== undefined) {
      i += op.length;
      push('punct', op);
      continue;
    }

    const cp = source.codePointAt(i)!;
    fail(i, `unexpected character ${JSON.stringify(String.fromCodePoint(cp))}`, 'a field, operator, string or number');
  }
  tokens.push({ kind: 'eof', text: '', line, column: i - lineStart + 1 });
  return tokens;
}

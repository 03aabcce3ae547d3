// Recursive-descent parser for `<category> where <condition>`, following the precedence of
// Elasticsearch's EqlBase.g4: `not` binds tighter than `and`, which binds tighter than `or`, so
// `not a in (...) and b` is `(not (a in (...))) and b`. Constructs of the full language that
// ldguard does not run are recognised and refused with LDG_ERR_EQL_UNSUPPORTED naming them, so a
// rule is never silently mis-read as something else.

import type { ComparisonOp, Expr, FieldRef, Literal, Position, QueryAst } from './ast.js';
import { EqlError } from './errors.js';
import { tokenize, type Token } from './lexer.js';

// Every keyword of the grammar. Lowercase only: Elasticsearch deliberately dropped the
// case-insensitive stream (elastic/elasticsearch#49658), so `AND` is a name, not a keyword.
const KEYWORDS = new Set([
  'and', 'any', 'by', 'false', 'in', 'in~', 'join', 'like', 'like~', 'maxspan', 'not', 'null', 'of',
  'or', 'regex', 'regex~', 'sample', 'sequence', 'true', 'until', 'where', 'with',
]);

const COMPARISON_OPS = new Set<string>(['==', '!=', '<', '<=', '>', '>=']);
const ARITHMETIC = new Set<string>(['+', '-', '*', '/', '%']);

const EXPECT_CONDITION = 'a condition: a field comparison, not, (, true or false';
const EXPECT_OPERATOR = 'an operator: ==, !=, <, <=, >, >=, :, like, like~, in, in~ or not in';
const EXPECT_AFTER_CONDITION = 'and, or, or the end of the query';

export function parseEql(source: string): QueryAst {
  return new Parser(source, tokenize(source)).parseQuery();
}

class Parser {
  private index = 0;

  constructor(
    private readonly source: string,
    private readonly tokens: readonly Token[],
  ) {}

  parseQuery(): QueryAst {
    const first = this.peek();
    if (this.isWord(first, 'sequence') || this.isWord(first, 'sample') || this.isWord(first, 'join')) {
      throw this.unsupported(first, `"${first.text}" queries are not supported: ldguard matches single events`, '<category> where <condition>');
    }
    let category: string;
    if (this.isWord(first, 'any')) {
      category = 'any';
    } else if (first.kind === 'string' || (first.kind === 'ident' && !KEYWORDS.has(first.text) && !first.text.endsWith('~'))) {
      category = first.text;
    } else {
      throw this.error(first, `query starts with ${describe(first)}`, 'an event category (such as file or process), any, or a category in double quotes');
    }
    this.index++;

    const where = this.peek();
    if (!this.isWord(where, 'where')) {
      throw this.error(where, `found ${describe(where)} after the event category${keywordHint(where)}`, 'where');
    }
    this.index++;

    const condition = this.parseOr();
    const end = this.peek();
    if (end.kind !== 'eof') this.refuseTrailing(end);
    return { kind: 'query', category, condition, source: this.source };
  }

  private refuseTrailing(t: Token): never {
    if (t.kind === 'punct' && t.text === '|') {
      throw this.unsupported(t, 'pipes (| head, | tail, ...) are not supported: each event is matched on its own', EXPECT_AFTER_CONDITION);
    }
    if (t.kind === 'ident' && ['by', 'with', 'maxspan', 'until'].includes(t.text)) {
      throw this.unsupported(t, `"${t.text}" is part of sequence queries, which are not supported`, EXPECT_AFTER_CONDITION);
    }
    if (t.kind === 'punct' && ARITHMETIC.has(t.text)) {
      throw this.unsupported(t, `arithmetic ("${t.text}") is not supported`, EXPECT_AFTER_CONDITION);
    }
    if (t.kind === 'punct' && t.text === ')') {
      throw this.error(t, 'unbalanced ")"', EXPECT_AFTER_CONDITION);
    }
    throw this.error(t, `found ${describe(t)}${keywordHint(t)}`, EXPECT_AFTER_CONDITION);
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    for (;;) {
      const t = this.peek();
      if (!this.isWord(t, 'or')) return left;
      this.index++;
      left = { kind: 'or', left, right: this.parseAnd(), pos: pos(t) };
    }
  }

  private parseAnd(): Expr {
    let left = this.parseNot();
    for (;;) {
      const t = this.peek();
      if (!this.isWord(t, 'and')) return left;
      this.index++;
      left = { kind: 'and', left, right: this.parseNot(), pos: pos(t) };
    }
  }

  private parseNot(): Expr {
    const t = this.peek();
    if (this.isWord(t, 'not')) {
      this.index++;
      return { kind: 'not', operand: this.parseNot(), pos: pos(t) };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Expr {
    const t = this.peek();
    if (this.isPunct(t, '(')) {
      this.index++;
      const inner = this.parseOr();
      const close = this.peek();
      if (!this.isPunct(close, ')')) {
        if (close.kind === 'punct' && close.text === '|') this.refuseTrailing(close);
        throw this.error(close, `found ${describe(close)}${keywordHint(close)}`, 'and, or, or ")"');
      }
      this.index++;
      return inner;
    }
    if (this.isWord(t, 'true') || this.isWord(t, 'false')) {
      this.index++;
      return { kind: 'bool', value: t.text === 'true', pos: pos(t) };
    }
    if (this.startsField(t)) {
      return this.parsePredicate(this.parseField());
    }
    if (t.kind === 'string' || t.kind === 'number' || this.isWord(t, 'null')) {
      throw this.error(t, `a comparison must start with a field, found ${describe(t)}`, 'a field name on the left of the operator');
    }
    if (t.kind === 'punct' && ARITHMETIC.has(t.text)) {
      throw this.unsupported(t, `arithmetic ("${t.text}") is not supported`, EXPECT_CONDITION);
    }
    throw this.error(t, `found ${describe(t)}${keywordHint(t)}`, EXPECT_CONDITION);
  }

  private startsField(t: Token): boolean {
    return (
      t.kind === 'qident' ||
      (t.kind === 'punct' && t.text === '?') ||
      (t.kind === 'ident' && !KEYWORDS.has(t.text))
    );
  }

  private parseField(): FieldRef {
    const start = this.peek();
    let optional = false;
    if (this.isPunct(start, '?')) {
      optional = true;
      this.index++;
    }
    const first = this.peek();
    if (first.kind === 'ident' && !optional && this.isPunct(this.peek(1), '(')) {
      throw this.unsupported(first, `function calls such as ${first.text}() are not supported`, 'a field name');
    }
    const segments = [this.parseSegment()];
    while (this.isPunct(this.peek(), '.')) {
      this.index++;
      segments.push(this.parseSegment());
    }
    const after = this.peek();
    if (this.isPunct(after, '[')) {
      throw this.unsupported(after, 'array indexing (field[0]) is not supported; a comparison already matches any element of an array', EXPECT_OPERATOR);
    }
    return { kind: 'field', path: segments.join('.'), segments, optional, pos: pos(start) };
  }

  private parseSegment(): string {
    const t = this.peek();
    if (t.kind === 'qident' || (t.kind === 'ident' && !KEYWORDS.has(t.text) && !t.text.endsWith('~'))) {
      this.index++;
      return t.text;
    }
    if (t.kind === 'ident' && KEYWORDS.has(t.text)) {
      throw this.error(t, `"${t.text}" is a keyword`, `a field name (write \`${t.text}\` for a field of that name)`);
    }
    throw this.error(t, `found ${describe(t)}`, 'a field name');
  }

  private parsePredicate(field: FieldRef): Expr {
    const t = this.peek();
    if (t.kind === 'punct' && COMPARISON_OPS.has(t.text)) {
      this.index++;
      const op = t.text as ComparisonOp;
      const value = this.parseLiteral(`a string, number, boolean or null after ${op}`);
      if (value === null && op !== '==' && op !== '!=') {
        throw this.error(this.peek(-1), `null can only be compared with == or !=`, 'a string or number');
      }
      if (typeof value === 'boolean' && op !== '==' && op !== '!=') {
        throw this.error(this.peek(-1), `booleans can only be compared with == or !=`, 'a string or number');
      }
      this.refuseArithmeticAfterValue();
      return { kind: 'compare', op, field, value, pos: field.pos };
    }
    if (this.isPunct(t, '=')) {
      throw this.error(t, '"=" is not an EQL operator', '== (case-sensitive) or : (case-insensitive)');
    }
    if (this.isPunct(t, ':') || this.isWord(t, 'like') || this.isWord(t, 'like~')) {
      this.index++;
      const op = t.text as ':' | 'like' | 'like~';
      const patterns = this.parseStringOrList(op);
      return { kind: 'like', op, field, patterns, caseInsensitive: op !== 'like', pos: field.pos };
    }
    if (this.isWord(t, 'regex') || this.isWord(t, 'regex~')) {
      throw this.unsupported(t, `"${t.text}" (regular expression matching) is not supported`, 'like, like~ or : with * and ? wildcards');
    }
    if (this.isWord(t, 'in') || this.isWord(t, 'in~')) {
      this.index++;
      return this.parseInList(field, t.text === 'in~');
    }
    if (this.isWord(t, 'not')) {
      this.index++;
      const kw = this.peek();
      if (!this.isWord(kw, 'in') && !this.isWord(kw, 'in~')) {
        throw this.error(kw, `found ${describe(kw)} after "not"${keywordHint(kw)}`, 'in or in~');
      }
      this.index++;
      return { kind: 'not', operand: this.parseInList(field, kw.text === 'in~'), pos: pos(t) };
    }
    if (t.kind === 'punct' && ARITHMETIC.has(t.text)) {
      throw this.unsupported(t, `arithmetic ("${t.text}") is not supported`, EXPECT_OPERATOR);
    }
    if (this.isWord(t, 'of')) {
      throw this.unsupported(t, `lineage queries ("${field.path} of [...]") are not supported`, EXPECT_OPERATOR);
    }
    // `NOT x == 1` reads `NOT` as a field; point at the real mistake.
    const hint = keywordHint(t) || (field.segments.length === 1 && !field.optional ? keywordWordHint(field.path) : '');
    throw this.error(t, `found ${describe(t)} after field ${field.path}${hint}`, EXPECT_OPERATOR);
  }

  private parseInList(field: FieldRef, caseInsensitive: boolean): Expr {
    const op = caseInsensitive ? 'in~' : 'in';
    this.expectPunct('(', `( to open the list after ${op}`);
    const values: (string | number | boolean)[] = [];
    for (;;) {
      const value = this.parseLiteral('a string, number or boolean in the list');
      if (value === null) {
        throw this.error(this.peek(-1), `null cannot be an element of an ${op} list (test field == null instead)`, 'a string, number or boolean');
      }
      this.refuseArithmeticAfterValue();
      values.push(value);
      const sep = this.peek();
      if (this.isPunct(sep, ',')) {
        this.index++;
        continue;
      }
      if (this.isPunct(sep, ')')) {
        this.index++;
        break;
      }
      throw this.error(sep, `found ${describe(sep)} in the ${op} list`, ', or )');
    }
    return { kind: 'in', field, values, caseInsensitive, pos: field.pos };
  }

  /** `like`, `like~` and `:` take one string or a parenthesised list of strings. */
  private parseStringOrList(op: string): string[] {
    const readString = (): string => {
      const t = this.peek();
      if (t.kind !== 'string') {
        if (this.startsField(t)) throw this.unsupported(t, 'comparing a field to another field is not supported', 'a string');
        throw this.error(t, `${op} compares strings only, found ${describe(t)}`, 'a string');
      }
      this.index++;
      return t.text;
    };
    if (!this.isPunct(this.peek(), '(')) return [readString()];
    this.index++;
    const patterns: string[] = [];
    for (;;) {
      patterns.push(readString());
      const sep = this.peek();
      if (this.isPunct(sep, ',')) {
        this.index++;
        continue;
      }
      if (this.isPunct(sep, ')')) {
        this.index++;
        return patterns;
      }
      throw this.error(sep, `found ${describe(sep)} in the ${op} list`, ', or )');
    }
  }

  private parseLiteral(expected: string): Literal {
    const t = this.peek();
    if (t.kind === 'string') {
      this.index++;
      return t.text;
    }
    if (t.kind === 'number') {
      this.index++;
      return t.value!;
    }
    if (t.kind === 'punct' && (t.text === '-' || t.text === '+') && this.peek(1).kind === 'number') {
      // A sign applied to a literal is folded, as Elasticsearch's optimizer does; signs in front of
      // anything else are arithmetic and refused below.
      this.index += 2;
      const n = this.peek(-1).value!;
      return t.text === '-' ? -n : n;
    }
    if (this.isWord(t, 'true') || this.isWord(t, 'false')) {
      this.index++;
      return t.text === 'true';
    }
    if (this.isWord(t, 'null')) {
      this.index++;
      return null;
    }
    if (t.kind === 'ident' && !KEYWORDS.has(t.text) && this.isPunct(this.peek(1), '(')) {
      throw this.unsupported(t, `function calls such as ${t.text}() are not supported`, expected);
    }
    if (this.startsField(t)) {
      throw this.unsupported(t, 'comparing a field to another field is not supported', expected);
    }
    throw this.error(t, `found ${describe(t)}${keywordHint(t)}`, expected);
  }

  private refuseArithmeticAfterValue(): void {
    const t = this.peek();
    if (t.kind === 'punct' && ARITHMETIC.has(t.text)) {
      throw this.unsupported(t, `arithmetic ("${t.text}") is not supported`, EXPECT_AFTER_CONDITION);
    }
  }

  private expectPunct(text: string, expected: string): void {
    const t = this.peek();
    if (!this.isPunct(t, text)) throw this.error(t, `found ${describe(t)}`, expected);
    this.index++;
  }

  /** The token `offset` places from the current one; past the end it is the final eof. */
  private peek(offset = 0): Token {
    const i = Math.min(Math.max(this.index + offset, 0), this.tokens.length - 1);
    return this.tokens[i]!;
  }

  private isWord(t: Token, word: string): boolean {
    return t.kind === 'ident' && t.text === word;
  }

  private isPunct(t: Token, text: string): boolean {
    return t.kind === 'punct' && t.text === text;
  }

  private error(t: Token, detail: string, expected: string): EqlError {
    return new EqlError('LDG_ERR_EQL_PARSE', t.line, t.column, detail, expected);
  }

  private unsupported(t: Token, detail: string, expected: string): EqlError {
    return new EqlError('LDG_ERR_EQL_UNSUPPORTED', t.line, t.column, detail, expected);
  }
}

function pos(t: Token): Position {
  return { line: t.line, column: t.column };
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'the end of the query';
    case 'string':
      return `string ${JSON.stringify(t.text)}`;
    case 'qident':
      return `\`${t.text}\``;
    default:
      return `"${t.text}"`;
  }
}

/** Rule authors coming from SQL write `AND`; say why it is not understood. */
function keywordHint(t: Token): string {
  return t.kind === 'ident' ? keywordWordHint(t.text) : '';
}

function keywordWordHint(word: string): string {
  if (!KEYWORDS.has(word) && KEYWORDS.has(word.toLowerCase())) {
    return ` (EQL keywords are lowercase: write "${word.toLowerCase()}")`;
  }
  return '';
}

// Turns a parsed query into a matcher: a tree of closures built once, with every literal prepared
// ahead (Sets for `in`, folded hash buckets for `in~`, compiled wildcards for `like`/`:`), so that
// `match` only walks the document. It is pure, and allocates nothing per call beyond what V8 needs
// for the recursion.
//
// Semantics, and where they come from. An EQL event query runs in Elasticsearch as a Query DSL
// filter (x-pack/plugin/eql planner/QueryTranslator.java and ql planner/ExpressionTranslators.java),
// so this evaluator reproduces what those queries do on a document:
//
// - `a == v`, `a in (...)`, `like`, `:`: term / terms / wildcard queries. On a multi-valued field
//   they hold when ANY element holds; on a missing field (absent, null, [] or [null]) they are false.
// - `not X` is `bool.must_not X` (ExpressionTranslators.Nots), i.e. plain two-valued negation: when
//   the field is missing, X is false and `not X` is TRUE. So `not process.name in ("dnf")` matches
//   an event without process.name, as the rule does in Elastic Security (the exclusion does not
//   apply). There is no SQL-style NULL propagation in a filter.
// - `a != v` is translated as NotQuery(TermQuery) (ExpressionTranslators.BinaryComparisons), i.e.
//   exactly `not (a == v)`: true on a missing field, and on an array true only when NO element
//   equals v (["a","b"] != "a" is false).
// - `a != null` is an exists query: at least one non-null value (an empty string counts); `a == null`
//   is its negation (syntax reference, "Check if a field exists").
// - `<`, `<=`, `>`, `>=`: range queries; any element in range; strings in case-sensitive
//   lexicographic order (the reference), which for keyword fields is UTF-8 byte order, i.e. code
//   point order (not JavaScript's UTF-16 order).
// - `==`, `!=`, `in`, `like` are case-sensitive; `in~`, `like~` and `:` compare case-insensitively
//   (`:` is equivalent to `like~` per the reference, wildcards included). Wildcards are literal
//   characters in `==` and `in`.
// - Types are strict. Elasticsearch rejects `keyword_field == 5` when it plans the query; without
//   mappings we cannot reject it up front, so a value of another type than the literal never
//   matches (no coercion: "5" == 5 is false, hence "5" != 5 is true). Booleans match only JSON
//   booleans, numbers only JSON numbers (1 == 1.0).
// - `<category> where` adds `event.category == "<category>"` (LogicalPlanBuilder.visitEventFilter
//   builds an Equals): case-sensitive, any element of the array. `any where` adds nothing, so it
//   matches every document, including those without event.category (the reference says so too).
// - Field lookup treats `{"process": {"name": x}}`, `{"process.name": x}` and mixes of the two as
//   the same field, and descends through arrays of objects, as Elasticsearch flattens them.

import type { Expr, FieldRef, QueryAst } from './ast.js';
import { caseFoldTable, compileWildcard, foldString, foldedEquals, foldedHash } from './wildcard.js';

export interface CompiledQuery {
  readonly source: string;
  readonly category: string;
  readonly fields: readonly string[];
  match(doc: unknown): boolean;
}

type Predicate = (doc: unknown) => boolean;
type ValueTest = (value: unknown) => boolean;

/**
 * A field path prepared for lookup: `keys[i][j]` is segments i..i+j joined with dots, so a
 * lookup can try `process`, then `process.parent`, then `process.parent.name` as keys at each
 * level without building strings.
 */
interface FieldAccess {
  readonly keys: readonly (readonly string[])[];
  readonly length: number;
}

export function compileAst(ast: QueryAst): CompiledQuery {
  const fields: string[] = [];
  const seen = new Set<string>();
  const note = (path: string): void => {
    if (!seen.has(path)) {
      seen.add(path);
      fields.push(path);
    }
  };

  // The category filter is evaluated first, so event.category is listed first.
  if (ast.category !== 'any') note('event.category');
  const condition = compileExpr(ast.condition, note);
  let match: Predicate = condition;
  if (ast.category !== 'any') {
    const category = ast.category;
    const access = fieldAccess('event.category');
    const isCategory: ValueTest = (v) => v === category;
    match = (doc) => anyValue(doc, access, 0, isCategory) && condition(doc);
  }

  return Object.freeze({
    source: ast.source,
    category: ast.category,
    fields: Object.freeze(fields),
    match,
  });
}

function compileExpr(e: Expr, note: (path: string) => void): Predicate {
  switch (e.kind) {
    case 'and': {
      const left = compileExpr(e.left, note);
      const right = compileExpr(e.right, note);
      return (doc) => left(doc) && right(doc);
    }
    case 'or': {
      const left = compileExpr(e.left, note);
      const right = compileExpr(e.right, note);
      return (doc) => left(doc) || right(doc);
    }
    case 'not': {
      const operand = compileExpr(e.operand, note);
      return (doc) => !operand(doc);
    }
    case 'bool': {
      const value = e.value;
      return () => value;
    }
    case 'compare': {
      const access = accessFor(e.field, note);
      const value = e.value;
      if (value === null) {
        return e.op === '=='
          ? (doc) => !anyValue(doc, access, 0, isPresent)
          : (doc) => anyValue(doc, access, 0, isPresent);
      }
      if (e.op === '==' || e.op === '!=') {
        // Strict equality is exact for strings, numbers and booleans alike (no coercion).
        const equals: ValueTest = (v) => v === value;
        return e.op === '=='
          ? (doc) => anyValue(doc, access, 0, equals)
          : (doc) => !anyValue(doc, access, 0, equals);
      }
      const test = orderingTest(e.op, value);
      return (doc) => anyValue(doc, access, 0, test);
    }
    case 'in': {
      const access = accessFor(e.field, note);
      const test = e.caseInsensitive ? inInsensitiveTest(e.values) : inTest(e.values);
      return (doc) => anyValue(doc, access, 0, test);
    }
    case 'like': {
      const access = accessFor(e.field, note);
      const matchers = e.patterns.map((p) => compileWildcard(p, e.caseInsensitive));
      let test: ValueTest;
      if (matchers.length === 1) {
        const only = matchers[0]!;
        test = (v) => typeof v === 'string' && only(v);
      } else {
        test = (v) => {
          if (typeof v !== 'string') return false;
          for (let i = 0; i < matchers.length; i++) if (matchers[i]!(v)) return true;
          return false;
        };
      }
      return (doc) => anyValue(doc, access, 0, test);
    }
  }
}

function accessFor(field: FieldRef, note: (path: string) => void): FieldAccess {
  note(field.path);
  return fieldAccess(field.path);
}

function fieldAccess(path: string): FieldAccess {
  // Split the joined path, not the written segments: `` `process.name` `` is process.name too.
  const segments = path.split('.');
  const keys = segments.map((_, i) => segments.slice(i).map((__, j) => segments.slice(i, i + j + 1).join('.')));
  return { keys, length: segments.length };
}

const isPresent: ValueTest = () => true;

/**
 * True when `test` holds for some value of the field in `node`, starting at segment `i`.
 * null and undefined are "no value" and never reach `test`; arrays are searched element by element
 * at every level (an array of objects holds the field once per element).
 */
function anyValue(node: unknown, access: FieldAccess, i: number, test: ValueTest): boolean {
  if (i === access.length) return anyLeaf(node, test);
  if (node === null || typeof node !== 'object') return false;
  if (Array.isArray(node)) {
    for (let k = 0; k < node.length; k++) if (anyValue(node[k], access, i, test)) return true;
    return false;
  }
  const row = access.keys[i]!;
  for (let j = 0; j < row.length; j++) {
    const key = row[j]!;
    if (Object.prototype.hasOwnProperty.call(node, key) && anyValue((node as Record<string, unknown>)[key], access, i + j + 1, test)) {
      return true;
    }
  }
  return false;
}

function anyLeaf(value: unknown, test: ValueTest): boolean {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) {
    for (let k = 0; k < value.length; k++) if (anyLeaf(value[k], test)) return true;
    return false;
  }
  return test(value);
}

function orderingTest(op: '<' | '<=' | '>' | '>=', value: string | number | boolean): ValueTest {
  // The parser only lets strings and numbers reach here.
  const holds = (c: number): boolean => (op === '<' ? c < 0 : op === '<=' ? c <= 0 : op === '>' ? c > 0 : c >= 0);
  if (typeof value === 'number') {
    return (v) => typeof v === 'number' && !Number.isNaN(v) && holds(v < value ? -1 : v > value ? 1 : 0);
  }
  const s = String(value);
  return (v) => typeof v === 'string' && holds(compareCodePoints(v, s));
}

/** Compares in code point order (= UTF-8 byte order, Lucene's order for keyword terms). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from code point order only between surrogates (D800–DFFF, which encode
    // code points above FFFF) and units E000–FFFF: lift surrogates above the rest.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function inTest(values: readonly (string | number | boolean)[]): ValueTest {
  const strings = new Set<string>();
  const numbers = new Set<number>();
  let hasTrue = false;
  let hasFalse = false;
  for (const v of values) {
    if (typeof v === 'string') strings.add(v);
    else if (typeof v === 'number') numbers.add(v);
    else if (v) hasTrue = true;
    else hasFalse = true;
  }
  return (v) => {
    if (typeof v === 'string') return strings.has(v);
    if (typeof v === 'number') return numbers.has(v);
    if (typeof v === 'boolean') return v ? hasTrue : hasFalse;
    return false;
  };
}

function inInsensitiveTest(values: readonly (string | number | boolean)[]): ValueTest {
  const table = caseFoldTable();
  // Candidates bucketed by the hash of their folded form: a lookup hashes the value while folding
  // it, then compares only within the bucket, without building a lowercased copy.
  const buckets = new Map<number, string[]>();
  const others = inTest(values.filter((v) => typeof v !== 'string'));
  for (const v of values) {
    if (typeof v !== 'string') continue;
    const folded = foldString(v);
    const h = foldedHash(v, table);
    const bucket = buckets.get(h);
    if (bucket === undefined) buckets.set(h, [folded]);
    else if (!bucket.includes(folded)) bucket.push(folded);
  }
  return (v) => {
    if (typeof v !== 'string') return others(v);
    const bucket = buckets.get(foldedHash(v, table));
    if (bucket === undefined) return false;
    for (let i = 0; i < bucket.length; i++) if (foldedEquals(v, bucket[i]!, table)) return true;
    return false;
  };
}

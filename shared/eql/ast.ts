// The syntax tree of the single-event subset of Elasticsearch EQL that ldguard runs:
// `<category> where <condition>`. The parser produces it, compile.ts turns it into a matcher and
// analyze.ts derives kernel pre-filters from it. Nodes are plain data (JSON-serialisable) so a
// rule can be parsed once and its tree logged or shipped as is.

/** 1-based position in the query text; columns count UTF-16 code units. */
export interface Position {
  readonly line: number;
  readonly column: number;
}

/**
 * A field reference. `path` is the segments joined with dots: `process.parent.name` and
 * `` process.`parent.name` `` are the same field, because Elasticsearch treats a dotted key and
 * nested objects alike (compile.ts looks both up).
 */
export interface FieldRef {
  readonly kind: 'field';
  readonly path: string;
  readonly segments: readonly string[];
  /** Written `?field`. In Elasticsearch it only silences the "unknown field" error for unmapped
   *  fields; without mappings there is nothing to silence, so both forms evaluate the same. */
  readonly optional: boolean;
  readonly pos: Position;
}

export type ComparisonOp = '==' | '!=' | '<' | '<=' | '>' | '>=';

/** A constant on the right of an operator. Numbers are finite doubles. */
export type Literal = string | number | boolean | null;

export interface CompareNode {
  readonly kind: 'compare';
  readonly op: ComparisonOp;
  readonly field: FieldRef;
  /** `null` only with `==` / `!=` (existence tests); strings and numbers only with ordering ops. */
  readonly value: Literal;
  readonly pos: Position;
}

/** `field in (...)` (exact, case-sensitive) or `field in~ (...)` (case-insensitive).
 *  `field not in (...)` is parsed as a `not` node around this one, as Elasticsearch does. */
export interface InNode {
  readonly kind: 'in';
  readonly field: FieldRef;
  readonly values: readonly (string | number | boolean)[];
  readonly caseInsensitive: boolean;
  readonly pos: Position;
}

/** Wildcard match against one or more patterns: `like` (case-sensitive), `like~` and `:`
 *  (case-insensitive; the reference says `:` is equivalent to `like~`). */
export interface LikeNode {
  readonly kind: 'like';
  readonly op: 'like' | 'like~' | ':';
  readonly field: FieldRef;
  readonly patterns: readonly string[];
  readonly caseInsensitive: boolean;
  readonly pos: Position;
}

export interface BoolNode {
  readonly kind: 'bool';
  readonly value: boolean;
  readonly pos: Position;
}

export interface NotNode {
  readonly kind: 'not';
  readonly operand: Expr;
  readonly pos: Position;
}

export interface LogicalNode {
  readonly kind: 'and' | 'or';
  readonly left: Expr;
  readonly right: Expr;
  readonly pos: Position;
}

export type Expr = CompareNode | InNode | LikeNode | BoolNode | NotNode | LogicalNode;

export interface QueryAst {
  readonly kind: 'query';
  /** The event category (`file`, `process`, ...) or `any`. */
  readonly category: string;
  readonly condition: Expr;
  readonly source: string;
}

// Public face of ldguard's EQL engine: the single-event subset of Elasticsearch EQL that Elastic's
// Linux file rules use (`<category> where <condition>`). Parse errors and unsupported constructs
// throw EqlError with a code, a 1-based line and column, and what was expected.
//
// Typical use: `const q = compileEql(rule.query)` once when rules load, then `q.match(event)` per
// event (pure, no I/O). The agent also calls `fieldConstraint(parseEql(rule.query), 'file.path')`
// to build its kernel pre-filter.

import { compileAst, type CompiledQuery } from './compile.js';
import { parseEql } from './parser.js';

export type {
  BoolNode,
  CompareNode,
  ComparisonOp,
  Expr,
  FieldRef,
  InNode,
  LikeNode,
  Literal,
  LogicalNode,
  NotNode,
  Position,
  QueryAst,
} from './ast.js';
export type { CompiledQuery } from './compile.js';
export { EqlError, type EqlErrorCode } from './errors.js';
export { fieldConstraint, type FieldConstraint } from './analyze.js';
export { compileWildcard } from './wildcard.js';
export { parseEql };

/** Parses and compiles a query once; throws EqlError. */
export function compileEql(source: string): CompiledQuery {
  return compileAst(parseEql(source));
}

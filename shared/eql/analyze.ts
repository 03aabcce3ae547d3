// Static analysis for the agent's kernel-side pre-filter: which values of one field can a query
// possibly accept? The agent compiles the answer into C and drops events early, so the answer must
// over-approximate: every document the query matches has the field matching the answer. Dropping a
// document the query would have matched is a missed detection; letting through one it rejects only
// costs a little CPU in the matcher.

import type { Expr, QueryAst } from './ast.js';

/**
 * Allowed values of a field, or null for "unconstrained".
 * - `patterns`: EQL wildcard strings (`*`, `?`), to be matched case-insensitively against the
 *   whole value;
 * - `exact`: literal strings whose `*` and `?` are ordinary characters (EQL has no escape, so they
 *   cannot be written as patterns), to be compared case-insensitively with the whole value.
 * Comparing case-insensitively even where the query is case-sensitive (`==`, `in`, `like`) widens
 * the set, which is safe for a pre-filter.
 */
export interface FieldConstraint {
  patterns: string[];
  exact: string[];
}

/**
 * Returns values such that `ast` can only match a document when `field` matches one of them, or
 * null when no finite set follows from the query: the field is not constrained on every path to a
 * match (it sits under `or` next to a condition on something else), or only under `not`, or only
 * by `!=`, ranges or `!= null`. An `and` keeps the narrower side, an `or` needs both sides
 * constrained and unites them. `field == null` gives null too: the query then matches documents
 * without the field, which no value set can describe.
 */
export function fieldConstraint(ast: QueryAst, field: string): FieldConstraint | null {
  const c = constraintOf(ast.condition, field);
  return c === null ? null : { patterns: [...c.patterns], exact: [...c.exact] };
}

function constraintOf(e: Expr, field: string): FieldConstraint | null {
  switch (e.kind) {
    case 'and': {
      const left = constraintOf(e.left, field);
      const right = constraintOf(e.right, field);
      if (left === null) return right;
      if (right === null) return left;
      // Either side alone is a sound bound; the smaller one filters more. (Intersecting wildcard
      // sets exactly is not worth it for the rules we run.)
      return size(left) <= size(right) ? left : right;
    }
    case 'or': {
      const left = constraintOf(e.left, field);
      const right = constraintOf(e.right, field);
      if (left === null || right === null) return null;
      return {
        patterns: unique([...left.patterns, ...right.patterns]),
        exact: unique([...left.exact, ...right.exact]),
      };
    }
    case 'not':
      // Negation turns a finite set into a co-finite one; not expressible as a list.
      return null;
    case 'bool':
      // `false` can never match: the empty set is exact. `true` constrains nothing.
      return e.value ? null : { patterns: [], exact: [] };
    case 'compare':
      if (e.field.path !== field || e.op !== '==' || typeof e.value !== 'string') return null;
      return { patterns: [], exact: [e.value] };
    case 'in':
      // A number or boolean in the list could match a non-string value the C side cannot see.
      if (e.field.path !== field || e.values.some((v) => typeof v !== 'string')) return null;
      return { patterns: [], exact: unique(e.values as string[]) };
    case 'like':
      if (e.field.path !== field) return null;
      return { patterns: unique([...e.patterns]), exact: [] };
  }
}

function size(c: FieldConstraint): number {
  return c.patterns.length + c.exact.length;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

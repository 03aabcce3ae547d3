// The exception matcher: is this event excepted from this rule, and by which list item? Pure: no
// I/O, and the clock is the caller's (an item's expire_time is compared with `nowMs`).
//
// Semantics follow what Kibana builds from an exception item (an Elasticsearch bool query run
// against the alert's source document):
// - a list excepts an event when any of its items matches; an item matches when all its entries do;
// - `match` and `match_any` compare whole values, case-sensitively (a term query on a keyword);
//   numbers and booleans in the event compare by their JSON text ("0" matches user.id 0);
// - `wildcard` uses * and ? as EQL's `like` does (shared/eql/wildcard.ts), case-sensitively;
// - `exists` is true when the field has a non-null value;
// - a multi-valued field (an array) matches when any value does;
// - `excluded` negates the entry, as must_not does: on a field the event lacks, an excluded
//   `match`, `match_any` or `wildcard` entry matches (nothing there equals the value);
// - `nested` needs one element of the object array at `field` to match all its entries together.
// An entry is compiled once into a predicate; an item is the conjunction of its predicates, so a
// later condition that is not a field comparison (a writer verified against the package database,
// say) is one more predicate on the item, added in compileEntry's switch or beside it.
import { compileWildcard } from '../eql/wildcard.js';

export type Operator = 'included' | 'excluded';

export type Entry =
  | { field: string; operator: Operator; type: 'match'; value: string }
  | { field: string; operator: Operator; type: 'match_any'; value: string[] }
  | { field: string; operator: Operator; type: 'wildcard'; value: string }
  | { field: string; operator: Operator; type: 'exists' }
  | { field: string; type: 'nested'; entries: Entry[] };

/** Which exception spared an event: recorded as ldguard.excepted_by on its alert. */
export interface ExceptedBy {
  list_id: string;
  item_id: string;
}

export interface CompiledItem {
  readonly itemId: string;
  readonly name: string;
  /** Milliseconds since the epoch after which the item no longer applies; null: never expires. */
  readonly expiresMs: number | null;
  readonly matches: (doc: unknown) => boolean;
}

export interface CompiledList {
  readonly listId: string;
  readonly namespaceType: 'single' | 'agnostic';
  readonly name: string;
  /** The file it was loaded from, for logs and health. */
  readonly file: string;
  readonly items: readonly CompiledItem[];
}

type Predicate = (doc: unknown) => boolean;

export function compileItem(entries: readonly Entry[]): Predicate {
  const preds = entries.map(compileEntry);
  return (doc) => {
    for (const p of preds) if (!p(doc)) return false;
    return true;
  };
}

function compileEntry(e: Entry): Predicate {
  if (e.type === 'nested') {
    const inner = compileItem(e.entries);
    return (doc) => values(doc, e.field, 'object').some((el) => inner(el));
  }
  let test: (v: unknown) => boolean;
  switch (e.type) {
    case 'match': {
      const want = e.value;
      test = (v) => text(v) === want;
      break;
    }
    case 'match_any': {
      const want = new Set(e.value);
      test = (v) => {
        const t = text(v);
        return t !== null && want.has(t);
      };
      break;
    }
    case 'wildcard': {
      const like = compileWildcard(e.value, false);
      test = (v) => {
        const t = text(v);
        return t !== null && like(t);
      };
      break;
    }
    case 'exists':
      test = () => true;
      break;
  }
  const field = e.field;
  const mode = e.type === 'exists' ? 'any' : 'leaf'; // an object "exists" too (ES: any of its subfields)
  if (e.operator === 'included') return (doc) => values(doc, field, mode).some(test);
  return (doc) => !values(doc, field, mode).some(test);
}

/** The first item of these lists that excepts `doc` at `nowMs`, or null. Expired items are skipped. */
export function exceptedBy(lists: readonly CompiledList[], doc: unknown, nowMs: number): ExceptedBy | null {
  for (const list of lists) {
    for (const item of list.items) {
      if (item.expiresMs !== null && nowMs > item.expiresMs) continue;
      if (item.matches(doc)) return { list_id: list.listId, item_id: item.itemId };
    }
  }
  return null;
}

/** The comparable text of a leaf value; objects never equal a string. */
function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return null;
}

type Mode = 'leaf' | 'object' | 'any';

/**
 * The non-null values at a dotted path, arrays flattened as Elasticsearch indexes them. A key may
 * itself hold dots ({"process.name": …}), as in a flattened document, so every split is tried.
 * `leaf`: scalars only; `object`: the objects at the path (for nested entries); `any`: both.
 */
function values(doc: unknown, path: string, mode: Mode): unknown[] {
  const out: unknown[] = [];
  walk(doc, path.split('.'), mode, out);
  return out;
}

function walk(node: unknown, parts: string[], mode: Mode, out: unknown[]): void {
  if (node === null || node === undefined) return;
  if (Array.isArray(node)) {
    for (const el of node) walk(el, parts, mode, out);
    return;
  }
  if (parts.length === 0) {
    const isObject = typeof node === 'object';
    if (mode === 'any' || (mode === 'object') === isObject) out.push(node);
    return;
  }
  if (typeof node !== 'object') return;
  const rec = node as Record<string, unknown>;
  for (let i = 1; i <= parts.length; i++) {
    const key = parts.slice(0, i).join('.');
    if (Object.prototype.hasOwnProperty.call(rec, key)) walk(rec[key], parts.slice(i), mode, out);
  }
}

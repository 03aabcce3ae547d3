// Exception lists as Kibana exports them ("Shared exception lists" → Export): NDJSON with a list
// object, one line per item, and an export summary last. A file exported from Kibana loads as it
// is. A bad file is refused whole, with every problem found as file:line and the item_id, so one
// edit fixes them all; a running agent keeps its previous lists (as with rules).
import { LdgError } from '../errors.js';
import { compileItem, type CompiledItem, type CompiledList, type Entry } from './match.js';

export class ExceptionListError extends LdgError {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super('LDG_ERR_EXCEPTION_INVALID', `exception list file ${file} is invalid; fix it (or export it again from Kibana) or remove it from the rules path:\n  ${problems.join('\n  ')}`);
  }
}

export interface ParsedLists {
  lists: CompiledList[];
  /** Accepted but worth a look (logged at load and at each reload). */
  warnings: string[];
}

// Kibana's list types. `detection` (shared lists) and `rule_default` (a rule's own list) apply to
// detection rules; `endpoint` lists are enforced by Elastic Defend on the host, not by rules.
const LIST_TYPES = new Set(['detection', 'rule_default']);
const NAMESPACES = new Set(['single', 'agnostic']);
const OPERATORS = new Set(['included', 'excluded']);
// process.name is the kernel's comm: any program can set it (prctl, or a copy named "dnf").
const COMM_FIELDS = new Set(['process.name', 'process.parent.name']);

/** Parse one export file's text; `file` names it in messages; `nowMs` only dates the warning about expired items. */
export function parseExceptionLists(text: string, file: string, nowMs = Date.now()): ParsedLists {
  const problems: string[] = [];
  const warnings: string[] = [];
  const listLines: Array<{ line: number; doc: Record<string, unknown> }> = [];
  const itemLines: Array<{ line: number; doc: Record<string, unknown> }> = [];
  let summary: { line: number; doc: Record<string, unknown> } | undefined;

  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let doc: unknown;
    try {
      doc = JSON.parse(raw);
    } catch (err) {
      problems.push(`${file}:${line}: not JSON (${(err as Error).message})`);
      return;
    }
    if (!isRecord(doc)) problems.push(`${file}:${line}: expected a JSON object (a list, an item or the export summary)`);
    else if ('exported_exception_list_count' in doc) summary = { line, doc };
    else if ('item_id' in doc || 'entries' in doc) itemLines.push({ line, doc });
    else if ('list_id' in doc) listLines.push({ line, doc });
    else problems.push(`${file}:${line}: neither an exception list, an item nor the export summary (no list_id, item_id or exported_exception_list_count)`);
  });

  const lists = new Map<string, { listId: string; namespaceType: 'single' | 'agnostic'; name: string; items: CompiledItem[]; line: number }>();
  for (const { line, doc } of listLines) {
    const at = `${file}:${line}: list_id ${JSON.stringify(doc.list_id)}`;
    if (typeof doc.list_id !== 'string' || doc.list_id === '') {
      problems.push(`${file}:${line}: list_id: expected a non-empty string`);
      continue;
    }
    if (!LIST_TYPES.has(doc.type as string)) {
      problems.push(
        doc.type === 'endpoint'
          ? `${at}: an Endpoint exception list is enforced by Elastic Defend, not by detection rules; export a shared exception list (type "detection") instead`
          : `${at}: type: expected "detection" or "rule_default", got ${JSON.stringify(doc.type)}`,
      );
      continue;
    }
    const ns = doc.namespace_type ?? 'single';
    if (!NAMESPACES.has(ns as string)) problems.push(`${at}: namespace_type: expected "single" or "agnostic", got ${JSON.stringify(ns)}`);
    if (lists.has(doc.list_id)) problems.push(`${at}: the list is defined twice in this file (also at line ${lists.get(doc.list_id)!.line})`);
    lists.set(doc.list_id, { listId: doc.list_id, namespaceType: ns as 'single' | 'agnostic', name: typeof doc.name === 'string' ? doc.name : doc.list_id, items: [], line });
  }
  if (listLines.length === 0 && problems.length === 0) problems.push(`${file}: no exception list object (a line with list_id, type and name, the first line of Kibana's export)`);

  const seen = new Map<string, number>();
  for (const { line, doc } of itemLines) {
    const id = typeof doc.item_id === 'string' && doc.item_id !== '' ? doc.item_id : null;
    const at = `${file}:${line}: item_id ${JSON.stringify(id ?? doc.item_id ?? null)}`;
    if (id === null) {
      problems.push(`${at}: item_id: expected a non-empty string`);
      continue;
    }
    const list = typeof doc.list_id === 'string' ? lists.get(doc.list_id) : undefined;
    if (!list) {
      problems.push(`${at}: list_id ${JSON.stringify(doc.list_id)} names no list in this file`);
      continue;
    }
    const key = `${list.listId}\0${id}`;
    if (seen.has(key)) problems.push(`${at}: the item is defined twice (also at line ${seen.get(key)})`);
    seen.set(key, line);
    if (doc.type !== undefined && doc.type !== 'simple') problems.push(`${at}: type: expected "simple", got ${JSON.stringify(doc.type)}`);
    let expiresMs: number | null = null;
    if (doc.expire_time !== undefined && doc.expire_time !== null) {
      expiresMs = typeof doc.expire_time === 'string' ? Date.parse(doc.expire_time) : NaN;
      if (!Number.isFinite(expiresMs)) problems.push(`${at}: expire_time: expected an ISO 8601 date, got ${JSON.stringify(doc.expire_time)}`);
    }
    const entryProblems: string[] = [];
    const entries = parseEntries(doc.entries, 'entries', false, entryProblems, (field, path) => {
      if (COMM_FIELDS.has(field)) {
        warnings.push(`${at}: ${path} excepts by ${field}, the kernel's comm, which any program can set (a copy of cp named "dnf"); except by process.executable instead`);
      }
    });
    for (const p of entryProblems) problems.push(`${at}: ${p}`);
    if (entryProblems.length === 0 && expiresMs !== null && Number.isFinite(expiresMs)) {
      // Loaded, but it will not apply: say so rather than let it look active.
      if (expiresMs < nowMs) warnings.push(`${at}: expired at ${doc.expire_time as string}; it excepts nothing`);
    }
    if (entryProblems.length === 0) list.items.push({ itemId: id, name: typeof doc.name === 'string' ? doc.name : id, expiresMs, matches: compileItem(entries) });
  }

  if (summary) {
    const want = summary.doc.exported_exception_list_item_count;
    if (typeof want === 'number' && want !== itemLines.length) {
      problems.push(`${file}:${summary.line}: the export summary counts ${want} item(s) but the file holds ${itemLines.length}: the file is incomplete; export it again`);
    }
    const missing = summary.doc.missing_exception_list_items_count ?? summary.doc.missing_exception_list_item_count;
    if (typeof missing === 'number' && missing > 0) warnings.push(`${file}:${summary.line}: Kibana reported ${missing} item(s) missing from this export`);
  }

  if (problems.length > 0) throw new ExceptionListError(file, problems);
  return {
    lists: [...lists.values()].map((l) => Object.freeze({ listId: l.listId, namespaceType: l.namespaceType, name: l.name, file, items: Object.freeze(l.items) })),
    warnings,
  };
}

function parseEntries(value: unknown, path: string, nested: boolean, problems: string[], onField: (field: string, path: string) => void): Entry[] {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${path}: expected a non-empty array of entries`);
    return [];
  }
  const out: Entry[] = [];
  value.forEach((e, i) => {
    const at = `${path}[${i}]`;
    if (!isRecord(e)) {
      problems.push(`${at}: expected an object with field, operator, type and value`);
      return;
    }
    if (typeof e.field !== 'string' || e.field === '') {
      problems.push(`${at}.field: expected a non-empty field name`);
      return;
    }
    const field = e.field;
    if (e.type === 'list') {
      problems.push(`${at}: type "list" refers to a value list, which Kibana does not export with the exception list; replace it with a match_any entry of its values`);
      return;
    }
    if (e.type === 'nested') {
      if (nested) {
        problems.push(`${at}: a nested entry cannot hold another nested entry`);
        return;
      }
      const inner = parseEntries(e.entries, `${at}.entries`, true, problems, (f, p) => onField(`${field}.${f}`, p));
      out.push({ field, type: 'nested', entries: inner });
      return;
    }
    const operator = e.operator;
    if (!OPERATORS.has(operator as string)) {
      problems.push(`${at}.operator: expected "included" or "excluded", got ${JSON.stringify(operator)}`);
      return;
    }
    const op = operator as 'included' | 'excluded';
    // Kibana allows only match, match_any and exists inside a nested entry.
    const allowed = nested ? ['match', 'match_any', 'exists'] : ['match', 'match_any', 'wildcard', 'exists', 'nested', 'list'];
    if (!allowed.includes(e.type as string)) {
      problems.push(`${at}.type: expected one of ${allowed.join(', ')}, got ${JSON.stringify(e.type)}`);
      return;
    }
    onField(field, at);
    switch (e.type) {
      case 'match':
      case 'wildcard':
        if (typeof e.value !== 'string' || e.value === '') problems.push(`${at}.value: expected a non-empty string`);
        else out.push({ field, operator: op, type: e.type, value: e.value });
        return;
      case 'match_any':
        if (!Array.isArray(e.value) || e.value.length === 0 || !e.value.every((v) => typeof v === 'string' && v !== '')) problems.push(`${at}.value: expected a non-empty array of non-empty strings`);
        else out.push({ field, operator: op, type: 'match_any', value: e.value as string[] });
        return;
      case 'exists':
        out.push({ field, operator: op, type: 'exists' });
        return;
    }
  });
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

// Rules are data: TOML files in the layout of Elastic's detection-rules repository, loaded and
// checked at start. A bad rule is refused whole, with every problem found (file, line, column and
// what was expected), so one edit fixes them all; a running agent keeps its previous rules.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { compileEql, EqlError, parseEql, type CompiledQuery, type QueryAst } from './eql/index.js';
import { parseExceptionLists } from './exceptions/list.js';
import type { CompiledList } from './exceptions/match.js';
import type { Severity, ThreatEntry } from './ecs.js';
import { LdgError } from './errors.js';
import { unknownFieldProblems } from './rule-fields.js';

export interface Rule {
  readonly file: string;
  readonly ruleId: string;
  readonly name: string;
  readonly description: string;
  readonly severity: Severity;
  readonly riskScore: number;
  readonly version: number;
  readonly from: string;
  /** Kibana's schedule, as written ("5m") and in milliseconds: the max_signals window. */
  readonly interval: string;
  readonly intervalMs: number;
  readonly maxSignals: number;
  readonly tags: readonly string[];
  readonly index: readonly string[];
  readonly author: readonly string[];
  readonly license?: string;
  readonly references: readonly string[];
  readonly note?: string;
  readonly threat: readonly ThreatEntry[];
  readonly query: CompiledQuery;
  readonly ast: QueryAst;
  /** The rule's `exceptions_list` references, as written (detection-rules' format, Kibana's fields). */
  readonly exceptionsList: readonly ExceptionListRef[];
  /** The lists those references name, bound by loadRules; empty from parseRule alone. */
  readonly exceptions: readonly CompiledList[];
}

/** One `[[rule.exceptions_list]]` table: bound by list_id (and namespace_type when given). */
export interface ExceptionListRef {
  readonly listId: string;
  readonly namespaceType?: 'single' | 'agnostic';
}

/**
 * An exception list attached to a rule by configuration rather than by the rule's own
 * [[rule.exceptions_list]]: how the default exception reaches the seed rule, whose text is kept as
 * Elastic wrote it (agent config `exception_bindings`, "RULE_ID=LIST_ID").
 */
export interface ExceptionBinding {
  readonly ruleId: string;
  readonly listId: string;
}

/** Elastic's rule_id of "Dynamic Linker (ld.so) Creation", in every revision ldguard ships. */
export const SEED_RULE_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
/** The default exception (shared/rules/ldguard/ldguard_default_exception.ndjson). */
export const DEFAULT_EXCEPTION_LIST_ID = 'ldguard-verified-package-install';

/** Parse "RULE_ID=LIST_ID"; null when it is not that shape. */
export function parseBinding(text: string): ExceptionBinding | null {
  const m = /^([^=\s]+)=([^=\s]+)$/.exec(text.trim());
  return m ? { ruleId: m[1]!, listId: m[2]! } : null;
}

/** Rules with their exception lists bound, and what deserves a warning in the log. */
export interface RuleSet {
  rules: Rule[];
  warnings: string[];
}

/** One problem in a rule file, positioned as precisely as the file allows. */
export interface RuleProblem {
  line: number;
  column: number;
  message: string;
}

export class RuleError extends LdgError {
  constructor(
    readonly file: string,
    readonly problems: RuleProblem[],
  ) {
    super(
      'LDG_ERR_RULE_INVALID',
      `rule file ${file} is invalid; fix it or remove it from the rules path:\n` +
        problems.map((p) => `  ${file}:${p.line}:${p.column}: ${p.message}`).join('\n'),
    );
  }
}

// Kibana's defaults, applied where a rule file (like Elastic's own) does not set them.
const DEFAULTS = { interval: '5m', maxSignals: 100, version: 1 } as const;
const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];
const DURATION = /^(\d+)([smhd])$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Load every `.toml` under each path (a file or a directory, searched recursively). */
export function loadRules(paths: readonly string[]): Rule[] {
  return loadRuleSet(paths).rules;
}

/**
 * Load every rule (`.toml`) and every exception list (Kibana's export, `.ndjson`) under each path,
 * and bind each rule's exceptions_list to the lists by list_id. A reference to a list that is not
 * there is an error, not a silent no-op: the user meant that exception to apply.
 */
export function loadRuleSet(paths: readonly string[], bindings: readonly ExceptionBinding[] = []): RuleSet {
  const all = paths.flatMap((p) => ruleFiles(resolve(p)));
  const files = all.filter((f) => !f.endsWith('.ndjson'));
  if (files.length === 0) {
    throw new LdgError('LDG_ERR_RULE_NONE', `no rule files (*.toml) found in ${paths.join(', ')}; point --rule or rules_path at a rule file or folder`);
  }
  const rules = files.map(loadRuleFile);
  const seen = new Map<string, string>();
  for (const r of rules) {
    const other = seen.get(r.ruleId);
    if (other) {
      throw new LdgError(
        'LDG_ERR_RULE_DUPLICATE',
        `rule_id ${r.ruleId} is defined twice, in ${other} and ${r.file}; keep one of them (to run an upstream revision of a bundled rule, set rule_revision rather than adding its file)`,
      );
    }
    seen.set(r.ruleId, r.file);
  }
  const warnings: string[] = [];
  const lists = new Map<string, CompiledList>();
  for (const file of all.filter((f) => f.endsWith('.ndjson'))) {
    const parsed = parseExceptionLists(readFileSync(file, 'utf8'), file);
    warnings.push(...parsed.warnings);
    for (const l of parsed.lists) {
      const other = lists.get(l.listId);
      if (other) throw new LdgError('LDG_ERR_EXCEPTION_DUPLICATE', `exception list_id ${l.listId} is defined twice, in ${other.file} and ${l.file}; keep one of them`);
      lists.set(l.listId, l);
    }
  }
  const used = new Set<string>();
  const bound = rules.map((r) => {
    const exceptions = r.exceptionsList.map((ref) => {
      const l = lists.get(ref.listId);
      if (!l || (ref.namespaceType !== undefined && ref.namespaceType !== l.namespaceType)) {
        throw new LdgError(
          'LDG_ERR_EXCEPTION_LIST_MISSING',
          `rule ${r.file} names exception list_id ${ref.listId}${ref.namespaceType ? ` (namespace_type ${ref.namespaceType})` : ''}, ` +
            `which ${l ? `is ${l.namespaceType} in ${l.file}` : 'no .ndjson file in the rules path defines'}; put Kibana's export of that list beside the rules, or remove the reference`,
        );
      }
      used.add(l.listId);
      return l;
    });
    // A binding to a rule that is not loaded binds nothing (the rules are the user's choice); one
    // naming a list that is not loaded is a warning, not an error, so that rules given by hand
    // without the bundled lists still load.
    for (const b of bindings) {
      if (b.ruleId !== r.ruleId) continue;
      const l = lists.get(b.listId);
      if (!l) {
        warnings.push(`exception binding ${b.ruleId}=${b.listId}: no .ndjson file in the rules path defines list_id ${b.listId}, so rule ${r.file} runs without it`);
        continue;
      }
      used.add(l.listId);
      if (!exceptions.includes(l)) exceptions.push(l);
    }
    return exceptions.length === 0 ? r : Object.freeze({ ...r, exceptions: Object.freeze(exceptions) });
  });
  for (const l of lists.values()) {
    if (!used.has(l.listId)) warnings.push(`${l.file}: exception list ${l.listId} is named by no rule's exceptions_list, so it excepts nothing`);
  }
  return { rules: bound, warnings };
}

/** Rule files (.toml) and exception lists (.ndjson) at a path, a directory searched recursively. */
function ruleFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new LdgError('LDG_ERR_RULE_PATH', `rule path ${path} does not exist; give an existing rule file or folder`);
  }
  if (!st.isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) // not localeCompare: it loads ICU's collation data (~3 MB in the agent)
    .flatMap((d) => (d.isDirectory() ? ruleFiles(join(path, d.name)) : /\.(toml|ndjson)$/.test(d.name) ? [join(path, d.name)] : []));
}

export function loadRuleFile(file: string): Rule {
  return parseRule(readFileSync(file, 'utf8'), file, sourceVersion(file));
}

/**
 * An upstream rule file is kept byte for byte, and detection-rules keeps its version outside it
 * (etc/version.lock.json): a `NAME.source` beside `NAME.toml` may give `version_lock`, used where
 * the rule sets no version, so alerts carry the version Kibana would show.
 */
function sourceVersion(file: string): number | undefined {
  const source = file.replace(/\.toml$/, '.source');
  if (source === file || !existsSync(source)) return undefined;
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readFileSync(source, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    throw new RuleError(source, [{ line: err.line, column: err.column, message: `TOML syntax: ${err.message.split('\n')[0]}` }]);
  }
  const v = doc.version_lock;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' && typeof v !== 'bigint') throw new RuleError(source, [{ ...keyPosition(readFileSync(source, 'utf8'), 'version_lock'), message: 'version_lock: expected an integer' }]);
  return Number(v);
}

/** Parse and check one rule file's text; `file` only names it in errors; `versionLock` stands in for an absent version. */
export function parseRule(text: string, file: string, versionLock?: number): Rule {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      throw new RuleError(file, [{ line: err.line, column: err.column, message: `TOML syntax: ${err.message.split('\n')[0]}` }]);
    }
    throw err;
  }
  const problems: RuleProblem[] = [];
  const at = (key: string) => keyPosition(text, key);
  const problem = (key: string, message: string) => problems.push({ ...at(key), message });

  const rule = doc.rule;
  if (!isRecord(rule)) {
    throw new RuleError(file, [{ line: 1, column: 1, message: 'expected a [rule] table (the layout of Elastic detection-rules files)' }]);
  }
  const str = (key: string, required = true): string | undefined => {
    const v = rule[key];
    if (v === undefined) {
      if (required) problem('[rule]', `missing ${key}: expected a string`);
      return undefined;
    }
    if (typeof v !== 'string' || v.trim() === '') {
      problem(key, `${key}: expected a non-empty string`);
      return undefined;
    }
    return v;
  };
  const strList = (key: string): string[] => {
    const v = rule[key];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      problem(key, `${key}: expected an array of strings`);
      return [];
    }
    return v as string[];
  };
  const int = (key: string, min: number, max: number, dflt?: number): number | undefined => {
    const v = rule[key];
    if (v === undefined) {
      if (dflt === undefined) problem('[rule]', `missing ${key}: expected an integer from ${min} to ${max}`);
      return dflt;
    }
    if (typeof v !== 'number' && typeof v !== 'bigint') {
      problem(key, `${key}: expected an integer from ${min} to ${max}`);
      return undefined;
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      problem(key, `${key}: expected an integer from ${min} to ${max}, got ${n}`);
      return undefined;
    }
    return n;
  };

  const ruleId = str('rule_id');
  const name = str('name');
  const description = str('description');
  const severity = str('severity');
  if (severity !== undefined && !SEVERITIES.includes(severity as Severity)) {
    problem('severity', `severity: expected one of ${SEVERITIES.join(', ')}, got "${severity}"`);
  }
  const riskScore = int('risk_score', 0, 100);
  const version = int('version', 1, 1_000_000, versionLock ?? DEFAULTS.version);
  const maxSignals = int('max_signals', 1, 100_000, DEFAULTS.maxSignals);
  const from = str('from', false) ?? 'now-6m';
  const interval = str('interval', false) ?? DEFAULTS.interval;
  const m = DURATION.exec(interval);
  if (!m) problem('interval', `interval: expected a duration like "5m" (s, m, h or d), got "${interval}"`);
  // A zero window would make max_signals meaningless (every alert its own window), and Kibana refuses it.
  else if (Number(m[1]) === 0) problem('interval', `interval: must be longer than zero, got "${interval}"; Kibana's default is "5m"`);
  const type = str('type');
  if (type !== undefined && type !== 'eql') problem('type', `type: only "eql" rules run here, got "${type}"`);
  const language = str('language', false);
  if (language !== undefined && language !== 'eql') problem('language', `language: only "eql" is supported, got "${language}"`);
  const threat = parseThreat(rule.threat, (msg) => problem('[[rule.threat]]', msg));
  const tags = strList('tags');
  const index = strList('index');
  const author = strList('author');
  const references = strList('references');
  const license = str('license', false);
  const note = str('note', false);
  const exceptionsList = parseExceptionRefs(rule.exceptions_list, (msg) => problem('[[rule.exceptions_list]]', msg));

  let query: CompiledQuery | undefined;
  let ast: QueryAst | undefined;
  const source = str('query');
  if (source !== undefined) {
    try {
      ast = parseEql(source);
      query = compileEql(source);
      for (const u of unknownFieldProblems(ast)) problems.push({ ...queryPosition(text, u.line, u.column), message: `query: ${u.message}` });
    } catch (err) {
      if (!(err instanceof EqlError)) throw err;
      const pos = queryPosition(text, err.line, err.column);
      problems.push({ ...pos, message: `query: ${err.message}` });
    }
  }

  if (problems.length > 0 || !query || !ast || !m) throw new RuleError(file, problems);
  return Object.freeze({
    file,
    ruleId: ruleId!,
    name: name!,
    description: description!.trim(),
    severity: severity as Severity,
    riskScore: riskScore!,
    version: version!,
    from,
    interval,
    intervalMs: Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS],
    maxSignals: maxSignals!,
    tags,
    index,
    author,
    license,
    references,
    note,
    threat: deepFreeze(threat), // alerts share it (see buildAlert)
    query,
    ast,
    exceptionsList,
    exceptions: [],
  });
}

// detection-rules writes a rule's lists as [[rule.exceptions_list]] tables of Kibana's fields
// (id, list_id, namespace_type, type); id is a Kibana saved-object id and means nothing here.
function parseExceptionRefs(value: unknown, problem: (msg: string) => void): ExceptionListRef[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problem('rule.exceptions_list: expected an array of tables ([[rule.exceptions_list]]) with list_id');
    return [];
  }
  return value.flatMap((t, i): ExceptionListRef[] => {
    if (!isRecord(t) || typeof t.list_id !== 'string' || t.list_id === '') {
      problem(`rule.exceptions_list[${i}]: expected a table with a non-empty list_id`);
      return [];
    }
    const ns = t.namespace_type;
    if (ns !== undefined && ns !== 'single' && ns !== 'agnostic') {
      problem(`rule.exceptions_list[${i}].namespace_type: expected "single" or "agnostic", got ${JSON.stringify(ns)}`);
      return [];
    }
    if (t.type !== undefined && t.type !== 'detection' && t.type !== 'rule_default') {
      problem(`rule.exceptions_list[${i}].type: expected "detection" or "rule_default", got ${JSON.stringify(t.type)}`);
      return [];
    }
    return [{ listId: t.list_id, ...(ns ? { namespaceType: ns } : {}) }];
  });
}

function parseThreat(value: unknown, problem: (msg: string) => void): ThreatEntry[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problem('rule.threat: expected an array of tables ([[rule.threat]])');
    return [];
  }
  const ref = (x: unknown, what: string): x is { id: string; name: string; reference: string } => {
    const ok = isRecord(x) && typeof x.id === 'string' && typeof x.name === 'string' && typeof x.reference === 'string';
    if (!ok) problem(`${what}: expected id, name and reference strings`);
    return ok;
  };
  return value.flatMap((t, i): ThreatEntry[] => {
    if (!isRecord(t) || t.framework !== 'MITRE ATT&CK' || !ref(t.tactic, `rule.threat[${i}].tactic`)) {
      if (isRecord(t) && t.framework !== 'MITRE ATT&CK') problem(`rule.threat[${i}].framework: expected "MITRE ATT&CK"`);
      return [];
    }
    const techniques = Array.isArray(t.technique) ? t.technique : [];
    return [
      {
        framework: 'MITRE ATT&CK',
        tactic: { id: t.tactic.id, name: t.tactic.name, reference: t.tactic.reference },
        technique: techniques
          .filter((x, j) => ref(x, `rule.threat[${i}].technique[${j}]`))
          .map((x: Record<string, unknown>) => ({
            id: x.id as string,
            name: x.name as string,
            reference: x.reference as string,
            ...(Array.isArray(x.subtechnique)
              ? { subtechnique: x.subtechnique.filter((s, k) => ref(s, `subtechnique[${k}]`)) as Array<{ id: string; name: string; reference: string }> }
              : {}),
          })),
      },
    ];
  });
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Line and column of `key = …` (or a table header) in the file text; 1:1 when not found. */
function keyPosition(text: string, key: string): { line: number; column: number } {
  const lines = text.split('\n');
  const isHeader = key.startsWith('[');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const col = l.search(/\S/);
    if (col < 0) continue;
    if (isHeader ? l.trim() === key : l.slice(col).startsWith(key) && /^\s*=/.test(l.slice(col + key.length))) {
      return { line: i + 1, column: col + 1 };
    }
  }
  return { line: 1, column: 1 };
}

/** Map a position inside the query string to the file: the query starts after `query = '''`. */
function queryPosition(text: string, line: number, column: number): { line: number; column: number } {
  const start = keyPosition(text, 'query');
  const header = text.split('\n')[start.line - 1] ?? '';
  const open = /(''')|(""")|(')|(")/.exec(header.slice(header.indexOf('=')));
  const delimEnd = header.indexOf('=') + (open ? open.index + open[0].length : 0);
  // TOML drops a newline that directly follows a multi-line string's opening delimiter.
  if (open && open[0].length === 3 && header.slice(delimEnd).trim() === '') return { line: start.line + line, column };
  return { line: start.line + line - 1, column: line === 1 ? delimEnd + column : column };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

// The agent's configuration: one visible defaults object, a TOML file over it, command-line flags
// over that. Every problem is collected before failing, paths are made absolute, and the result is
// frozen so no stage can change it behind another's back.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { LdgError } from '../../shared/errors.js';
import { DEFAULT_EXCEPTION_LIST_ID, parseBinding, SEED_RULE_ID, type ExceptionBinding } from '../../shared/rule.js';
import { bundledRulePaths, RULE_REVISIONS, type RuleRevision } from '../../shared/paths.js';

export type SourceChoice = 'auto' | 'fanotify' | 'inotify';

export interface AgentConfig {
  root: string;
  watch: readonly string[];
  stateDir: string;
  alertsFile: string;
  alertsFileMaxBytes: number;
  alertsFileKeep: number;
  socket: string;
  source: SourceChoice;
  rules: readonly string[];
  ruleRevision: RuleRevision;
  exceptionBindings: readonly ExceptionBinding[];
  collector: readonly string[];
  tokenFile: string | null;
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
  allowInsecure: boolean;
  spoolMaxBytes: number;
  hashMaxBytes: number;
  writeWaitMs: number;
  rehashMs: number;
  execGraceMs: number;
  selfTest: boolean;
  nestedDirs: boolean;
}

export const DEFAULTS: AgentConfig = {
  root: '/', // host root prefix: /host when the agent runs in a container with the host's / mounted there
  watch: ['/lib', '/lib64', '/usr/lib', '/usr/lib64'], // host directories to watch (as the host sees them)
  stateDir: '/var/lib/ldguard', // spool, known-files baseline, self-test scratch
  alertsFile: '/var/log/ldguard/alerts.ndjson', // every alert as NDJSON, rotated by size
  alertsFileMaxBytes: 64 * 1024 * 1024, // rotate the alerts file past this size
  alertsFileKeep: 5, // rotated alerts files kept (alerts.ndjson.1 … .5)
  socket: '/run/ldguard/agent.sock', // local stream for `ldguard tail` (0600, root only)
  source: 'auto', // fanotify, falling back to inotify (degraded: no writer pid) where not permitted
  rules: bundledRulePaths('seed'), // rule files or folders of them; unset: the bundled rules, per rule_revision
  ruleRevision: 'seed', // which revision of Elastic's ld.so creation rule the bundled rules run: seed, v1 or current
  exceptionBindings: [{ ruleId: SEED_RULE_ID, listId: DEFAULT_EXCEPTION_LIST_ID }], // "RULE_ID=LIST_ID": lists attached to rules whose text stays as written (Elastic's rule gets the default exception)
  collector: [], // ws(s)://HOST:PORT of the collector, or several: the first preferred, the next used while it is unreachable; none keeps alerts on the host
  tokenFile: null, // file holding this agent's collector token (0600)
  caFile: null, // CA bundle to trust for wss://
  certFile: null, // client certificate for wss:// (optional)
  keyFile: null, // client key for wss:// (optional)
  allowInsecure: false, // allow plain ws:// to a non-loopback collector
  spoolMaxBytes: 256 * 1024 * 1024, // bound of the on-disk delivery spool; overflow is counted and reported
  hashMaxBytes: 64 * 1024 * 1024, // files larger than this are not hashed (size is still reported)
  writeWaitMs: 200, // how long a new file's alert waits for its first write to complete, for the hash
  rehashMs: 60_000, // every watched loader is hashed again this often: a write through a mapping never released (0: never)
  execGraceMs: 30_000, // how long an exited process stays in the exec cache
  selfTest: true, // prove the source attributes a known write before announcing ready
  nestedDirs: true, // fanotify: a creation mark on the watched filesystems, so a file made at once in a new rule-matching directory names its writer; costs every creation there ~2 µs
};

// Option names in the TOML file (snake_case, as users write config) and their types.
const KEYS: Record<string, { key: keyof AgentConfig; type: 'string' | 'strings' | 'urls' | 'int' | 'bool' | 'path' | 'paths' | 'source' | 'revision' | 'bindings' | 'nullable-path' | 'nullable-string' }> = {
  root: { key: 'root', type: 'path' },
  watch: { key: 'watch', type: 'strings' },
  state_dir: { key: 'stateDir', type: 'path' },
  alerts_file: { key: 'alertsFile', type: 'path' },
  alerts_file_max_bytes: { key: 'alertsFileMaxBytes', type: 'int' },
  alerts_file_keep: { key: 'alertsFileKeep', type: 'int' },
  socket: { key: 'socket', type: 'path' },
  source: { key: 'source', type: 'source' },
  rules: { key: 'rules', type: 'paths' },
  rule_revision: { key: 'ruleRevision', type: 'revision' },
  exception_bindings: { key: 'exceptionBindings', type: 'bindings' },
  collector: { key: 'collector', type: 'urls' },
  token_file: { key: 'tokenFile', type: 'nullable-path' },
  ca_file: { key: 'caFile', type: 'nullable-path' },
  cert_file: { key: 'certFile', type: 'nullable-path' },
  key_file: { key: 'keyFile', type: 'nullable-path' },
  allow_insecure: { key: 'allowInsecure', type: 'bool' },
  spool_max_bytes: { key: 'spoolMaxBytes', type: 'int' },
  hash_max_bytes: { key: 'hashMaxBytes', type: 'int' },
  write_wait_ms: { key: 'writeWaitMs', type: 'int' },
  rehash_ms: { key: 'rehashMs', type: 'int' },
  exec_grace_ms: { key: 'execGraceMs', type: 'int' },
  self_test: { key: 'selfTest', type: 'bool' },
  nested_dirs: { key: 'nestedDirs', type: 'bool' },
};

/** Build the config from an optional TOML file and flag overrides (already in config key form). */
export function loadConfig(file: string | undefined, overrides: Partial<Record<keyof AgentConfig, unknown>>): Readonly<AgentConfig> {
  const errors: string[] = [];
  const raw: Record<string, unknown> = {};
  if (file) {
    if (!existsSync(file)) throw new LdgError('LDG_ERR_CONFIG', `config file ${file} does not exist; create it (see agent/agent.example.toml) or drop --config`);
    try {
      const doc = parseToml(readFileSync(file, 'utf8')) as Record<string, unknown>;
      for (const [k, v] of Object.entries(doc)) {
        const spec = KEYS[k];
        if (!spec) errors.push(`${file}: unknown option "${k}"; known options: ${Object.keys(KEYS).join(', ')}`);
        else raw[spec.key] = v;
      }
    } catch (err) {
      if (!(err instanceof TomlError)) throw err;
      throw new LdgError('LDG_ERR_CONFIG', `${file}:${err.line}:${err.column}: TOML syntax: ${err.message.split('\n')[0]}; fix the file`);
    }
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) raw[k] = v;

  const cfg: Record<string, unknown> = { ...DEFAULTS };
  const byKey = new Map(Object.entries(KEYS).map(([name, s]) => [s.key, { name, type: s.type }]));
  for (const [key, value] of Object.entries(raw)) {
    const spec = byKey.get(key as keyof AgentConfig)!;
    const err = (expected: string) => errors.push(`option ${spec.name}: expected ${expected}, got ${JSON.stringify(value)}`);
    switch (spec.type) {
      case 'int': {
        const n = typeof value === 'string' ? Number(value) : Number(value as number);
        if (!Number.isSafeInteger(n) || n < 0) err('a whole number ≥ 0');
        else cfg[key] = n;
        break;
      }
      case 'bool':
        if (typeof value !== 'boolean') err('true or false');
        else cfg[key] = value;
        break;
      case 'source':
        if (value !== 'auto' && value !== 'fanotify' && value !== 'inotify') err('"auto", "fanotify" or "inotify"');
        else cfg[key] = value;
        break;
      case 'revision':
        if (!RULE_REVISIONS.includes(value as RuleRevision)) err(RULE_REVISIONS.map((r) => `"${r}"`).join(', '));
        else cfg[key] = value;
        break;
      case 'bindings': {
        const parsed = Array.isArray(value) && value.every((x) => typeof x === 'string') ? value.map((x: string) => parseBinding(x)) : null;
        if (!parsed || parsed.some((b) => b === null)) err('a list of "RULE_ID=LIST_ID" strings (an empty list binds nothing)');
        else cfg[key] = parsed;
        break;
      }
      case 'strings':
      case 'paths':
        if (!Array.isArray(value) || value.length === 0 || !value.every((x) => typeof x === 'string' && x !== '')) err('a non-empty list of strings');
        else cfg[key] = spec.type === 'paths' ? value.map((p: string) => resolve(p)) : value;
        break;
      case 'urls':
        // One URL, a list of them, or none (null, "", []): written either way in agent.toml.
        if (value === null || value === '') cfg[key] = [];
        else if (typeof value === 'string') cfg[key] = [value];
        else if (Array.isArray(value) && value.every((x) => typeof x === 'string' && x !== '')) cfg[key] = [...new Set(value as string[])];
        else err('a URL or a list of URLs');
        break;
      case 'nullable-string':
      case 'nullable-path':
        if (value === null || value === '') cfg[key] = null;
        else if (typeof value !== 'string') err('a string');
        else cfg[key] = spec.type === 'nullable-path' ? resolve(value) : value;
        break;
      default:
        if (typeof value !== 'string' || value === '') err('a non-empty string');
        else cfg[key] = spec.type === 'path' ? resolve(value) : value;
    }
  }
  // Checked here, with the other options, so that a mistyped --root is one clear line and exit 2
  // rather than a stack trace from the first lstat(2) under it.
  const root = cfg.root as string;
  const rootStat = statSync(root, { throwIfNoEntry: false });
  if (!rootStat) errors.push(`option root: ${root} does not exist; give the directory where the host's / is mounted (e.g. --root /host), or leave --root out to watch this host`);
  else if (!rootStat.isDirectory()) errors.push(`option root: ${root} is not a directory; give the directory where the host's / is mounted (e.g. --root /host)`);
  if (raw.rules === undefined) cfg.rules = bundledRulePaths(cfg.ruleRevision as RuleRevision);
  else if (raw.ruleRevision !== undefined && raw.ruleRevision !== 'seed') {
    // One key selects the revision: rules given by hand are loaded as given.
    errors.push(`option rule_revision selects among the bundled rules, but rules is set too; drop rules to run the bundled "${String(raw.ruleRevision)}" revision, or put the revision's file (shared/rules-upstream/) in your rules and drop rule_revision`);
  }
  for (const w of cfg.watch as string[]) {
    if (!isAbsolute(w)) errors.push(`option watch: "${w}" must be an absolute path as the host sees it (e.g. /lib64)`);
  }
  const collectors = cfg.collector as string[];
  for (const url of collectors) {
    if (!/^wss?:\/\//.test(url)) errors.push(`option collector: expected ws://HOST:PORT or wss://HOST:PORT, got ${JSON.stringify(url)}`);
  }
  if (collectors.length > 0 && cfg.tokenFile === null) {
    errors.push('option collector is set but token_file is not: create a token with `ldguard token create --name HOST --role agent` and give its file with --token-file');
  }
  if (errors.length > 0) {
    throw new LdgError('LDG_ERR_CONFIG', `invalid agent configuration; fix these and start again:\n  ${errors.join('\n  ')}`);
  }
  return Object.freeze(cfg as unknown as AgentConfig);
}

/** Options a reload applies at once: the collector link (reconnecting) and the rules. */
const LIVE: ReadonlySet<keyof AgentConfig> = new Set<keyof AgentConfig>(['collector', 'tokenFile', 'caFile', 'certFile', 'keyFile', 'allowInsecure', 'rules', 'ruleRevision', 'exceptionBindings']);

/**
 * The options (as written in agent.toml) that differ between two configs and that a reload cannot
 * apply: they shape what was opened at start (marks, files, sockets), so they wait for a restart.
 */
export function optionsNeedingRestart(before: Readonly<AgentConfig>, after: Readonly<AgentConfig>): string[] {
  return Object.entries(KEYS)
    .filter(([, s]) => !LIVE.has(s.key) && JSON.stringify(before[s.key]) !== JSON.stringify(after[s.key]))
    .map(([name]) => name);
}

/** The running config after a reload: the new values of the options a reload applies, the old of the rest. */
export function withLiveOptions(before: Readonly<AgentConfig>, after: Readonly<AgentConfig>): Readonly<AgentConfig> {
  const next: Record<string, unknown> = { ...before };
  for (const k of LIVE) next[k] = after[k];
  return Object.freeze(next as unknown as AgentConfig);
}

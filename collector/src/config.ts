// The collector's configuration: one visible defaults object, a TOML file over it, command-line
// flags over that. Every problem is collected before failing; paths are made absolute; the result
// is frozen.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { LdgError, errorMessage } from '../../shared/errors.js';
import { isDbUrl, parseDb } from './store/open.js';

export interface CollectorConfig {
  listen: string;
  db: string;
  tlsCert: string | null;
  tlsKey: string | null;
  tlsClientCa: string | null;
  tlsRequireClientCert: boolean;
  maxConnections: number;
  rateAlertsPerSec: number;
  rateAlertsBurst: number;
  rateMessagesPerSec: number;
  rateMessagesBurst: number;
  pingIntervalMs: number;
  helloTimeoutMs: number;
  offlineAfterMissedHeartbeats: number;
  sweepIntervalMs: number;
  maxCommitAlerts: number;
  ingestHighWater: number;
  ingestHighWaterBytes: number;
  maxConnectionsPerToken: number;
  maxPreHelloPerAddress: number;
  maxPartialBytesPerConnection: number;
  maxPartialBytes: number;
  heldBackQuotaPerToken: number;
  tlsCiphers: string;
}

/**
 * Forward-secret suites only: TLS 1.3's, then ECDHE with AES-GCM or ChaCha20 for TLS 1.2. Node's
 * default list ends in HIGH, which offers static-RSA suites such as AES128-SHA (no forward secrecy).
 */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export const DEFAULTS: CollectorConfig = {
  listen: '127.0.0.1:8750', // HOST:PORT for agents (/agent), the API (/api) and /healthz, /metrics
  db: '/var/lib/ldguard-collector/ldguard.db', // SQLite file (created 0600 in a 0700 folder), or postgres://USER@HOST:PORT/DATABASE; the installed collector's
  tlsCert: null, // PEM certificate: set it and tls_key to serve wss:// and https://
  tlsKey: null, // PEM private key for tls_cert
  tlsClientCa: null, // PEM CA that signs agents' client certificates (asked for when set)
  tlsRequireClientCert: false, // refuse TLS clients without a certificate signed by tls_client_ca
  maxConnections: 18_000, // agent connections at most (the process is allowed 20,000 files)
  rateAlertsPerSec: 20_000, // per connection: past this the collector stops reading it for a while
  rateAlertsBurst: 40_000, // per connection: alerts it may send at once before the rate applies
  rateMessagesPerSec: 500, // per connection: messages per second (heartbeats, batches)
  rateMessagesBurst: 2_000, // per connection: messages at once before the rate applies
  pingIntervalMs: 30_000, // ping every agent this often; one that missed the last pong is dropped
  helloTimeoutMs: 5_000, // a connection that has not said hello this long after the upgrade is closed
  offlineAfterMissedHeartbeats: 3, // an agent is offline after this many heartbeat periods unheard
  sweepIntervalMs: 5_000, // how often offline agents and revoked tokens are looked for
  maxCommitAlerts: 5_000, // alerts in one transaction at most (group commit); ~15 MB to the writer thread
  ingestHighWater: 20_000, // alerts waiting for a commit past which alert senders are not read until commits catch up
  ingestHighWaterBytes: 16 * 1024 * 1024, // ... or bytes of their documents (each costs several times that in memory until collected)
  maxConnectionsPerToken: 2, // connections one agent token may hold: the live one, and the one replacing it
  maxPreHelloPerAddress: 256, // connections from one address that have not said hello yet
  maxPartialBytesPerConnection: 4 * 1024 * 1024, // bytes of an unfinished message one connection may make the collector hold
  maxPartialBytes: 64 * 1024 * 1024, // ... and all connections together; past it the largest holder is closed
  heldBackQuotaPerToken: 100_000, // held-back records (an agent's matches past max_signals) one token may have stored per collector run; the rest are counted and alerted, not stored
  tlsCiphers: TLS_CIPHERS, // OpenSSL cipher list for TLS 1.2 and 1.3 (forward-secret only)
};

type Kind = 'string' | 'path' | 'nullable-path' | 'bool' | 'int' | 'db';
const KEYS: Record<string, { key: keyof CollectorConfig; type: Kind; min?: number }> = {
  listen: { key: 'listen', type: 'string' },
  db: { key: 'db', type: 'db' },
  tls_cert: { key: 'tlsCert', type: 'nullable-path' },
  tls_key: { key: 'tlsKey', type: 'nullable-path' },
  tls_client_ca: { key: 'tlsClientCa', type: 'nullable-path' },
  tls_require_client_cert: { key: 'tlsRequireClientCert', type: 'bool' },
  max_connections: { key: 'maxConnections', type: 'int', min: 1 },
  rate_alerts_per_sec: { key: 'rateAlertsPerSec', type: 'int', min: 1 },
  rate_alerts_burst: { key: 'rateAlertsBurst', type: 'int', min: 1 },
  rate_messages_per_sec: { key: 'rateMessagesPerSec', type: 'int', min: 1 },
  rate_messages_burst: { key: 'rateMessagesBurst', type: 'int', min: 1 },
  ping_interval_ms: { key: 'pingIntervalMs', type: 'int', min: 100 },
  hello_timeout_ms: { key: 'helloTimeoutMs', type: 'int', min: 100 },
  offline_after_missed_heartbeats: { key: 'offlineAfterMissedHeartbeats', type: 'int', min: 1 },
  sweep_interval_ms: { key: 'sweepIntervalMs', type: 'int', min: 100 },
  max_commit_alerts: { key: 'maxCommitAlerts', type: 'int', min: 1 },
  ingest_high_water: { key: 'ingestHighWater', type: 'int', min: 1 },
  ingest_high_water_bytes: { key: 'ingestHighWaterBytes', type: 'int', min: 65_536 },
  max_connections_per_token: { key: 'maxConnectionsPerToken', type: 'int', min: 1 },
  max_pre_hello_per_address: { key: 'maxPreHelloPerAddress', type: 'int', min: 1 },
  max_partial_bytes_per_connection: { key: 'maxPartialBytesPerConnection', type: 'int', min: 65_536 },
  max_partial_bytes: { key: 'maxPartialBytes', type: 'int', min: 65_536 },
  held_back_quota_per_token: { key: 'heldBackQuotaPerToken', type: 'int', min: 0 },
  tls_ciphers: { key: 'tlsCiphers', type: 'string' },
};

/** "HOST:PORT" or "[V6]:PORT" → parts; port 0 asks the system for a free one. */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

/** Builds the config from an optional TOML file and flag overrides (in config key form). */
export function loadCollectorConfig(file: string | undefined, overrides: Partial<Record<keyof CollectorConfig, unknown>>): Readonly<CollectorConfig> {
  const errors: string[] = [];
  const raw: Record<string, unknown> = {};
  // A relative path in the file is relative to the file: under systemd the file is the unit's
  // credential copy, and the TLS files sit beside it in the same credentials directory.
  const fromFile = new Set<string>();
  if (file) {
    if (!existsSync(file)) throw new LdgError('LDG_ERR_CONFIG', `config file ${file} does not exist; create it or drop --config`);
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      if (!(err instanceof TomlError)) throw err;
      throw new LdgError('LDG_ERR_CONFIG', `${file}:${err.line}:${err.column}: TOML syntax: ${err.message.split('\n')[0]}; fix the file`);
    }
    for (const [k, v] of Object.entries(doc)) {
      const spec = KEYS[k];
      if (!spec) errors.push(`${file}: unknown option "${k}"; known options: ${Object.keys(KEYS).join(', ')}`);
      else {
        raw[spec.key] = v;
        fromFile.add(spec.key);
      }
    }
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    raw[k] = v;
    fromFile.delete(k);
  }
  const base = (key: string) => (file && fromFile.has(key) ? dirname(resolve(file)) : process.cwd());

  const cfg: Record<string, unknown> = { ...DEFAULTS };
  const byKey = new Map(Object.entries(KEYS).map(([name, s]) => [s.key as string, { name, ...s }]));
  for (const [key, value] of Object.entries(raw)) {
    const spec = byKey.get(key)!;
    const err = (expected: string) => errors.push(`option ${spec.name}: expected ${expected}, got ${JSON.stringify(value)}`);
    switch (spec.type) {
      case 'int': {
        const n = typeof value === 'string' ? Number(value) : value;
        if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < (spec.min ?? 0)) err(`a whole number ≥ ${spec.min ?? 0}`);
        else cfg[key] = n;
        break;
      }
      case 'bool':
        if (typeof value !== 'boolean') err('true or false');
        else cfg[key] = value;
        break;
      case 'nullable-path':
        if (value === null || value === '') cfg[key] = null;
        else if (typeof value !== 'string') err('a path');
        else cfg[key] = resolve(base(key), value);
        break;
      case 'db':
        // A URL is kept as written (store/open.ts reads it); a file path is made absolute.
        if (typeof value !== 'string' || value === '') err('a file path or postgres://USER@HOST:PORT/DATABASE');
        else if (!isDbUrl(value)) cfg[key] = resolve(base(key), value);
        else {
          try {
            parseDb(value);
            cfg[key] = value;
          } catch (e) {
            errors.push(`option ${spec.name}: ${errorMessage(e)}`);
          }
        }
        break;
      default:
        if (typeof value !== 'string' || value === '') err('a non-empty string');
        else cfg[key] = spec.type === 'path' ? resolve(base(key), value) : value;
    }
  }
  if (!parseListen(cfg.listen as string)) errors.push(`option listen: expected HOST:PORT (e.g. 127.0.0.1:8750, [::1]:8750, 0.0.0.0:8750), got ${JSON.stringify(cfg.listen)}`);
  if (!cfg.tlsCert !== !cfg.tlsKey) errors.push('options tls_cert and tls_key go together: set both to serve TLS, or neither');
  if (cfg.tlsRequireClientCert && !cfg.tlsClientCa) errors.push('option tls_require_client_cert needs tls_client_ca: the CA that signs the agents\' certificates');
  if (cfg.tlsClientCa && !cfg.tlsCert) errors.push('option tls_client_ca needs tls_cert and tls_key: client certificates only exist over TLS');
  if ((cfg.rateAlertsBurst as number) < 1_000) errors.push('option rate_alerts_burst: must be at least 1000 (one full batch)');
  for (const k of ['tlsCert', 'tlsKey', 'tlsClientCa'] as const) {
    const p = cfg[k] as string | null;
    if (p && !existsSync(p)) errors.push(`option ${Object.entries(KEYS).find(([, s]) => s.key === k)![0]}: ${p} does not exist`);
  }
  if (errors.length > 0) {
    throw new LdgError('LDG_ERR_CONFIG', `invalid collector configuration; fix these and start again:\n  ${errors.join('\n  ')}`);
  }
  return Object.freeze(cfg as unknown as CollectorConfig);
}

/** The installed collector's configuration, where `ldguard token` and `ldguard db` look for its `db`. */
export const INSTALLED_CONFIG = '/etc/ldguard/collector.toml';

/**
 * The database a store command (token, db) works on: --db when given; else the `db` of --config, or
 * of the installed collector's config when there is one; else the default. Only `db` is read: the
 * rest of the file (TLS files named relative to systemd's credentials directory) is the collector's.
 */
export function commandDb(dbFlag: string | undefined, configFlag: string | undefined): string {
  if (dbFlag) return isDbUrl(dbFlag) ? (parseDb(dbFlag), dbFlag) : resolve(dbFlag);
  const file = configFlag ?? (existsSync(INSTALLED_CONFIG) ? INSTALLED_CONFIG : undefined);
  if (!file) return DEFAULTS.db;
  if (!existsSync(file)) throw new LdgError('LDG_ERR_CONFIG', `config file ${file} does not exist; give the collector's config with --config, or the database with --db`);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    throw new LdgError('LDG_ERR_CONFIG', `${file}:${err.line}:${err.column}: TOML syntax: ${err.message.split('\n')[0]}; fix the file`);
  }
  const db = doc.db;
  if (db === undefined) return DEFAULTS.db;
  if (typeof db !== 'string' || db === '') throw new LdgError('LDG_ERR_CONFIG', `${file}: option db: expected a file path or postgres://USER@HOST:PORT/DATABASE, got ${JSON.stringify(db)}`);
  if (isDbUrl(db)) return (parseDb(db), db);
  return resolve(dirname(resolve(file)), db);
}

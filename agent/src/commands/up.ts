// `ldguard up`: the whole product in the foreground, for hosts without systemd as PID 1 (a
// container, a CI machine) and for a first look: a local collector with its dashboard, and the
// agent delivering to it. Both run as child processes of this one, restarted if they crash; Ctrl-C
// (or SIGTERM) stops both. The agent's token is made once and kept in a 0600 file; an admin token
// is made and printed on the first run only (tokens are stored hashed and cannot be shown again).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../../../collector/src/store/sqlite.js';
import { LdgError } from '../../../shared/errors.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard up [--state-dir DIR] [--config-dir DIR] [--listen HOST:PORT] [--root DIR] [--source S]

Runs a local collector (with its dashboard) and the agent delivering to it, in the foreground.
Ctrl-C stops both. Prints the dashboard's URL, and an admin token on the first run.

  --state-dir DIR    agent state, spool and the collector's database (default /var/lib/ldguard)
  --config-dir DIR   where the agent's token file is kept, 0600 (default /etc/ldguard)
  --listen HOST:PORT the collector's address (default 127.0.0.1:8750)
  --root DIR         host root prefix for the agent (default /)
  --source S         auto | fanotify | inotify (default auto)
  --log-dir DIR      alerts file location (default /var/log/ldguard)
  --socket PATH      the agent's socket for \`ldguard tail\` (default /run/ldguard/agent.sock)
`;

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const RESTART_MS = 2_000;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseOptions('up', argv, {
    'state-dir': { type: 'string' },
    'config-dir': { type: 'string' },
    'log-dir': { type: 'string' },
    listen: { type: 'string' },
    root: { type: 'string' },
    source: { type: 'string' },
    socket: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const stateDir = values['state-dir'] ?? '/var/lib/ldguard';
  const configDir = values['config-dir'] ?? '/etc/ldguard';
  const logDir = values['log-dir'] ?? '/var/log/ldguard';
  const listen = values.listen ?? '127.0.0.1:8750';
  for (const d of [stateDir, configDir, logDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  const db = join(stateDir, 'collector.db');
  const tokenFile = join(configDir, 'agent.token');
  const adminToken = await ensureTokens(db, tokenFile);

  const children = new Set<ChildProcess>();
  let stopping = false;
  let allStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (allStopped = resolve));
  const supervise = (name: string, args: string[], onReady?: (line: Record<string, unknown>) => void): Promise<void> =>
    new Promise((resolve, reject) => {
      let ready = false;
      const start = () => {
        const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
        children.add(child);
        let buf = '';
        child.stdout!.on('data', (d: Buffer) => {
          process.stdout.write(d);
          if (ready) return;
          buf += d.toString();
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            try {
              const j = JSON.parse(line) as Record<string, unknown>;
              if (j.msg === 'ready') {
                ready = true;
                onReady?.(j);
                resolve();
              }
            } catch {
              // not JSON: passed through above, nothing to learn from it
            }
          }
        });
        child.on('exit', (code, signal) => {
          children.delete(child);
          if (stopping) {
            if (children.size === 0) allStopped();
            return;
          }
          if (!ready) return reject(new LdgError('LDG_ERR_UP', `the ${name} exited (${signal ?? code}) before it was ready; see its log lines above`));
          process.stderr.write(`ldguard up: the ${name} exited (${signal ?? code}); restarting it in ${RESTART_MS / 1000} s\n`);
          setTimeout(() => !stopping && start(), RESTART_MS);
        });
      };
      start();
    });

  const stopAll = () => {
    if (stopping) return;
    stopping = true;
    if (children.size === 0) allStopped();
    for (const c of children) c.kill('SIGTERM');
  };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);

  let port = 0;
  try {
    // The installed config files are used when present; the flags here override what they must.
    const cfg = (name: string) => (existsSync(join(configDir, name)) ? ['--config', join(configDir, name)] : []);
    await supervise('collector', ['collector', ...cfg('collector.toml'), '--listen', listen, '--db', db], (l) => (port = Number(l.port)));
    const bind = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
    const wsHost = bind === '0.0.0.0' || bind === '' ? '127.0.0.1' : bind.includes(':') ? `[${bind}]` : bind;
    await supervise('agent', [
      'agent',
      ...cfg('agent.toml'),
      '--state-dir', stateDir,
      '--alerts-file', join(logDir, 'alerts.ndjson'),
      '--collector', `ws://${wsHost}:${port}`,
      '--token-file', tokenFile,
      ...(values.root ? ['--root', values.root] : []),
      ...(values.source ? ['--source', values.source] : []),
      ...(values.socket ? ['--socket', values.socket] : []),
    ]);
  } catch (err) {
    stopAll();
    throw err;
  }
  const url = `http://${host(listen)}:${port}/`;
  process.stderr.write(
    `\nldguard is running: dashboard and API at ${url}\n` +
      (adminToken ? `admin token (shown only now; log in with it): ${adminToken}\n` : `log in with the admin token printed on the first run (or make one: ldguard token create --db ${db} --name admin2 --role admin)\n`) +
      `alerts as they happen: ldguard tail${values.socket ? ` --socket ${values.socket}` : ''}\nCtrl-C stops the agent and the collector.\n\n`,
  );
  await stopped;
  return 0;
}

function host(listen: string): string {
  const h = listen.slice(0, listen.lastIndexOf(':'));
  return h === '0.0.0.0' || h === '' ? hostname() : h;
}

/** Make the agent's token (kept, 0600) and, on the first run, an admin token (returned to print). */
async function ensureTokens(db: string, tokenFile: string): Promise<string | null> {
  const store = SqliteStore.open(db);
  try {
    const existing = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '';
    if (!existing || !store.lookupToken(existing)) {
      const name = `agent-${hostname()}-${Date.now().toString(36)}`;
      writeFileSync(tokenFile, `${await store.createToken(name, 'agent')}\n`, { mode: 0o600 });
      chmodSync(tokenFile, 0o600);
    }
    if ((await store.listTokens()).some((t) => t.role === 'admin' && t.revoked === null)) return null;
    return store.createToken('admin', 'admin');
  } finally {
    await store.close();
  }
}

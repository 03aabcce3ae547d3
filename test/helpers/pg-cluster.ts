// A throwaway PostgreSQL cluster: Debian's initdb and postgres (the `postgresql` package, which
// .ci/run installs) in a folder the caller owns, run as the postgres user on a free loopback port
// and a socket in that folder. No vitest here: the tests wrap it (postgres.ts, removed with the
// test), the bench uses it as it is (removed by its own cleanup). The caller stops it, then removes
// the folder: stop() waits for the server's exit, so nothing is left writing into it.
//
// Authentication (pg_hba.conf): the postgres superuser is trusted (the caller's own setup); every
// other role must give its password (scram-sha-256), so a test can check that the collector
// finds one in a password file.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';

/** The newest installed major version's binaries (Debian: /usr/lib/postgresql/<major>/bin). */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root).filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], 'bin') : undefined;
}

/** Why a throwaway cluster cannot run here, or undefined when it can. */
export function postgresUnavailable(): string | undefined {
  if (!postgresBin()) return 'PostgreSQL is not installed (apt-get install postgresql; .ci/run does)';
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    return 'no postgres user (the postgresql package creates it)';
  }
  if (process.getuid?.() !== 0) return 'starting a cluster as the postgres user needs root';
  return undefined;
}

export interface PgCluster {
  port: number;
  /** The postmaster's pid (SIGQUIT: immediate shutdown, for a caller interrupted that cannot wait). */
  pid: number;
  /** The server's major version (the folder under /usr/lib/postgresql). */
  version: string;
  /** A URL for `db` as `user` (default: the trusted superuser). */
  url: (db: string, user?: string) => string;
  /** Runs SQL as the superuser on `db`. */
  query: <R extends pg.QueryResultRow = Record<string, unknown>>(db: string, sql: string, params?: unknown[]) => Promise<R[]>;
  /** Creates an empty database and returns its URL (as the superuser). */
  createDb: (name: string) => Promise<string>;
  /** The server's ERROR lines so far, by message (a deadlock, a constraint): counted, the first 100 kinds. */
  errors: () => Map<string, number>;
  stop: () => Promise<void>;
}

export interface PgClusterOptions {
  /**
   * fsync and synchronous_commit on, as a production server runs: a commit is on disk before its
   * ack (the bench's figures). Off for tests: a cluster thrown away needs no disk flushes, and
   * what the tests check does not depend on them.
   */
  durable?: boolean;
  maxConnections?: number;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Starts a cluster in `dir` (an empty folder the caller made and later removes). */
export async function startPgCluster(dir: string, opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = postgresBin();
  if (!bin) throw new Error(postgresUnavailable());
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  const data = join(dir, 'data');
  const sockets = join(dir, 'run');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sockets, { mode: 0o700 });
  for (const p of [dir, data, sockets]) chownSync(p, uid, gid);
  const asPostgres = { uid, gid, env: { ...process.env, HOME: dir, LC_ALL: 'C.UTF-8' }, cwd: dir };
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', ...(opts.durable ? [] : ['--no-sync']), '-A', 'trust'], { ...asPostgres, stdio: 'ignore' });
  writeFileSync(join(data, 'pg_hba.conf'), [
    'local all postgres trust',
    'host all postgres 127.0.0.1/32 trust',
    'local all all scram-sha-256',
    'host all all 127.0.0.1/32 scram-sha-256',
    '',
  ].join('\n'));
  const port = await freePort();
  const settings = ['listen_addresses=127.0.0.1', `max_connections=${opts.maxConnections ?? 200}`, ...(opts.durable ? [] : ['fsync=off'])];
  const proc: ChildProcess = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', sockets, ...settings.flatMap((s) => ['-c', s])], {
    ...asPostgres, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let partial = '';
  const errors = new Map<string, number>();
  proc.stderr!.on('data', (d) => {
    stderr = (stderr + String(d)).slice(-4000);
    const lines = (partial + String(d)).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      // "2026-12-07 10:00:00.000 UTC [123] ERROR:  deadlock detected": the message, without time and pid.
      const m = /\bERROR:\s+(.*)$/.exec(l);
      if (m && (errors.has(m[1]!) || errors.size < 100)) errors.set(m[1]!, (errors.get(m[1]!) ?? 0) + 1);
    }
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = (db: string, user = 'postgres') => `postgres://${user}@127.0.0.1:${port}/${db}`;
  const query = async <R extends pg.QueryResultRow>(db: string, sql: string, params: unknown[] = []): Promise<R[]> => {
    const c = new pg.Client({ connectionString: url(db) });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGINT'); // fast shutdown
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await query('postgres', 'SELECT 1');
      break;
    } catch (err) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        await stop();
        throw new Error(`PostgreSQL did not start: ${String(err)}\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port, pid: proc.pid!, version: bin.split('/').at(-2)!, url, query, stop, errors: () => errors,
    createDb: async (name) => {
      await query('postgres', `CREATE DATABASE "${name}"`);
      return url(name);
    },
  };
}

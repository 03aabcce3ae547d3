// One lifecycle for credentials (issue 16): a dashboard password belongs to one admin token and
// dies with it; `ldguard token rotate` gives a token row a new secret, keeping its name, role, created
// and agent binding; every token and password action lands in an audit log that holds no secret.
// The real collector (a child process, port 0, SQLite in a temp dir), the real CLI, raw WebSocket
// clients and fetch against the dashboard's login endpoint.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, initDb } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { makeFacts, waitFor } from '../helpers/delivery.js';
import { rawAgent as rawAgentAt } from '../helpers/collector.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-credentials-');
const db = join(work, 'collector.db');
const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'another long enough passphrase';

type Log = Record<string, unknown>;

/** Runs the CLI without blocking this process (the raw WebSocket clients must keep answering pings). */
function cli(args: string[], input?: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p: ChildProcess = spawn(process.execPath, [cliPath(), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += String(d)));
    p.stderr!.on('data', (d) => (stderr += String(d)));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
    p.stdin!.end(input ?? '');
  });
}

async function ok(args: string[], input?: string): Promise<string> {
  initDb(db);
  const r = await cli(['token', ...args, '--db', db], input);
  if (r.status !== 0) throw new Error(`ldguard token ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

let collector: Daemon;
let port: number;

/**
 * POST /ui/login from the loopback address `from`: the collector allows 10 attempts per client
 * address at once, so each group of tests logs in from an address of its own.
 */
function login(from: string, body: object): Promise<{ status: number; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/ui/login', method: 'POST', localAddress: from, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function sessionStatus(cookie: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/ui/api/session`, { headers: { cookie } });
  await res.text();
  return res.status;
}

async function apiStatus(token: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/api/agents`, { headers: { authorization: `Bearer ${token}` } });
  await res.text();
  return res.status;
}

/** A raw agent connection at /agent on this file's collector (see helpers/collector.ts). */
const rawAgent = (token: string) => rawAgentAt(port, token);

function hello(agentId: string): string {
  return JSON.stringify({ type: 'hello', v: 1, agent: makeFacts(agentId, 'cred-host'), heartbeatMs: 10_000 });
}

function tokenRow(name: string): { hash: string; role: string; created: number; revoked: number | null; agent_id: string | null } | undefined {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return d.prepare('SELECT hash, role, created, revoked, agent_id FROM tokens WHERE name = ? AND revoked IS NULL').get(name) as ReturnType<typeof tokenRow>;
  } finally {
    d.close();
  }
}

beforeAll(async () => {
  // Short sweeps, so a rotated or revoked token's connections end within the test's patience.
  const config = join(work, 'collector.toml');
  writeFileSync(config, 'ping_interval_ms = 300\nsweep_interval_ms = 150\nhello_timeout_ms = 3000\n');
  await ok(['create', '--name', 'bootstrap', '--role', 'admin']);
  collector = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db, '--config', config], { readyMs: 15_000 });
  port = collector.ready.port as number;
});

afterAll(async () => {
  await collector?.stop('SIGKILL');
});

describe('a dashboard password belongs to one admin token', () => {
  it('dies with its token: revoke admin, create a new admin, the old password no longer logs in', async () => {
    const first = await ok(['create', '--name', 'admin', '--role', 'admin']);
    await ok(['passwd', '--name', 'admin'], `${PASSWORD}\n`);
    const before = await login('127.0.0.2', { name: 'admin', password: PASSWORD });
    expect(before.status).toBe(200);
    expect(await sessionStatus(before.cookie!)).toBe(200);

    // install.sh re-creates `admin` exactly this way.
    await ok(['revoke', '--name', 'admin']);
    // Committed when the command returns: another connection sees it at once, and the password is gone.
    const d = new Database(db, { readonly: true });
    expect((d.prepare("SELECT count(*) AS n FROM tokens WHERE name = 'admin' AND revoked IS NULL").get() as { n: number }).n).toBe(0);
    d.close();
    const second = await ok(['create', '--name', 'admin', '--role', 'admin']);
    expect(second).not.toBe(first);

    expect((await login('127.0.0.2', { name: 'admin', password: PASSWORD })).status).toBe(401);
    expect(await sessionStatus(before.cookie!)).toBe(401);
    // The new token works, and a password set for it logs in.
    expect((await login('127.0.0.2', { token: second })).status).toBe(200);
    await ok(['passwd', '--name', 'admin'], `${NEW_PASSWORD}\n`);
    expect((await login('127.0.0.2', { name: 'admin', password: NEW_PASSWORD })).status).toBe(200);
    expect((await login('127.0.0.2', { name: 'admin', password: PASSWORD })).status).toBe(401);
  });

  it('passwd refuses a name without an active admin token, naming the fix', async () => {
    await ok(['create', '--name', 'host-x', '--role', 'agent']);
    const r = await cli(['token', 'passwd', '--name', 'host-x', '--db', db], `${PASSWORD}\n`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/LDG_ERR_PASSWD_NAME.*ldguard token create/);
  });
});

describe('ldguard token rotate', () => {
  it('gives an agent token a new secret on the same row: the old one gets 401 and its connection ends, the agent binding stays', async () => {
    const old = await ok(['create', '--name', 'rot-host', '--role', 'agent']);
    const raw = await rawAgent(old);
    raw.ws.send(hello('agent-rot'));
    await waitFor(() => tokenRow('rot-host')?.agent_id === 'agent-rot', 5_000, 'the token bound to agent-rot');
    const row = tokenRow('rot-host')!;

    const r = await cli(['token', 'rotate', '--name', 'rot-host', '--db', db]);
    expect(r.status, r.stderr).toBe(0);
    const fresh = r.stdout.trim();
    expect(fresh).toMatch(/^ldg_[A-Za-z0-9_-]{43}$/);
    expect(fresh).not.toBe(old);
    expect(r.stderr).not.toContain(fresh);

    // Same row: name, role, created and agent id kept; one active row of that name, a new hash.
    const after = tokenRow('rot-host')!;
    expect(after).toMatchObject({ role: 'agent', created: row.created, revoked: null, agent_id: 'agent-rot' });
    expect(after.hash).not.toBe(row.hash);
    const list = (await ok(['list', '--json'])).split('\n').map((l) => JSON.parse(l) as Log).filter((t) => t.name === 'rot-host');
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ revoked: null, created: new Date(row.created).toISOString() });

    // The connection made with the old secret ends; the old secret is refused at the upgrade.
    expect((await raw.closed).code).toBe(4001);
    await expect(rawAgent(old)).rejects.toThrow(/upgrade refused: 401/);

    // The new secret serves the same agent id, and still refuses another one (the binding is kept).
    const same = await rawAgent(fresh);
    same.ws.send(hello('agent-rot'));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(same.ws.readyState).toBe(WebSocket.OPEN);
    expect(same.messages.some((m) => m.type === 'error')).toBe(false);
    same.ws.close();
    const impostor = await rawAgent(fresh);
    impostor.ws.send(hello('agent-impostor'));
    expect((await impostor.closed).code).toBe(4002);
  });

  it('keeps an admin token its password and ends the sessions opened with the old secret', async () => {
    const old = await ok(['create', '--name', 'rot-admin', '--role', 'admin']);
    await ok(['passwd', '--name', 'rot-admin'], `${PASSWORD}\n`);
    const s = await login('127.0.0.3', { token: old });
    expect(s.status).toBe(200);
    expect(await sessionStatus(s.cookie!)).toBe(200);

    const fresh = await ok(['rotate', '--name', 'rot-admin']);
    expect(await sessionStatus(s.cookie!)).toBe(401);
    expect((await login('127.0.0.3', { token: old })).status).toBe(401);
    expect(await apiStatus(old)).toBe(401);
    expect(await apiStatus(fresh)).toBe(200);
    expect((await login('127.0.0.3', { token: fresh })).status).toBe(200);
    expect((await login('127.0.0.3', { name: 'rot-admin', password: PASSWORD })).status).toBe(200);
  });

  it('refuses a name without an active token, naming the fix', async () => {
    const r = await cli(['token', 'rotate', '--name', 'no-such-token', '--db', db]);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/LDG_ERR_TOKEN_UNKNOWN.*ldguard token list/);
  });
});

describe('ldguard token audit', () => {
  it('lists create, passwd, rotate, revoke and dashboard logins in order, with no secret', async () => {
    const secrets: string[] = [PASSWORD];
    secrets.push(await ok(['create', '--name', 'aud-admin', '--role', 'admin']));
    await ok(['passwd', '--name', 'aud-admin'], `${PASSWORD}\n`);
    expect((await login('127.0.0.4', { name: 'aud-admin', password: PASSWORD })).status).toBe(200);
    expect((await login('127.0.0.4', { name: 'aud-admin', password: `${PASSWORD}!` })).status).toBe(401);
    // A password typed into the name field must not end up in the log either.
    expect((await login('127.0.0.4', { name: PASSWORD, password: PASSWORD })).status).toBe(401);
    secrets.push(await ok(['rotate', '--name', 'aud-admin']));
    await ok(['revoke', '--name', 'aud-admin']);

    const out = await ok(['audit', '--json']);
    for (const s of secrets) expect(out).not.toContain(s);
    const rows = out.split('\n').map((l) => JSON.parse(l) as Log);
    const mine = rows.filter((r) => r.token_name === 'aud-admin');
    expect(mine.map((r) => r.action)).toEqual(['create', 'passwd', 'login', 'login-failed', 'rotate', 'revoke']);
    for (const r of mine) {
      expect(r.at).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(typeof r.actor).toBe('string');
      expect(r.actor).not.toBe('');
    }
    expect(mine.find((r) => r.action === 'login')!.actor).toBe('web:127.0.0.4');
    const unknown = rows.filter((r) => r.action === 'login-failed' && r.token_name === null);
    expect(unknown.length).toBeGreaterThanOrEqual(1);
    // The earlier tests' actions are there too (the F6 sequence).
    expect(rows.filter((r) => r.token_name === 'admin').map((r) => r.action)).toEqual(
      expect.arrayContaining(['create', 'passwd', 'revoke', 'login']),
    );

    // The table and the text view hold no secret either, and the log cannot be rewritten.
    const text = await ok(['audit']);
    expect(text.split('\n')[0]).toMatch(/^AT\s+ACTOR\s+ACTION\s+TOKEN\s+DETAIL$/);
    for (const s of secrets) expect(text).not.toContain(s);
    const d = new Database(db);
    try {
      const all = JSON.stringify(d.prepare('SELECT * FROM audit_log').all());
      for (const s of secrets) expect(all).not.toContain(s);
      expect(() => d.prepare('DELETE FROM audit_log').run()).toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
      expect(() => d.prepare("UPDATE audit_log SET actor = 'someone else'").run()).toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
    } finally {
      d.close();
    }
  });
});

// A login's dashboard preferences (#22 item 4: the zone times are shown in) are kept by the
// collector with that login's credentials, over SQLite and PostgreSQL alike: saved through one
// session, read by a new login of the same name (on PostgreSQL through another collector over the
// same database), never by another name, and only written with the session's CSRF token.
// The real collector (child processes, port 0), the real CLI making the tokens, fetch as the page.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

interface Login {
  cookie: string;
  csrf: string;
  prefs: unknown;
}

async function login(port: number, token: string): Promise<Login> {
  const res = await fetch(`http://127.0.0.1:${port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  const body = (await res.json()) as { csrf: string; prefs: unknown };
  expect(res.status).toBe(200);
  return { cookie: res.headers.get('set-cookie')!.split(';')[0]!, csrf: body.csrf, prefs: body.prefs };
}

async function session(port: number, s: Login): Promise<{ name: string; prefs: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}/ui/api/session`, { headers: { cookie: s.cookie } });
  expect(res.status).toBe(200);
  return (await res.json()) as { name: string; prefs: unknown };
}

async function put(port: number, s: Login, body: unknown, csrf = s.csrf): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { cookie: s.cookie, 'content-type': 'application/json' };
  if (csrf) headers['x-ldguard-csrf'] = csrf;
  const res = await fetch(`http://127.0.0.1:${port}/ui/api/prefs`, { method: 'PUT', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

const noPostgres = postgresUnavailable();

describe.each([
  ['sqlite', ''],
  ['postgres', noPostgres],
] as const)('dashboard preferences on %s', (kind, unavailable) => {
  const dir = tempDir(`ldg-web-prefs-${kind}-`);
  // Where the first login saves, and where the second logs in: one collector on SQLite (its
  // file is its own), two over one PostgreSQL database.
  let first: TestCollector;
  let second: TestCollector;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    if (unavailable) return;
    const db = kind === 'sqlite' ? join(dir, 'collector.db') : await (await startPostgres()).createDb('prefs');
    alice = await createToken(db, 'alice', 'admin');
    bob = await createToken(db, 'bob', 'admin');
    first = await startTestCollector(dir, db);
    second = kind === 'sqlite' ? first : await startTestCollector(dir, db);
  }, 60_000);

  afterAll(async () => {
    await first?.stop();
    if (second !== first) await second?.stop();
  });

  it.skipIf(Boolean(unavailable))(`keeps the zone per login name, UTC until chosen${unavailable ? ` (skipped: ${unavailable})` : ''}`, async () => {
    const a1 = await login(first.port, alice);
    expect(a1.prefs).toEqual({ timeZone: 'utc' });
    expect((await session(first.port, a1)).prefs).toEqual({ timeZone: 'utc' });

    expect(await put(first.port, a1, { timeZone: 'local' })).toEqual({ status: 200, body: { timeZone: 'local' } });
    expect((await session(first.port, a1)).prefs).toEqual({ timeZone: 'local' });

    // A new login of the same name (a browser elsewhere) finds it, in the login reply and the session.
    const a2 = await login(second.port, alice);
    expect(a2.prefs).toEqual({ timeZone: 'local' });
    expect(await session(second.port, a2)).toMatchObject({ name: 'alice', prefs: { timeZone: 'local' } });

    // Another name is not affected, and its own choice does not touch alice's.
    const b = await login(second.port, bob);
    expect(b.prefs).toEqual({ timeZone: 'utc' });
    expect((await put(second.port, b, { timeZone: 'local' })).status).toBe(200);
    expect((await put(second.port, b, { timeZone: 'utc' })).status).toBe(200);
    expect((await session(first.port, a1)).prefs).toEqual({ timeZone: 'local' });
    expect((await session(second.port, b)).prefs).toEqual({ timeZone: 'utc' });

    // The last writer wins, across sessions of one name.
    expect((await put(second.port, a2, { timeZone: 'utc' })).status).toBe(200);
    expect((await session(first.port, a1)).prefs).toEqual({ timeZone: 'utc' });
  });

  it.skipIf(Boolean(unavailable))(`writes only with the session's CSRF token and a well-formed body${unavailable ? ` (skipped: ${unavailable})` : ''}`, async () => {
    const a = await login(first.port, alice);
    const before = (await session(first.port, a)).prefs;
    const flipped = { timeZone: before && (before as { timeZone: string }).timeZone === 'utc' ? 'local' : 'utc' };
    for (const csrf of ['', 'x'.repeat(a.csrf.length)]) {
      const r = await put(first.port, a, flipped, csrf);
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('LDG_ERR_WEB_CSRF');
    }
    // Another session's token is not this one's.
    const other = await login(first.port, alice);
    expect((await put(first.port, a, flipped, other.csrf)).status).toBe(403);
    for (const body of [{ timeZone: 'Europe/Berlin' }, { timeZone: 'local', theme: 'dark' }, {}]) {
      const r = await put(first.port, a, body);
      expect(r.status).toBe(400);
      expect(r.body.error).toEqual({ code: 'LDG_ERR_WEB_BODY', message: 'send {"timeZone": "utc"} or {"timeZone": "local"}' });
    }
    expect((await session(first.port, a)).prefs).toEqual(before);
    // Without a session there is nothing to save to.
    const anon = await fetch(`http://127.0.0.1:${first.port}/ui/api/prefs`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"timeZone":"local"}' });
    expect(anon.status).toBe(401);
    expect(first.proc.exitCode).toBeNull();
  });
});

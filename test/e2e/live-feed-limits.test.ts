// The dashboard's live feed against a greedy client: one login session, or one admin name, cannot
// take all of the collector's live-feed slots. Real collector (child process, port 0), real
// logins over HTTP, real WebSocket connections with the session cookie, as a browser makes them.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cliPath, initDb } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-live-limits-');
const db = join(work, 'collector.db');
let collector: Daemon;
let base: string;
let origin: string;
let token: string;
const open = new Set<WebSocket>();

async function login(): Promise<string> {
  const res = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json', origin }, body: JSON.stringify({ token }) });
  expect(res.status).toBe(200);
  return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
}

/** Opens the feed with `cookie`: 'hello' when it is let in, or the close code and reason when refused. */
function feed(cookie: string): Promise<{ ws: WebSocket; hello: boolean; code?: number; reason?: string }> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ui/live`, { headers: { cookie, origin } });
  open.add(ws);
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => resolve({ ws, hello: (JSON.parse(String(m)) as { type: string }).type === 'hello' }));
    ws.once('close', (code, reason) => resolve({ ws, hello: false, code, reason: String(reason) }));
    ws.once('error', reject);
  });
}

describe('live feed limits', () => {
  beforeAll(async () => {
    collector = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db], { readyMs: 15_000 });
    base = `http://127.0.0.1:${collector.ready.port as number}`;
    origin = base;
    initDb(db);
    const r = spawnSync(process.execPath, [cliPath(), 'token', 'create', '--db', db, '--name', 'alice', '--role', 'admin'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    token = r.stdout.trim();
  });

  afterAll(async () => {
    for (const ws of open) ws.terminate();
    await collector?.stop();
  });

  it('lets one session open 4 feeds, refuses the 5th with a close code that says why, and lets it in again once one closes', async () => {
    const cookie = await login();
    const first = await Promise.all(Array.from({ length: 4 }, () => feed(cookie)));
    expect(first.map((f) => f.hello)).toEqual([true, true, true, true]);
    const fifth = await feed(cookie);
    expect(fifth).toMatchObject({ hello: false, code: 4429 });
    expect(fifth.reason).toMatch(/live feeds for this session \(4\)/);
    // A freed slot can be used again.
    first[0]!.ws.close();
    await new Promise((r) => first[0]!.ws.once('close', r));
    await expect.poll(async () => (await feed(cookie)).hello, { timeout: 5_000 }).toBe(true);
  });

  it('lets one admin name hold 16 feeds over its sessions and refuses the 17th', async () => {
    for (const ws of open) ws.close();
    await expect.poll(() => [...open].every((ws) => ws.readyState === WebSocket.CLOSED)).toBe(true);
    const cookies = await Promise.all(Array.from({ length: 5 }, () => login()));
    const held = await Promise.all(cookies.slice(0, 4).flatMap((c) => Array.from({ length: 4 }, () => feed(c))));
    expect(held.every((f) => f.hello)).toBe(true);
    const over = await feed(cookies[4]!);
    expect(over).toMatchObject({ hello: false, code: 4429 });
    expect(over.reason).toMatch(/live feeds for alice \(16\)/);
  });
});

// The dashboard as the security team uses it: Debian's Chromium (headless, driven by
// playwright-core) against the real collector and the real agent, both child processes (port 0,
// SQLite in a temp dir, a scratch host root). A real writer creates a linker file; the alert must
// appear on the open page without a reload, be opened, acknowledged and filtered; the agent must be
// on the fleet page. Screenshots go to a temp dir whose paths are printed, kept only when a test failed.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../../shared/protocol.js';
import { makeFacts } from '../helpers/delivery.js';
import { scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { cliPath, initDb } from '../helpers/cli.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { removeWhenDone, tempDir } from '../helpers/temp.js';
import { CHROMIUM, openChromium } from '../helpers/browser.js';

const XSS_NAME = 'ld-linux-<img src=x onerror=alert(1)>.so';
// Rendered as written, the right-to-left override makes this name read "ld-linux.so.2exe.txt".
const BIDI_NAME = 'ld-linux.so.2\u202Etxt.exe';
const BIDI_SHOWN = 'ld-linux.so.2<U+202E>txt.exe';
// Bidirectional controls and zero-width characters: none may reach the page unescaped.
const HIDDEN = /[\u061C\u200B-\u200F\u202A-\u202E\u2060\u2066-\u2069\uFEFF]/;

const work = tempDir('ldg-dashboard-');
// Made by the first screenshot. Not tempDir: the screenshots are for a human to look at when a
// test failed, and afterAll keeps them only then.
let shots = '';
let failed = false;
const profile = tempDir('ldg-chromium-');
const db = join(work, 'collector.db');
const PASSWORD = 'correct horse battery staple';

let collector: Daemon;
let agent: RunningAgent | undefined;
let root: string;
let base: string;
let adminToken: string;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
const requests: string[] = [];
let consoleErrors: string[] = [];
let realAlertUuid = '';
let xssAlertUuid = '';
let cpPid = 0;

function cli(args: string[], input?: string): string {
  const r = spawnSync(process.execPath, [cliPath(), ...args], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldguard ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

async function shot(name: string, fullPage = false): Promise<void> {
  shots ||= mkdtempSync(join(tmpdir(), 'ldg-dashboard-shots-'));
  const file = join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  console.log(`screenshot: ${file}`);
}

/** cp as a separate process, as a user would run it; returns its pid. */
function cp(dest: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('cp', ['/bin/true', dest], { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(p.pid!) : reject(new Error(`cp exited ${code}`))));
  });
}

async function apiGet(path: string): Promise<any> {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
  return res.json();
}

const haveChromium = existsSync(CHROMIUM);

describe.skipIf(!haveChromium)('dashboard in Chromium against the real collector and agent (skipped without /usr/bin/chromium: apt-get install chromium)', () => {
  beforeAll(async () => {
    collector = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db], { readyMs: 15_000 });
    base = `http://127.0.0.1:${collector.ready.port as number}`;
    initDb(db);
    adminToken = cli(['token', 'create', '--db', db, '--name', 'alice', '--role', 'admin']);
    cli(['token', 'passwd', '--db', db, '--name', 'alice'], `${PASSWORD}\n`);
    const tokenFile = join(work, 'agent.token');
    writeFileSync(tokenFile, `${cli(['token', 'create', '--db', db, '--name', 'agent-1', '--role', 'agent'])}\n`, { mode: 0o600 });
    root = removeWhenDone(scratchRoot('ldg-dash-root-'));
    agent = await startAgent({ root, extra: ['--collector', `ws://127.0.0.1:${collector.ready.port as number}`, '--token-file', tokenFile] });

    // A fresh profile (--user-data-dir) per run.
    ({ context, page, errors: consoleErrors } = await openChromium(profile, { viewport: { width: 1440, height: 900 } }));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('request', (r) => requests.push(r.url()));
  });

  beforeEach(({ onTestFailed }) => onTestFailed(() => void (failed = true)));

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    if (agent) {
      // Not this test's subject: an agent that does not stop within 10 s is logged and killed.
      const stopped = await Promise.race([agent.stop().then(() => true, () => true), new Promise<false>((r) => setTimeout(() => r(false), 10_000))]);
      if (!stopped) {
        console.log('the agent did not exit within 10 s of SIGTERM; killed it');
        agent.proc.kill('SIGKILL');
      }
    }
    await collector?.stop().catch(() => undefined);
    if (shots && failed) console.log(`screenshots kept in ${shots}`);
    else if (shots) rmSync(shots, { recursive: true, force: true });
  }, 30_000);

  it('serves the page with a strict CSP and refuses the API without a session', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(await res.text()).not.toMatch(/<script>|<style>|style=/);
    expect((await fetch(`${base}/ui/api/alerts`)).status).toBe(401);
    // A login from another origin is refused even with the right token.
    const foreign = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: JSON.stringify({ token: adminToken }) });
    expect(foreign.status).toBe(403);
  });

  it('logs in with the admin token and sets a strict session cookie', async () => {
    await page.goto(`${base}/`);
    await page.getByRole('tab', { name: 'Admin token' }).click();
    await shot('01-login');
    await page.fill('input[name="token"]', 'ldg_not-a-real-token');
    await page.click('button[type="submit"]');
    await expect.poll(() => page.textContent('.login-error')).toContain('not an active admin token');
    await page.fill('input[name="token"]', adminToken);
    await page.click('button[type="submit"]');
    await page.waitForSelector('h1:text("Alerts")');
    await page.waitForSelector('.live-live', { timeout: 10_000 });
    const cookie = (await context.cookies(base)).find((c) => c.name === 'ldg_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(await page.evaluate('document.cookie')).toBe('');
  });

  it('shows an alert a real writer caused, without a reload', async () => {
    // A marker on the window survives only if the page is never reloaded.
    await page.evaluate("window.__ldgMarker = 'still here'");
    const dest = join(root, 'lib64/ld-linux-x86-64.so.2.test');
    const t0 = Date.now();
    cpPid = await cp(dest);
    const row = page.locator('tr.alert-row', { hasText: '/lib64/ld-linux-x86-64.so.2.test' });
    await row.first().waitFor({ timeout: 15_000 });
    console.log(`alert on the open page ${Date.now() - t0} ms after cp ran (agent detection, delivery, commit and push)`);
    expect(await page.evaluate('window.__ldgMarker')).toBe('still here');
    realAlertUuid = (await row.first().getAttribute('data-uuid')) ?? '';
    expect(realAlertUuid).not.toBe('');
    await expect.poll(async () => row.first().textContent()).toContain('cp');
    const text = (await row.first().textContent()) ?? '';
    expect(text).toContain(`pid ${cpPid}`);
    expect(text).toContain(hostname());
    expect(text).toContain('root');
    expect(text).toContain('open');
  });

  it('shows a file named with HTML in it as text', async () => {
    await cp(join(root, 'lib64', XSS_NAME));
    const cell = page.locator('tr.alert-row td.col-path', { hasText: XSS_NAME });
    await cell.first().waitFor({ timeout: 15_000 });
    // The agent reports the real path (lib64 is a symlink to usr/lib64 in the scratch root).
    expect(await cell.first().textContent()).toBe(`/usr/lib64/${XSS_NAME}`);
    xssAlertUuid = (await page.locator('tr.alert-row', { hasText: XSS_NAME }).first().getAttribute('data-uuid')) ?? '';
    // No element was made from the name, and its script never ran.
    expect(await page.locator('table.alerts img').count()).toBe(0);
    await page.waitForTimeout(300);
    expect(dialogs).toEqual([]);
    await shot('02-alerts-live');
  });

  it('opens the alert: file, process and parent, rule, MITRE mapping, every field', async () => {
    await page.locator(`tr.alert-row[data-uuid="${realAlertUuid}"] td.col-path`).click();
    await page.waitForSelector('.detail-head');
    const sha = createHash('sha256').update(readFileSync('/bin/true')).digest('hex');
    const body = (await page.textContent('main.view')) ?? '';
    expect(body).toContain('/lib64/ld-linux-x86-64.so.2.test');
    expect(body).toContain(sha);
    expect(body).toContain(String(cpPid));
    expect(body).toContain(String(process.pid)); // cp's parent is this test process
    expect(body).toContain('Dynamic Linker Hijacking');
    expect(body).toContain('T1574.006');
    expect(body).toContain('Investigation guide');
    expect(body).toContain('kibana.alert.rule.rule_id');
    expect(await page.locator('a[href^="https://attack.mitre.org/"]').count()).toBeGreaterThan(0);
    await shot('03-alert-detail');
    await page.click('details.all-fields summary');
    await page.evaluate("document.querySelector('details.all-fields').scrollIntoView()");
    await shot('03b-alert-all-fields');
  });

  it('acknowledges it, recording who and when', async () => {
    await page.click('button[data-action="acknowledged"]');
    await page.waitForSelector('.workflow-now .status-acknowledged');
    expect(await page.textContent('.timeline')).toContain('Acknowledged by alice');
    const doc = (await apiGet(`/api/alerts/${realAlertUuid}`)).alert;
    expect(doc.kibana.alert.workflow_status).toBe('acknowledged');
    expect(doc.kibana.alert.workflow_user).toBe('alice');
    await shot('04-alert-acknowledged');
  });

  it('opens the HTML-named alert as text too', async () => {
    await page.goto(`${base}/#/alerts/${xssAlertUuid}`);
    await page.waitForSelector('.path-big');
    expect(await page.textContent('.path-big')).toBe(`/usr/lib64/${XSS_NAME}`);
    expect(await page.locator('main.view img').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });

  it('filters the list by status, search and host', async () => {
    await page.click('nav a[data-section="alerts"]');
    await page.waitForSelector('tr.alert-row');
    await page.selectOption('select[name="status"]', 'acknowledged');
    await expect.poll(() => page.locator('tr.alert-row').count()).toBe(1);
    expect(await page.locator('tr.alert-row').first().getAttribute('data-uuid')).toBe(realAlertUuid);
    await page.selectOption('select[name="status"]', '');
    // Free-text search (the FTS index): a piece of the HTML-named file.
    await page.fill('input[name="q"]', 'onerror');
    await expect.poll(async () => page.locator('tr.alert-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uuid'))), { timeout: 10_000 }).toEqual([xssAlertUuid]);
    await page.fill('input[name="q"]', `cp ld-linux-x86`);
    await expect.poll(async () => page.locator('tr.alert-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uuid'))), { timeout: 10_000 }).toEqual([realAlertUuid]);
    await shot('05-alerts-search');
    await page.fill('input[name="q"]', '');
    await page.fill('input[name="host"]', 'no-such-host');
    await expect.poll(() => page.textContent('.table-wrap'), { timeout: 10_000 }).toContain('No alert matches these filters.');
    await page.fill('input[name="host"]', hostname());
    await expect.poll(() => page.locator('tr.alert-row').count(), { timeout: 10_000 }).toBe(2);
    expect(page.url()).toContain(`host=${encodeURIComponent(hostname())}`);
  });

  it('shows a right-to-left override in a file name escaped, in the list and in the alert', async () => {
    await page.click('nav a[data-section="alerts"]');
    await page.waitForSelector('tr.alert-row');
    await cp(join(root, 'lib64', BIDI_NAME));
    const cell = page.locator('tr.alert-row td.col-path', { hasText: BIDI_SHOWN });
    await cell.first().waitFor({ timeout: 15_000 });
    expect(await cell.first().textContent()).toBe(`/usr/lib64/${BIDI_SHOWN}`);
    expect(await cell.first().getAttribute('title')).toBe(`/usr/lib64/${BIDI_SHOWN}`);
    expect(await page.textContent('table.alerts')).not.toMatch(HIDDEN);
    await shot('08-bidi-list');
    await cell.first().click();
    await page.waitForSelector('.path-big');
    expect(await page.textContent('.path-big')).toBe(`/usr/lib64/${BIDI_SHOWN}`);
    const fields = page.locator('table.fields tr', { has: page.locator('th', { hasText: /^file\.path$/ }) });
    expect(await fields.locator('td').textContent()).toBe(`/usr/lib64/${BIDI_SHOWN}`);
    expect(await page.textContent('main.view')).not.toMatch(HIDDEN);
    // Only the display is escaped: the stored alert keeps the name's real characters.
    const uuid = decodeURIComponent(page.url().split('#/alerts/')[1] ?? '');
    expect((await apiGet(`/api/alerts/${uuid}`)).alert.file.path).toBe(`/usr/lib64/${BIDI_NAME}`);
  });

  it('shows the agent on the fleet page, and a degraded agent gone offline standing out', async () => {
    // A second agent, by hand over the real protocol: degraded (inotify, no writer attribution),
    // losing events, then gone silent; the collector marks it offline after its missed heartbeats.
    const token = cli(['token', 'create', '--db', db, '--name', 'db-2', '--role', 'agent']);
    const ws = new WebSocket(`ws://127.0.0.1:${collector.ready.port as number}/agent`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const source = { name: 'inotify', degraded: true, reason: 'fanotify unavailable (EPERM): falling back to inotify' };
    const attribution = { degraded: true, reason: 'inotify carries no pid' };
    // Its kernel string, chosen by whoever runs that host, carries a right-to-left override.
    const host = { architecture: 'x86_64', os: { name: 'Debian GNU/Linux', version: '12', kernel: '6.1.0\u202Ecve' } };
    ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, heartbeatMs: 200, agent: { ...makeFacts('agent-db-2', 'db-2'), host, source, attribution } }));
    ws.send(JSON.stringify({ type: 'heartbeat', v: PROTOCOL_VERSION, health: { spoolDepth: 3, spoolBytes: 9000, spoolOverflow: 0, spoolTorn: 0, eventsLost: 12, source, attribution, uptimeSec: 3600 } }));
    await new Promise((r) => setTimeout(r, 300));
    ws.terminate();

    await page.click('nav a[data-section="fleet"]');
    const row = page.locator('tr.agent-row', { hasText: hostname() });
    await row.first().waitFor();
    const text = (await row.first().textContent()) ?? '';
    expect(text).toContain('Online');
    expect(text).toContain('fanotify');
    expect(text).toMatch(/\d+\.\d+\.\d+/); // version
    // The fleet summary pushed over the live feed makes the page re-read the list: no reload.
    const bad = page.locator('tr.agent-row.agent-offline', { hasText: 'db-2' });
    await bad.waitFor({ timeout: 20_000 });
    expect(await bad.textContent()).toContain('inotify (degraded)');
    expect(await bad.textContent()).toContain('6.1.0<U+202E>cve');
    expect(await page.textContent('main.view')).not.toMatch(HIDDEN);
    expect(await page.locator('tr.agent-row').first().getAttribute('data-agent')).toBe('agent-db-2'); // problems first
    expect(await page.textContent('.nav-badge')).toBe('1');
    await shot('06-fleet');
  });

  it('shows the overview with counts by status', async () => {
    await page.click('nav a[data-section="overview"]');
    await page.waitForSelector('svg.chart');
    await expect.poll(async () => page.locator('.stat', { hasText: 'Acknowledged' }).textContent(), { timeout: 10_000 }).toContain('1');
    expect(await page.locator('svg.chart rect.bar').count()).toBeGreaterThan(0);
    expect(await page.textContent('.grid3')).toContain(hostname());
    await shot('07-overview');
  });

  it('logs out, and logs in with the password', async () => {
    await page.click('button:text("Log out")');
    await page.waitForSelector('.login-card');
    expect((await context.cookies(base)).find((c) => c.name === 'ldg_session')).toBeUndefined();
    await page.getByRole('tab', { name: 'Password' }).click();
    await page.fill('input[name="name"]', 'alice');
    await page.fill('input[name="password"]', 'wrong password here');
    await page.click('button[type="submit"]');
    await expect.poll(() => page.textContent('.login-error')).toContain('wrong name or password');
    await page.fill('input[name="password"]', PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForSelector('.user:text("alice")');
  });

  it('made no request beyond the collector and logged no error', () => {
    const foreign = requests.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith(`ws://127.0.0.1:${collector.ready.port as number}/`));
    expect(foreign).toEqual([]);
    expect(consoleErrors.filter((e) => !/401|Unauthorized/.test(e))).toEqual([]);
  });
});

// The same page over PostgreSQL, once: two collectors on one throwaway database, the browser on B,
// the real agent delivering to A. Login, the live alert arriving through the other collector, the
// list and search (pg_trgm there, not FTS5).
const noPostgres = postgresUnavailable();

describe.skipIf(!haveChromium || noPostgres)(`dashboard in Chromium on PostgreSQL, two collectors (skipped: ${!haveChromium ? 'no /usr/bin/chromium' : noPostgres})`, () => {
  let pgDb: string;
  let onA: TestCollector;
  let onB: TestCollector;
  let pgAgent: RunningAgent | undefined;
  let pgRoot: string;
  let pgContext: BrowserContext;
  let pgPage: Page;
  let baseB: string;
  const pgDir = tempDir('ldg-dashboard-pg-');

  beforeAll(async () => {
    const pgc = await startPostgres();
    pgDb = await pgc.createDb('dashboard');
    cli(['token', 'create', '--db', pgDb, '--name', 'alice', '--role', 'admin']);
    cli(['token', 'passwd', '--db', pgDb, '--name', 'alice'], `${PASSWORD}\n`);
    const tokenFile = join(pgDir, 'agent.token');
    writeFileSync(tokenFile, `${cli(['token', 'create', '--db', pgDb, '--name', 'agent-pg', '--role', 'agent'])}\n`, { mode: 0o600 });
    [onA, onB] = await Promise.all([startTestCollector(pgDir, pgDb), startTestCollector(pgDir, pgDb)]);
    baseB = `http://127.0.0.1:${onB.port}`;
    pgRoot = removeWhenDone(scratchRoot('ldg-dash-pg-root-'));
    pgAgent = await startAgent({ root: pgRoot, extra: ['--collector', `ws://127.0.0.1:${onA.port}`, '--token-file', tokenFile] });
    ({ context: pgContext, page: pgPage } = await openChromium(tempDir('ldg-chromium-pg-'), { viewport: { width: 1440, height: 900 } }));
  }, 90_000);

  afterAll(async () => {
    await pgContext?.close().catch(() => undefined);
    if (pgAgent) {
      const stopped = await Promise.race([pgAgent.stop().then(() => true, () => true), new Promise<false>((r) => setTimeout(() => r(false), 10_000))]);
      if (!stopped) pgAgent.proc.kill('SIGKILL');
    }
    await Promise.all([onA?.stop().catch(() => undefined), onB?.stop().catch(() => undefined)]);
  }, 30_000);

  it('logs in on B with the password set through the CLI', async () => {
    await pgPage.goto(`${baseB}/`);
    await pgPage.getByRole('tab', { name: 'Password' }).click();
    await pgPage.fill('input[name="name"]', 'alice');
    await pgPage.fill('input[name="password"]', PASSWORD);
    await pgPage.click('button[type="submit"]');
    await pgPage.waitForSelector('.user:text("alice")');
    await pgPage.waitForSelector('.live-live', { timeout: 10_000 });
  });

  it('shows on B, without a reload, an alert the agent delivered to A; lists and searches it', async () => {
    await pgPage.evaluate("window.__ldgMarker = 'still here'");
    const pid = await cp(join(pgRoot, 'lib64/ld-linux-x86-64.so.2.pgtest'));
    const row = pgPage.locator('tr.alert-row', { hasText: '/lib64/ld-linux-x86-64.so.2.pgtest' });
    await row.first().waitFor({ timeout: 15_000 });
    expect(await pgPage.evaluate('window.__ldgMarker')).toBe('still here');
    const uuid = (await row.first().getAttribute('data-uuid')) ?? '';
    expect(uuid).not.toBe('');
    await expect.poll(async () => row.first().textContent()).toContain(`pid ${pid}`);
    // The stored list, read from PostgreSQL by B (a reload drops what the feed pushed).
    await pgPage.reload();
    await pgPage.locator(`tr.alert-row[data-uuid="${uuid}"]`).waitFor({ timeout: 10_000 });
    await pgPage.fill('input[name="q"]', 'so.2.PGTEST');
    await expect.poll(async () => pgPage.locator('tr.alert-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-uuid'))), { timeout: 10_000 }).toEqual([uuid]);
    await pgPage.fill('input[name="q"]', 'no-such-text-anywhere');
    await expect.poll(() => pgPage.textContent('.table-wrap'), { timeout: 10_000 }).toContain('No alert matches these filters.');
  });
});

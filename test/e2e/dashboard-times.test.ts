// Times with an explicit zone (#22 item 4), in Debian's Chromium (headless, playwright-core)
// against the real collector, a child process fed by a real agent sink over the real protocol.
// The browser runs in Asia/Kolkata (+05:30 all year, no DST), so "local" has one known offset
// that no UTC time can be mistaken for. The choice is the login's, kept by the collector: a
// second browser profile (no storage shared with the first) logging in as the same name finds it.
import { existsSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Daemon } from '../helpers/daemon.js';
import { makeAlert, waitFor } from '../helpers/delivery.js';
import { tempDir, whenDone } from '../helpers/temp.js';
import { adminLogin, CHROMIUM, openChromium } from '../helpers/browser.js';
import { startDashboardBackEnd } from '../helpers/dashboard.js';

const TZ = 'Asia/Kolkata';
const UTC_TIME = /^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d(\.\d{3})? UTC$/;
const LOCAL_TIME = /^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d(\.\d{3})? \+05:30$/;

const work = tempDir('ldg-dash-times-');
const haveChromium = existsSync(CHROMIUM);

let collector: Daemon;
let base: string;
let admin: string;
let sink: WebSocketSink | undefined;
const contexts: BrowserContext[] = [];
let page: Page;
let uuid = '';
// An alert two days old: the list shows its date, and its clock time differs by 5 h 30 in the two zones.
const WHEN = new Date(Math.floor(Date.now() / 1000) * 1000 - 2 * 86_400_000);

async function browser(): Promise<Page> {
  const { context: ctx, page: p } = await openChromium(tempDir('ldg-chromium-times-'), { timezoneId: TZ, viewport: { width: 1280, height: 800 } });
  contexts.push(ctx);
  // Closed before its profile folder goes (whenDone runs in reverse order): a browser opened in a
  // test still writing there made the folder's removal fail (ENOTEMPTY).
  whenDone(() => ctx.close().catch(() => undefined));
  await adminLogin(p, base, admin);
  return p;
}

const listTime = () => page.locator(`tr.alert-row[data-uuid="${uuid}"] td.col-time`).textContent({ timeout: 10_000 });
const pressed = () => page.locator('.zone-switch button[aria-pressed="true"]').textContent();

/** The same instant as the page should write it: WHEN in UTC, or at +05:30. */
function expected(offsetMin: number, label: string): string {
  const w = new Date(WHEN.getTime() + offsetMin * 60_000).toISOString();
  return `${w.slice(0, 10)} ${w.slice(11, 19)} ${label}`;
}

describe.skipIf(!haveChromium)('dashboard times in Chromium against the real collector (skipped without /usr/bin/chromium: apt-get install chromium)', () => {
  beforeAll(async () => {
    const back = await startDashboardBackEnd(work, 'agent-times');
    ({ collector, base, admin } = back);
    const s = back.sink;
    sink = s;
    const a = makeAlert({ agentId: 'agent-times', host: 'web-1', time: WHEN.toISOString() });
    uuid = a.kibana.alert.uuid;
    await s.send(a);
    await waitFor(async () => {
      const r = await fetch(`${base}/api/alerts?limit=5`, { headers: { authorization: `Bearer ${admin}` } });
      return ((await r.json()) as { alerts: unknown[] }).alerts.length === 1 || undefined;
    }, 20_000, 'the alert stored');
    page = await browser();
  }, 120_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await sink?.close();
    await collector?.stop().catch(() => undefined);
  }, 30_000);

  it('shows every time in UTC, saying so, until the login chooses otherwise', async () => {
    expect(await pressed()).toBe('UTC');
    expect(await listTime()).toBe(expected(0, 'UTC'));
    expect(await page.locator(`tr.alert-row[data-uuid="${uuid}"] td.col-time`).getAttribute('title')).toMatch(UTC_TIME);
    expect(await page.locator('.user').getAttribute('title')).toMatch(/^session until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$/);

    // A custom range is read in the zone shown: these UTC bounds hold WHEN (at +05:30 they would not).
    const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16);
    await page.goto(`${base}/#/alerts?range=custom&from=${minute(WHEN.getTime() - 60_000)}&to=${minute(WHEN.getTime() + 120_000)}`);
    expect(await listTime()).toBe(expected(0, 'UTC'));
    expect(await page.locator('.range-zone').textContent()).toBe('UTC');

    await page.goto(`${base}/#/alerts/${uuid}`);
    const opened = page.locator('.step-open > span.muted');
    await opened.waitFor();
    expect((await opened.textContent())!.trim()).toBe(`${expected(0, 'UTC').replace(' UTC', '.000 UTC')}`);

    await page.goto(`${base}/#/overview?window=7d`);
    await page.waitForSelector('svg.chart');
    expect(await page.locator('svg.chart text.x-zone').textContent()).toBe('UTC');
    const bar = page.locator('svg.chart rect.bar title').first();
    await expect.poll(async () => (await bar.count()) > 0 || (await page.reload(), false), { timeout: 20_000 }).toBe(true);
    expect(await bar.textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC: 1 alert$/);

    await page.goto(`${base}/#/fleet`);
    const seen = page.locator('td[title]').filter({ hasText: /ago|just now/ }).first();
    await seen.waitFor();
    expect(await seen.getAttribute('title')).toMatch(UTC_TIME);
  });

  it('switches to the browser zone with its offset, and a reload keeps the choice', async () => {
    await page.goto(`${base}/#/alerts`);
    await page.locator(`tr.alert-row[data-uuid="${uuid}"]`).waitFor();
    await page.click('.zone-switch button[data-zone="local"]');
    await expect.poll(listTime).toBe(expected(330, '+05:30'));
    expect(await pressed()).toBe('Local');
    expect(await page.locator(`tr.alert-row[data-uuid="${uuid}"] td.col-time`).getAttribute('title')).toMatch(LOCAL_TIME);

    await page.reload();
    await page.waitForSelector('h1:text("Alerts")');
    expect(await listTime()).toBe(expected(330, '+05:30'));
    expect(await pressed()).toBe('Local');

    await page.goto(`${base}/#/overview?window=7d`);
    await page.waitForSelector('svg.chart');
    expect(await page.locator('svg.chart text.x-zone').textContent()).toBe('+05:30');
    await page.goto(`${base}/#/alerts/${uuid}`);
    await page.locator('.step-open > span.muted').waitFor();
    expect((await page.locator('.step-open > span.muted').textContent())!.trim()).toMatch(LOCAL_TIME);
  });

  it('keeps the choice on the server: another browser logging in as the same name finds it, and can switch back', async () => {
    page = await browser();
    expect(await pressed()).toBe('Local');
    expect(await listTime()).toBe(expected(330, '+05:30'));
    await page.click('.zone-switch button[data-zone="utc"]');
    await expect.poll(listTime).toBe(expected(0, 'UTC'));
    const r = await fetch(`${base}/ui/api/session`, { headers: { cookie: (await contexts.at(-1)!.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') } });
    expect(((await r.json()) as { prefs: unknown }).prefs).toEqual({ timeZone: 'utc' });
  });
});

// The alert list grouped (#22 items 2 and 9), in Debian's Chromium (headless, driven by
// playwright-core) against the real collector, a child process fed by a real agent sink over the
// real protocol: 3 hosts with 4, 2 and 1 alerts. Group by host: one row per host, newest last seen
// first, with its count and its first and last seen in the zone the page shows (UTC by default);
// the grouping is in the URL and survives a reload; a click opens the host's members, which a
// reload keeps too; "All groups" goes back.
import { existsSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import type { Daemon } from '../helpers/daemon.js';
import { makeAlert, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';
import { adminLogin, CHROMIUM, openChromium } from '../helpers/browser.js';
import { startDashboardBackEnd } from '../helpers/dashboard.js';

const work = tempDir('ldg-dash-groups-');
const haveChromium = existsSync(CHROMIUM);
// Whole seconds, days ago: the list writes them with their date.
const T0 = Math.floor(Date.now() / 1000) * 1000 - 5 * 86_400_000;
const HOSTS: Array<[string, number]> = [['web-1', 4], ['web-2', 2], ['web-3', 1]];

let collector: Daemon;
let base: string;
let admin: string;
let sink: WebSocketSink | undefined;
let context: BrowserContext;
let page: Page;
let consoleErrors: string[] = [];
const sent: Alert[] = [];

/** As the page writes an instant in UTC: '2026-12-02 11:52:03 UTC'. */
const utc = (ms: number) => `${new Date(ms).toISOString().slice(0, 10)} ${new Date(ms).toISOString().slice(11, 19)} UTC`;
const groupRows = () => page.locator('tr.group-row');
const cells = (key: string) => page.locator(`tr.group-row[data-key="${key}"] td`).allTextContents();

describe.skipIf(!haveChromium)('the alert list grouped, in Chromium against the real collector (skipped without /usr/bin/chromium: apt-get install chromium)', () => {
  beforeAll(async () => {
    const back = await startDashboardBackEnd(work, 'agent-groups');
    ({ collector, base, admin } = back);
    const s = back.sink;
    sink = s;
    // web-3's one alert is the newest, web-1's last the oldest of the last-seen: the order is by last seen, not by count.
    let at = T0;
    for (const [host, n] of HOSTS) {
      for (let i = 0; i < n; i++) {
        sent.push(makeAlert({ agentId: 'agent-groups', host, time: new Date(at).toISOString() }));
        at += 60_000;
      }
    }
    for (const a of sent) await s.send(a);
    await waitFor(async () => {
      const r = await fetch(`${base}/api/alerts?limit=50&host=web-1`, { headers: { authorization: `Bearer ${admin}` } });
      const web3 = await fetch(`${base}/api/alerts?limit=50&host=web-3`, { headers: { authorization: `Bearer ${admin}` } });
      return (((await r.json()) as { alerts: unknown[] }).alerts.length === 4 && ((await web3.json()) as { alerts: unknown[] }).alerts.length === 1) || undefined;
    }, 20_000, 'every alert stored');
    ({ context, page, errors: consoleErrors } = await openChromium(tempDir('ldg-chromium-groups-'), { viewport: { width: 1280, height: 800 } }));
    await adminLogin(page, base, admin);
  }, 120_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await sink?.close();
    await collector?.stop().catch(() => undefined);
  }, 30_000);

  it('groups by host: a row per host, newest last seen first, with count and first and last seen in UTC; the URL keeps it over a reload', async () => {
    await page.goto(`${base}/#/alerts?range=30d`);
    await page.waitForSelector('tr.alert-row');
    await page.selectOption('select[name="by"]', 'host');
    await expect.poll(() => page.url()).toContain('by=host');
    await groupRows().first().waitFor();
    const check = async () => {
      // The collector's own notices (dated now, host-less) are outside the corpus: only web-* rows are compared.
      const keys = (await groupRows().evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: Record<string, string> }).dataset.key))).filter((k) => k?.startsWith('web-'));
      expect(keys).toEqual(['web-3', 'web-2', 'web-1']);
      let i = 0;
      for (const [host, n] of HOSTS) {
        const first = Date.parse(sent[i]!['@timestamp']);
        const last = Date.parse(sent[i + n - 1]!['@timestamp']);
        expect(await cells(host)).toEqual([host, String(n), '—', utc(first), utc(last)]);
        i += n;
      }
    };
    await check();
    expect(await page.locator('table.groups thead th').allTextContents()).toEqual(['Host', 'Alerts', 'Held back', 'First seen', 'Last seen']);
    await page.reload();
    await groupRows().first().waitFor();
    expect(page.url()).toContain('by=host');
    expect(await page.locator('select[name="by"]').inputValue()).toBe('host');
    await check();
  });

  it('opens a group\'s members with a click; a reload keeps them; "All groups" goes back', async () => {
    await page.locator('tr.group-row[data-key="web-1"] a').click();
    await expect.poll(() => page.url()).toContain('of=host&key=web-1');
    await expect.poll(() => page.locator('tr.alert-row').count()).toBe(4);
    const shown = async () => (await page.locator('tr.alert-row').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: Record<string, string> }).dataset.uuid))).sort();
    const web1 = sent.filter((a) => a.host?.name === 'web-1').map((a) => a.kibana.alert.uuid).sort();
    expect(await shown()).toEqual(web1);
    expect(await page.locator('.group-members strong').textContent()).toBe('web-1');
    await page.reload();
    await expect.poll(() => page.locator('tr.alert-row').count()).toBe(4);
    expect(await shown()).toEqual(web1);
    expect(page.url()).toContain('by=host');
    await page.click('a.all-groups');
    await groupRows().first().waitFor();
    expect(page.url()).not.toContain('of=');
    expect(await cells('web-1')).toEqual(expect.arrayContaining(['web-1', '4']));
  });

  it('logged no error', () => {
    // The page asks who is logged in before the login: that 401 is expected.
    expect(consoleErrors.filter((e) => !/401|Unauthorized/.test(e))).toEqual([]);
  });
});

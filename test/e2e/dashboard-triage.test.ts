// The dashboard an analyst works in all day (#22 items 5, 6 and 7), in Debian's Chromium (headless,
// driven by playwright-core) against the real collector, a child process fed by a real agent sink
// over the real protocol (no kernel needed here: the alerts' content is what is under test).
//
// The collector runs from an installed tree (its build, page and bundled rules copied to a temp
// dir, as /opt/ldguard holds them) whose seed rule carries an investigation note with Markdown and
// raw HTML in it: the note the collector shows is the bundled rule's, and the checkout's has none.
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { findRepoRoot } from '../../shared/paths.js';
import type { Daemon } from '../helpers/daemon.js';
import { makeAlert, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';
import { adminLogin, CHROMIUM, openChromium } from '../helpers/browser.js';
import { startDashboardBackEnd } from '../helpers/dashboard.js';

const SEED_RULE = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const NOTE = [
  '## Triage and analysis',
  '',
  'Run `dpkg -S PATH` on the host first.',
  '',
  '- compare the hash',
  '- check the writer',
  '',
  'Raw HTML stays text: <img src=x onerror=alert(1)> <b>not bold</b>',
  '',
  '<script>alert(2)</script>',
].join('\n');
// A path with few places to break: it must wrap inside its column, not widen the page.
const LONG_PATH = `/usr/lib/x86_64-linux-gnu/${'ld-linux-x86-64-very-long-directory-name-'.repeat(4)}/ld-linux-x86-64.so.2`;
const LONG_HOST = `build-runner-${'0123456789abcdef'.repeat(4)}.ci.internal.example.org`;

const work = tempDir('ldg-dash-triage-');
const profile = tempDir('ldg-chromium-');
const haveChromium = existsSync(CHROMIUM);

let collector: Daemon;
let base: string;
let admin: string;
let sink: WebSocketSink | undefined;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
let consoleErrors: string[] = [];
let burstUuid = '';

/** The built collector, page and bundled rules in `dir`, the seed rule with NOTE; its launcher. */
function installedTree(dir: string): string {
  const repo = findRepoRoot();
  cpSync(join(repo, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(dir, 'package.json'));
  symlinkSync(realpathSync(join(repo, 'node_modules')), join(dir, 'node_modules'));
  for (const f of ['index.html', 'style.css', 'favicon.svg', 'dist']) cpSync(join(repo, 'collector/web', f), join(dir, 'collector/web', f), { recursive: true });
  cpSync(join(repo, 'shared/rules'), join(dir, 'shared/rules'), { recursive: true });
  const rule = join(dir, 'shared/rules/linux/defense_evasion_ld_so_creation.toml');
  const text = readFileSync(rule, 'utf8');
  expect(text).not.toMatch(/^note = /m);
  writeFileSync(rule, text.replace(/^rule_id = .*$/m, (line) => `${line}\nnote = ${JSON.stringify(NOTE)}`));
  mkdirSync(join(dir, 'bin'));
  const bin = join(dir, 'bin/ldguard');
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${join(dir, 'dist/agent/src/cli.js')}" "$@"\n`);
  chmodSync(bin, 0o755);
  return bin;
}

const yTicks = () => page.locator('svg.chart text.y-tick').allTextContents();

describe.skipIf(!haveChromium)('dashboard triage in Chromium against the real collector (skipped without /usr/bin/chromium: apt-get install chromium)', () => {
  beforeAll(async () => {
    const bin = installedTree(join(work, 'opt'));
    const back = await startDashboardBackEnd(work, 'agent-triage', { bin });
    ({ collector, base, admin } = back);
    const s = back.sink;
    sink = s;
    // The busiest half hour of the last 24 holds 5 alerts (web-1, high); the others one each.
    const halfHour = 1_800_000;
    const burst = Math.floor((Date.now() - 3 * 3_600_000) / halfHour) * halfHour + 60_000;
    const alerts: Alert[] = [];
    for (let i = 0; i < 5; i++) alerts.push(makeAlert({ agentId: 'agent-triage', host: 'web-1', severity: 'high', time: new Date(burst + i * 1000).toISOString() }));
    for (let i = 0; i < 3; i++) alerts.push(makeAlert({ agentId: 'agent-triage', host: 'web-2', severity: 'low', time: new Date(Date.now() - (6 + i) * 3_600_000).toISOString() }));
    const long = makeAlert({ agentId: 'agent-triage', host: LONG_HOST, severity: 'medium', path: LONG_PATH, time: new Date(Date.now() - 10 * 3_600_000).toISOString() });
    long.process.executable = `/opt/${'toolchain-'.repeat(8)}/bin/ld-linux-installer`;
    alerts.push(long);
    for (const a of alerts) await s.send(a);
    burstUuid = alerts[0]!.kibana.alert.uuid;
    await waitFor(async () => {
      const r = await fetch(`${base}/api/alerts?limit=50&rule=${SEED_RULE}`, { headers: { authorization: `Bearer ${admin}` } });
      return ((await r.json()) as { alerts: unknown[] }).alerts.length === alerts.length || undefined;
    }, 20_000, 'every alert stored');

    ({ context, page, errors: consoleErrors } = await openChromium(profile, { viewport: { width: 1024, height: 768 }, acceptDownloads: true }));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await adminLogin(page, base, admin);
  }, 120_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await sink?.close();
    await collector?.stop().catch(() => undefined);
  }, 30_000);

  it('renders the investigation guide as Markdown, and raw HTML in the rule\'s note as text', async () => {
    await page.goto(`${base}/#/alerts/${burstUuid}`);
    const note = page.locator('.note.md');
    await note.waitFor();
    expect(await note.locator('h3').textContent()).toBe('Triage and analysis');
    expect(await note.locator('code').allTextContents()).toEqual(['dpkg -S PATH']);
    expect(await note.locator('ul > li').allTextContents()).toEqual(['compare the hash', 'check the writer']);
    // The HTML in the note made no element and ran nothing: it reads as written.
    expect(await note.locator('img, script, b').count()).toBe(0);
    const text = (await note.textContent()) ?? '';
    expect(text).toContain('<img src=x onerror=alert(1)> <b>not bold</b>');
    expect(text).toContain('<script>alert(2)</script>');
    // ldguard's steps: their backticks are code elements, not literal backticks.
    const steps = page.locator('ol.guide > li');
    expect(await steps.count()).toBe(5);
    expect(await steps.locator('code').allTextContents()).toContain('dpkg -S PATH');
    expect(await page.locator('ol.guide').textContent()).not.toContain('`');
    expect(dialogs).toEqual([]);
  });

  it('labels the overview\'s y axis 0 1 2 3 4 5 when the busiest bucket holds 5', async () => {
    await page.goto(`${base}/#/overview?window=24h`);
    await page.waitForSelector('svg.chart');
    // Counts come from the search index, a step behind ingest: read the page again until they are in.
    await expect.poll(async () => {
      const ticks = await yTicks();
      if (ticks.at(-1) !== '5') await page.reload().then(() => page.waitForSelector('svg.chart'));
      return ticks;
    }, { timeout: 20_000 }).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(await page.locator('svg.chart rect.bar').count()).toBeGreaterThan(1);
  });

  it('wraps a long path and host at 1024 px: no horizontal scrollbar, the path shown whole', async () => {
    await page.goto(`${base}/#/alerts`);
    const cell = page.locator('tr.alert-row td.col-path', { hasText: 'ld-linux-x86-64.so.2' }).filter({ hasText: 'very-long' });
    await cell.waitFor();
    expect(await cell.textContent()).toBe(LONG_PATH);
    // A string: the test's TypeScript has no DOM types; this runs in the page.
    const m = (await page.evaluate(`(() => {
      const td = [...document.querySelectorAll('td.col-path')].find((e) => e.textContent.includes('very-long'));
      const host = [...document.querySelectorAll('td.col-host')].find((e) => e.textContent.includes('build-runner'));
      const wrap = document.querySelector('.table-wrap');
      const r = td.getBoundingClientRect();
      return {
        doc: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
        wrap: [wrap.scrollWidth, wrap.clientWidth],
        cell: [td.scrollWidth, td.clientWidth, r.right, Math.round(r.height)],
        host: [host.scrollWidth, host.clientWidth],
        lineHeight: parseFloat(getComputedStyle(td).lineHeight) || 16,
      };
    })()`)) as { doc: number[]; wrap: number[]; cell: number[]; host: number[]; lineHeight: number };
    expect(m.doc[0], 'page scroll width within the window').toBeLessThanOrEqual(m.doc[1]!);
    expect(m.wrap[0], 'the table needs no horizontal scroll').toBeLessThanOrEqual(m.wrap[1]!);
    expect(m.cell[0], 'the path cell does not clip its text').toBeLessThanOrEqual(m.cell[1]!);
    expect(m.cell[2]).toBeLessThanOrEqual(1024);
    // Wrapped onto several lines rather than cut or widening its column.
    expect(m.cell[3]!).toBeGreaterThan(2 * m.lineHeight);
    expect(m.host[0]).toBeLessThanOrEqual(m.host[1]!);
  });

  it('writes the filters to the URL and restores them after a reload, on back and forward, and from a shared link', async () => {
    await page.goto(`${base}/#/alerts`);
    await page.waitForSelector('tr.alert-row');
    await page.selectOption('select[name="status"]', 'open');
    await expect.poll(() => page.url()).toContain('#/alerts?status=open');
    await page.fill('input[name="host"]', 'web-2');
    await expect.poll(() => page.url()).toContain('host=web-2');
    await expect.poll(() => page.locator('tr.alert-row td.col-host').allTextContents()).toEqual(['web-2', 'web-2', 'web-2']);
    const filtered = page.url();

    await page.reload();
    await page.waitForSelector('tr.alert-row');
    expect(page.url()).toBe(filtered);
    expect(await page.inputValue('select[name="status"]')).toBe('open');
    expect(await page.inputValue('input[name="host"]')).toBe('web-2');
    await expect.poll(() => page.locator('tr.alert-row td.col-host').allTextContents()).toEqual(['web-2', 'web-2', 'web-2']);

    // Back: the step before the host was typed (status only); forward: the host again.
    await page.goBack();
    await expect.poll(() => page.url()).toMatch(/#\/alerts\?status=open$/);
    await expect.poll(() => page.inputValue('input[name="host"]')).toBe('');
    // Every open alert again (the collector's own notices may be among them, under its host name).
    await expect.poll(() => page.locator('tr.alert-row td.col-host', { hasText: /^web-1$/ }).count()).toBe(5);
    expect(await page.locator('tr.alert-row td.col-host', { hasText: /^web-2$/ }).count()).toBe(3);
    await page.goForward();
    await expect.poll(() => page.url()).toBe(filtered);
    await expect.poll(() => page.inputValue('input[name="host"]')).toBe('web-2');
    await expect.poll(() => page.locator('tr.alert-row').count()).toBe(3);

    // A link someone shared, opened in a new tab of the same session.
    const other = await context.newPage();
    try {
      await other.goto(`${base}/#/alerts?severity=high&host=web-1`);
      await other.waitForSelector('tr.alert-row');
      expect(await other.inputValue('select[name="severity"]')).toBe('high');
      expect(await other.inputValue('input[name="host"]')).toBe('web-1');
      await expect.poll(() => other.locator('tr.alert-row').count()).toBe(5);
    } finally {
      await other.close();
    }
  });

  it('offers an export link that carries the filters and downloads what they select', async () => {
    await page.goto(`${base}/#/alerts?status=open&host=web-2`);
    await page.waitForSelector('tr.alert-row');
    const link = page.locator('a[data-export="csv"]');
    const href = new URL((await link.getAttribute('href'))!, base);
    expect(href.pathname).toBe('/ui/api/alerts/export');
    expect(Object.fromEntries(href.searchParams)).toEqual({ format: 'csv', host: 'web-2', status: 'open' });
    expect(await page.locator('a[data-export="ndjson"]').getAttribute('href')).toContain('format=ndjson');
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    expect(download.suggestedFilename()).toMatch(/^ldguard-alerts-.*\.csv$/);
    const csv = readFileSync(await download.path(), 'utf8').trimEnd().split('\r\n');
    expect(csv[0]).toBe('time,severity,rule,host,file_path,file_hash_sha256,process_executable,process_pid,user,status');
    expect(csv.slice(1).map((l) => l.split(',')[3])).toEqual(['web-2', 'web-2', 'web-2']);
    // Changing a filter changes the link.
    await page.selectOption('select[name="severity"]', 'low');
    await expect.poll(async () => new URL((await link.getAttribute('href'))!, base).searchParams.get('severity')).toBe('low');
  });

  it('raised no dialog and logged no error', () => {
    expect(dialogs).toEqual([]);
    // The page asks who is logged in before the login: that 401 is expected.
    expect(consoleErrors.filter((e) => !/401|Unauthorized/.test(e))).toEqual([]);
  });
});

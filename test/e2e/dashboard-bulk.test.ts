// The dashboard's bulk workflow, notes and assignee (#22 items 1, 3, 9) in Debian's Chromium
// (headless, driven by playwright-core) against the real collector (a child process, on SQLite and
// on a throwaway PostgreSQL cluster) fed by a real agent sink over the real protocol: ticked rows
// closed; every alert matching the filters (more than a page) closed after the count is confirmed,
// with one that arrived after the count left open; a note that is HTML shown as text; an assignee
// set in the detail view and in bulk, shown in the list.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { callApi, createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { adminLogin, CHROMIUM, openChromium } from '../helpers/browser.js';

const XSS = '<img src=x onerror=alert(1)>';
/** More than the list's page (50): "all matching" must reach rows the page does not show. */
const MATCHING = 60;

const work = tempDir('ldg-dash-bulk-');
const haveChromium = existsSync(CHROMIUM);
const noPostgres = postgresUnavailable();

describe.skipIf(!haveChromium).each([
  ['sqlite', ''],
  ['postgres', noPostgres],
] as const)('dashboard bulk workflow in Chromium on %s (skipped without /usr/bin/chromium: apt-get install chromium)', (kind, unavailable) => {
  let c: TestCollector;
  let base: string;
  let admin: string;
  let sink: WebSocketSink;
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];
  const pick: Alert[] = [];

  const statusOf = async (uuid: string) => (await callApi(c.port, `/api/alerts/${uuid}`, admin)).body.alert.kibana.alert.workflow_status as string;
  const stored = (a: Alert) => waitFor(async () => (await callApi(c.port, `/api/alerts/${a.kibana.alert.uuid}`, admin)).status === 200 || undefined, 30_000, 'the alert stored');
  const row = (a: Alert) => page.locator(`tr.alert-row[data-uuid="${a.kibana.alert.uuid}"]`);

  beforeAll(async () => {
    if (unavailable) return;
    const db = kind === 'sqlite' ? join(work, 'collector.db') : await (await startPostgres()).createDb('dashbulk');
    admin = await createToken(db, 'alice', 'admin');
    const agentToken = await createToken(db, 'agent-1');
    c = await startTestCollector(work, db);
    base = `http://127.0.0.1:${c.port}`;
    sink = await WebSocketSink.open({
      url: `ws://127.0.0.1:${c.port}`, token: agentToken, spoolDir: join(work, `spool-${kind}`), spoolMaxBytes: 16 * 1024 * 1024,
      facts: () => makeFacts('agent-dash-bulk', 'web-1'), heartbeatMs: 2000, backoffInitialMs: 50, backoffMaxMs: 400,
    });
    await waitFor(() => sink.health().connected, 5000, 'the agent to connect');
    const t0 = Date.now() - 3_600_000;
    for (let i = 0; i < 3; i++) {
      const a = makeAlert({ agentId: 'agent-dash-bulk', host: 'pick-1', time: new Date(t0 + i * 1000).toISOString() });
      pick.push(a);
      await sink.send(a);
    }
    let last: Alert | undefined;
    for (let i = 0; i < MATCHING; i++) await sink.send((last = makeAlert({ agentId: 'agent-dash-bulk', host: 'all-1', time: new Date(t0 + 10_000 + i * 1000).toISOString() })));
    await stored(pick.at(-1)!);
    await stored(last!);

    ({ context, page } = await openChromium(tempDir('ldg-chromium-bulk-'), { viewport: { width: 1280, height: 900 } }));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await adminLogin(page, base, admin);
  }, 120_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await sink?.close();
  }, 30_000);

  it.skipIf(Boolean(unavailable))(`closes the rows ticked on the page, and only those${unavailable ? ` (skipped: ${unavailable})` : ''}`, async () => {
    await page.goto(`${base}/#/alerts?host=pick-1`);
    await row(pick[0]!).waitFor();
    expect(await page.locator('.bulk-bar').isHidden()).toBe(true);
    await row(pick[0]!).locator('input.tick').check();
    await row(pick[1]!).locator('input.tick').check();
    // Ticking does not open the alert.
    expect(page.url()).toContain('#/alerts?host=pick-1');
    expect(await page.locator('.bulk-count').textContent()).toBe('2 selected on this page');
    await page.click('.bulk-bar button[data-bulk="close"]');
    await page.locator('.notice', { hasText: 'Closed: 2 changed' }).waitFor();
    expect([await statusOf(pick[0]!.kibana.alert.uuid), await statusOf(pick[1]!.kibana.alert.uuid), await statusOf(pick[2]!.kibana.alert.uuid)]).toEqual(['closed', 'closed', 'open']);
    // The list was read again: the rows say so, and no tick is left.
    await row(pick[0]!).locator('.col-status', { hasText: 'closed' }).waitFor();
    expect(await page.locator('input.tick:checked').count()).toBe(0);
  });

  it.skipIf(Boolean(unavailable))('closes every alert matching the filters after confirming the count, not one that arrived after the count', async () => {
    await page.goto(`${base}/#/alerts?host=all-1&status=open`);
    await page.locator('tr.alert-row').first().waitFor();
    await page.locator('input.tick-all').check();
    expect(await page.locator('.bulk-count').textContent()).toBe('50 selected on this page');
    await page.click('.bulk-bar button[data-bulk-all]');
    await page.locator('.bulk-count', { hasText: `All ${MATCHING} alerts matching these filters selected` }).waitFor();
    const late = makeAlert({ agentId: 'agent-dash-bulk', host: 'all-1', time: new Date().toISOString() });
    await sink.send(late);
    await stored(late);
    await page.click('.bulk-bar button[data-bulk="close"]');
    // Asks first, with the number counted.
    const confirm = page.locator(`.bulk-bar button[data-bulk-confirm="close"]`);
    await confirm.waitFor();
    expect(await page.locator('.bulk-confirm-text').textContent()).toContain(`Close all ${MATCHING} alerts matching these filters?`);
    expect((await callApi(c.port, '/api/alerts/bulk/preview', admin, { method: 'POST', body: { filter: { host: 'all-1', status: 'closed' } } })).body.count).toBe(0);
    await confirm.click();
    await page.locator('.notice', { hasText: `Closed: ${MATCHING} changed` }).waitFor();
    expect((await callApi(c.port, '/api/alerts/bulk/preview', admin, { method: 'POST', body: { filter: { host: 'all-1', status: 'closed' } } })).body.count).toBe(MATCHING);
    expect(await statusOf(late.kibana.alert.uuid)).toBe('open');
  });

  it.skipIf(Boolean(unavailable))('adds a note that is HTML as text, and sets the assignee in the detail view and in bulk', async () => {
    const a = pick[2]!;
    await page.goto(`${base}/#/alerts/${a.kibana.alert.uuid}`);
    await page.fill('textarea[name="note"]', XSS);
    await page.click('button[data-action="note"]');
    const note = page.locator('.timeline .step-note .note-text');
    await note.waitFor();
    expect(await note.textContent()).toBe(XSS);
    expect(await page.locator('.timeline img').count()).toBe(0);
    expect(await page.locator('.timeline .step-note .who').textContent()).toBe('alice');

    await page.fill('input[name="assignee"]', 'bob');
    await page.click('button[data-action="assign"]');
    await page.locator('.workflow-now .badge.assignee', { hasText: 'bob' }).waitFor();
    expect(await page.locator('.timeline .step-assignee').textContent()).toContain('Assigned to bob by alice');

    await page.goto(`${base}/#/alerts?host=pick-1`);
    await row(a).locator('.badge.assignee', { hasText: 'bob' }).waitFor();
    await row(pick[0]!).locator('input.tick').check();
    await row(a).locator('input.tick').check();
    await page.fill('input[name="bulk-assignee"]', 'carol');
    await page.click('.bulk-bar button[data-bulk="assign"]');
    await page.locator('.notice', { hasText: 'Assigned to carol: 2 changed' }).waitFor();
    await row(a).locator('.badge.assignee', { hasText: 'carol' }).waitFor();
    expect(await row(pick[1]!).locator('.badge.assignee').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });
});

// The triage views in Debian's Chromium (playwright-core, headless) against the collector the
// triage bench filled (triage.ts): what an analyst waits for, from the navigation to the rows on
// screen: the alert list, the list grouped by host, a page of alerts ticked and closed (the bulk
// bar, until its notice), an alert's page with a note and an assignee, and the CSV export of every
// alert. Figures only (a step that fails says so in the report); skipped without /usr/bin/chromium.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminLogin, CHROMIUM, openChromium } from '../helpers/browser.js';


export interface BrowserFigures {
  listMs: number;
  groupMs: number;
  /** A page of open alerts (50) ticked and closed through the bulk bar. */
  closePageMs: number;
  /** An alert's page opened from the list, then a note added and an assignee set (each until shown). */
  detailMs: number;
  noteMs: number;
  assignMs: number;
  /** The export link's CSV of every alert, downloaded whole: time and rows (the header aside). */
  exportMs: number;
  exportRows: number;
  /** Whether the list's times say their zone (UTC) and the guide's steps render Markdown (code elements). */
  zoneShown: boolean;
  guideMarkdown: boolean;
}

export function browserUnavailable(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : 'no /usr/bin/chromium (apt-get install chromium)';
}

export async function browserTriage(port: number, adminToken: string): Promise<BrowserFigures> {
  const profile = mkdtempSync(join(tmpdir(), 'ldg-bench-chromium-'));
  const { context: ctx, page } = await openChromium(profile, { viewport: { width: 1440, height: 900 } });
  try {
    const base = `http://127.0.0.1:${port}`;
    await adminLogin(page, base, adminToken);
    const timed = async (go: () => Promise<unknown>, until: () => Promise<unknown>) => {
      const t = performance.now();
      await go();
      await until();
      return performance.now() - t;
    };
    // From another view, so that each navigation draws the list anew.
    const away = () => page.goto(`${base}/#/fleet`).then(() => page.waitForSelector('h1:text("Fleet")'));
    await away();
    const listMs = await timed(() => page.goto(`${base}/#/alerts?status=open`), () => page.waitForSelector('tr.alert-row', { timeout: 60_000 }));
    await away();
    const groupMs = await timed(() => page.goto(`${base}/#/alerts?by=host`), () => page.waitForSelector('tr.group-row', { timeout: 60_000 }));
    await away();
    await page.goto(`${base}/#/alerts?status=open`);
    await page.waitForSelector('tr.alert-row', { timeout: 60_000 });
    await page.locator('input.tick-all').check();
    const closePageMs = await timed(() => page.click('.bulk-bar button[data-bulk="close"]'), () => page.locator('.notice', { hasText: 'Closed:' }).waitFor({ timeout: 60_000 }));
    await page.locator('tr.alert-row').first().waitFor();
    const zoneShown = (await page.locator('tr.alert-row td.col-time').first().textContent())?.endsWith(' UTC') ?? false;
    const href = await page.locator('a[data-export="csv"]').getAttribute('href');

    const detailMs = await timed(() => page.locator('tr.alert-row').first().click(), () => page.waitForSelector('.detail-title h1', { timeout: 60_000 }));
    const guideMarkdown = (await page.locator('.guide.md code').count()) > 0;
    await page.fill('textarea[name="note"]', 'checked the package database: not from a package');
    const noteMs = await timed(() => page.click('button[data-action="note"]'), () => page.locator('.timeline .step-note').waitFor({ timeout: 60_000 }));
    await page.fill('input[name="assignee"]', 'bench');
    const assignMs = await timed(() => page.click('button[data-action="assign"]'), () => page.locator('.workflow-now .badge.assignee', { hasText: 'bench' }).waitFor({ timeout: 60_000 }));

    // The link the page offers, fetched with the page's session (the export streams: read whole here).
    let exportRows = 0;
    const exportMs = await timed(async () => {
      const res = await page.request.get(`${base}${href ?? '/ui/api/alerts/export?format=csv'}`, { timeout: 300_000 });
      if (!res.ok()) throw new Error(`export: ${res.status()}`);
      const body = await res.text();
      for (let i = body.indexOf('\n'); i >= 0; i = body.indexOf('\n', i + 1)) exportRows++;
      exportRows -= 1;
    }, () => Promise.resolve());
    return { listMs, groupMs, closePageMs, detailMs, noteMs, assignMs, exportMs, exportRows, zoneShown, guideMarkdown };
  } finally {
    await ctx.close().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
  }
}

// The triage views in Debian's Chromium (playwright-core, headless) against the collector the
// triage bench filled (triage.ts): what an analyst waits for, from the navigation to the rows on
// screen: the alert list, the list grouped by host, and a page of alerts ticked and closed (the
// bulk bar, until its notice). Figures only; skipped without /usr/bin/chromium.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface BrowserFigures {
  listMs: number;
  groupMs: number;
  /** A page of open alerts (50) ticked and closed through the bulk bar. */
  closePageMs: number;
}

export function browserUnavailable(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : 'no /usr/bin/chromium (apt-get install chromium)';
}

export async function browserTriage(port: number, adminToken: string): Promise<BrowserFigures> {
  const profile = mkdtempSync(join(tmpdir(), 'ldg-bench-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1440, height: 900 } });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const base = `http://127.0.0.1:${port}`;
    await page.goto(`${base}/`);
    await page.getByRole('tab', { name: 'Admin token' }).click();
    await page.fill('input[name="token"]', adminToken);
    await page.click('button[type="submit"]');
    await page.waitForSelector('h1:text("Alerts")');
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
    return { listMs, groupMs, closePageMs };
  } finally {
    await ctx.close().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
  }
}

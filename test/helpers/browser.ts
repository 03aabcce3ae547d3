// Debian's Chromium for the dashboard's browser tests and the triage bench (playwright-core,
// headless; never a browser a tool downloads), and the dashboard's login with an admin token.
import { chromium, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
// No background networking: this machine's network is closed.
export const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Logs in at `base` with an admin token, through the login page's own form, until the alert list shows. */
export async function adminLogin(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByRole('tab', { name: 'Admin token' }).click();
  await page.fill('input[name="token"]', token);
  await page.click('button[type="submit"]');
  await page.waitForSelector('h1:text("Alerts")');
}

/**
 * Debian's Chromium, headless, on the profile folder `profile` (a fresh one per run), with
 * `options` (viewport, timezone, downloads …); its first page, whose console errors and uncaught
 * page errors are collected in `errors` from the start.
 */
export async function openChromium(profile: string, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await chromium.launchPersistentContext(profile, { ...options, executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  return { context, page, errors };
}

// Debian's Chromium for the dashboard's browser tests and the triage bench (playwright-core,
// headless; never a browser a tool downloads), and the dashboard's login with an admin token.
import type { Page } from 'playwright-core';

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

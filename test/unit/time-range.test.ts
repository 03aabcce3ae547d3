// A custom time range in a shared link (collector/web/src/range.ts): the address bar carries the
// bounds as instants with their zone, the form shows them in the page's zone, so a link made by
// someone who shows times in UTC selects the same alerts for a colleague who shows local time.
import { afterAll, describe, expect, it } from 'vitest';
import { boundFromUrl, boundToUrl, instantOf } from '../../collector/web/src/range.js';
import { setZone } from '../../collector/web/src/zone.js';

const savedTz = process.env.TZ;
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
  setZone('utc');
});

describe('custom range bounds', () => {
  it('writes a form value shown in UTC as that instant, and reads it back the same', () => {
    setZone('utc');
    expect(boundToUrl('2026-12-07T10:00')).toBe('2026-12-07T10:00:00.000Z');
    expect(boundFromUrl('2026-12-07T10:00:00.000Z')).toBe('2026-12-07T10:00');
    expect(boundFromUrl('2026-12-07T10:00:30.000Z')).toBe('2026-12-07T10:00:30');
  });

  it('opens a link made in UTC in a page showing local time (+05:30) at the same instant', () => {
    process.env.TZ = 'Asia/Kolkata';
    setZone('local');
    const link = boundToUrl('2026-12-07T10:00');
    // Written in local time, carried as UTC: 10:00 at +05:30 is 04:30Z.
    expect(link).toBe('2026-12-07T04:30:00.000Z');
    expect(boundFromUrl(link)).toBe('2026-12-07T10:00');
    // The UTC colleague's link: 10:00Z reads 15:30 here, the same instant.
    expect(boundFromUrl('2026-12-07T10:00:00.000Z')).toBe('2026-12-07T15:30');
    expect(instantOf(boundFromUrl('2026-12-07T10:00:00.000Z'))).toBe(Date.parse('2026-12-07T10:00:00.000Z'));
  });

  it('keeps an older link\'s zoneless value as written, and drops what names no instant', () => {
    setZone('utc');
    expect(boundFromUrl('2026-12-07T10:00')).toBe('2026-12-07T10:00');
    expect(boundFromUrl('yesterday')).toBe('');
    expect(boundFromUrl('2026-12-07 10:00')).toBe('');
    expect(instantOf('2026-12-07T10:00+05:30')).toBe(Date.parse('2026-12-07T04:30:00Z'));
  });
});

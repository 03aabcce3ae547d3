// The dashboard's one way to write an instant (collector/web/src/format.ts stamp): always with its
// zone, UTC or the local offset in force at that instant, across a DST change included.
import { afterEach, describe, expect, it } from 'vitest';
import { fullTime, stamp, time, zoneLabel } from '../../collector/web/src/format.js';
import { setZone } from '../../collector/web/src/zone.js';

const T = Date.parse('2026-12-07T11:52:03.042Z');
const plusOne = () => 60;
// Europe/Berlin's rule around the 2026 spring change: +01:00 until 2026-03-29 01:00 UTC, then +02:00.
const SPRING = Date.parse('2026-03-29T01:00:00Z');
const berlin = (d: Date) => (d.getTime() < SPRING ? 60 : 120);

describe('stamp', () => {
  it('writes UTC with its name', () => {
    expect(stamp(T, { zone: 'utc' })).toBe('2026-12-07 11:52:03 UTC');
    expect(stamp(T, { zone: 'utc', millis: true })).toBe('2026-12-07 11:52:03.042 UTC');
  });

  it('writes a local time with its offset, the date moving with the clock', () => {
    expect(stamp(T, { zone: 'local', offsetOf: plusOne })).toBe('2026-12-07 12:52:03 +01:00');
    expect(stamp(Date.parse('2026-12-07T23:30:00Z'), { zone: 'local', offsetOf: plusOne })).toBe('2026-12-08 00:30:00 +01:00');
    // West of UTC, and an offset that is not whole hours (Newfoundland, -03:30).
    expect(stamp(Date.parse('2026-12-07T02:00:00Z'), { zone: 'local', offsetOf: () => -210 })).toBe('2026-12-06 22:30:00 -03:30');
    expect(stamp(T, { zone: 'local', offsetOf: () => 0 })).toBe('2026-12-07 11:52:03 +00:00');
  });

  it('gives each side of a DST change its own offset', () => {
    expect(stamp(SPRING - 1000, { zone: 'local', offsetOf: berlin })).toBe('2026-03-29 01:59:59 +01:00');
    expect(stamp(SPRING, { zone: 'local', offsetOf: berlin })).toBe('2026-03-29 03:00:00 +02:00');
    expect(zoneLabel(SPRING - 1, 'local', berlin)).toBe('+01:00');
    expect(zoneLabel(SPRING, 'local', berlin)).toBe('+02:00');
  });

  it('leaves out the date only when it is today in the zone shown', () => {
    const now = new Date('2026-12-07T23:10:00Z');
    expect(stamp(T, { zone: 'utc', now })).toBe('11:52:03 UTC');
    // 11:52 UTC is 12:52 on the 7th at +01:00, but "now" is already the 8th there.
    expect(stamp(T, { zone: 'local', offsetOf: plusOne, now })).toBe('2026-12-07 12:52:03 +01:00');
  });
});

describe('the page formatters in the login zone', () => {
  const tz = process.env.TZ;
  afterEach(() => {
    setZone('utc');
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('show UTC by default and the browser zone, read from the real tz database, once chosen', () => {
    process.env.TZ = 'Europe/Berlin';
    expect(fullTime('2026-12-07T11:52:03.042Z')).toBe('2026-12-07 11:52:03.042 UTC');
    setZone('local');
    expect(fullTime('2026-12-07T11:52:03.042Z')).toBe('2026-12-07 12:52:03.042 +01:00');
    expect(fullTime('2026-07-07T11:52:03.042Z')).toBe('2026-07-07 13:52:03.042 +02:00');
    expect(time('2026-03-29T00:59:59Z', new Date('2026-03-29T12:00:00Z'))).toBe('01:59:59 +01:00');
    expect(time('2026-03-29T01:00:00Z', new Date('2026-03-29T12:00:00Z'))).toBe('03:00:00 +02:00');
  });

  it('pass through what is not a time', () => {
    expect(time(undefined)).toBe('—');
    expect(fullTime('not a time')).toBe('not a time');
  });
});

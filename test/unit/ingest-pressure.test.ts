import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { FLOOD_RATE, IngestPressure } from '../../collector/src/store/pressure.js';

describe('IngestPressure', () => {
  it('stays off below the flood rate and without a backlog', () => {
    const p = new IngestPressure();
    const t = 1_000_000;
    // FLOOD_RATE a second is FLOOD_RATE / 10 in each 100 ms window: exactly that is not a flood.
    for (let i = 0; i < 10; i++) p.arrived(FLOOD_RATE / 100, false, t + i);
    expect(p.active(t + 10)).toBe(false);
    // The next window starts afresh: the same count again is still no flood.
    for (let i = 0; i < 10; i++) p.arrived(FLOOD_RATE / 100, false, t + 100 + i);
    expect(p.active(t + 110)).toBe(false);
  });

  it('turns on within the window in which arrivals pass the flood rate, and expires by itself', () => {
    const p = new IngestPressure();
    const t = 2_000_000;
    p.arrived(FLOOD_RATE / 10, false, t);
    expect(p.active(t)).toBe(false);
    p.arrived(1, false, t + 5);
    expect(p.active(t + 5)).toBe(true);
    expect(p.active(t + 900)).toBe(true);
    // No arrivals, no timer: the deadline passes on its own.
    expect(p.active(t + 5 + 1_000)).toBe(false);
  });

  it('turns on at a backlog behind the writer, whatever the rate', () => {
    const p = new IngestPressure();
    const t = 3_000_000;
    p.arrived(1, true, t);
    expect(p.active(t + 1)).toBe(true);
  });

  it('keeps a flood on while it lasts', () => {
    const p = new IngestPressure();
    const t = 4_000_000;
    // 20,000 alerts/s in batches of 20 for 5 s: never off in between, off a second after.
    for (let ms = 0; ms < 5_000; ms++) p.arrived(20, false, t + ms);
    for (let ms = 0; ms < 5_000; ms += 50) expect(p.active(t + ms + 1)).toBe(true);
    expect(p.active(t + 5_000 + 1_000)).toBe(false);
  });

  it('is seen by another thread through its buffer', async () => {
    const p = new IngestPressure();
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const until = new BigInt64Array(workerData);
      parentPort.on('message', () => parentPort.postMessage(Atomics.load(until, 0) > BigInt(Date.now())));
    `;
    const w = new Worker(code, { eval: true, workerData: p.buffer });
    const ask = () => new Promise<boolean>((resolve) => {
      w.once('message', resolve);
      w.postMessage('?');
    });
    try {
      expect(await ask()).toBe(false);
      p.arrived(1, true);
      expect(await ask()).toBe(true);
    } finally {
      await w.terminate();
    }
  });
});

// The delivery spool against real files in a temporary folder: durability, acks, recovery after a
// crash and after a torn write, the size bound.
import { appendFileSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Spool } from '../../agent/src/sink/spool.js';
import { captureLog } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

let dir: string;
const open: Spool[] = [];

async function openSpool(opts: { maxBytes?: number; segmentBytes?: number; logger?: ReturnType<typeof captureLog>['logger'] } = {}): Promise<Spool> {
  const s = await Spool.open({ dir, maxBytes: opts.maxBytes ?? 16 * 1024 * 1024, segmentBytes: opts.segmentBytes, logger: opts.logger });
  open.push(s);
  return s;
}

const rec = (i: number) => JSON.stringify({ n: i, pad: 'x'.repeat(100) });

async function readAll(s: Spool, from: number): Promise<Array<{ seq: number; n: number }>> {
  const out: Array<{ seq: number; n: number }> = [];
  let next = from;
  for (;;) {
    const batch = await s.read(next, 50, 64 * 1024);
    if (batch.length === 0) return out;
    for (const r of batch) out.push({ seq: r.seq, n: (JSON.parse(r.data.toString()) as { n: number }).n });
    next = batch.at(-1)!.seq + 1;
  }
}

function segments(): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
}

beforeEach(() => {
  dir = join(tempDir('ldg-spool-'), 'spool');
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

describe('spool', () => {
  it('gives consecutive sequences, reads them back in order, and creates its folder 0700 and files 0600', async () => {
    const s = await openSpool();
    const seqs = [];
    for (let i = 0; i < 10; i++) seqs.push(await s.append(rec(i)));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect((await readAll(s, 1)).map((r) => r.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect((await readAll(s, 7)).map((r) => r.seq)).toEqual([7, 8, 9, 10]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, segments()[0]!)).mode & 0o777).toBe(0o600);
    expect(s.health()).toMatchObject({ depth: 10, overflow: 0, torn: 0, ackedSeq: 0, lastSeq: 10 });
  });

  it('shares one fsync among concurrent appends (group commit)', async () => {
    const s = await openSpool();
    const seqs = await Promise.all(Array.from({ length: 1000 }, (_, i) => s.append(rec(i))));
    expect(new Set(seqs).size).toBe(1000);
    expect(Math.min(...(seqs as number[]))).toBe(1);
    expect(Math.max(...(seqs as number[]))).toBe(1000);
    // 1000 appends made in one tick: one group, so far fewer flushes than appends.
    expect(s.health().syncs).toBeLessThanOrEqual(3);
    expect((await readAll(s, 1)).map((r) => r.n)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('respects the batch bounds: record count, bytes, and at least one record even if larger', async () => {
    const s = await openSpool();
    for (let i = 0; i < 20; i++) await s.append(rec(i));
    expect(await s.read(1, 5, 1 << 20)).toHaveLength(5);
    const byBytes = await s.read(1, 100, 3 * rec(0).length);
    expect(byBytes).toHaveLength(3);
    expect(await s.read(1, 100, 10)).toHaveLength(1);
  });

  it('keeps what was acked across a reopen, resends the rest, and deletes fully acked segments', async () => {
    let s = await openSpool({ segmentBytes: 1024 });
    for (let i = 0; i < 40; i++) await s.append(rec(i));
    const before = segments().length;
    expect(before).toBeGreaterThan(3);
    await s.ack(25);
    expect(segments().length).toBeLessThan(before);
    expect(JSON.parse(readFileSync(join(dir, 'ack'), 'utf8'))).toEqual({ ackedSeq: 25 });
    await s.close();
    open.pop();
    s = await openSpool({ segmentBytes: 1024 });
    expect(s.ackedSeq).toBe(25);
    expect(s.health().depth).toBe(15);
    expect((await readAll(s, s.ackedSeq + 1)).map((r) => r.seq)).toEqual(Array.from({ length: 15 }, (_, i) => 26 + i));
    // New records continue the sequence.
    expect(await s.append(rec(40))).toBe(41);
    await s.ack(41);
    expect(s.health().depth).toBe(0);
  });

  it('after a crash (reopened without close or ack) delivers every record whose append resolved', async () => {
    const crashed = await Spool.open({ dir, maxBytes: 16 * 1024 * 1024 });
    for (let i = 0; i < 100; i++) await crashed.append(rec(i));
    await crashed.ack(30);
    // No close(): the process "died" here. A second instance opens the same files.
    const s = await openSpool();
    expect(s.ackedSeq).toBe(30);
    expect((await readAll(s, 31)).map((r) => r.n)).toEqual(Array.from({ length: 70 }, (_, i) => 30 + i));
    expect(s.health().torn).toBe(0);
    open.push(crashed); // release its file handles at the end (it writes nothing more)
  });

  it.each([
    ['a truncated last record', (file: string) => truncateSync(file, statSync(file).size - 7)],
    ['a last record with a bad CRC', (file: string) => {
      const buf = readFileSync(file);
      buf[buf.length - 3] = buf[buf.length - 3]! ^ 0xff;
      writeFileSync(file, buf);
    }],
    ['a zero-filled tail (filesystem extended the file on power loss)', (file: string) => appendFileSync(file, Buffer.alloc(300))],
    ['half a header', (file: string) => appendFileSync(file, Buffer.from([0, 0, 0]))],
  ])('detects %s on open, logs it, skips it and delivers the rest', async (_name, tear) => {
    const s1 = await Spool.open({ dir, maxBytes: 16 * 1024 * 1024 });
    for (let i = 0; i < 10; i++) await s1.append(rec(i));
    await s1.close();
    tear(join(dir, segments().at(-1)!));
    const { logger, lines } = captureLog();
    const s = await openSpool({ logger });
    const expected = _name.includes('truncated') || _name.includes('CRC') ? 9 : 10;
    expect((await readAll(s, 1)).map((r) => r.n)).toEqual(Array.from({ length: expected }, (_, i) => i));
    expect(s.health().torn).toBe(1);
    const warn = lines.find((l) => String(l.msg).startsWith('torn spool record skipped'));
    expect(warn).toBeDefined();
    expect(warn!.level).toBe(40);
    // Appends go on after the cut, and survive another reopen intact.
    expect(await s.append(rec(99))).toBe(expected + 1);
    await s.close();
    open.pop();
    const again = await openSpool();
    expect(again.health().torn).toBe(0);
    expect((await readAll(again, 1)).map((r) => r.n)).toEqual([...Array.from({ length: expected }, (_, i) => i), 99]);
  });

  it('when full refuses the newest alert, counts and logs it, keeps the old ones, and accepts again once acked', async () => {
    const { logger, lines } = captureLog();
    const s = await openSpool({ maxBytes: 64 * 1024, segmentBytes: 8 * 1024, logger });
    const big = (i: number) => JSON.stringify({ n: i, pad: 'y'.repeat(1000) });
    const results: Array<number | null> = [];
    for (let i = 0; i < 80; i++) results.push(await s.append(big(i)));
    const accepted = results.filter((r) => r !== null).length;
    expect(accepted).toBeGreaterThan(50);
    expect(accepted).toBeLessThan(80);
    // Drop-newest: everything accepted is a prefix; nothing already spooled was evicted.
    expect(results.slice(0, accepted).every((r) => r !== null)).toBe(true);
    expect(s.health()).toMatchObject({ overflow: 80 - accepted, depth: accepted });
    expect(s.health().bytes).toBeLessThanOrEqual(64 * 1024);
    expect((await readAll(s, 1)).map((r) => r.n)).toEqual(Array.from({ length: accepted }, (_, i) => i));
    expect(lines.some((l) => l.level === 40 && String(l.msg).startsWith('spool full'))).toBe(true);
    await s.ack(accepted);
    expect(await s.append(big(1000))).toBe(accepted + 1);
  });

  it('resends everything when the ack file is damaged (the collector dedups)', async () => {
    const s1 = await Spool.open({ dir, maxBytes: 16 * 1024 * 1024 });
    for (let i = 0; i < 5; i++) await s1.append(rec(i));
    await s1.ack(3);
    await s1.close();
    writeFileSync(join(dir, 'ack'), '{"acked');
    const { logger, lines } = captureLog();
    const s = await openSpool({ logger });
    expect(s.ackedSeq).toBe(0);
    expect((await readAll(s, 1)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(lines.some((l) => String(l.msg).includes('ack file unreadable'))).toBe(true);
  });

  it('refuses appends after close with an error that names the fix', async () => {
    const s = await openSpool();
    await s.close();
    await expect(s.append('{}')).rejects.toThrow(/LDG_ERR_SPOOL_CLOSED.*stop its pipeline/);
  });
});

// The export's CSV (collector/src/export.ts): RFC 4180 quoting, and every cell a spreadsheet would
// run as a formula defused with a leading '. And its streaming, over a real HTTP server on
// loopback: a client that stops reading stops the reads from the store (back-pressure), and one
// that reads gets every page.
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CSV_HEADER, csvCell, csvRow, streamExport } from '../../collector/src/export.js';

describe('csvCell', () => {
  it.each([
    ['=HYPERLINK("http://evil.example","x")', `"'=HYPERLINK(""http://evil.example"",""x"")"`],
    ['+cmd|\' /C calc\'!A0', `'+cmd|' /C calc'!A0`],
    ['-2+3', `'-2+3`],
    ['@SUM(A1)', `'@SUM(A1)`],
    ['\t=1', `'\t=1`],
    ['\r=1', `"'\r=1"`],
  ])('defuses %j as %j', (value, cell) => {
    expect(csvCell(value)).toBe(cell);
  });

  it('quotes a comma, a quote or a line break, and leaves plain text and inner signs alone', () => {
    expect(csvCell('web,"1"')).toBe('"web,""1"""');
    expect(csvCell('a\nb')).toBe('"a\nb"');
    expect(csvCell('/usr/lib64/ld-linux-x86-64.so.2')).toBe('/usr/lib64/ld-linux-x86-64.so.2');
    expect(csvCell('a=b+c-d@e')).toBe('a=b+c-d@e');
    expect(csvCell('')).toBe('');
  });
});

describe('csvRow', () => {
  it('gives the columns in the header\'s order, a missing field empty and a missing status open', () => {
    expect(CSV_HEADER).toBe('time,severity,rule,host,file_path,file_hash_sha256,process_executable,process_pid,user,status\r\n');
    const doc = {
      '@timestamp': '2026-01-01T00:00:00.000Z',
      kibana: { alert: { severity: 'low', rule: { name: 'from kibana' } } },
      host: { name: '-evil,host' },
      file: { path: '/lib64/x.so' },
      process: { executable: '/usr/bin/cp', pid: 42, user: { name: 'root' } },
    };
    expect(csvRow(JSON.stringify(doc))).toBe(`2026-01-01T00:00:00.000Z,low,from kibana,"'-evil,host",/lib64/x.so,,/usr/bin/cp,42,root,open\r\n`);
  });
});

describe('streamExport', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
  });

  /** A server exporting `pages` pages of `perPage` documents of about 10 kB; counts the reads. */
  async function exporter(pages: number, perPage: number): Promise<{ port: number; reads: () => number; done: Promise<number | undefined> }> {
    let reads = 0;
    let finish!: (n: number | undefined) => void;
    const done = new Promise<number | undefined>((r) => (finish = r));
    const pad = 'x'.repeat(10_000);
    server = createServer((_req, res) => {
      void streamExport((cursor) => {
        reads += 1;
        const p = cursor === undefined ? 0 : Number(cursor);
        const docs = Array.from({ length: perPage }, (_, i) => JSON.stringify({ n: p * perPage + i, pad }));
        return { docs, next: p + 1 < pages ? String(p + 1) : null };
      }, 'ndjson', res).then(finish);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { port: (server!.address() as AddressInfo).port, reads: () => reads, done };
  }

  it('reads no further than the client takes, then delivers every page in order', async () => {
    // 200 pages of 1 MB: far more than the socket buffers hold.
    const PAGES = 200;
    const e = await exporter(PAGES, 100);
    const lines: number[] = [];
    let rest = '';
    const res = await new Promise<import('node:http').IncomingMessage>((r) => get({ host: '127.0.0.1', port: e.port, path: '/' }, r));
    res.pause();
    // Not reading: the export must stop at what the socket buffers hold, not walk every page.
    await new Promise((r) => setTimeout(r, 500));
    expect(e.reads()).toBeLessThan(PAGES / 2);
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      const parts = (rest + d).split('\n');
      rest = parts.pop()!;
      for (const l of parts) lines.push((JSON.parse(l) as { n: number }).n);
    });
    res.resume();
    await new Promise((r) => res.on('end', r));
    expect(await e.done).toBe(PAGES * 100);
    expect(e.reads()).toBe(PAGES);
    expect(rest).toBe('');
    expect(lines).toEqual(Array.from({ length: PAGES * 100 }, (_, i) => i));
  });

  it('stops reading when the client goes away', async () => {
    const e = await exporter(200, 100);
    await new Promise<void>((r) => {
      const req = get({ host: '127.0.0.1', port: e.port, path: '/' }, (res) => {
        res.once('data', () => {
          req.destroy();
          r();
        });
      });
      req.on('error', () => undefined);
    });
    const n = await e.done;
    expect(n).toBeLessThan(200 * 100);
    expect(e.reads()).toBeLessThan(200);
  });
});

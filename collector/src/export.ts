// Export of the alerts a filter selects (GET /api/alerts/export, GET /ui/api/alerts/export), as
// NDJSON (each alert document as the API shows it, one a line) or CSV (a few chosen columns).
//
// Streamed: the alerts are read a page at a time with the reader's own cursor (the API's:
// Store.queryAlerts, on SQLite and PostgreSQL alike; the dashboard's: its list query, so the
// download holds exactly what the list shows) and each page written as it is read; when the client
// reads slower than the store answers, the next read waits for 'drain', so memory holds about one
// page whatever the filter selects. A client that goes away stops the export at the next page.
// The status line goes out after the first page is read (a bad start cursor can still get its
// 404); a failure after that can only cut the response short: streamExport destroys it, so the
// client sees a broken transfer rather than a truncated file passed off as whole.
//
// CSV cells are agents' text, and every field of an alert is written by an agent: a cell a
// spreadsheet would read as a formula (=, +, -, @, or a leading tab or CR) gets a `'` in front
// (OWASP's CSV injection advice), and every cell is quoted when it holds a quote, comma or newline.
import type { ServerResponse } from 'node:http';

export type ExportFormat = 'ndjson' | 'csv';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['ndjson', 'csv'];

/** Alerts read per page (the API's reader): one page is what the export holds in memory. */
export const EXPORT_PAGE = 500;

/** Reads the page after `cursor` (the first page without one); undefined when the start cursor names no alert. */
export type PageReader = (cursor: string | undefined) => Promise<{ docs: string[]; next: string | null } | undefined> | { docs: string[]; next: string | null } | undefined;

/** The CSV's columns: header and the document's field (the first present of several). */
const COLUMNS: Array<[string, string[]]> = [
  ['time', ['@timestamp']],
  ['severity', ['kibana.alert.severity']],
  ['rule', ['rule.name', 'kibana.alert.rule.name']],
  ['host', ['host.name']],
  ['file_path', ['file.path']],
  ['file_hash_sha256', ['file.hash.sha256']],
  ['process_executable', ['process.executable']],
  ['process_pid', ['process.pid']],
  ['user', ['user.name', 'process.user.name']],
  ['status', ['kibana.alert.workflow_status']],
];

/** One CSV cell (RFC 4180), defused for spreadsheets: see the file's comment. */
export function csvCell(value: string): string {
  const v = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

function field(doc: unknown, path: string): string | undefined {
  let v: unknown = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

/** A CSV line of the columns for one document as the API shows it. */
export function csvRow(docText: string): string {
  const doc = JSON.parse(docText) as unknown;
  return COLUMNS.map(([name, paths]) => {
    const v = paths.map((p) => field(doc, p)).find((x) => x !== undefined) ?? (name === 'status' ? 'open' : '');
    return csvCell(v);
  }).join(',') + '\r\n';
}

export const CSV_HEADER = COLUMNS.map(([name]) => name).join(',') + '\r\n';

/** An NDJSON line: the document as stored, made one line if an agent sent it spread over several. */
function ndjsonLine(docText: string): string {
  return `${/[\r\n]/.test(docText) ? JSON.stringify(JSON.parse(docText)) : docText}\n`;
}

/** Resolves at 'drain' or 'close', whichever comes first, leaving no listener behind (one wait a page). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Writes every alert `read` pages through to `res` and ends it; the number written, or undefined,
 * with nothing sent, when the first read finds no start. `headers` are added to the response's
 * (the dashboard's security headers).
 */
export async function streamExport(read: PageReader, format: ExportFormat, res: ServerResponse, headers: Record<string, string> = {}): Promise<number | undefined> {
  let page = await read(undefined);
  if (!page) return undefined;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  res.writeHead(200, {
    ...headers,
    'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'content-disposition': `attachment; filename="ldguard-alerts-${stamp}.${format}"`,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  let gone = false;
  res.once('close', () => (gone = true));
  let n = 0;
  try {
    if (format === 'csv') res.write(CSV_HEADER);
    while (page && !gone) {
      const text = page.docs.map(format === 'csv' ? csvRow : ndjsonLine).join('');
      n += page.docs.length;
      if (text && !res.write(text) && !gone) await drained(res);
      if (!page.next || gone) break;
      page = await read(page.next);
    }
  } catch (err) {
    // The status line is gone: cutting the connection is the only way left to say "incomplete"
    // (a chunked response without its last chunk); the caller logs the error.
    res.destroy();
    throw err;
  }
  if (!gone) res.end();
  return n;
}

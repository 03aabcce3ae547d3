// The group keys SQLite's writer stores, by the two ways a batch reaches it (collector/src/frame.ts):
// the same hostile documents (every key path set to text, escapes, numbers, objects, arrays, null,
// keys past KEY_CHARS with astral characters, held-back marks of every type) sent by a raw agent
// to the real collector (a child process) once in frames the scan takes (the writer gets the keys
// as ranges of the frame) and once in frames it leaves to the general way (the writer parses each
// document). Each row's group columns, read from the database, must be keysOfParsed's for its
// document, with the same SQL types, by either way.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanAlertsFrame } from '../../collector/src/frame.js';
import { KEY_CHARS, keysOfParsed } from '../../collector/src/store/group-keys.js';
import { alertsFrame } from '../../shared/protocol.js';
import { createToken, rawAgent, startTestCollector, type RawAgent, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-keys-ingest-');
const AGENT = 'agent-keys';

type Doc = Record<string, any>;

const PATHS = [['file', 'hash', 'sha256'], ['file', 'hash'], ['process', 'executable'], ['process'], ['ldguard', 'file_package', 'name'],
  ['ldguard', 'file_package'], ['ldguard', 'held_back_by'], ['ldguard', 'summary', 'id'], ['ldguard', 'summary']];

/**
 * The documents, one per path and value (and each again marked held back). String values carry
 * their path's number, so that no record names a summary of the corpus (the store would file it
 * under that summary's keys, alerts_held_group) and what is compared is the writer's reading alone.
 */
function corpus(pass: string): Doc[] {
  const out: Doc[] = [];
  PATHS.forEach((path, p) => {
    const values: unknown[] = [42, null, true, {}, { name: 'x', id: 'y', sha256: 'z' }, [], ['/bin/sh'], `${p}`, `${p}:a"b\\c\u0001\u2028é`,
      `${p}:${'x'.repeat(300)}${'😀'.repeat(300)}`, `${p}:${'é'.repeat(400)}`, `${p}:${'x'.repeat(KEY_CHARS)}`, undefined];
    for (const v of values) {
      for (const held of [false, true]) {
        const a = makeAlert({ agentId: AGENT, uuid: `${pass}-${randomUUID()}` }) as unknown as Doc;
        a.file.hash = { sha256: 'abc' };
        a.ldguard.file_package = { manager: 'dpkg', name: 'libc6' };
        a.ldguard.summary = { id: 'sum-of-none', update: 1 };
        if (held) a.ldguard.held_back_by = 'record-of-none';
        let o = a;
        for (const k of path.slice(0, -1)) o = o[k];
        if (v === undefined) delete o[path.at(-1)!];
        else o[path.at(-1)!] = v;
        out.push(a);
      }
    }
  });
  return out;
}

/** A frame the scan leaves to the general way, the documents unchanged but for a key it will not read (escaped). */
const generalFrame = (seq: number, docs: Doc[]) => alertsFrame(seq, docs.map((d) => `{"\\u0078-general":1,${JSON.stringify(d).slice(1)}`));
const fastFrame = (seq: number, docs: Doc[]) => alertsFrame(seq, docs.map((d) => JSON.stringify(d)));

describe('group keys stored by the fast and the general way (SQLite)', () => {
  let c: TestCollector;
  let raw: RawAgent;
  let db: string;
  const fast = corpus('fast');
  const general = corpus('general');

  beforeAll(async () => {
    db = join(work, 'collector.db');
    const token = await createToken(db, AGENT);
    c = await startTestCollector(work, db);
    raw = await rawAgent(c.port, token);
    raw.ws.send(JSON.stringify({ type: 'hello', v: 1, agent: makeFacts(AGENT, 'keys-host'), heartbeatMs: 10_000 }));
    // A frame's seq is its first alert's; an ack's upTo the last alert's stored.
    const frames = [fastFrame(1, fast), generalFrame(1 + fast.length, general)];
    // The ways they take, as the collector decides (server.ts tries the scan first).
    expect(scanAlertsFrame(Buffer.from(frames[0]!), AGENT)?.count).toBe(fast.length);
    expect(scanAlertsFrame(Buffer.from(frames[1]!), AGENT)).toBeUndefined();
    for (const f of frames) raw.ws.send(f);
    const last = fast.length + general.length;
    await waitFor(() => raw.messages.find((m) => m.type === 'ack' && m.upTo === last), 30_000, 'both frames acked')
      .catch((e: Error) => { throw new Error(`${e.message}; the collector said ${JSON.stringify(raw.messages).slice(0, 2000)}`); });
  }, 60_000);

  afterAll(async () => {
    raw?.ws.close();
    await c?.stop();
  });

  it('stores for every document the keys keysOfParsed reads, as text or null, by either way', () => {
    const d = new Database(db, { readonly: true });
    const get = d.prepare(`SELECT doc, file_hash, typeof(file_hash) AS th, executable, typeof(executable) AS te, package, typeof(package) AS tp,
      held_back, summary_id, typeof(summary_id) AS ts FROM alerts WHERE uuid = ?`);
    const type = (v: string | null) => (v === null ? 'null' : 'text');
    const stored = (a: Doc) => {
      const r = get.get(a.kibana.alert.uuid) as Record<string, any> | undefined;
      expect(r, a.kibana.alert.uuid).toBeDefined();
      const k = keysOfParsed(JSON.parse(r!.doc), KEY_CHARS);
      expect([r!.th, r!.te, r!.tp, r!.ts]).toEqual([type(k.fileHash), type(k.executable), type(k.package), type(k.summaryId)]);
      const row = { fileHash: r!.file_hash, executable: r!.executable, package: r!.package, heldBack: r!.held_back === 1, summaryId: r!.summary_id };
      expect(row).toEqual(k);
      return row;
    };
    try {
      for (let i = 0; i < fast.length; i++) expect(stored(fast[i]!), JSON.stringify(PATHS[Math.floor(i / 26)])).toEqual(stored(general[i]!));
      // Not vacuous: the corpus has keys of every kind, cut ones among them.
      const rows = fast.map(stored);
      expect(rows.filter((r) => r.heldBack).length).toBeGreaterThan(0);
      expect(rows.some((r) => r.executable !== null && Array.from(r.executable).length === KEY_CHARS)).toBe(true);
      expect(rows.some((r) => r.fileHash === null) && rows.some((r) => r.fileHash === 'abc')).toBe(true);
    } finally {
      d.close();
    }
  });
});

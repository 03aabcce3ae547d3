// Grouping (#22 items 2 and 8) against the real collector (a child process, on SQLite in a temp dir
// and on a throwaway PostgreSQL cluster), fed by two real agent sinks over the real protocol: a
// mixed corpus (3 hosts, 2 rules, 3 hashes and none, 2 executables, a file package on every 4th,
// two senders) and one held-back window (a summary and 3 records with hashes and an executable of
// their own). The API's groups must agree with a plain grouping of the corpus as sent (counts,
// held-back counts, first and last seen, order), under filters, paged; a group's members must be
// the alerts of its key. Then the database is taken back to the schema before the group keys
// (columns, indexes and trigger dropped, version set back, as an older collector left it) and
// opened by the collector again: the migration must fill the keys so that every grouping is as
// before.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import type { Alert } from '../../shared/ecs.js';
import { callApi, createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';
import { undoGroupKeys } from '../helpers/schema-undo.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-groups-');
const noPostgres = postgresUnavailable();
const T0 = Date.parse('2026-01-01T00:00:00Z');
/** Every corpus alert is dated before this; the collector's own notices (dated now) are not. */
const UNTIL = new Date(T0 + 86_400_000).toISOString();
const N = 40;
const SUMMARY_ID = 'summary-window-1';
const BYS = ['rule', 'host', 'hash', 'executable', 'package', 'sender'] as const;
type By = (typeof BYS)[number];

interface Sent { alert: Alert; sender: string; held: boolean }

function corpus(): Sent[] {
  const out: Sent[] = [];
  for (let i = 0; i < N; i++) {
    const a = makeAlert({
      agentId: i % 2 ? 'agent-b' : 'agent-a', host: `h-${i % 3}`, ruleId: i % 5 === 0 ? 'rule-x' : undefined,
      severity: i % 4 === 1 ? 'high' : 'low', time: new Date(T0 + i * 60_000).toISOString(),
    });
    if (i % 7 !== 6) (a.file as { hash?: { sha256: string } }).hash = { sha256: `hash-${i % 3}` };
    a.process.executable = i % 2 ? '/usr/bin/cp' : '/usr/bin/dpkg';
    if (i % 4 === 0) a.ldguard.file_package = { manager: 'dpkg', name: 'libc6', verdict: 'verified', reason: 'matches' };
    out.push({ alert: a, sender: i % 2 ? 'agent-b' : 'agent-a', held: false });
  }
  // A held-back window on h-0 by agent-a, after the rest: the summary first, as the agent sends it.
  const at = (k: number) => new Date(T0 + (N + k) * 60_000).toISOString();
  const summary = makeAlert({ agentId: 'agent-a', host: 'h-0', time: at(0) });
  (summary.file as { hash?: { sha256: string } }).hash = { sha256: 'hash-0' };
  summary.process.executable = '/usr/bin/dpkg';
  (summary.ldguard as Record<string, unknown>).summary = { id: SUMMARY_ID, update: 0, final: false, held_back: 3 };
  out.push({ alert: summary, sender: 'agent-a', held: false });
  for (let k = 1; k <= 3; k++) {
    const r = makeAlert({ agentId: 'agent-a', host: 'h-0', time: at(k) });
    (r.file as { hash?: { sha256: string } }).hash = { sha256: `decoy-${k}` };
    r.process.executable = '/tmp/decoy';
    r.ldguard.held_back_by = SUMMARY_ID;
    out.push({ alert: r, sender: 'agent-a', held: true });
  }
  return out;
}

/** The key of a sent alert; a held-back record takes its summary's hash, executable and package. */
function keyOf(s: Sent, by: By, all: Sent[]): string | null {
  const a = s.held && ['hash', 'executable', 'package'].includes(by) ? all.find((x) => (x.alert.ldguard as { summary?: { id: string } }).summary?.id === SUMMARY_ID)!.alert : s.alert;
  switch (by) {
    case 'rule': return a.kibana.alert.rule.rule_id;
    case 'host': return a.host?.name ?? null;
    case 'hash': return (a.file as { hash?: { sha256: string } }).hash?.sha256 ?? null;
    case 'executable': return a.process.executable ?? null;
    case 'package': return a.ldguard.file_package?.name ?? null;
    case 'sender': return s.sender;
  }
}

function expected(all: Sent[], by: By, keep: (s: Sent) => boolean = () => true) {
  const groups = new Map<string | null, { key: string | null; count: number; heldBack: number; first: number; last: number }>();
  for (const s of all.filter(keep)) {
    const key = keyOf(s, by, all);
    const t = Date.parse(s.alert['@timestamp']);
    const g = groups.get(key) ?? { key, count: 0, heldBack: 0, first: t, last: t };
    g.count++;
    if (s.held) g.heldBack++;
    g.first = Math.min(g.first, t);
    g.last = Math.max(g.last, t);
    groups.set(key, g);
  }
  return [...groups.values()].sort((x, y) => y.last - x.last || y.count - x.count)
    .map((g) => ({ key: g.key, count: g.count, heldBack: g.heldBack, firstSeen: new Date(g.first).toISOString(), lastSeen: new Date(g.last).toISOString() }));
}

describe.each(['sqlite', 'postgres'] as const)('alert groups on %s', (kind) => {
  const skip = kind === 'postgres' ? noPostgres : undefined;
  let c: TestCollector;
  let db: string;
  let admin: string;
  const sinks: WebSocketSink[] = [];
  const all = corpus();

  const groups = async (query: string) => {
    const r = await callApi(c.port, `/api/alerts/groups?until=${UNTIL}&${query}`, admin);
    expect(r.status, r.text).toBe(200);
    return r.body as { by: string; order: string; groups: Array<{ key: string | null }>; next: number | null };
  };

  beforeAll(async () => {
    if (skip) return;
    if (kind === 'sqlite') db = join(work, `groups-${randomUUID()}`, 'collector.db');
    else db = await (await startPostgres()).createDb('groups');
    admin = await createToken(db, 'alice', 'admin');
    const tokens = { 'agent-a': await createToken(db, 'agent-a'), 'agent-b': await createToken(db, 'agent-b') };
    c = await startTestCollector(work, db);
    for (const [name, token] of Object.entries(tokens)) {
      const s = await WebSocketSink.open({
        url: `ws://127.0.0.1:${c.port}`, token, spoolDir: join(work, `spool-${kind}-${name}`), spoolMaxBytes: 16 * 1024 * 1024,
        facts: () => makeFacts(name, `${name}-host`), heartbeatMs: 500, backoffInitialMs: 50, backoffMaxMs: 400,
      });
      sinks.push(s);
      await waitFor(() => s.health().connected, 5000, `${name} to connect`);
    }
    // One sink at a time, in the corpus's order: the summary is stored before its records.
    for (const s of all) {
      await sinks[s.sender === 'agent-a' ? 0 : 1]!.send(s.alert);
      if (s.held || (s.alert.ldguard as { summary?: unknown }).summary) await waitFor(async () => (await callApi(c.port, `/api/alerts/${s.alert.kibana.alert.uuid}`, admin)).status === 200 || undefined, 15_000, 'the held-back window stored in order');
    }
    await waitFor(async () => {
      const r = await callApi(c.port, `/api/alerts?limit=1000&until=${UNTIL}`, admin);
      return r.body.alerts?.filter((d: Alert) => Date.parse(d['@timestamp']) < Date.parse(UNTIL)).length === all.length || undefined;
    }, 30_000, 'every alert stored');
  }, 180_000);

  afterAll(async () => {
    for (const s of sinks) await s.close();
  });

  it.skipIf(skip)('needs the admin token; an unknown or missing grouping is a 400 with its code', async () => {
    expect((await fetch(`http://127.0.0.1:${c.port}/api/alerts/groups?by=host`)).status).toBe(401);
    for (const q of ['by=colour', '', 'by=']) {
      const r = await callApi(c.port, `/api/alerts/groups?${q}`, admin);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('LDG_ERR_API_GROUP_BY');
      expect(r.body.error.message).toContain('by=rule|host|hash|executable|package|sender');
    }
    expect((await callApi(c.port, '/api/alerts/groups?by=host&order=size', admin)).body.error.code).toBe('LDG_ERR_API_QUERY');
    expect((await callApi(c.port, '/api/alerts?key=x', admin)).body.error.code).toBe('LDG_ERR_API_QUERY');
  });

  it.skipIf(skip)('counts, held-back counts, first and last seen for every grouping, newest last seen first', async () => {
    for (const by of BYS) {
      const g = await groups(`by=${by}`);
      expect(g.groups, `by=${by}`).toEqual(expected(all, by));
    }
    // The held-back records are under their summary's hash, not groups of their own.
    const byHash = await groups('by=hash');
    expect(byHash.groups.map((x) => x.key)).not.toContain('decoy-1');
    expect(byHash.groups.find((x) => x.key === 'hash-0')).toMatchObject({ heldBack: 3 });
  });

  it.skipIf(skip)('applies the list\'s filters, orders by count on request, pages', async () => {
    const high = (s: Sent) => s.alert.kibana.alert.severity === 'high';
    expect((await groups('by=host&severity=high')).groups).toEqual(expected(all, 'host', high));
    const h1 = (s: Sent) => s.alert.host!.name === 'h-1';
    expect((await groups('by=hash&host=h-1')).groups).toEqual(expected(all, 'hash', h1));
    const since = new Date(T0 + 20 * 60_000).toISOString();
    expect((await groups(`by=executable&since=${since}`)).groups).toEqual(expected(all, 'executable', (s) => Date.parse(s.alert['@timestamp']) >= Date.parse(since)));
    const byCount = expected(all, 'host').sort((x, y) => y.count - x.count || Date.parse(y.lastSeen) - Date.parse(x.lastSeen));
    expect((await groups('by=host&order=count')).groups).toEqual(byCount);
    const first = await groups('by=hash&limit=2');
    expect(first.groups).toHaveLength(2);
    expect(first.next).toBe(2);
    const rest = await groups('by=hash&limit=2&offset=2');
    expect([...first.groups, ...rest.groups]).toEqual(expected(all, 'hash'));
    expect(rest.next).toBeNull();
  });

  it.skipIf(skip)('a group\'s members are the list filtered by its key, held-back records included', async () => {
    const uuids = async (q: string) => ((await callApi(c.port, `/api/alerts?limit=1000&until=${UNTIL}&${q}`, admin)).body.alerts as Alert[]).map((d) => d.kibana.alert.uuid).sort();
    const of = (by: By, key: string | null) => all.filter((s) => keyOf(s, by, all) === key).map((s) => s.alert.kibana.alert.uuid).sort();
    expect(await uuids('of=hash&key=hash-0')).toEqual(of('hash', 'hash-0'));
    expect(of('hash', 'hash-0')).toHaveLength(expected(all, 'hash').find((g) => g.key === 'hash-0')!.count);
    // No key: the group of alerts without one.
    expect(await uuids('of=package')).toEqual(of('package', null));
    expect(await uuids('of=sender&key=agent-b')).toEqual(of('sender', 'agent-b'));
    expect(await uuids('of=executable&key=%2Fusr%2Fbin%2Fdpkg&severity=high')).toEqual(all.filter((s) => keyOf(s, 'executable', all) === '/usr/bin/dpkg' && s.alert.kibana.alert.severity === 'high').map((s) => s.alert.kibana.alert.uuid).sort());
  });

  it.skipIf(skip)('the migration fills the keys of rows written before it', async () => {
    const before = await Promise.all(BYS.map((by) => groups(`by=${by}`)));
    await c.stop();
    // Back to the schema before the group keys, the rows kept: what an older collector left.
    await undoGroupKeys(kind, db);
    if (kind === 'postgres') {
      // As a large fill killed half way leaves it (group-fill.ts): the search index dropped.
      const p = new pg.Client({ connectionString: db });
      await p.connect();
      await p.query('DROP INDEX alerts_doc_trgm');
      await p.end();
    }
    c = await startTestCollector(work, db);
    expect(c.logs.map((l) => String(l.msg ?? '')).join('\n')).toMatch(/group keys of \d+ alerts in/);
    const after = await Promise.all(BYS.map((by) => groups(`by=${by}`)));
    expect(after).toEqual(before);
    expect(after[BYS.indexOf('hash')]!.groups.find((x) => x.key === 'hash-0')).toMatchObject({ heldBack: 3 });
    if (kind === 'postgres') {
      const p = new pg.Client({ connectionString: db });
      await p.connect();
      expect((await p.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'alerts_doc_trgm'")).rows).toEqual([{ indexdef: expect.stringContaining('gin_trgm_ops') }]);
      await p.end();
    }
  }, 60_000);
});

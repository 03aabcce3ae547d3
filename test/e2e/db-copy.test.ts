// `ldguard db copy`: a real SQLite collector fed by agents over WebSocket (alerts, a workflow change
// with its history, a revoked token), stopped, then copied into a throwaway PostgreSQL cluster by
// the built CLI; a collector started on the copy serves it. The copy is killed with SIGKILL half-way
// and run again; a running source, a target holding other data and a tampered target are refused.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsFrame } from '../../shared/protocol.js';
import { CLI } from '../helpers/cli.js';
import { callApi, createToken, rawAgent, runCli, startTestCollector, type RawAgent, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-dbcopy-');
const noPostgres = postgresUnavailable();

/** Alerts sent in bulk (besides the few the tests look at one by one): enough batches of --batch 100 for a kill to land mid-way. */
const BULK_BATCHES = 30;
const BULK_PER_BATCH = 200;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function sendBatch(a: RawAgent, seq: number, texts: string[]): Promise<void> {
  const from = a.messages.length;
  const upTo = seq + texts.length - 1;
  a.ws.send(alertsFrame(seq, texts));
  await waitFor(() => a.messages.slice(from).find((m) => m.type === 'ack' && m.upTo === upTo), 20_000, `ack of records ${seq}-${upTo}`);
}

/** An agent past hello; its host id and baseline seal make the collector record a host seal. */
async function agent(port: number, token: string, agentId: string): Promise<RawAgent> {
  const a = await rawAgent(port, token);
  const facts = { ...makeFacts(agentId, `${agentId}-host`), hostId: `${agentId}-machine`, baseline: { generation: 1, sha256: sha256(Buffer.from(agentId)) } };
  a.ws.send(JSON.stringify({ type: 'hello', v: 1, heartbeatMs: 10_000, agent: facts }));
  return a;
}

const PASSWORD = 'a dashboard password, long enough';

describe.skipIf(noPostgres !== undefined)(`ldguard db copy${noPostgres ? ` (skipped: ${noPostgres})` : ''}`, () => {
  let pgc: TestPostgres;
  let collector: TestCollector;
  const db = join(work, 'site', 'collector.db');
  let target: string;
  let admin: string;
  let live: string;
  let old: string;
  /** Sent with spaces JSON.stringify never writes: stored as these bytes, it must come out as them. */
  const spaced = makeAlert({ agentId: 'agent-live', path: '/lib64/ld-linux-x86-64.so.2.é' });
  const spacedText = JSON.stringify(spaced, null, 1);
  const triaged = makeAlert({ agentId: 'agent-live' });
  let total = 0;

  beforeAll(async () => {
    pgc = await startPostgres();
    target = await pgc.createDb('moved');
    admin = await createToken(db, 'admin', 'admin');
    live = await createToken(db, 'h-live');
    old = await createToken(db, 'h-old');
    collector = await startTestCollector(work, db);
    const a = await agent(collector.port, live, 'agent-live');
    // The third is no alert: quarantined, and copied as such.
    await sendBatch(a, 1, [spacedText, JSON.stringify(triaged), '{"not":"an alert"}']);
    let seq = 4;
    for (let b = 0; b < BULK_BATCHES; b++, seq += BULK_PER_BATCH) {
      await sendBatch(a, seq, Array.from({ length: BULK_PER_BATCH }, () => JSON.stringify(makeAlert({ agentId: 'agent-live' }))));
    }
    const o = await agent(collector.port, old, 'agent-old');
    await sendBatch(o, 1, [JSON.stringify(makeAlert({ agentId: 'agent-old' })), JSON.stringify(makeAlert({ agentId: 'agent-old' }))]);
    for (const status of ['acknowledged', 'closed']) {
      expect((await callApi(collector.port, `/api/alerts/${triaged.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { status } })).status).toBe(200);
    }
    // A note and an assignee (the workflow's typed history entries and the alert's assignee column) move too.
    expect((await callApi(collector.port, `/api/alerts/${triaged.kibana.alert.uuid}/notes`, admin, { method: 'POST', body: { text: 'checked: <b>not</b> a package' } })).status).toBe(201);
    expect((await callApi(collector.port, `/api/alerts/${triaged.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { assignee: 'carol' } })).status).toBe(200);
    const revoked = await runCli(['token', 'revoke', '--db', db, '--name', 'h-old']);
    expect(revoked.status, revoked.stderr).toBe(0);
    // A dashboard password (its scrypt hash moves with the copy) and the audit log's entries.
    // A login's dashboard preference (web_prefs), saved through the dashboard as the page does.
    const login = await fetch(`http://127.0.0.1:${collector.port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: admin }) });
    const { csrf } = (await login.json()) as { csrf: string };
    const saved = await fetch(`http://127.0.0.1:${collector.port}/ui/api/prefs`, {
      method: 'PUT', headers: { cookie: login.headers.get('set-cookie')!.split(';')[0]!, 'x-ldguard-csrf': csrf, 'content-type': 'application/json' }, body: '{"timeZone":"local"}',
    });
    expect(saved.status).toBe(200);
    const passwd = spawnSync(process.execPath, [CLI, 'token', 'passwd', '--db', db, '--name', 'admin'], { input: `${PASSWORD}\n`, encoding: 'utf8', timeout: 30_000 });
    expect(passwd.status, passwd.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await collector?.stop();
  });

  it('refuses a source a running collector holds open, naming the fix, and touches no target', async () => {
    const r = await runCli(['db', 'copy', '--from', db, '--to', target]);
    expect(r.status, r.stderr).not.toBe(0);
    expect(r.stderr).toContain('LDG_ERR_DB_IN_USE');
    expect(r.stderr).toContain('systemctl stop ldguard-collector');
    // Refused before the target was opened: not even the schema is there.
    expect(await pgc.query('moved', "SELECT to_regclass('alerts') AS t")).toEqual([{ t: null }]);
    expect(await collector.stop()).toBe(0);
    // What the agents sent, and what the collector added of its own (its notices, e.g. of the quarantined row).
    const src = new Database(db, { readonly: true });
    const sent = src.prepare("SELECT count(*) FROM alerts WHERE agent_id IN ('agent-live', 'agent-old')").pluck().get();
    total = src.prepare('SELECT count(*) FROM alerts').pluck().get() as number;
    const own = src.prepare("SELECT rule_name FROM alerts WHERE agent_id NOT IN ('agent-live', 'agent-old')").pluck().all();
    src.close();
    expect(sent).toBe(2 + BULK_BATCHES * BULK_PER_BATCH + 2);
    expect(own).toEqual(['Agent Alerts Quarantined by the Collector']);
  });

  it('resumes a copy killed with SIGKILL mid-way: every row once, counts and digests equal to the source', async () => {
    const p = spawn(process.execPath, [CLI, 'db', 'copy', '--from', db, '--to', target, '--batch', '100'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => {
      stderr += String(d);
      if (/copied \d+\/\d+ alerts/.test(stderr)) p.kill('SIGKILL');
    });
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => p.on('close', (_code, sig) => resolve(sig)));
    expect(signal, stderr).toBe('SIGKILL');
    const partial = (await pgc.query<{ n: number }>('moved', 'SELECT count(*)::int AS n FROM alerts'))[0]!.n;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(total);

    const r = await runCli(['db', 'copy', '--from', db, '--to', target, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { resumedAt: number; copied: number; checks: Array<{ table: string; ok: boolean; source: { rows: number }; target: { rows: number } }> };
    expect(out.resumedAt).toBe(partial);
    expect(out.copied).toBe(total - partial);
    expect(out.checks.map((c) => c.table).sort()).toEqual(['agents', 'alert_history', 'alerts', 'audit_log', 'host_seals', 'quarantine', 'tokens', 'web_passwords', 'web_prefs']);
    for (const c of out.checks) expect(c, c.table).toMatchObject({ ok: true, target: { rows: c.source.rows } });
    const rows = Object.fromEntries(out.checks.map((c) => [c.table, c.source.rows]));
    expect(rows).toEqual({ alerts: total, alert_history: 4, tokens: 3, agents: 2, host_seals: 2, quarantine: 1, web_passwords: 1, web_prefs: 1, audit_log: 6 });

    // Checked here too, not only by the tool: every source row by id, its document's bytes, once.
    const src = new Database(db, { readonly: true });
    const want = src.prepare('SELECT id, CAST(doc AS BLOB) AS doc FROM alerts ORDER BY id').all() as Array<{ id: number; doc: Buffer }>;
    const history = src.prepare('SELECT alert_id, status, by, at, kind, value FROM alert_history ORDER BY alert_id, rowid').all();
    src.close();
    const got = await pgc.query<{ id: string; h: string }>('moved', "SELECT id, encode(sha256(doc), 'hex') AS h FROM alerts ORDER BY id");
    expect(got.map((g) => [Number(g.id), g.h])).toEqual(want.map((w) => [w.id, sha256(w.doc)]));
    const keys = await pgc.query<{ n: number; k: number }>('moved', 'SELECT count(*)::int AS n, count(DISTINCT (ots, uuid, agent_id))::int AS k FROM alerts');
    expect(keys).toEqual([{ n: total, k: total }]);
    const [spacedRow] = await pgc.query<{ doc: Buffer }>('moved', 'SELECT doc FROM alerts WHERE uuid = $1', [spaced.kibana.alert.uuid]);
    expect(spacedRow!.doc.equals(Buffer.from(spacedText, 'utf8'))).toBe(true);
    expect(await pgc.query('moved', 'SELECT alert_id::int, status, by, at::float8 AS at, kind, value FROM alert_history ORDER BY alert_id, seq')).toEqual(history);

    // Run on a finished copy, it copies nothing and checks again; the summary says what was left behind.
    const again = await runCli(['db', 'copy', '--from', db, '--to', target]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/: 0 alerts in this run/);
    for (const t of ['alerts', 'alert_history', 'tokens', 'agents', 'host_seals', 'quarantine', 'web_passwords', 'web_prefs', 'audit_log']) expect(again.stdout).toMatch(new RegExp(`^ {2}ok +${t} `, 'm'));
    expect(again.stdout).toContain('dashboard sessions (log in again)');
    expect((await pgc.query<{ action: string }>('moved', "SELECT action FROM audit_log WHERE token_name = 'h-old' ORDER BY id")).map((r) => r.action)).toEqual(['create', 'revoke']);
    expect(await pgc.query('moved', 'SELECT name, time_zone FROM web_prefs')).toEqual([{ name: 'admin', time_zone: 'local' }]);
  }, 120_000);

  it('serves the copy from a collector on PostgreSQL: same alerts and workflow, the revoked token refused, the live one accepted', async () => {
    const c = await startTestCollector(work, target);
    try {
      const t = await callApi(c.port, `/api/alerts/${triaged.kibana.alert.uuid}`, admin);
      expect(t.status).toBe(200);
      expect(t.body.alert.kibana.alert).toMatchObject({ uuid: triaged.kibana.alert.uuid, workflow_status: 'closed', workflow_user: 'admin' });
      const [row] = await pgc.query<{ id: string }>('moved', 'SELECT id FROM alerts WHERE uuid = $1', [triaged.kibana.alert.uuid]);
      expect((await pgc.query('moved', "SELECT status, by FROM alert_history WHERE alert_id = $1 AND kind = 'status' ORDER BY seq", [row!.id])))
        .toEqual([{ status: 'acknowledged', by: 'admin' }, { status: 'closed', by: 'admin' }]);
      expect(t.body.alert.ldguard.assignee).toBe('carol');
      expect((t.body.history as Array<{ kind: string; value?: string }>).map((e) => [e.kind, e.value ?? null]))
        .toEqual([['status', null], ['status', null], ['note', 'checked: <b>not</b> a package'], ['assignee', 'carol']]);
      const s = await callApi(c.port, `/api/alerts/${spaced.kibana.alert.uuid}`, admin);
      expect(s.body.alert).toEqual({ ...spaced, ldguard: { ...spaced.ldguard, received_from: { agent_id: 'agent-live', token_name: 'h-live' } } });
      // Every alert, in the list's order (ts, then id: ids were kept), as the API shows the source's
      // documents: parsed, with the sender the collector authenticated stamped in.
      const src = new Database(db, { readonly: true });
      const want = (src.prepare('SELECT doc, agent_id, token_name, assignee FROM alerts ORDER BY ts DESC, id DESC').all() as Array<{ doc: string; agent_id: string; token_name: string; assignee: string | null }>)
        .map((r) => {
          const d = JSON.parse(r.doc) as Record<string, any>;
          return { ...d, ldguard: { ...d.ldguard, received_from: { agent_id: r.agent_id, token_name: r.token_name }, ...(r.assignee ? { assignee: r.assignee } : {}) } };
        });
      src.close();
      const shown: unknown[] = [];
      for (let before = ''; ;) {
        const page = await callApi(c.port, `/api/alerts?limit=1000${before}`, admin);
        expect(page.status).toBe(200);
        shown.push(...(page.body.alerts as unknown[]));
        if (!page.body.next) break;
        before = `&before=${page.body.next as string}`;
      }
      expect(shown).toEqual(want);
      const q = await callApi(c.port, '/api/quarantine', admin);
      expect(q.body.quarantine).toEqual([expect.objectContaining({ agentId: 'agent-live', tokenName: 'h-live', text: '{"not":"an alert"}' })]);

      // The dashboard's password came along: a login with it on the PostgreSQL collector.
      const login = await fetch(`http://127.0.0.1:${c.port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: PASSWORD }) });
      expect(login.status, await login.clone().text()).toBe(200);
      await expect(rawAgent(c.port, old)).rejects.toMatchObject({ status: 401 });
      const a = await agent(c.port, live, 'agent-live');
      const fresh = makeAlert({ agentId: 'agent-live' });
      await sendBatch(a, 1_000_000, [JSON.stringify(fresh)]);
      expect((await callApi(c.port, `/api/alerts/${fresh.kibana.alert.uuid}`, admin)).status).toBe(200);
      // The collector's own rows take ids after the copied ones.
      const m = (await pgc.query<{ m: number }>('moved', 'SELECT max(id)::int AS m FROM alerts WHERE uuid <> $1', [fresh.kibana.alert.uuid]))[0]!.m;
      const f = (await pgc.query<{ f: number }>('moved', 'SELECT id::int AS f FROM alerts WHERE uuid = $1', [fresh.kibana.alert.uuid]))[0]!.f;
      expect(f).toBeGreaterThan(m);
    } finally {
      expect(await c.stop()).toBe(0);
    }
    // That collector stored an alert the source does not hold: the target is no longer this copy's.
    const r = await runCli(['db', 'copy', '--from', db, '--to', target]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('LDG_ERR_DB_COPY_TARGET');
  }, 60_000);

  it('finds the password in a password file and the server in PG* variables, as the collector does', async () => {
    await pgc.query('postgres', "CREATE ROLE ldg_mover LOGIN PASSWORD 'mover-pw'");
    await pgc.query('postgres', 'CREATE DATABASE byfile OWNER ldg_mover');
    const passfile = join(work, 'pgpass');
    writeFileSync(passfile, `127.0.0.1:${pgc.port}:byfile:ldg_mover:mover-pw\n`, { mode: 0o600 });
    const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(pgc.port), PGUSER: 'ldg_mover', PGPASSFILE: passfile };
    const r = await runCli(['db', 'copy', '--from', db, '--to', 'postgresql:///byfile', '--json'], env);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { checks: Array<{ ok: boolean }> }).checks.every((c) => c.ok)).toBe(true);
    expect((await pgc.query<{ n: number }>('byfile', 'SELECT count(*)::int AS n FROM alerts'))[0]!.n).toBe(total);
    // The password is nowhere but in the file: without it, refused with the fix named.
    const { PGPASSFILE: _f, ...noFile } = env;
    const refused = await runCli(['db', 'copy', '--from', db, '--to', 'postgresql:///byfile'], { ...noFile, HOME: work });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('LDG_ERR_DB_PASSWORD');
  }, 60_000);

  it('fails the check, naming the tables, when the target was changed after the copy', async () => {
    const url = await pgc.createDb('tampered');
    const first = await runCli(['db', 'copy', '--from', db, '--to', url]);
    expect(first.status, first.stderr).toBe(0);
    await pgc.query('tampered', "UPDATE alerts SET doc = doc || '\\x20'::bytea WHERE id = (SELECT min(id) FROM alerts)");
    await pgc.query('tampered', "UPDATE alert_history SET by = 'mallory'");
    const r = await runCli(['db', 'copy', '--from', db, '--to', url]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('LDG_ERR_DB_COPY_MISMATCH');
    expect(r.stderr).toMatch(/in alerts, alert_history \(/);
    expect(r.stdout).toMatch(/^ {2}MISMATCH +alerts /m);
    expect(r.stdout).toMatch(/^ {2}ok +tokens /m);
  }, 60_000);
});

// The collector over each store, and several collectors over one PostgreSQL database: the real
// CLI as child processes, a throwaway PostgreSQL cluster (helpers/postgres.ts), raw agents over
// WebSocket, the API and its live stream over HTTP.
import { MIGRATIONS } from '../../collector/src/store/postgres.js';
import { hashToken, newTokenSecret } from '../../collector/src/store/store.js';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Alert } from '../../shared/ecs.js';
import { CLOSE, alertsFrame } from '../../shared/protocol.js';
import { CLI } from '../helpers/cli.js';
import { callApi, createToken, liveStream, rawAgent, runCli, startTestCollector, type RawAgent } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-pg-e2e-');
const noPostgres = postgresUnavailable();

const hello = (agentId: string, heartbeatMs = 10_000) => JSON.stringify({ type: 'hello', v: 1, heartbeatMs, agent: makeFacts(agentId, `${agentId}-host`) });

/** Sends one batch (its first record numbered `seq`) and resolves at its ack. */
async function sendBatch(a: RawAgent, seq: number, texts: string[]): Promise<void> {
  const from = a.messages.length;
  const upTo = seq + texts.length - 1;
  a.ws.send(alertsFrame(seq, texts));
  await waitFor(() => a.messages.slice(from).find((m) => m.type === 'ack' && m.upTo === upTo), 10_000, `ack of records ${seq}-${upTo}`);
}

/** An agent connected and past hello (the collector has bound the token when the first ack comes back). */
async function agent(port: number, token: string, agentId: string): Promise<RawAgent> {
  const a = await rawAgent(port, token);
  a.ws.send(hello(agentId));
  return a;
}

describe('--db', () => {
  it('refuses a URL of an unknown scheme with LDG_ERR_DB_URL, for the collector and the token command, and creates nothing', () => {
    const cwd = tempDir('ldg-scheme-');
    for (const args of [['collector', '--listen', '127.0.0.1:0', '--db', 'mysql://root@localhost/ldguard'], ['token', 'create', '--name', 'x', '--db', 'postgress://u@h/db']]) {
      const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.stderr).toContain('LDG_ERR_DB_URL');
      expect(r.stderr).toContain('postgres://USER@HOST:PORT/DATABASE');
    }
    // Before, `--db postgres://…` made a folder named `postgres:` (here it would be `mysql:`).
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('refuses the same in a config file, with the option named', () => {
    const config = join(work, 'bad-scheme.toml');
    writeFileSync(config, 'db = "sqlite://collector.db"\n');
    const r = spawnSync(process.execPath, [CLI, 'collector', '--listen', '127.0.0.1:0', '--config', config], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/LDG_ERR_CONFIG[\s\S]*option db: .*LDG_ERR_DB_URL/);
  });
});

// The same behaviours on both stores: what the API and the agents see must not depend on it.
describe.each(['sqlite', 'postgres'] as const)('one collector on %s', (kind) => {
  let db: string;
  let pgc: TestPostgres | undefined;

  beforeAll(async () => {
    if (kind === 'sqlite') db = join(work, `one-${randomUUID()}`, 'collector.db');
    else if (!noPostgres) {
      pgc = await startPostgres();
      db = await pgc.createDb('one');
    }
  }, 60_000);

  it.skipIf(kind === 'postgres' && noPostgres)('stores a batch once however often it is sent, finds it by free text, and keeps a workflow change', async () => {
    const admin = await createToken(db, 'admin', 'admin');
    const token = await createToken(db, 'h-one');
    const c = await startTestCollector(work, db);
    const live = await liveStream(c.port, admin);
    const a = await agent(c.port, token, 'agent-one');
    const alerts = [makeAlert({ agentId: 'agent-one', path: '/lib64/ld-linux-x86-64.so.2.needle-one' }), makeAlert({ agentId: 'agent-one' })];
    const texts = alerts.map((x) => JSON.stringify(x));
    await sendBatch(a, 1, texts);
    await sendBatch(a, 1, texts); // a resend after a lost ack
    const page = await callApi(c.port, '/api/alerts?limit=10', admin);
    expect(page.status).toBe(200);
    expect(page.body.alerts.map((d: Alert) => d.kibana.alert.uuid).sort()).toEqual(alerts.map((x) => x.kibana.alert.uuid).sort());
    // Stamped with the sender the collector authenticated.
    expect(page.body.alerts[0].ldguard.received_from).toEqual({ agent_id: 'agent-one', token_name: 'h-one' });
    const found = await callApi(c.port, '/api/alerts?q=NEEDLE-ONE', admin);
    expect(found.body.alerts.map((d: Alert) => d.kibana.alert.uuid)).toEqual([alerts[0]!.kibana.alert.uuid]);
    expect((await callApi(c.port, '/api/alerts?q=no-such-text', admin)).body.alerts).toEqual([]);
    const patched = await callApi(c.port, `/api/alerts/${alerts[1]!.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { status: 'acknowledged' } });
    expect(patched.status).toBe(200);
    const again = await callApi(c.port, `/api/alerts/${alerts[1]!.kibana.alert.uuid}`, admin);
    expect(again.body.alert.kibana.alert.workflow_status).toBe('acknowledged');
    expect(again.body.alert.kibana.alert.workflow_user).toBe('admin');
    // The live stream saw each alert once (the resend stored nothing new).
    await waitFor(() => live.docs.length >= 2, 5_000, 'two alerts on the live stream');
    expect(live.docs.map((d) => d.kibana.alert.uuid).sort()).toEqual(alerts.map((x) => x.kibana.alert.uuid).sort());
    const agents = await callApi(c.port, '/api/agents', admin);
    expect(agents.body.agents).toEqual([expect.objectContaining({ agentId: 'agent-one', online: true, connected: true })]);
    const metrics = await callApi(c.port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/^ldguard_collector_agents_online 1$/m);
    expect((await callApi(c.port, '/healthz')).body).toMatchObject({ status: 'ok', db: 'ok' });
    live.close();
    expect(await c.stop()).toBe(0);
  });
});

describe.skipIf(noPostgres)('collectors over one PostgreSQL database', () => {
  let pgc: TestPostgres;
  let db: string;

  beforeAll(async () => {
    pgc = await startPostgres();
    db = await pgc.createDb('ldguard');
  }, 60_000);

  it('shows an alert stored by A live on B, stores the same alert sent to A and B once, shows A the agent B holds and B\'s workflow change', async () => {
    const admin = await createToken(db, 'admin', 'admin');
    const token = await createToken(db, 'h-two');
    const [a, b] = await Promise.all([startTestCollector(work, db), startTestCollector(work, db)]);
    const live = await liveStream(b.port, admin);
    const onA = await agent(a.port, token, 'agent-two');
    const x = makeAlert({ agentId: 'agent-two' });
    const text = JSON.stringify(x);
    await sendBatch(onA, 1, [text]);
    const seen = await waitFor(() => live.docs.find((d) => d.kibana.alert.uuid === x.kibana.alert.uuid), 5_000, "A's alert on B's live stream");
    expect(seen.ldguard.received_from).toEqual({ agent_id: 'agent-two', token_name: 'h-two' });
    // The same agent, moved to B, resends it: a duplicate, by the database's constraint.
    onA.ws.close();
    const onB = await agent(b.port, token, 'agent-two');
    await sendBatch(onB, 1, [text]);
    const rows = await pgc.query<{ n: string }>('ldguard', 'SELECT count(*) AS n FROM alerts WHERE uuid = $1', [x.kibana.alert.uuid]);
    expect(rows[0]!.n).toBe('1');
    const viaA = await callApi(a.port, `/api/alerts/${x.kibana.alert.uuid}`, admin);
    expect(viaA.body.matches).toHaveLength(1);
    // B's own commit reached its stream once, not again through the notification.
    await new Promise((r) => setTimeout(r, 300));
    expect(live.docs.filter((d) => d.kibana.alert.uuid === x.kibana.alert.uuid)).toHaveLength(1);
    const agents = await callApi(a.port, '/api/agents', admin);
    expect(agents.body.agents).toEqual([expect.objectContaining({ agentId: 'agent-two', online: true })]);
    // A workflow change made on B is what A serves next.
    expect((await callApi(b.port, `/api/alerts/${x.kibana.alert.uuid}`, admin, { method: 'PATCH', body: { status: 'closed' } })).status).toBe(200);
    expect((await callApi(a.port, `/api/alerts/${x.kibana.alert.uuid}`, admin)).body.alert.kibana.alert.workflow_status).toBe('closed');
    live.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('catches up after its LISTEN session is cut: an alert committed meanwhile still reaches its live stream, once', async () => {
    const admin = await createToken(db, 'admin-cut', 'admin');
    const token = await createToken(db, 'h-cut');
    const [a, b] = await Promise.all([startTestCollector(work, db), startTestCollector(work, db)]);
    const live = await liveStream(b.port, admin);
    const onA = await agent(a.port, token, 'agent-cut');
    await sendBatch(onA, 1, [JSON.stringify(makeAlert({ agentId: 'agent-cut' }))]);
    await waitFor(() => live.docs.length === 1, 5_000, 'the first alert on B');
    // Every collector's LISTEN session is cut; the next alert commits before they are back (they retry after 500 ms).
    const cut = await pgc.query<{ ok: boolean }>('ldguard', "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'ldguard-listen'");
    expect(cut.length).toBe(2);
    const x = makeAlert({ agentId: 'agent-cut' });
    await sendBatch(onA, 2, [JSON.stringify(x)]);
    await waitFor(() => live.docs.find((d) => d.kibana.alert.uuid === x.kibana.alert.uuid), 10_000, 'the alert committed while B was not listening');
    await waitFor(() => b.logs.find((l) => String(l.msg).includes('the LISTEN session ended')), 5_000, "B's warning about its LISTEN session");
    // Live again: a third alert comes by NOTIFY, and none came twice.
    const y = makeAlert({ agentId: 'agent-cut' });
    await sendBatch(onA, 3, [JSON.stringify(y)]);
    await waitFor(() => live.docs.find((d) => d.kibana.alert.uuid === y.kibana.alert.uuid), 5_000, 'the third alert on B');
    const uuids = live.docs.map((d) => d.kibana.alert.uuid as string);
    expect(new Set(uuids).size).toBe(uuids.length);
    live.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('keeps presence as a lease in the database: an agent gone silent is marked offline once, by one of the collectors', async () => {
    const admin = await createToken(db, 'admin-lease', 'admin');
    const token = await createToken(db, 'h-lease');
    const [a, b] = await Promise.all([startTestCollector(work, db), startTestCollector(work, db)]);
    // A 200 ms heartbeat, and 3 missed (the default) end the lease: the agent says hello and goes silent.
    const onA = await rawAgent(a.port, token);
    onA.ws.send(hello('agent-lease', 200));
    await sendBatch(onA, 1, [JSON.stringify(makeAlert({ agentId: 'agent-lease' }))]);
    expect((await callApi(b.port, '/api/agents', admin)).body.agents).toContainEqual(expect.objectContaining({ agentId: 'agent-lease', online: true }));
    onA.ws.terminate();
    await waitFor(async () => {
      const agents = (await callApi(b.port, '/api/agents', admin)).body.agents as Array<{ agentId: string; online: boolean }>;
      return agents.find((x) => x.agentId === 'agent-lease' && !x.online);
    }, 10_000, 'the agent offline, as B sees it');
    // Both collectors sweep every 150 ms; the lapsed lease is reported by exactly one of them.
    await new Promise((r) => setTimeout(r, 500));
    const lines = [...a.logs, ...b.logs].filter((l) => String(l.msg).startsWith('agent offline') && l.agentId === 'agent-lease');
    expect(lines).toHaveLength(1);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a token revoked through the database is refused by a collector that did not revoke it, and nothing of it is stored after the revoke commits', async () => {
    const token = await createToken(db, 'h-three');
    const a = await startTestCollector(work, db);
    const onA = await agent(a.port, token, 'agent-three');
    await sendBatch(onA, 1, [JSON.stringify(makeAlert({ agentId: 'agent-three' }))]);
    // Batches keep coming while the token is revoked; acks are recorded as they arrive.
    let seq = 1;
    const sent = new Map<number, string>();
    const pump = setInterval(() => {
      if (onA.ws.readyState !== onA.ws.OPEN) return;
      const al = makeAlert({ agentId: 'agent-three' });
      sent.set(++seq, al.kibana.alert.uuid);
      onA.ws.send(alertsFrame(seq, [JSON.stringify(al)]));
    }, 10);
    await new Promise((r) => setTimeout(r, 200));
    const revoked = await runCli(['token', 'revoke', '--db', db, '--name', 'h-three']);
    const t0 = performance.now();
    expect(revoked.status, revoked.stderr).toBe(0);
    const stored = async () => Number((await pgc.query<{ n: string }>('ldguard', "SELECT count(*) AS n FROM alerts WHERE token_name = 'h-three'"))[0]!.n);
    // Every commit before the revoke's is visible now; any later one would add to this.
    const atRevoke = await stored();
    const closed = await onA.closed;
    const ms = performance.now() - t0;
    clearInterval(pump);
    console.log(`revoke to close on the other collector: ${ms.toFixed(0)} ms (the token view refreshes every 500 ms and on NOTIFY)`);
    expect(closed.code).toBe(CLOSE.revoked);
    await expect(rawAgent(a.port, token)).rejects.toMatchObject({ status: 401 });
    await new Promise((r) => setTimeout(r, 500));
    expect(await stored()).toBe(atRevoke);
    // Every batch acked was stored.
    const acked = onA.messages.filter((m) => m.type === 'ack').map((m) => m.upTo as number);
    const uuids = acked.map((s) => sent.get(s)).filter((u): u is string => u !== undefined);
    const have = await pgc.query<{ uuid: string }>('ldguard', 'SELECT uuid FROM alerts WHERE uuid = ANY($1)', [uuids]);
    expect(have.length).toBe(uuids.length);
    expect(await a.stop()).toBe(0);
  });

  it('accepts a token newer than its token view: one written to the database with no notification (another version, a restore)', async () => {
    const a = await startTestCollector(work, db);
    for (let i = 0; i < 5; i++) {
      const secret = newTokenSecret();
      await pgc.query('ldguard', "INSERT INTO tokens (hash, name, role, created) VALUES ($1, $2, 'agent', $3)", [hashToken(secret), `h-quiet-${i}`, Date.now()]);
      // At once: before the view's periodic refresh (500 ms) would have read it.
      const onA = await rawAgent(a.port, secret);
      onA.ws.close();
      await onA.closed;
    }
    expect(await a.stop()).toBe(0);
  });

  it('stores a document holding \\u0000 byte for byte, and quarantines a row the database refuses', async () => {
    const admin = await createToken(db, 'admin-nul', 'admin');
    const token = await createToken(db, 'h-nul');
    const c = await startTestCollector(work, db);
    const a = await agent(c.port, token, 'agent-nul');
    const kept = makeAlert({ agentId: 'agent-nul' });
    kept.process.command_line = 'cp /tmp/a\u0000b /lib64/ld-linux-x86-64.so.2';
    // Sent with spacing and an escape JSON.stringify would not write: stored as sent, not re-encoded.
    const keptText = JSON.stringify(kept, null, 1).replace('"cp ', '"\\u0063p ');
    const refused = makeAlert({ agentId: 'agent-nul', host: 'web\u0000evil' });
    await sendBatch(a, 1, [keptText, JSON.stringify(refused)]);
    const rows = await pgc.query<{ doc: Buffer }>('ldguard', 'SELECT doc FROM alerts WHERE uuid = $1', [kept.kibana.alert.uuid]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.doc.equals(Buffer.from(keptText, 'utf8'))).toBe(true);
    const shown = await callApi(c.port, `/api/alerts/${kept.kibana.alert.uuid}`, admin);
    expect(shown.body.alert.process.command_line).toBe(kept.process.command_line);
    // A text column cannot hold NUL in PostgreSQL: that row is quarantined with the reason, the batch acked.
    const q = await callApi(c.port, '/api/quarantine?agent=agent-nul', admin);
    expect(q.body.quarantine).toEqual([expect.objectContaining({ uuid: refused.kibana.alert.uuid, reason: expect.stringContaining('the database refused the row') })]);
    expect(await c.stop()).toBe(0);
  });

  it('finds the password in a password file and the server in PG* variables (a URL with no host, user or password)', async () => {
    await pgc.query('postgres', "CREATE ROLE ldg_pw LOGIN PASSWORD 'sekret-pw'");
    await pgc.query('postgres', 'CREATE DATABASE pw OWNER ldg_pw');
    const passfile = join(work, 'pgpass');
    writeFileSync(passfile, `127.0.0.1:${pgc.port}:pw:ldg_pw:sekret-pw\n`, { mode: 0o600 });
    const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(pgc.port), PGUSER: 'ldg_pw', PGPASSFILE: passfile };
    const run = (e: NodeJS.ProcessEnv) => spawnSync(process.execPath, [CLI, 'token', 'create', '--db', 'postgres:///pw', '--name', `h-${randomUUID().slice(0, 8)}`], { env: e, encoding: 'utf8', timeout: 30_000 });
    const ok = run(env);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ldg_/);
    // Without the file the server asks for a password the collector does not have: refused, with the fix named.
    const { PGPASSFILE: _f, ...noFile } = env;
    const refused = run({ ...noFile, HOME: work });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('LDG_ERR_DB_PASSWORD');
    expect(refused.stderr).toContain('PGPASSFILE');
  }, 60_000);

  it('serves one dashboard from every collector: a password set by the CLI, a session opened on A valid on B, ended on all by a logout or a revoke', async () => {
    await createToken(db, 'web-admin', 'admin');
    const token = await createToken(db, 'h-web');
    const PASSWORD = 'correct horse battery staple';
    const passwd = spawnSync(process.execPath, [CLI, 'token', 'passwd', '--db', db, '--name', 'web-admin'], { input: `${PASSWORD}\n`, encoding: 'utf8', timeout: 30_000 });
    expect(passwd.status, passwd.stderr).toBe(0);
    const [a, b] = await Promise.all([startTestCollector(work, db), startTestCollector(work, db)]);
    expect([...a.logs, ...b.logs].filter((l) => /dashboard/.test(String(l.msg)) && l.level !== undefined && Number(l.level) >= 40)).toEqual([]);
    const login = async (port: number, body: object) => {
      const res = await fetch(`http://127.0.0.1:${port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, await res.clone().text()).toBe(200);
      const cookie = /^(ldg_session=[^;]+)/.exec(res.headers.get('set-cookie') ?? '')![1]!;
      return { cookie, csrf: ((await res.json()) as { csrf: string }).csrf };
    };
    const ui = async (port: number, path: string, s: { cookie: string; csrf?: string }, init: { method?: string; body?: unknown } = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method: init.method ?? 'GET',
        headers: { cookie: s.cookie, ...(s.csrf ? { 'x-ldguard-csrf': s.csrf } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    };
    const s = await login(a.port, { name: 'web-admin', password: PASSWORD });
    // B's live feed, opened with the session A gave, sees the alert A stores.
    const feed = new WebSocket(`ws://127.0.0.1:${b.port}/ui/live`, { headers: { cookie: s.cookie, origin: `http://127.0.0.1:${b.port}` } });
    const frames: Array<Record<string, any>> = [];
    feed.on('message', (d) => frames.push(JSON.parse(String(d)) as Record<string, any>));
    const feedClosed = new Promise<number>((resolve) => feed.on('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => feed.once('open', resolve).once('error', reject));
    const onA = await agent(a.port, token, 'agent-web');
    const x = makeAlert({ agentId: 'agent-web', host: 'web-pg', path: '/lib64/ld-linux-x86-64.so.2.needle-web' });
    await sendBatch(onA, 1, [JSON.stringify(x)]);
    await waitFor(() => frames.find((f) => f.type === 'alerts' && f.alerts.some((al: Alert) => al.kibana.alert.uuid === x.kibana.alert.uuid)), 5_000, "A's alert on B's dashboard feed");
    // On B with A's session: the list, a search, the alert, a workflow change A then shows.
    const list = await ui(b.port, '/ui/api/alerts?host=web-pg', s);
    expect(list.status).toBe(200);
    expect(list.body.alerts.map((al: Alert) => al.kibana.alert.uuid)).toEqual([x.kibana.alert.uuid]);
    expect((await ui(b.port, '/ui/api/alerts?q=NEEDLE-web', s)).body).toMatchObject({ alerts: [expect.objectContaining({ kibana: expect.objectContaining({ alert: expect.objectContaining({ uuid: x.kibana.alert.uuid }) }) })], order: 'received', indexLag: 0 });
    expect((await ui(b.port, `/ui/api/alerts/${x.kibana.alert.uuid}`, s)).body.alert.file.path).toBe(x.file.path);
    expect((await ui(b.port, `/ui/api/alerts/${x.kibana.alert.uuid}`, s, { method: 'PATCH', body: { status: 'acknowledged' } })).status).toBe(200);
    const onAView = await ui(a.port, `/ui/api/alerts/${x.kibana.alert.uuid}`, s);
    expect(onAView.body.alert.kibana.alert.workflow_status).toBe('acknowledged');
    expect(onAView.body.history).toEqual([expect.objectContaining({ status: 'acknowledged', by: 'web-admin' })]);
    expect((await ui(a.port, '/ui/api/overview?window=24h', s)).body).toMatchObject({ status: { acknowledged: 1 } });
    expect((await ui(a.port, '/ui/api/facets', s)).body.hosts).toContain('web-pg');
    // Logout on A: B refuses the session at once, and closes its feed (4401) at its next session check.
    const t0 = performance.now();
    expect((await ui(a.port, '/ui/logout', s, { method: 'POST' })).status).toBe(200);
    expect((await ui(b.port, '/ui/api/session', s)).status).toBe(401);
    expect(await feedClosed).toBe(4401);
    console.log(`logout on A to B's dashboard feed closed: ${(performance.now() - t0).toFixed(0)} ms (sessions re-checked every second)`);
    // A token login on B, then the token revoked through the CLI: refused on both.
    const t = await login(b.port, { token: (await runCli(['token', 'rotate', '--db', db, '--name', 'web-admin'])).stdout.trim() });
    expect((await ui(a.port, '/ui/api/session', t)).status).toBe(200);
    expect((await runCli(['token', 'revoke', '--db', db, '--name', 'web-admin'])).status).toBe(0);
    expect((await ui(a.port, '/ui/api/session', t)).status).toBe(401);
    expect((await ui(b.port, '/ui/api/session', t)).status).toBe(401);
    // The audit log, kept in the database, read through the CLI.
    const audit = await runCli(['token', 'audit', '--db', db, '--json']);
    expect(audit.status, audit.stderr).toBe(0);
    const rows = audit.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; token_name: string | null; actor: string });
    expect(rows.filter((r) => r.token_name === 'web-admin').map((r) => r.action)).toEqual(['create', 'passwd', 'login', 'rotate', 'login', 'revoke']);
    expect(audit.stdout).not.toContain(PASSWORD);
    expect(audit.stdout).not.toContain('ldg_');
    await expect(pgc.query('ldguard', 'DELETE FROM audit_log')).rejects.toThrow(/LDG_ERR_AUDIT_APPEND_ONLY/);
    feed.terminate();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('migrates once when several collectors start together, and finds the schema current after', async () => {
    const fresh = await pgc.createDb('race');
    const cs = await Promise.all([startTestCollector(work, fresh), startTestCollector(work, fresh), startTestCollector(work, fresh)]);
    const versions = await pgc.query<{ version: number }>('race', 'SELECT version FROM ldguard_schema ORDER BY version');
    // Each migration applied once, in order, whoever took the lock.
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    await Promise.all(cs.map((c) => c.stop()));
    expect(existsSync(join(process.cwd(), 'postgres:'))).toBe(false);
  });
});

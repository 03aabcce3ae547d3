// An agent with several collectors (issue 21, item 3): it prefers the first, uses the next while the
// first is unreachable, goes back to the first once it answers again, holds one connection at a
// time, and every alert is stored exactly once across the moves. Real collectors (child processes,
// SQLite), the agent's real delivery (WebSocketSink with its spool), real connections on loopback.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import { callApi, createToken, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeAlert, makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-failover-');
let sink: WebSocketSink | undefined;
afterAll(async () => {
  await sink?.close();
});

/** The alerts a collector stored, by uuid. */
async function stored(c: TestCollector, admin: string): Promise<string[]> {
  const r = await callApi(c.port, '/api/alerts?limit=1000', admin);
  expect(r.status).toBe(200);
  return (r.body.alerts as Array<{ kibana: { alert: { uuid: string } } }>).map((a) => a.kibana.alert.uuid);
}

/** Whether a collector has this agent connected now (its fleet view). */
async function connected(c: TestCollector, admin: string): Promise<boolean> {
  const r = await callApi(c.port, '/api/agents', admin);
  return (r.body.agents as Array<{ agentId: string; online: boolean }>).some((a) => a.agentId === 'agent-fo' && a.online);
}

describe('an agent with two collectors', () => {
  it('fails over to the second, returns to the first when it is back, one connection at a time, each alert stored once', { timeout: 60_000 }, async () => {
    // The same tokens in both databases: the first's file copied before either starts.
    const dbA = join(work, 'a.db');
    const dbB = join(work, 'b.db');
    const admin = await createToken(dbA, 'ops', 'admin');
    const token = await createToken(dbA, 'host-fo');
    copyFileSync(dbA, dbB);
    // The first collector's port, with nothing listening on it yet.
    const probe = await startTestCollector(work, join(work, 'probe.db'));
    const portA = probe.port;
    await probe.stop();
    const b = await startTestCollector(work, dbB);

    sink = await WebSocketSink.open({
      url: [`ws://127.0.0.1:${portA}`, `ws://127.0.0.1:${b.port}`],
      token,
      spoolDir: join(work, 'spool'),
      spoolMaxBytes: 64 * 1024 * 1024,
      facts: () => makeFacts('agent-fo', 'host-fo'),
      heartbeatMs: 500,
      backoffInitialMs: 50,
      backoffMaxMs: 400,
      retryFirstMs: 1_000,
    });
    const sent: string[] = [];
    const send = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const a = makeAlert({ agentId: 'agent-fo', host: 'host-fo' });
        await sink!.send(a);
        sent.push(a.kibana.alert.uuid);
      }
    };

    // The first is down: the second takes the alerts.
    await waitFor(() => sink!.health().connected, 10_000, 'a connection to the second collector');
    expect(sink.health().url).toBe(`ws://127.0.0.1:${b.port}/agent`);
    await send(20);
    await waitFor(async () => (await stored(b, admin)).length === 20, 10_000, 'twenty alerts at the second');

    // The first comes back on its port: the agent returns to it, leaving the second.
    const a = await startTestCollector(work, dbA, '', portA);
    await waitFor(() => sink!.health().url === `ws://127.0.0.1:${portA}/agent` && sink!.health().connected, 15_000, 'the agent back on the first');
    await waitFor(async () => !(await connected(b, admin)), 5_000, 'the second to see the agent gone');
    expect(await connected(a, admin)).toBe(true);
    await send(20);
    await waitFor(async () => sink!.health().spool.depth === 0, 10_000, 'the spool to drain');

    // The first goes down mid-stream: the rest goes to the second.
    await a.stop('SIGKILL');
    await send(20);
    await waitFor(async () => sink!.health().spool.depth === 0 && sink!.health().url.includes(String(b.port)), 15_000, 'the rest at the second');

    const atA = await stored(await startTestCollector(work, dbA), admin);
    const atB = await stored(b, admin);
    // Once each, across both: nothing acked by one was sent to the other. (The collectors' own
    // alerts, such as the second's notice that the agent went quiet there, are not the agent's.)
    const mine = new Set(sent);
    expect([...atA, ...atB].filter((u) => mine.has(u)).sort()).toEqual([...sent].sort());
  });
});

// Tampering an agent cannot see alone (#18 item 3, collector/src/continuity.ts): the real collector
// (child process, SQLite in a temp dir) and agents speaking the protocol over raw WebSockets, each
// with its own token. A known host.id that returns with a new agent.id, a lower baseline
// generation, or a seal never reported, and an agent gone silent, must each be an alert of the
// collector's own, once; an agent too old to send host id and seal is accepted and not judged.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { BaselineSeal } from '../../shared/protocol.js';
import { callApi, createToken, rawAgent, startTestCollector, type RawAgent, type TestCollector } from '../helpers/collector.js';
import { makeFacts, waitFor } from '../helpers/delivery.js';
import { tempDir } from '../helpers/temp.js';

const work = tempDir('ldg-continuity-');
const db = join(work, 'collector.db');
let c: TestCollector;
let admin = '';
const digest = (s: string) => createHash('sha256').update(s).digest('hex');
const seal = (generation: number, text = `baseline ${generation}`): BaselineSeal => ({ generation, sha256: digest(text) });

beforeAll(async () => {
  admin = await createToken(db, 'ops', 'admin');
  c = await startTestCollector(work, db);
});

/** Each agent's token: one per agent id, as the collector binds them. */
const tokens = new Map<string, string>();

/** Says hello as `agentId` of `hostId` (none: an agent older than host ids) with that agent's token. */
async function hello(agentId: string, hostId: string | undefined, baseline?: BaselineSeal, heartbeatMs = 10_000): Promise<RawAgent> {
  if (!tokens.has(agentId)) tokens.set(agentId, await createToken(db, agentId));
  const a = await rawAgent(c.port, tokens.get(agentId)!);
  const facts = { ...makeFacts(agentId, `${hostId ?? agentId}-name`), ...(hostId ? { hostId } : {}), ...(baseline ? { baseline } : {}) };
  a.ws.send(JSON.stringify({ type: 'hello', v: 1, heartbeatMs, agent: facts }));
  return a;
}

/** The heartbeat an agent sends after saving its baseline. */
function saved(a: RawAgent, baseline: BaselineSeal): void {
  a.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, health: { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false }, baseline } }));
}

async function notices(kind: string): Promise<Array<Record<string, any>>> {
  const list = (await callApi(c.port, '/api/alerts?limit=1000', admin)).body.alerts as Array<Record<string, any>>;
  return list.filter((x) => x.ldguard?.notice?.kind === kind);
}

/** Waits until the collector has logged that it judged (connected) this agent. */
const connected = (agentId: string) => waitFor(() => c.logs.some((l) => l.msg === 'agent connected' && l.agentId === agentId), 5000, `${agentId} to connect`);

describe('the collector judges a host\'s continuity', () => {
  it('alerts when a known host.id returns with a new agent.id', async () => {
    const first = await hello('agent-r1', 'host-replaced', seal(1));
    await connected('agent-r1');
    saved(first, seal(2));
    first.ws.close();
    const second = await hello('agent-r2', 'host-replaced', seal(3)); // a higher generation: no baseline alert
    const [n] = await waitFor(async () => {
      const l = await notices('agent_replaced');
      return l.length > 0 ? l : null;
    }, 5000, 'the agent_replaced notice');
    expect(n).toMatchObject({ rule: { id: 'ldguard-collector-agent-replaced' }, host: { id: 'host-replaced' }, kibana: { alert: { severity: 'high' } } });
    expect(n!.ldguard.notice.reason).toContain('was agent agent-r1 and now says it is agent agent-r2');
    expect(n!.ldguard.notice.claimed_agent_id).toBe('agent-r2');
    expect((await notices('baseline_rolled_back')).filter((x) => x.host.id === 'host-replaced')).toEqual([]);
    expect((await notices('baseline_unknown')).filter((x) => x.host.id === 'host-replaced')).toEqual([]);
    second.ws.close();
  });

  it('alerts when a host\'s baseline generation goes back', async () => {
    const a = await hello('agent-g', 'host-rollback', seal(4));
    await connected('agent-g');
    saved(a, seal(5));
    a.ws.close();
    await a.closed;
    await hello('agent-g', 'host-rollback', seal(4)); // a copy of an older baseline put back
    const [n] = await waitFor(async () => {
      const l = (await notices('baseline_rolled_back')).filter((x) => x.host.id === 'host-rollback');
      return l.length > 0 ? l : null;
    }, 5000, 'the baseline_rolled_back notice');
    expect(n!.ldguard.notice.reason).toContain('generation 4, lower than 5');
    expect(await notices('agent_replaced')).not.toContainEqual(expect.objectContaining({ host: expect.objectContaining({ id: 'host-rollback' }) }));
  });

  it('judges a host\'s next seal against the one before it even while that one waits for the writer', async () => {
    const a = await hello('agent-w', 'host-writer-behind', seal(4));
    await connected('agent-w');
    // The database's write lock held from outside: the collector's writer can store nothing now.
    const hold = new Database(db, { timeout: 10_000 });
    hold.exec('BEGIN IMMEDIATE');
    try {
      saved(a, seal(5));
      a.ws.close();
      await a.closed;
      await hello('agent-w', 'host-writer-behind', seal(4)); // the older copy, back before 5 is stored
      await waitFor(() => c.logs.filter((l) => l.msg === 'agent connected' && l.agentId === 'agent-w').length === 2, 5000, 'the second hello');
    } finally {
      hold.exec('COMMIT');
      hold.close();
    }
    const [n] = await waitFor(async () => {
      const l = (await notices('baseline_rolled_back')).filter((x) => x.host.id === 'host-writer-behind');
      return l.length > 0 ? l : null;
    }, 10_000, 'the baseline_rolled_back notice');
    expect(n!.ldguard.notice.reason).toContain('generation 4, lower than 5');
  });

  it('alerts on a seal never reported at a generation already recorded, and not on one made while the collector was out of reach', async () => {
    const a = await hello('agent-u', 'host-unknown', seal(7));
    await connected('agent-u');
    a.ws.close();
    await a.closed;
    const b = await hello('agent-u', 'host-unknown', seal(9)); // two saves it could not report: progress
    await waitFor(() => c.logs.filter((l) => l.msg === 'agent connected' && l.agentId === 'agent-u').length === 2, 5000, 'the second hello');
    b.ws.close();
    await b.closed;
    await hello('agent-u', 'host-unknown', seal(9, 'edited by hand, generation kept'));
    const [n] = await waitFor(async () => {
      const l = (await notices('baseline_unknown')).filter((x) => x.host.id === 'host-unknown');
      return l.length > 0 ? l : null;
    }, 5000, 'the baseline_unknown notice');
    expect(n!.ldguard.notice.reason).toContain(`generation 9 with sha256 ${digest('edited by hand, generation kept')}`);
    expect((await notices('baseline_unknown')).filter((x) => x.host.id === 'host-unknown')).toHaveLength(1);
    expect((await notices('baseline_rolled_back')).filter((x) => x.host.id === 'host-unknown')).toEqual([]);
  });

  it('accepts an agent older than host ids and seals, and judges nothing about it', async () => {
    const a = await hello('agent-old', undefined);
    await connected('agent-old');
    a.ws.send(JSON.stringify({ type: 'heartbeat', v: 1, health: { spoolDepth: 0, spoolBytes: 0, spoolOverflow: 0, spoolTorn: 0, eventsLost: 0, source: { name: 'fanotify', degraded: false } } }));
    const agents = await waitFor(async () => {
      const l = (await callApi(c.port, '/api/agents', admin)).body.agents as Array<Record<string, any>>;
      return l.find((x) => x.agentId === 'agent-old' && x.health) ? l : null;
    }, 5000, 'the old agent\'s heartbeat');
    expect(agents.find((x) => x.agentId === 'agent-old')).toMatchObject({ connected: true });
    expect(a.messages.filter((m) => m.type === 'error')).toEqual([]);
    a.ws.close();
  });

  it('alerts once when an agent goes silent past its heartbeat period, however many sweeps follow', async () => {
    const a = await hello('agent-quiet', 'host-quiet', seal(1), 200);
    await connected('agent-quiet');
    a.ws.terminate(); // no goodbye: as a killed agent or a cut cable
    const mine = async () => (await notices('agent_silent')).filter((x) => x.ldguard.notice.claimed_agent_id === 'agent-quiet');
    const [n] = await waitFor(async () => ((await mine()).length > 0 ? mine() : null), 10_000, 'the agent_silent notice');
    expect(n).toMatchObject({ rule: { id: 'ldguard-collector-agent-silent' }, host: { name: 'host-quiet-name' } });
    // Sweeps run every 150 ms here (TEST_COLLECTOR_CONFIG): let several more pass, then count.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await mine()).toHaveLength(1);
  });
});

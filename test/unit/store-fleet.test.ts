// The fleet's numbers (/metrics, the dashboard) come from a scan of every agent row, which the
// collector runs in its checkpointer thread so that it never holds the event loop; without worker
// threads (`ldguard token`, tools) the same query runs in place. Both must count alike.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore as Store } from '../../collector/src/store/sqlite.js';
import { tempDir } from '../helpers/temp.js';

function seed(path: string): void {
  const db = new Database(path);
  const ins = db.prepare(`INSERT INTO agents (agent_id, hostname, health, facts, spool_depth, events_lost, spool_overflow, first_seen, last_seen, online)
    VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)`);
  ins.run('a1', 'web-1', JSON.stringify({ source: { degraded: false } }), null, 3, 0, 0, 1);
  // Degraded by its last health report: its attribution fell back.
  ins.run('a2', 'web-2', JSON.stringify({ source: { degraded: false }, attribution: { degraded: true } }), null, 0, 7, 0, 1);
  // Offline, and degraded by the facts of its hello (it never sent health).
  ins.run('a3', 'web-3', null, JSON.stringify({ source: { degraded: true } }), 10, 0, 2, 0);
  ins.run('a4', 'web-4', null, null, null, null, null, 1);
  db.close();
}

const EXPECTED = { total: 4, online: 3, offline: 1, degraded: 2, attention: 2, spoolDepth: 13, eventsLost: 7, spoolOverflow: 2 };

describe('Store.fleet', () => {
  it('counts the fleet in the checkpointer thread', async () => {
    const path = join(tempDir('ldg-fleet-'), 'c.db');
    await Store.open(path).close();
    seed(path);
    const store = Store.open(path, { workers: true });
    try {
      expect(await store.fleet()).toEqual(EXPECTED);
    } finally {
      await store.close();
    }
  });

  it('counts the same without worker threads', async () => {
    const path = join(tempDir('ldg-fleet-'), 'c.db');
    await Store.open(path).close();
    seed(path);
    const store = Store.open(path);
    try {
      expect(await store.fleet()).toEqual(EXPECTED);
    } finally {
      await store.close();
    }
  });
});

describe('Store.fleet against rows an older build let in', () => {
  it('counts an agent whose stored health SQLite cannot read as saying nothing, instead of failing every scrape (F2)', async () => {
    const path = join(tempDir('ldg-fleet-'), 'c.db');
    await Store.open(path).close();
    seed(path);
    const db = new Database(path);
    const deep = `${'{"a":'.repeat(1500)}1${'}'.repeat(1500)}`;
    db.prepare('INSERT INTO agents (agent_id, hostname, health, facts, first_seen, last_seen, online) VALUES (?, ?, ?, ?, 0, 0, 1)').run('a5', 'web-5', deep, deep);
    db.close();
    const store = Store.open(path, { workers: true });
    try {
      expect(await store.fleet()).toEqual({ ...EXPECTED, total: 5, online: 4 });
    } finally {
      await store.close();
    }
  });
});

describe('the quarantine', () => {
  it('keeps at most 1,000 rows per agent, so one agent cannot push the others\' out', async () => {
    const path = join(tempDir('ldg-quarantine-'), 'c.db');
    const store = Store.open(path, { workers: true });
    const row = (agentId: string, seq: number) => ({ agentId, tokenName: agentId, seq, uuid: null, reason: 'r', text: '{}', size: 2, received: 0 });
    try {
      const commit = (quarantine: ReturnType<typeof row>[]) => store.commit({ alerts: [], hellos: [], heartbeats: [], seals: [], seen: new Map(), bindings: [], quarantine });
      await commit([row('quiet', 1), row('quiet', 2)]);
      for (let i = 0; i < 3; i++) await commit(Array.from({ length: 500 }, (_, k) => row('noisy', 500 * i + k + 1)));
      const counts = Object.fromEntries(await Promise.all(['quiet', 'noisy'].map(async (a) => [a, (await store.listQuarantine({ limit: 5000, agentId: a })).length])));
      expect(counts).toEqual({ quiet: 2, noisy: 1000 });
      // The newest are the ones kept.
      expect((await store.listQuarantine({ limit: 1, agentId: 'noisy' }))[0]!.seq).toBe(1500);
    } finally {
      await store.close();
    }
  });
});

describe('exception counts for /metrics', () => {
  it('sums each rule and item over the agents\' last health, skipping rows SQLite cannot read', async () => {
    const path = join(tempDir('ldg-excepted-'), 'c.db');
    await Store.open(path).close();
    const db = new Database(path);
    const ins = db.prepare('INSERT INTO agents (agent_id, hostname, health, first_seen, last_seen, online) VALUES (?, ?, ?, 0, 0, 1)');
    const health = (counts: Array<[string, string, string, number]>) => JSON.stringify({ source: { degraded: false }, exceptions: counts.map(([ruleId, listId, itemId, count]) => ({ ruleId, listId, itemId, count })) });
    ins.run('a1', 'web-1', health([['r1', 'pm', 'dpkg', 3], ['r1', 'pm', 'rpm', 1]]));
    ins.run('a2', 'web-2', health([['r1', 'pm', 'dpkg', 4]]));
    ins.run('a3', 'web-3', `${'{"a":'.repeat(1500)}1${'}'.repeat(1500)}`);
    db.close();
    const store = Store.open(path, { workers: true });
    try {
      expect(await store.exceptionCounts()).toEqual([
        { ruleId: 'r1', listId: 'pm', itemId: 'dpkg', count: 7 },
        { ruleId: 'r1', listId: 'pm', itemId: 'rpm', count: 1 },
      ]);
    } finally {
      await store.close();
    }
    const { Metrics } = await import('../../collector/src/metrics.js');
    expect(Metrics.labeled('x', 'h', [{ labels: { item_id: 'a"b\\c\nd' }, value: 2 }])).toBe('# HELP x h\n# TYPE x gauge\nx{item_id="a\\"b\\\\c\\nd"} 2\n');
  });
});

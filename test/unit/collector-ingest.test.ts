// The ingest queue's scheduling against a stand-in store whose commits the test settles by hand:
// how big a group commit may be, when paused readers resume, and that acks wait for the commit.
import { describe, expect, it } from 'vitest';
import { readAgentFrame } from '../../collector/src/frame.js';
import { Ingest } from '../../collector/src/ingest.js';
import { Metrics } from '../../collector/src/metrics.js';
import { IngestPressure } from '../../collector/src/store/pressure.js';
import { batchSize, type CommitResult, type CommitWork, type Store } from '../../collector/src/store/store.js';
import { createLogger } from '../../shared/log.js';
import { alertsFrame } from '../../shared/protocol.js';
import { makeAlert } from '../helpers/delivery.js';

class FakeStore {
  readonly pressure = new IngestPressure();
  readonly commits: Array<{ work: CommitWork; resolve: (r: CommitResult) => void }> = [];
  commit(work: CommitWork): Promise<CommitResult> {
    return new Promise((resolve) => this.commits.push({ work, resolve }));
  }
  /** Settles the oldest commit in flight, as stored. */
  settle(): void {
    const c = this.commits.shift()!;
    c.resolve({ inserted: Array.from({ length: alertsOf(c.work) }, (_, i) => i), duplicates: 0, refusedTokens: [], refusedAlerts: 0 });
  }
}

const alertsOf = (w: CommitWork) => w.alerts.reduce((n, b) => n + batchSize(b), 0);

const tick = () => new Promise((r) => setImmediate(r));

/** A frame of `n` alerts from agent `agentId`, read as the server reads it. */
function batch(seq: number, n: number, agentId = 'a1') {
  const read = readAgentFrame(Buffer.from(alertsFrame(seq, Array.from({ length: n }, () => JSON.stringify(makeAlert({ agentId }))))));
  if (!read.ok || read.value.type !== 'alerts') throw new Error('the test frame should read');
  return { msg: read.value, invalid: read.invalid, raw: read.raw };
}

/** Submits `b` as agent `agentId` with token `token`. */
function submit(ingest: Ingest, agentId: string, token: string, b: ReturnType<typeof batch>, ack: (upTo: number) => void) {
  ingest.submitAlerts({ agentId, tokenName: token, tokenHash: `h-${token}` }, b.msg, b.invalid, b.raw, ack, () => undefined);
}

function setup(highWaterBytes: number) {
  const store = new FakeStore();
  const ingest = new Ingest(store as unknown as Store, new Metrics(), createLogger('test', 'silent'), {
    maxCommitAlerts: 5000, highWater: 20_000, highWaterBytes, offlineAfterMissedHeartbeats: 3,
  });
  return { store, ingest };
}

describe('ingest', () => {
  it('acks a batch only once its commit is settled, in order, and groups what arrived meanwhile', async () => {
    const { store, ingest } = setup(16 * 1024 * 1024);
    const acks: number[] = [];
    submit(ingest, 'a1', 't1', batch(1, 5), (upTo) => acks.push(upTo));
    await tick();
    expect(store.commits).toHaveLength(1);
    submit(ingest, 'a1', 't1', batch(6, 5), (upTo) => acks.push(upTo));
    submit(ingest, 'a2', 't2', batch(1, 5, 'a2'), (upTo) => acks.push(100 + upTo));
    await tick();
    expect(store.commits.map((c) => alertsOf(c.work))).toEqual([5, 10]);
    expect(acks).toEqual([]);
    store.settle();
    await tick();
    expect(acks).toEqual([5]);
    store.settle();
    await tick();
    expect(acks).toEqual([5, 10, 105]);
    expect(store.commits[0]!).toBeUndefined();
  });

  it('bounds a commit to an eighth of the high-water bytes, and resumes readers one commit under the mark', async () => {
    const one = batch(1, 1);
    const docBytes = one.raw![0]!.length;
    // Room for 80 alerts: commits of at most 10.
    const { store, ingest } = setup(80 * docBytes);
    let drained = 0;
    ingest.on('drain', () => (drained += 1));
    for (let i = 0; i < 90; i += 5) submit(ingest, 'a1', 't1', batch(1 + i, 5), () => undefined);
    expect(ingest.congested).toBe(true);
    await tick();
    await tick();
    expect(store.commits.map((c) => alertsOf(c.work))).toEqual([10, 10]);
    // 90 pending: committing 10 leaves 80, not yet under 70 (7/8 of 80).
    store.settle();
    await tick();
    expect(drained).toBe(0);
    store.settle();
    await tick();
    expect(ingest.pendingAlerts).toBe(70);
    expect(drained).toBe(1);
    expect(ingest.congested).toBe(false);
    for (const c of store.commits) expect(alertsOf(c.work)).toBeLessThanOrEqual(10);
  });

  it('tells the indexers to step aside once a batch waits behind two commits in flight, not before', async () => {
    const { store, ingest } = setup(16 * 1024 * 1024);
    submit(ingest, 'a1', 't1', batch(1, 5), () => undefined);
    await tick();
    submit(ingest, 'a1', 't1', batch(6, 5), () => undefined);
    await tick();
    expect(store.commits).toHaveLength(2);
    expect(store.pressure.active()).toBe(false);
    submit(ingest, 'a1', 't1', batch(11, 5), () => undefined);
    expect(store.pressure.active()).toBe(true);
  });
});

// The SQLite store's ingest alone, by the two ways alerts reach it (collector/src/frame.ts): as
// batches the frame's scan read (the fast way, nearly all the traffic: the writer gets the text
// columns and the group keys as byte ranges of the frame) and as rows of parsed alerts (the general
// way: the writer parses each document for its group keys). Alerts of the bench's shape
// (alert-doc.ts, ~2 kB) from 100 agents, a file package on every 4th and a held-back record on
// every 10th, in frames of 100 and commits of 1,000 (as group-reads.ts fills); the frames are
// built and scanned before the clock starts, so what is timed is Store.commit. Figures printed,
// nothing asserted.
//
//   node dist/test/bench/store-ingest.js [alerts]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanAlertsFrame, scannedAlert } from '../../collector/src/frame.js';
import { openStore } from '../../collector/src/store/open.js';
import type { AlertBatch, CommitWork } from '../../collector/src/store/store.js';
import { alertsFrame } from '../../shared/protocol.js';
import { alert } from './alert-doc.js';

const AGENTS = 100;
const PER_FRAME = 100;
const PER_COMMIT = 1_000;
const RUNS = 3;

/** The frames of one commit, each as its agent sent it and as the scan read it. */
function commitFrames(first: number): Array<{ agentId: string; frame: Buffer }> {
  const out = [];
  for (let f = 0; f < PER_COMMIT / PER_FRAME; f++) {
    const agent = (first / PER_FRAME + f) % AGENTS;
    const docs = Array.from({ length: PER_FRAME }, (_, k) => {
      const i = first + f * PER_FRAME + k;
      const d = alert(agent, i) as Record<string, any>;
      if (i % 4 === 0) d.ldguard.file_package = { manager: 'dpkg', name: 'libc6', verdict: 'verified', reason: 'matches' };
      if (i % 10 === 9) d.ldguard.held_back_by = `summary-${agent}`;
      return JSON.stringify(d);
    });
    out.push({ agentId: `load-agent-${agent}`, frame: Buffer.from(alertsFrame(1 + first + f, docs)) });
  }
  return out;
}

function batches(frames: Array<{ agentId: string; frame: Buffer }>, way: 'scanned' | 'rows', received: number): AlertBatch[] {
  return frames.map(({ agentId, frame }) => {
    const scanned = scanAlertsFrame(frame, agentId);
    if (!scanned) throw new Error('the bench\'s frame was not taken by the scan');
    if (way === 'scanned') return { scanned, agentId, tokenName: agentId, tokenHash: '', received };
    const rows = Array.from({ length: scanned.count }, (_, i) => {
      const a = scannedAlert(scanned, i);
      return { ...a, doc: Buffer.from(a.doc), agentId, tokenName: agentId, received, future: false };
    });
    return { rows, tokenHash: '' };
  });
}

async function run(way: 'scanned' | 'rows', total: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'ldg-bench-ingest-'));
  try {
    const store = await openStore(join(dir, 'collector.db'), { collector: true });
    let ms = 0;
    try {
      for (let i = 0; i < total; i += PER_COMMIT) {
        const work: CommitWork = { alerts: batches(commitFrames(i), way, Date.now()), hellos: [], heartbeats: [], seals: [], seen: new Map(), quarantine: [], bindings: [] };
        const t0 = performance.now();
        await store.commit(work);
        ms += performance.now() - t0;
      }
    } finally {
      await store.close();
    }
    return total / (ms / 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const total = Number(process.argv[2] ?? 100_000);
for (const way of ['scanned', 'rows'] as const) {
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) rates.push(await run(way, total));
  console.log(`SQLite store, ${total} alerts by ${way === 'scanned' ? 'the scan (fast way)' : 'rows (general way)'}: ${rates.map((x) => Math.round(x)).join(', ')} alerts/s`);
}

// The indexer's thread (see indexer.ts). It lowers its own priority to the lowest (nice 19: on
// Linux a thread is a task with its own nice value), so ingest and the API always run first and the
// index uses what CPU they leave. Busy while behind (batches back to back), idle otherwise (a look
// every IDLE_MS, growing to IDLE_MAX_MS while there is nothing new). Stops on 'stop' after the
// batch in progress; reports { indexed, cursor } batches.
//
// While ingest floods (the main thread says so: store/pressure.ts) it steps aside: small batches,
// and at most FLOOD_DUTY of the time, then catches up at full speed once the flood is over. Nice 19
// was not enough: on the 2-core box at 20,000 alerts/s, indexing back to back (FTS5, ~100 µs an
// alert, it soaked up the rest of a core) raised ingest's ack latency 2-4 times, p50 16-20 ms
// against 4-7 ms without it. The cost is that search and the counts lag behind a flood (the page
// shows the lag).
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { FLOOD_BATCH, FLOOD_DUTY, IngestPressure } from '../store/pressure.js';
import { Indexer } from './indexer.js';

const IDLE_MS = 100;
const IDLE_MAX_MS = 1000;
let wait = IDLE_MS;
const BATCH = 500;

const { main, side, pressure: shared } = workerData as { main: string; side: string; pressure: SharedArrayBuffer };
const pressure = new IngestPressure(shared);
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch {
  // Not Linux, or not allowed: the index simply competes on equal terms.
}

const indexer = new Indexer(main, side);
let stopping = false;
let timer: NodeJS.Timeout | undefined;
parentPort!.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  stopping = true;
  clearTimeout(timer);
  indexer.close();
  parentPort!.close();
});

function tick(): void {
  if (stopping) return;
  let n = 0;
  const flooding = pressure.active();
  const t0 = performance.now();
  try {
    n = indexer.step(flooding ? FLOOD_BATCH : BATCH);
    if (n > 0) parentPort!.postMessage({ indexed: n, cursor: indexer.cursor });
  } catch (err) {
    // SQLITE_BUSY past the timeout, a full disk: try again later, never take the collector down.
    parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) });
    timer = setTimeout(tick, 5_000);
    return;
  }
  // A look that finds nothing doubles the wait, up to IDLE_MAX_MS: an idle collector does not
  // wake ten times a second, and the first alert after a quiet spell is searchable within a second.
  wait = n > 0 ? IDLE_MS : Math.min(IDLE_MAX_MS, wait * 2);
  if (flooding && n > 0) timer = setTimeout(tick, (performance.now() - t0) * (1 / FLOOD_DUTY - 1));
  else timer = n === BATCH ? setTimeout(tick, 0) : setTimeout(tick, wait);
}
tick();

// The indexer's thread (see indexer.ts). It lowers its own priority to the lowest (nice 19: on
// Linux a thread is a task with its own nice value), so ingest and the API always run first and the
// index uses what CPU they leave. Busy while behind (batches back to back), idle otherwise (a look
// every IDLE_MS). Stops on 'stop' after the batch in progress; reports { indexed, cursor } batches.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { Indexer } from './indexer.js';

const IDLE_MS = 100;
const BATCH = 500;

const { main, side } = workerData as { main: string; side: string };
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
  try {
    n = indexer.step(BATCH);
    if (n > 0) parentPort!.postMessage({ indexed: n, cursor: indexer.cursor });
  } catch (err) {
    // SQLITE_BUSY past the timeout, a full disk: try again later, never take the collector down.
    parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) });
    timer = setTimeout(tick, 5_000);
    return;
  }
  timer = n === BATCH ? setTimeout(tick, 0) : setTimeout(tick, IDLE_MS);
}
tick();

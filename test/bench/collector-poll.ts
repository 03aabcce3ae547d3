// Worker thread: notices alerts as the collector commits them, by polling its SQLite database
// (read-only; WAL lets a reader run beside the writer) every millisecond, and posts each new
// alert's file path with the wall-clock time it was first seen. A thread of its own, so the bench's
// main loop, busy spawning writers, does not delay the stamp.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface Data {
  db: string;
  intervalMs: number;
}

const { db, intervalMs } = workerData as Data;
const port = parentPort!;
const conn = new Database(db, { readonly: true, fileMustExist: true });
const query = conn.prepare<[number], { id: number; path: string | null }>("SELECT id, json_extract(doc, '$.file.path') AS path FROM alerts WHERE id > ? ORDER BY id");
let last = 0;
let stopped = false;

const tick = () => {
  if (stopped) return;
  try {
    const rows = query.all(last);
    const at = String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)));
    for (const r of rows) {
      last = r.id;
      if (r.path) port.postMessage({ path: r.path, at });
    }
  } catch (err) {
    port.postMessage({ error: (err as Error).message });
    stopped = true;
    conn.close();
    return;
  }
  setTimeout(tick, intervalMs);
};

port.on('message', (m) => {
  if (m === 'stop') {
    stopped = true;
    conn.close();
    port.close();
  }
});
tick();

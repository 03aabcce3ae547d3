// Whether ingest is under pressure, told by the main thread to the threads that index behind it
// (search, hosts), so that they step aside at once. Each used to judge for itself: the search
// indexer from the store's rate over 200 ms, the host index not at all, and at the start of a
// surge (2,000 to 20,000 alerts/s) both went on indexing back to back while the writer fell
// behind: with both switched off the phase's ack p99 was 246-291 ms against 505-678 with them on,
// first seconds 274-321 against 542-668 (bench runs of 2026-11-26). The main thread sees a surge
// in its first batches: the arrival rate, and commits queueing behind the writer.
//
// The state is one deadline in a SharedArrayBuffer: a flag that expires by itself, so an idle
// collector needs no timer to lift it.

/** Alerts arriving a second past which ingest is flooding. */
export const FLOOD_RATE = 2_000;
/** Arrivals are counted in windows this long; a window past FLOOD_RATE's share floods at once. */
const WINDOW_MS = 100;
/** How long a sign of pressure holds the indexers back. */
const HOLD_MS = 1_000;
/** While it holds, an indexer takes batches of FLOOD_BATCH alerts for at most FLOOD_DUTY of the time. */
export const FLOOD_BATCH = 100;
export const FLOOD_DUTY = 0.05;

export class IngestPressure {
  readonly buffer: SharedArrayBuffer;
  private readonly until: BigInt64Array;
  private windowStart = 0;
  private windowCount = 0;
  private held = 0;

  /** The main thread makes one; an indexing thread wraps the buffer it was given. */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(8);
    this.until = new BigInt64Array(this.buffer);
  }

  /** Main thread: `n` alerts arrived; `backlog`: a commit is already waiting behind the writer. */
  arrived(n: number, backlog: boolean, now = Date.now()): void {
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    this.windowCount += n;
    // Renewed at most every 10th of the hold: one store a few times a second under a flood.
    if ((backlog || this.windowCount > (FLOOD_RATE * WINDOW_MS) / 1000) && now - this.held >= HOLD_MS / 10) {
      this.held = now;
      Atomics.store(this.until, 0, BigInt(now + HOLD_MS));
    }
  }

  /** Indexing threads: whether ingest wants the machine now. */
  active(now = Date.now()): boolean {
    return Atomics.load(this.until, 0) > BigInt(now);
  }
}

// Between the connections and the store: gathers valid batches, hellos and heartbeats from every
// agent and commits them together (group commit), then acks each batch. An agent hears "ack" only
// after the transaction holding its alerts is on disk.
//
// Scheduling: one commit is in flight at a time (in the store's writer thread). The first
// submission after a commit schedules the next with setImmediate, so every message that arrived in
// the same turn of the event loop joins it; while a commit runs, this thread goes on reading and
// validating, and all of that forms the next group. One fsync therefore covers as many batches as
// arrive during one, which is what keeps durable throughput up as load grows. Back-pressure: past `highWater` alerts waiting, the server stops
// reading alert batches until a commit brings the queue under half of it ('drain').
import { EventEmitter } from 'node:events';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { AlertsMessage } from '../../shared/protocol.js';
import type { Metrics } from './metrics.js';
import type { AlertRow, CommitWork, HeartbeatRow, HelloRow, Store } from './store/sqlite.js';

interface Batch {
  rows: AlertRow[];
  upTo: number;
  receivedAt: number;
  ack: (upTo: number) => void;
}

export interface IngestOptions {
  maxCommitAlerts: number;
  highWater: number;
  /** Wait before retrying a failed commit. */
  retryMs?: number;
}

export interface IngestEvents {
  /** Alerts newly stored by a commit (not resends): the dashboard's live feed. */
  stored: [rows: AlertRow[]];
  /** The queue fell back under half the high-water mark: resume reading. */
  drain: [];
}

export class Ingest extends EventEmitter<IngestEvents> {
  private batches: Batch[] = [];
  private hellos: HelloRow[] = [];
  /** Only the newest heartbeat of each agent matters. */
  private heartbeats = new Map<string, HeartbeatRow>();
  private scheduled = false;
  private committing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  private high = false;
  pendingAlerts = 0;

  constructor(private readonly store: Store, private readonly metrics: Metrics, private readonly log: Logger, private readonly opts: IngestOptions) {
    super();
  }

  /** Queues a validated batch; `ack` is called with its last sequence once it is committed. */
  submitAlerts(agentId: string, tokenName: string, msg: AlertsMessage, ack: (upTo: number) => void): void {
    const received = Date.now();
    const rows: AlertRow[] = msg.alerts.map((a) => ({
      uuid: a.kibana.alert.uuid,
      ts: Date.parse(a['@timestamp']),
      host: a.host?.name ?? null,
      ruleId: a.kibana.alert.rule.rule_id,
      ruleName: a.rule?.name ?? a.kibana.alert.rule.name,
      severity: a.kibana.alert.severity,
      status: a.kibana.alert.workflow_status,
      agentId,
      tokenName,
      received,
      doc: JSON.stringify(a),
    }));
    this.batches.push({ rows, upTo: msg.seq + rows.length - 1, receivedAt: performance.now(), ack });
    this.pendingAlerts += rows.length;
    this.metrics.batches += 1;
    this.metrics.alertsReceived += rows.length;
    if (this.pendingAlerts > this.opts.highWater) this.high = true;
    this.schedule();
  }

  submitHello(row: HelloRow): void {
    this.hellos.push(row);
    this.schedule();
  }

  submitHeartbeat(row: HeartbeatRow): void {
    this.heartbeats.set(row.agentId, row);
    this.schedule();
  }

  /** True while the queue is past the high-water mark (the server pauses alert senders). */
  get congested(): boolean {
    return this.high;
  }

  private schedule(): void {
    if (this.scheduled || this.committing || this.retryTimer) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.commitNow();
    });
  }

  private async commitNow(): Promise<void> {
    const take: Batch[] = [];
    let n = 0;
    while (this.batches.length > 0 && (take.length === 0 || n + this.batches[0]!.rows.length <= this.opts.maxCommitAlerts)) {
      const b = this.batches.shift()!;
      take.push(b);
      n += b.rows.length;
    }
    const work: CommitWork = { alerts: [], hellos: this.hellos, heartbeats: [...this.heartbeats.values()], seen: new Map() };
    for (const b of take) {
      for (const r of b.rows) work.alerts.push(r);
      const last = b.rows[0];
      if (last) work.seen.set(last.agentId, last.received);
    }
    this.hellos = [];
    this.heartbeats = new Map();
    if (work.alerts.length === 0 && work.hellos.length === 0 && work.heartbeats.length === 0) return this.settle();
    const t0 = performance.now();
    let result: { inserted: AlertRow[]; duplicates: number };
    this.committing = true;
    try {
      result = await this.store.commit(work);
    } catch (err) {
      this.committing = false;
      // Nothing of the group was committed: put it back in front and try again shortly. The
      // agents wait for their acks (and resend after their ack timeout: harmless).
      this.metrics.commitErrors += 1;
      this.log.error({ err: errorMessage(err), alerts: work.alerts.length, retryMs: this.opts.retryMs ?? 1000 }, 'store commit failed; will retry (check disk space and the database file)');
      this.batches.unshift(...take);
      this.hellos.unshift(...work.hellos);
      for (const h of work.heartbeats) if (!this.heartbeats.has(h.agentId)) this.heartbeats.set(h.agentId, h);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.schedule();
      }, this.opts.retryMs ?? 1000);
      return;
    }
    this.committing = false;
    const t1 = performance.now();
    const secs = (t1 - t0) / 1000;
    this.metrics.commits += 1;
    this.metrics.commitSecondsSum += secs;
    if (secs > this.metrics.commitSecondsMax) this.metrics.commitSecondsMax = secs;
    this.metrics.alertsStored += result.inserted.length;
    this.metrics.alertsDuplicate += result.duplicates;
    this.pendingAlerts -= n;
    for (const b of take) {
      b.ack(b.upTo);
      this.metrics.observeAck((t1 - b.receivedAt) / 1000);
    }
    if (result.inserted.length > 0 && this.listenerCount('stored') > 0) this.emit('stored', result.inserted);
    if (this.high && this.pendingAlerts <= this.opts.highWater / 2) {
      this.high = false;
      this.emit('drain');
    }
    if (this.batches.length > 0 || this.hellos.length > 0 || this.heartbeats.size > 0) this.schedule();
    else this.settle();
  }

  private settle(): void {
    if (this.batches.length > 0 || this.scheduled || this.committing) return;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once everything queued so far is committed and acked (shutdown uses it). */
  flush(): Promise<void> {
    if (this.batches.length === 0 && this.hellos.length === 0 && this.heartbeats.size === 0 && !this.scheduled && !this.committing && !this.retryTimer) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.schedule();
    });
  }
}

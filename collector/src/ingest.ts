// Between the connections and the store: gathers valid batches, hellos and heartbeats from every
// agent and commits them together (group commit), then acks each batch. An agent hears "ack" only
// after the transaction holding its alerts is on disk.
//
// Scheduling: up to two commits are in flight (PIPELINE), committed one after the other by the
// store's writer thread. A submission schedules a commit with setImmediate, so every message that
// arrived in the same turn of the event loop joins it; while a commit runs, this thread goes on
// reading and validating, and that forms the next group, posted so that it waits in the writer
// rather than the writer waiting for it (measured: the writer idled 60% of the time between
// commits with one in flight, on a loaded machine where waking a thread takes milliseconds). One
// fsync therefore covers as many batches as arrive during one, which is what keeps durable
// throughput up as load grows. Acks follow the commits' order; after a failed commit, nothing
// behind it is acked until it has been retried (see commitNow).
//
// Back-pressure and memory: past `highWater` alerts or `highWaterBytes` bytes of documents waiting
// (committing ones included), the server stops reading alert batches until commits bring the queue
// one commit's worth under both (RESUME_AT, 'drain'). The bytes bound is the one that holds memory
// down: what waits here is the frames the documents are in (and the parsed alerts, until the garbage
// collector runs), so a queue of 50,000 alerts once meant most of a gigabyte. A commit
// takes at most an eighth of highWaterBytes (COMMIT_SHARE_OF_HIGH_WATER), so that reading and
// committing overlap even at the mark.
//
// Invalid alerts of a valid batch are not stored with the alerts but in the quarantine, in the same
// transaction, and the ack that follows names them (`rejected`): the agent drops them and goes on.
// Ingest adds what only it can judge, knowing the sender: an alert whose agent.id is not the
// sending agent's is quarantined; a document that carries ldguard.received_from itself has it
// dropped (the sender is stamped from the connection, in the rows' agent_id and token_name); an
// alert dated past its receipt (FUTURE_SKEW_MS) is flagged and listed by its receive time, so it
// cannot sit on top of the list for ever; its document and key are kept as sent.
//
// A token revoked before the commit: the writer refuses its alerts inside the transaction
// (Store.commit), and its batches are neither acked nor stored; the connection is closed.
//
// Agent rows are written only when they say something new. 15,000 agents heartbeating every 10 s
// are 1,500 updates a second, each dirtying a random 16 KB page of the agents table: in the WAL and
// again in the checkpoint, that was more bytes than the alerts themselves. So a heartbeat whose
// health (uptime aside) is what was last written, and the last_seen of an alert sender, are written
// only once the stored last_seen is `missed − 1` heartbeat periods old: the sweep marks an agent
// offline after `missed` periods, so a live agent is never late by then.
import { EventEmitter } from 'node:events';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Alert } from '../../shared/ecs.js';
import { MAX_ALERT_BYTES, rejectedAlert, type AlertsMessage, type InvalidAlert, type RejectedAlert } from '../../shared/protocol.js';
import { SPANS_PER_ALERT, originalTime, type ScannedFrame } from './frame.js';
import type { Metrics } from './metrics.js';
import {
  QUARANTINE_TEXT_CHARS, alertRows, batchSize, listedTime, type AlertBatch, type AlertRow, type CommitResult, type CommitWork, type HeartbeatRow, type SealRow,
  type HelloRow, type QuarantineRow, type Store, type TokenBinding,
} from './store/store.js';

/** A seal waiting for its commit, and who waits for it. */
interface PendingSeal {
  row: SealRow;
  stored: Array<() => void>;
}

/** Who sent a batch, as the connection authenticated it (never as the documents say). */
export interface Sender {
  agentId: string;
  tokenName: string;
  tokenHash: string;
}

interface Batch {
  agentId: string;
  /** The sender's token hash; '' for the collector's own notices. */
  tokenHash: string;
  /** Date.now() when it arrived (last_seen). */
  received: number;
  alerts: AlertBatch;
  /** Alerts (stored and quarantined): what counts towards the high-water mark and max_commit_alerts. */
  size: number;
  quarantine: QuarantineRow[];
  rejected: RejectedAlert[];
  bytes: number;
  upTo: number;
  receivedAt: number;
  ack: (upTo: number, rejected: RejectedAlert[]) => void;
  /** Called instead of `ack` when the token was revoked before the commit. */
  revoked: () => void;
}

/** The `rejected` and `quarantine` of a batch with no invalid alert (never modified). */
const NO_REJECTED: RejectedAlert[] = [];
const NO_QUARANTINE: QuarantineRow[] = [];
const NOTHING = () => undefined;

/** Commits in flight at once: one committing, the next one queued behind it in the writer. */
const PIPELINE = 2;

/**
 * A commit takes at most 1/COMMIT_SHARE_OF_HIGH_WATER of highWaterBytes (2 MiB of documents by
 * default, ~1,000 alerts of the agent's size). The bytes in flight count towards the high-water
 * mark until their commit acks them, and commits of up to max_commit_alerts (5,000, ~10 MB) made
 * the two in flight more than half of the budget: once past the mark, readers stayed paused until
 * both had committed, then read in one burst while the writer had nothing to do. Measured at
 * 20,000 alerts/s after a hiccup: commits of 3,500-5,000 alerts every 150-550 ms, the writer idle
 * half the time, acks 0.5-2 s late, for as long as the load lasted. With commits this small the two
 * in flight hold a quarter of the budget, and reading resumes while the writer still has work.
 */
const COMMIT_SHARE_OF_HIGH_WATER = 8;

/** Paused readers resume once the queue is under this fraction of both marks: one commit's worth under them. */
const RESUME_AT = 1 - 1 / COMMIT_SHARE_OF_HIGH_WATER;

export interface IngestOptions {
  maxCommitAlerts: number;
  /** offline_after_missed_heartbeats: how stale a stored last_seen may be (see above). */
  offlineAfterMissedHeartbeats: number;
  highWater: number;
  /** Bytes of alert documents waiting for a commit past which senders are paused. */
  highWaterBytes: number;
  /** Wait before retrying a failed commit. */
  retryMs?: number;
}

function uuidOf(a: unknown): string | null {
  const u = (a as { kibana?: { alert?: { uuid?: unknown } } } | null)?.kibana?.alert?.uuid;
  return typeof u === 'string' && u.length <= 128 ? u : null;
}

/** The fields the collector stamps on what it serves (store/sqlite.ts, docSql; the assignee is the workflow's), never the agent. */
const STAMPS = ['received_from', 'future_timestamp', 'assignee'];
const DOTTED_STAMP = /^ldguard\.(received_from|future_timestamp|assignee)(\.|$)/;

/**
 * The alert without any stamp it wrote itself, nested (`ldguard.received_from`) or dotted
 * (`"ldguard.received_from.agent_id"`, which Elasticsearch reads as the same field); undefined
 * when it has none (the usual case: its bytes are then stored as sent).
 */
function withoutStamps(a: Alert): Alert | undefined {
  const doc = a as unknown as Record<string, unknown>;
  const ldg = doc.ldguard;
  const nested = ldg !== null && typeof ldg === 'object' && !Array.isArray(ldg) && Object.keys(ldg).some((k) => STAMPS.some((s) => k === s || k.startsWith(`${s}.`)));
  const dotted = Object.keys(doc).some((k) => DOTTED_STAMP.test(k));
  if (!nested && !dotted) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) if (!DOTTED_STAMP.test(k)) out[k] = v;
  if (nested) out.ldguard = Object.fromEntries(Object.entries(ldg as Record<string, unknown>).filter(([k]) => !STAMPS.some((s) => k === s || k.startsWith(`${s}.`))));
  return out as unknown as Alert;
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
  private bindings: TokenBinding[] = [];
  /** Only the newest heartbeat of each agent matters. */
  private heartbeats = new Map<string, HeartbeatRow>();
  private seals = new Map<string, PendingSeal>();
  /** Per agent: when its last_seen was last queued for writing, its heartbeat period, the health then. */
  private readonly written = new Map<string, { at: number; periodMs: number; health: string | null }>();
  private scheduled = false;
  /** Commits posted to the writer and not settled yet (at most PIPELINE). */
  private inFlight = 0;
  /** What failed to commit, and what was in flight behind it, until the retry. */
  private failed: { batches: Batch[]; hellos: HelloRow[]; bindings: TokenBinding[]; heartbeats: HeartbeatRow[]; seals: PendingSeal[] } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  private high = false;
  pendingAlerts = 0;
  /** Bytes of alert documents waiting for a commit. */
  pendingBytes = 0;

  constructor(private readonly store: Store, private readonly metrics: Metrics, private readonly log: Logger, private readonly opts: IngestOptions) {
    super();
  }

  /**
   * Queues a batch whose envelope is valid; the alerts listed in `invalid`, any over
   * MAX_ALERT_BYTES and any whose agent.id is not the sender's go to the quarantine. `raw`: each
   * alert's bytes as sent (frame.ts), when the frame could be sliced. `ack` is called with the
   * batch's last sequence and its rejected alerts once all of it is committed; `revoked` instead,
   * when the sender's token was revoked before that. Alerts whose index is in `skip` (held-back
   * records past the token's quota, quota.ts) are acked with the batch and neither stored nor
   * quarantined. Returns the first quarantine reason, if any.
   */
  submitAlerts(
    sender: Sender, msg: AlertsMessage, invalid: readonly InvalidAlert[], raw: Buffer[] | undefined,
    ack: (upTo: number, rejected: RejectedAlert[]) => void, revoked: () => void, skip?: ReadonlySet<number>,
  ): string | undefined {
    const { agentId, tokenName } = sender;
    const received = Date.now();
    const bad = new Map(invalid.map((x) => [x.index, x.errors]));
    const rows: AlertRow[] = [];
    const quarantine: QuarantineRow[] = [];
    const rejected: RejectedAlert[] = [];
    let bytes = 0;
    msg.alerts.forEach((a, i) => {
      if (skip?.has(i)) return;
      const seq = msg.seq + i;
      let doc = raw?.[i];
      let errors = bad.get(i);
      const claimed = errors ? undefined : (a as { agent?: { id?: unknown } }).agent?.id;
      if (!errors && claimed !== agentId) {
        errors = [`alert.agent.id: ${typeof claimed === 'string' ? JSON.stringify(claimed.slice(0, 128)) : 'missing'} is not the sending agent's id ${agentId}: an agent reports only its own alerts`];
      }
      const cleaned = errors ? undefined : withoutStamps(a);
      if (cleaned) {
        // The sender is the collector's to say: the document's own claim is dropped, not stored.
        doc = Buffer.from(JSON.stringify(cleaned));
        this.metrics.receivedFromDropped += 1;
      }
      // Bounds were checked before parsing (frame.ts), so serialising the parsed alert is safe.
      doc ??= Buffer.from(JSON.stringify(a));
      if (!errors && doc.length > MAX_ALERT_BYTES) {
        errors = [`alert: ${doc.length} bytes, over the ${MAX_ALERT_BYTES} an alert may have (the agent shortens bigger ones)`];
      }
      if (errors) {
        const text = doc.toString('utf8', 0, Math.min(doc.length, 4 * QUARANTINE_TEXT_CHARS)).slice(0, QUARANTINE_TEXT_CHARS);
        quarantine.push({ agentId, tokenName, seq, uuid: uuidOf(a), reason: errors.join('\n'), text, size: doc.length, received });
        rejected.push(rejectedAlert(seq, errors));
        bytes += text.length;
        return;
      }
      bytes += doc.length;
      const ts = Date.parse(a['@timestamp']);
      const listed = listedTime(ts, received);
      const future = listed !== ts;
      if (future) this.metrics.futureTimestamps += 1;
      rows.push({
        uuid: a.kibana.alert.uuid,
        ts: listed,
        ots: originalTime(a.kibana.alert.original_time, ts),
        host: a.host?.name ?? null,
        ruleId: a.kibana.alert.rule.rule_id,
        ruleName: a.rule?.name ?? a.kibana.alert.rule.name,
        severity: a.kibana.alert.severity,
        status: a.kibana.alert.workflow_status,
        agentId,
        tokenName,
        received,
        future,
        doc,
      });
    });
    this.queue({
      agentId, tokenHash: sender.tokenHash, received, alerts: { rows, tokenHash: sender.tokenHash }, size: msg.alerts.length, quarantine, rejected: rejected.length > 0 ? rejected : NO_REJECTED,
      bytes, upTo: msg.seq + msg.alerts.length - 1, receivedAt: performance.now(), ack, revoked,
    });
    return quarantine[0]?.reason;
  }

  /**
   * Queues a batch that scanAlertsFrame read (frame.ts): within the bounds, its envelope and every
   * alert valid, every alert the sender's own and without stamps; the documents are the bytes as
   * sent. It is kept as the scan left it (the frame and offsets into it) until its commit. `ack`
   * and `revoked` as for submitAlerts.
   */
  submitScanned(sender: Sender, frame: ScannedFrame, ack: (upTo: number, rejected: RejectedAlert[]) => void, revoked: () => void): void {
    const received = Date.now();
    let bytes = 0;
    for (let i = 0; i < frame.count; i++) {
      bytes += frame.spans[i * SPANS_PER_ALERT + 1]! - frame.spans[i * SPANS_PER_ALERT]!;
      if (listedTime(frame.times[2 * i]!, received) !== frame.times[2 * i]) this.metrics.futureTimestamps += 1;
    }
    this.queue({
      agentId: sender.agentId, tokenHash: sender.tokenHash, received,
      alerts: { scanned: frame, agentId: sender.agentId, tokenName: sender.tokenName, tokenHash: sender.tokenHash, received },
      size: frame.count, quarantine: NO_QUARANTINE, rejected: NO_REJECTED, bytes, upTo: frame.seq + frame.count - 1, receivedAt: performance.now(), ack, revoked,
    });
  }

  /** Queues one of the collector's own alerts (notices.ts): stored like an agent's, acked to no one. */
  submitNotice(row: AlertRow): void {
    this.queue({
      agentId: '', tokenHash: '', received: row.received, alerts: { rows: [row], tokenHash: '' }, size: 1, quarantine: [], rejected: NO_REJECTED,
      bytes: row.doc.length, upTo: 0, receivedAt: performance.now(), ack: NOTHING, revoked: NOTHING,
    });
  }

  private queue(b: Batch): void {
    const n = b.size;
    const bytes = b.bytes;
    this.batches.push(b);
    this.pendingAlerts += n;
    this.pendingBytes += bytes;
    this.metrics.batches += 1;
    this.metrics.alertsReceived += n;
    this.store.pressure.arrived(n, this.inFlight >= PIPELINE);
    if (this.pendingAlerts > this.opts.highWater || this.pendingBytes > this.opts.highWaterBytes) this.high = true;
    this.schedule();
  }

  /** Binds an agent token to the agent id of its first hello, in the next commit (before that hello's alerts). */
  submitBinding(b: TokenBinding): void {
    this.bindings.push(b);
    this.schedule();
  }

  /**
   * A baseline seal a host's agent told, for the next commit (once per host and seal); resolves
   * when it is stored, so the host's next seal is judged against it (server.ts's continuity).
   */
  submitSeal(row: SealRow): Promise<void> {
    return new Promise((resolve) => this.queueSeal({ row, stored: [resolve] }));
  }

  private queueSeal(p: PendingSeal): void {
    const key = `${p.row.hostId}\0${p.row.generation}\0${p.row.sha256}`;
    const had = this.seals.get(key);
    this.seals.set(key, had ? { row: p.row, stored: [...had.stored, ...p.stored] } : p);
    this.schedule();
  }

  submitHello(row: HelloRow): void {
    this.hellos.push(row);
    this.written.set(row.agentId, { at: row.at, periodMs: row.heartbeatMs, health: null });
    this.schedule();
  }

  /** `healthKey`: the health without what changes at every beat (uptime); equal keys say nothing new. */
  submitHeartbeat(row: HeartbeatRow, healthKey: string): void {
    const w = this.written.get(row.agentId);
    if (w && w.health === healthKey && !this.stale(w, row.at)) return;
    if (w) {
      w.at = row.at;
      w.health = healthKey;
    }
    this.heartbeats.set(row.agentId, row);
    this.schedule();
  }

  /** The sweep marked these offline: their next word must be written, whatever it says. */
  forget(agentIds: Iterable<string>): void {
    for (const id of agentIds) {
      const w = this.written.get(id);
      if (w) w.at = -Infinity;
    }
  }

  /** Agents no longer connected need no entry (a new hello makes one). */
  disconnected(agentId: string): void {
    this.written.delete(agentId);
  }

  private stale(w: { at: number; periodMs: number }, now: number): boolean {
    return now - w.at >= w.periodMs * Math.max(0, this.opts.offlineAfterMissedHeartbeats - 1);
  }

  /** True while the queue is past the high-water mark (the server pauses alert senders). */
  get congested(): boolean {
    return this.high;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= PIPELINE || this.retryTimer || this.failed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.commitNow();
    });
  }

  private async commitNow(): Promise<void> {
    if (this.inFlight >= PIPELINE || this.failed) return;
    const take: Batch[] = [];
    let n = 0;
    let bytes = 0;
    const size = (b: Batch) => b.size;
    const maxBytes = this.opts.highWaterBytes / COMMIT_SHARE_OF_HIGH_WATER;
    while (this.batches.length > 0 && (take.length === 0 || (n + size(this.batches[0]!) <= this.opts.maxCommitAlerts && bytes + this.batches[0]!.bytes <= maxBytes))) {
      const b = this.batches.shift()!;
      take.push(b);
      n += size(b);
      bytes += b.bytes;
    }
    const seals = [...this.seals.values()];
    const work: CommitWork = { alerts: [], hellos: this.hellos, heartbeats: [...this.heartbeats.values()], seals: seals.map((p) => p.row), seen: new Map(), quarantine: [], bindings: this.bindings };
    for (const b of take) {
      if (batchSize(b.alerts) > 0) work.alerts.push(b.alerts);
      for (const q of b.quarantine) work.quarantine.push(q);
      if (b.tokenHash === '') continue;
      const w = this.written.get(b.agentId);
      if (!w || this.stale(w, b.received)) {
        work.seen.set(b.agentId, b.received);
        if (w) w.at = b.received;
      }
    }
    this.hellos = [];
    this.bindings = [];
    this.heartbeats = new Map();
    this.seals = new Map();
    if (take.length === 0 && work.hellos.length === 0 && work.heartbeats.length === 0 && work.seals.length === 0 && work.bindings.length === 0) return this.settle();
    const t0 = performance.now();
    let result: CommitResult | undefined;
    let error: unknown;
    this.inFlight += 1;
    // The next group forms while this one commits; with PIPELINE 2 it is already queued in the
    // writer when this one ends, so the writer never waits for this thread between commits.
    if (this.batches.length > 0) this.schedule();
    try {
      result = await this.store.commit(work);
    } catch (err) {
      error = err;
    }
    this.inFlight -= 1;
    if (error !== undefined || this.failed) {
      // Acks are cumulative per agent, so nothing may be acked past a batch that is not stored:
      // a failed commit, and every commit that was in flight behind it (stored or not), go back to
      // the queue in their order and are committed again (resends of what did get stored are
      // ignored as duplicates). The agents wait for their acks meanwhile.
      if (error !== undefined) {
        this.metrics.commitErrors += 1;
        this.log.error({ err: errorMessage(error), alerts: work.alerts.length, retryMs: this.opts.retryMs ?? 1000 }, 'store commit failed; will retry (check disk space and the database file)');
      }
      if (result && result.inserted.length > 0 && this.listenerCount('stored') > 0) this.emit('stored', alertRows(work.alerts, result.inserted));
      this.failed ??= { batches: [], hellos: [], bindings: [], heartbeats: [], seals: [] };
      this.failed.batches.push(...take);
      this.failed.hellos.push(...work.hellos);
      this.failed.bindings.push(...work.bindings);
      this.failed.heartbeats.push(...work.heartbeats);
      this.failed.seals.push(...seals);
      if (this.inFlight > 0) return;
      const f = this.failed;
      this.batches.unshift(...f.batches);
      this.hellos.unshift(...f.hellos);
      this.bindings.unshift(...f.bindings);
      for (const h of f.heartbeats) if (!this.heartbeats.has(h.agentId)) this.heartbeats.set(h.agentId, h);
      for (const s of f.seals) this.queueSeal(s);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.failed = undefined;
        this.schedule();
      }, this.opts.retryMs ?? 1000);
      return;
    }
    const t1 = performance.now();
    const secs = (t1 - t0) / 1000;
    this.metrics.commits += 1;
    this.metrics.commitSecondsSum += secs;
    if (secs > this.metrics.commitSecondsMax) this.metrics.commitSecondsMax = secs;
    this.metrics.alertsStored += result!.inserted.length;
    this.metrics.alertsDuplicate += result!.duplicates;
    this.metrics.alertsQuarantined += work.quarantine.length;
    this.metrics.alertsRefusedRevoked += result!.refusedAlerts;
    for (const p of seals) for (const stored of p.stored) stored();
    this.pendingAlerts -= n;
    this.pendingBytes -= bytes;
    const refused = new Set(result!.refusedTokens);
    for (const b of take) {
      if (refused.has(b.tokenHash)) {
        b.revoked();
        continue;
      }
      b.ack(b.upTo, b.rejected);
      this.metrics.observeAck((t1 - b.receivedAt) / 1000);
    }
    // Rows are made only for a listener (the dashboard's live feed, while a page is open).
    if (result!.inserted.length > 0 && this.listenerCount('stored') > 0) this.emit('stored', alertRows(work.alerts, result!.inserted));
    if (this.high && this.pendingAlerts <= this.opts.highWater * RESUME_AT && this.pendingBytes <= this.opts.highWaterBytes * RESUME_AT) {
      this.high = false;
      this.emit('drain');
    }
    if (this.batches.length > 0 || this.hellos.length > 0 || this.heartbeats.size > 0 || this.seals.size > 0 || this.bindings.length > 0) this.schedule();
    else this.settle();
  }

  /** Alerts another collector stored (PostgreSQL): reported as this one's own, for the feeds. */
  storedElsewhere(rows: AlertRow[]): void {
    if (this.listenerCount('stored') > 0) this.emit('stored', rows);
  }

  private settle(): void {
    if (this.batches.length > 0 || this.scheduled || this.inFlight > 0) return;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once everything queued so far is committed and acked (shutdown uses it). */
  flush(): Promise<void> {
    if (this.batches.length === 0 && this.hellos.length === 0 && this.heartbeats.size === 0 && this.seals.size === 0 && this.bindings.length === 0 && !this.scheduled && this.inFlight === 0 && !this.retryTimer) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.schedule();
    });
  }
}

// The collector's counters, rendered in the Prometheus text format (version 0.0.4) on GET /metrics.
// Counters only ever grow (since the process started); gauges are read at scrape time.

export class Metrics {
  alertsReceived = 0;
  alertsStored = 0;
  alertsDuplicate = 0;
  /** Alerts of valid batches that failed validation: kept in the quarantine table, acked. */
  alertsQuarantined = 0;
  batches = 0;
  commits = 0;
  commitErrors = 0;
  commitSecondsSum = 0;
  commitSecondsMax = 0;
  /** Receive-to-ack time of batches: sum and count, and a small histogram. */
  ackSecondsSum = 0;
  ackCount = 0;
  readonly ackBuckets = [0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 5];
  readonly ackBucketCounts = new Array<number>(this.ackBuckets.length).fill(0);
  authFailures = 0;
  halfOpenDropped = 0;
  slowClientsDropped = 0;
  rateLimited = 0;
  ingestPaused = 0;
  connectionsAccepted = 0;
  /** Hellos refused because the token is bound to another agent id. */
  agentIdMismatches = 0;
  /** Hellos refused because their agent id is bound to another token. */
  agentIdClaims = 0;
  /** Messages whose handler threw: that connection was closed (1011), the collector went on. */
  handlerErrors = 0;
  /** Connections closed for holding too many bytes of unfinished messages. */
  partialBytesDropped = 0;
  /** Collector notices (its own alerts) not stored because one of their kind and token was already stored in the window. */
  noticesSuppressed = 0;
  /** Alerts that carried ldguard.received_from themselves: dropped from the document (the collector stamps it). */
  receivedFromDropped = 0;
  /** Alerts dated after they were received (beyond the allowed skew): stored, flagged, listed by receive time. */
  futureTimestamps = 0;
  /** Alerts of a token revoked before their commit: not stored, not acked. */
  alertsRefusedRevoked = 0;
  /** Held-back records (ldguard.held_back_by) received within their token's quota, and past it (acked, not stored). */
  heldBackReceived = 0;
  heldBackOverQuota = 0;
  readonly rejected = new Map<string, number>();

  reject(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  observeAck(seconds: number): void {
    this.ackSecondsSum += seconds;
    this.ackCount += 1;
    for (let i = 0; i < this.ackBuckets.length; i++) if (seconds <= this.ackBuckets[i]!) this.ackBucketCounts[i]! += 1;
  }

  /** Gauges with labels (one line per label set), after the rest; label values escaped as the format says. */
  static labeled(name: string, help: string, rows: ReadonlyArray<{ labels: Record<string, string>; value: number }>): string {
    const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
    const lines = rows.map((r) => `${name}{${Object.entries(r.labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}} ${r.value}`);
    return `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${lines.map((l) => `${l}\n`).join('')}`;
  }

  render(gauges: Record<string, { help: string; value: number }>, version: string): string {
    const out: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number, labels = '') => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name}${labels} ${value}`);
    };
    out.push('# HELP ldguard_collector_info The collector\'s version.', '# TYPE ldguard_collector_info gauge', `ldguard_collector_info{version="${version.replace(/["\\\n]/g, '_')}"} 1`);
    metric('ldguard_collector_alerts_received_total', 'counter', 'Alerts received in valid batches (including resends).', this.alertsReceived);
    metric('ldguard_collector_alerts_stored_total', 'counter', 'Alerts newly stored.', this.alertsStored);
    metric('ldguard_collector_alerts_duplicate_total', 'counter', 'Alerts received again and ignored (already stored).', this.alertsDuplicate);
    metric('ldguard_collector_alerts_quarantined_total', 'counter', 'Invalid alerts of valid batches, kept in the quarantine (GET /api/quarantine) and acked.', this.alertsQuarantined);
    metric('ldguard_collector_batches_total', 'counter', 'Alert batches received.', this.batches);
    metric('ldguard_collector_commits_total', 'counter', 'Store transactions committed (group commits).', this.commits);
    metric('ldguard_collector_commit_errors_total', 'counter', 'Store transactions that failed (retried).', this.commitErrors);
    metric('ldguard_collector_commit_seconds_sum', 'counter', 'Time spent in store transactions.', this.commitSecondsSum);
    metric('ldguard_collector_commit_seconds_max', 'gauge', 'Longest store transaction.', this.commitSecondsMax);
    out.push('# HELP ldguard_collector_ack_seconds Time from receiving a batch to acking it.', '# TYPE ldguard_collector_ack_seconds histogram');
    this.ackBuckets.forEach((b, i) => out.push(`ldguard_collector_ack_seconds_bucket{le="${b}"} ${this.ackBucketCounts[i]}`));
    out.push(`ldguard_collector_ack_seconds_bucket{le="+Inf"} ${this.ackCount}`, `ldguard_collector_ack_seconds_sum ${this.ackSecondsSum}`, `ldguard_collector_ack_seconds_count ${this.ackCount}`);
    metric('ldguard_collector_connections_accepted_total', 'counter', 'Agent connections accepted.', this.connectionsAccepted);
    metric('ldguard_collector_auth_failures_total', 'counter', 'Upgrades and API calls refused for a missing, unknown or revoked token.', this.authFailures);
    metric('ldguard_collector_agent_id_mismatch_total', 'counter', 'Hellos refused because their token is bound to another agent id (close 4002).', this.agentIdMismatches);
    metric('ldguard_collector_agent_id_claimed_total', 'counter', 'Hellos refused because their agent id is bound to another token (close 4003).', this.agentIdClaims);
    metric('ldguard_collector_handler_errors_total', 'counter', 'Agent messages whose handling failed: that connection was closed (1011).', this.handlerErrors);
    metric('ldguard_collector_partial_bytes_dropped_total', 'counter', 'Connections closed for holding too many bytes of unfinished messages.', this.partialBytesDropped);
    metric('ldguard_collector_notices_suppressed_total', 'counter', 'Collector notices not stored again within their window (one per kind and token).', this.noticesSuppressed);
    metric('ldguard_collector_received_from_dropped_total', 'counter', 'Alerts that carried ldguard.received_from themselves (dropped: the collector stamps the sender).', this.receivedFromDropped);
    metric('ldguard_collector_future_timestamps_total', 'counter', 'Alerts dated after their receipt: stored, flagged ldguard.future_timestamp, listed by receive time.', this.futureTimestamps);
    metric('ldguard_collector_alerts_refused_revoked_total', 'counter', 'Alerts of a token revoked before their commit: neither stored nor acked.', this.alertsRefusedRevoked);
    metric('ldguard_collector_held_back_received_total', 'counter', 'Held-back records (matches past an agent\'s max_signals) received within their token\'s quota.', this.heldBackReceived);
    metric('ldguard_collector_held_back_over_quota_total', 'counter', 'Held-back records past held_back_quota_per_token: acked, counted, alerted, not stored.', this.heldBackOverQuota);
    metric('ldguard_collector_half_open_dropped_total', 'counter', 'Connections dropped for not answering pings.', this.halfOpenDropped);
    metric('ldguard_collector_slow_clients_dropped_total', 'counter', 'Connections dropped for not reading what was sent to them.', this.slowClientsDropped);
    metric('ldguard_collector_rate_limited_total', 'counter', 'Times a connection was paused for passing its rate limit.', this.rateLimited);
    metric('ldguard_collector_ingest_paused_total', 'counter', 'Times a connection was paused because too many alerts waited for a commit.', this.ingestPaused);
    out.push('# HELP ldguard_collector_messages_rejected_total Messages refused (the connection was closed), by reason.', '# TYPE ldguard_collector_messages_rejected_total counter');
    for (const [reason, n] of this.rejected) out.push(`ldguard_collector_messages_rejected_total{reason="${reason}"} ${n}`);
    for (const [name, g] of Object.entries(gauges)) metric(name, 'gauge', g.help, g.value);
    return `${out.join('\n')}\n`;
  }
}

// The JSON shapes the collector's dashboard API serves, in one place for both sides: the server
// (collector/src, which imports these types) and the page (compiled separately for the browser).
// Types only: nothing here exists at run time.

/** An agent as the fleet page shows it, with what is wrong with it spelled out. */
export interface FleetAgent {
  agentId: string;
  hostname: string | null;
  version: string | null;
  online: boolean;
  connected: boolean;
  firstSeen: string | null;
  lastSeen: string | null;
  heartbeatMs: number | null;
  os: string | null;
  kernel: string | null;
  architecture: string | null;
  source: { name: string; degraded: boolean; reason?: string } | null;
  attribution: { degraded: boolean; reason?: string; counts?: Record<string, number> } | null;
  rules: number | null;
  spoolDepth: number | null;
  spoolOverflow: number | null;
  eventsLost: number | null;
  uptimeSec: number | null;
  problems: Array<{ level: 'error' | 'warn'; text: string }>;
}

export interface Overview {
  from: string;
  to: string;
  bucketMs: number;
  buckets: Array<{ t: string; n: number }>;
  byHost: Array<{ host: string; n: number }>;
  byRule: Array<{ ruleId: string; name: string | null; n: number }>;
  bySeverity: Record<string, number>;
  status: { open: number; acknowledged: number; closed: number };
  total: number;
  indexLag: number;
}

export interface FleetSummary {
  total: number;
  online: number;
  offline: number;
  degraded: number;
  /** Offline or degraded: the agents someone should look at. */
  attention: number;
  eventsLost: number;
  spoolDepth: number;
  spoolOverflow: number;
}

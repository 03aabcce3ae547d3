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

/** Elements a rendered investigation guide may contain (collector/src/web/markdown.ts). */
export type MdTag = 'p' | 'h3' | 'h4' | 'ul' | 'ol' | 'li' | 'blockquote' | 'strong' | 'em' | 'a' | 'code' | 'pre' | 'br' | 'hr' | 'span'
  | 'table' | 'thead' | 'tbody' | 'tr' | 'th' | 'td';

/** Markdown as a tree: text (shown as text) or an element of an allowed tag; `href` only on 'a'. */
export type MdNode = string | { t: MdTag; c: MdNode[]; href?: string };

/** Investigation guidance for an alert: the rule's note and ldguard's steps, as written and rendered. */
export interface Guide {
  /** The rule's own `note`, Markdown as written. */
  note?: string;
  noteMd?: MdNode[];
  steps: string[];
  stepsMd: MdNode[][];
  references: string[];
}

/** The zone the dashboard shows times in: UTC, or the browser's own with its offset. */
export type TimeZonePref = 'utc' | 'local';

/** A login's dashboard preferences, kept by the collector per admin token name (PUT /ui/api/prefs). */
export interface WebPrefs {
  timeZone: TimeZonePref;
}

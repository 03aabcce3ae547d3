// What the bench needs from each tool under test. An adapter starts its tool against one scratch
// host, turns the tool's own output into Observations (file name, when the line appeared, and the
// writer the tool named), and says which processes are the tool's so their CPU and memory count.
import type { CollectorHandle } from '../collector.js';
import type { Host, Native, Observation } from '../workload.js';

export interface RunContext {
  native: Native;
  host: Host;
  /** The tool's private temporary folder (removed by the bench afterwards). */
  work: string;
  /** The bench's copy of the rules (ldguard). */
  rules: string;
  /** A collector for ldguard to deliver to, when one could be started. */
  collector: CollectorHandle | null;
}

export interface Lost {
  /** Events the tool lost (or, for raw tools, creations it did not report), if it can say. */
  count: number | null;
  detail: string;
}

export interface ToolRun {
  /** Processes whose CPU time is the tool's (kauditd for auditd); read now, they may change. */
  pids(): number[];
  /** The process whose peak RSS is reported. */
  mainPid(): number | undefined;
  /** Observations of matching files since the last call. */
  poll(): Observation[];
  /** Unrelated (churn) creations the tool reported so far; raw tools report every creation. */
  churnSeen(): number | null;
  /** Observations of alerts stored in the collector (ldguard with a collector only). */
  pollStored?(): Observation[];
  lost(): Lost;
  /** Stops the tool and undoes what start did (audit rules, kernel settings). Always safe to call. */
  stop(): Promise<void>;
  notes: string[];
}

export interface Tool {
  /** Name for --only. */
  key: string;
  label: string;
  /** Why the tool cannot run here (missing package: name the apt-get command), or undefined. */
  skipReason(): Promise<string | undefined>;
  start(ctx: RunContext): Promise<ToolRun>;
  /** Whether the tool did right by one creation of the excluded package manager. */
  excluded(o: Observation[]): boolean;
  /** What "right" means for this tool, for the table. */
  exclusionRule: string;
}

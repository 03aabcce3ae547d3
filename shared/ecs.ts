// ECS documents as Elastic Defend emits them for a Linux file event, and the alert document shaped
// like an Elastic Security alert, so either can be indexed into Elastic unchanged.
// Field names follow ECS exactly (dotted paths become nested objects); optional fields are absent
// rather than null, because EQL's `field != null` is an existence test.
import { randomUUID } from 'node:crypto';
import type { SummaryFacts, SuppressionTerm } from './throttle.js';

/** How the writing process was identified; an alert carries it so a degraded host is visible. */
export type Attribution =
  | 'live_proc' // /proc/<pid> read while the writer was alive and had not exec'd since the write
  | 'exec_cache' // the kernel-fed exec cache (the writer had exited or exec'd another image)
  | 'fd_scan' // inotify fallback: a live process holding the file open was found in /proc/*/fd
  | 'unknown'; // nothing could name the writer (inotify carries no pid)

export interface EcsProcessParent {
  pid?: number;
  entity_id?: string;
  executable?: string;
  name?: string;
  args?: string[];
  command_line?: string;
}

export interface EcsProcess {
  pid?: number;
  entity_id?: string;
  executable?: string;
  /** The kernel's comm (at most 15 characters), as Elastic Defend reports it. */
  name?: string;
  args?: string[];
  args_count?: number;
  command_line?: string;
  working_directory?: string;
  start?: string;
  parent?: EcsProcessParent;
  user?: { id?: string; name?: string };
  group?: { id?: string; name?: string };
  Ext?: { ancestry?: string[] };
}

export interface EcsHost {
  id?: string;
  name?: string;
  hostname?: string;
  architecture?: string;
  ip?: string[];
  mac?: string[];
  os?: {
    type: 'linux';
    name?: string;
    version?: string;
    kernel?: string;
    family?: string;
    platform?: string;
    full?: string;
  };
}

export interface EcsFile {
  path: string;
  name: string;
  directory: string;
  extension?: string;
  size?: number;
  inode?: string;
  mode?: string;
  uid?: string;
  gid?: string;
  owner?: string;
  group?: string;
  type?: 'file' | 'dir' | 'symlink';
  /** A symlink's target as read (ECS file.target_path), escaped as file.path is. */
  target_path?: string;
  hash?: { sha256?: string };
  Ext?: { original?: { path?: string; name?: string }; header_bytes?: string };
}

export interface EcsAgent {
  id: string;
  type: 'ldguard';
  version: string;
  name?: string;
}

/** The file event the agent produces for each kernel event it keeps. */
export interface FileEvent {
  '@timestamp': string;
  event: {
    id: string;
    kind: 'event';
    category: ['file'];
    type: Array<'creation' | 'change' | 'deletion'>;
    /** modification: a watched file's content changed in place; attributes_modified (Auditbeat's
     * name): its mode or owner did; rules_reloaded: the agent's own alert for a rule file or
     * exception list whose content changed at a reload (agent/src/rules-digest.ts);
     * baseline_*: the agent's own alert at start when its baseline was gone, unreadable or not what
     * it saved (agent/src/baseline/alerts.ts); mounted, unmounted, mount_changed: a mount covered
     * or uncovered a watched directory, an ancestor of one or a loader file (mount_changed: the
     * mountinfo fallback cannot tell which way); directory_replaced: a watched directory's path now
     * leads to another directory (agent/src/mounts.ts). */
    action: 'creation' | 'rename' | 'modification' | 'attributes_modified' | 'rules_reloaded' | 'baseline_missing' | 'baseline_corrupt' | 'baseline_edited' | 'mounted' | 'unmounted' | 'mount_changed' | 'directory_replaced';
    dataset: 'endpoint.events.file';
    module: 'endpoint';
    created: string;
    outcome: 'success';
  };
  file: EcsFile;
  process: EcsProcess;
  user?: { id?: string; name?: string };
  group?: { id?: string; name?: string };
  host: EcsHost;
  agent: EcsAgent;
  ecs: { version: string };
  /** ldguard's own facts about the event: how it was attributed and by which source. */
  ldguard: {
    attribution: Attribution;
    /** rehash: the agent's periodic re-hash of the watched files found the change (agent/src/integrity.ts). */
    source: 'fanotify' | 'inotify' | 'rescan' | 'rehash' | 'reload' | 'stdin' | 'start';
    /** On a baseline_* alert: how the baseline was found (agent/src/known-files.ts BaselineOpened). */
    baseline_state?: { kind: string; detail?: string; expected_generation?: number; found_generation?: number };
    /** On a rules_reloaded alert: the digest of the rules now loaded, and how this file changed. */
    rules_digest?: string;
    rule_file_change?: 'modified' | 'added' | 'removed';
    /** True when the file's path is not UTF-8: file.path, name, directory (and extension) show
     * each byte that is not part of a UTF-8 sequence as \xNN, and each backslash as \x5c, so
     * the literal name is bytes (agent/src/byte-path.ts). Absent otherwise. */
    path_escaped?: true;
    /** True when a text field of the writer or its parent was not UTF-8 (a program run from
     * "/tmp/\xff/", an argument of raw bytes): process.executable, name, args (and so
     * command_line), working_directory and their process.parent counterparts each show such a
     * field as file.path does with path_escaped, field by field; well-formed fields, literal
     * backslashes included, are as they were. Absent otherwise. */
    process_escaped?: true;
    /** What the file is when ECS's file.type (file, dir, symlink) has no word for it: a FIFO, a
     * socket or a device node. file.type is then absent, never a wrong "file"; Elastic Defend has
     * no file.Ext field for it either. Absent for files, directories and symlinks. */
    file_type?: 'fifo' | 'socket' | 'char_device' | 'block_device';
    /** True when the agent runs with --root and the writer's executable lies outside that root
     * (a process of the agent's own side, e.g. a container's, writing into the mounted host):
     * process.executable (and working_directory) are then paths as the agent sees them, which
     * the host inside the root cannot see. Absent otherwise (see agent/src/enrich/proc.ts). */
    process_outside_root?: true;
    /** With attribution "unknown", why, when the source can tell: "exec_unseen" (the writer had
     * exec'd an image fanotify cannot see, such as a memfd, and was gone before /proc named it:
     * the image before that exec is NOT reported, it is not the writer), "writer_gone",
     * "created_before_dir_marked" (found by the rescan after a new directory: the file was made
     * in it before the agent's reader had the directory in its table, agent/native/src/subtree.c). */
    attribution_reason?: 'exec_unseen' | 'writer_gone' | 'created_before_dir_marked';
    /** On a max_signals summary alert: the window, its count and its groups (shared/throttle.ts). */
    summary?: SummaryFacts;
    /** On a held-back record (an alert past max_signals, recorded but paging no one): the uuid of
     * its window's first summary, shared by all that window's summaries as ldguard.summary.id. */
    held_back_by?: string;
    /** On an alert the rule raised but an exception list item spared: which one. The alert is
     * recorded (closed, paging no one, outside max_signals) so the spared write stays on record. */
    excepted_by?: { list_id: string; item_id: string };
    /** A change of what the host sees at a watched path (agent/src/mounts.ts): `id` is shared by
     * the alert on the change and by the alerts on files it revealed (found by the rescan that
     * follows it, as unidentified); `mount_id` is the kernel's 64-bit mount id (fanotify
     * FAN_REPORT_MNT), absent with the mountinfo fallback; `before` and `after` the path's
     * (st_dev, st_ino) as "dev:ino" ("" when absent); `no_process_reason` why the alert names
     * no process, when it names none. */
    view_change?: { id: string; mount_id?: string; before?: string; after?: string; no_process_reason?: string };
    /** The writer's executable against its package database (agent/src/enrich/package/): absent
     * when the writer is unknown. What an exclusion by name cannot fake (#19). */
    package?: PackageFacts;
    /** On an alert the agent raised at start about what happened while it was down
     * (agent/src/baseline/judge.ts): what differs from the baseline, and the package database's word. */
    baseline?: BaselineFacts;
    /** The resulting file against the watched root's package database, taken once the writer
     * (a verified package manager) exited or 120 s after the write: absent for any other writer,
     * whose alert does not wait (agent/src/enrich/package/file-verdict.ts). */
    file_package?: FilePackageFacts;
  };
}

export interface ThreatEntry {
  framework: 'MITRE ATT&CK';
  tactic: { id: string; name: string; reference: string };
  technique?: Array<{
    id: string;
    name: string;
    reference: string;
    subtechnique?: Array<{ id: string; name: string; reference: string }>;
  }>;
}

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type WorkflowStatus = 'open' | 'acknowledged' | 'closed';

/** An alert: the source event's ECS fields copied in, plus the signal's own fields. */
export interface Alert extends Omit<FileEvent, 'event'> {
  event: Omit<FileEvent['event'], 'kind'> & { kind: 'signal' };
  rule: {
    id: string;
    uuid: string;
    name: string;
    description: string;
    version: string;
    ruleset: string;
    reference?: string[];
    license?: string;
    author?: string[];
  };
  threat?: ThreatEntry[];
  kibana: {
    alert: {
      uuid: string;
      original_time: string;
      reason: string;
      severity: Severity;
      risk_score: number;
      workflow_status: WorkflowStatus;
      /** "default" on a held-back record: kept and searchable, not in the default alerts view (Elastic's building blocks). */
      building_block_type?: 'default';
      /** On a max_signals summary: the group it names (terms), when the window's records were held
       * back (start, end) and how many (docs_count, the whole window's count). */
      suppression?: { terms: SuppressionTerm[]; start: string; end: string; docs_count: number };
      original_event: FileEvent['event'];
      rule: {
        rule_id: string;
        uuid: string;
        name: string;
        type: 'eql';
        from: string;
        interval: string;
        max_signals: number;
        tags: string[];
        threat?: ThreatEntry[];
        version: number;
      };
    };
  };
}

/** The ECS version these documents follow. */
export const ECS_VERSION = '8.11.0';

/** The `event` of a file event as Elastic Defend writes it (endpoint.events.file), at `at`. */
export function fileEventMeta(at: string, type: FileEvent['event']['type'][number], action: FileEvent['event']['action']): FileEvent['event'] {
  return { id: randomUUID(), kind: 'event', category: ['file'], type: [type], action, dataset: 'endpoint.events.file', module: 'endpoint', created: at, outcome: 'success' };
}

/**
 * ldguard.baseline. status "changed_while_down": the file differs from the baseline (`changed`
 * names the fields, `before` holds what was recorded; an inode reused by `rm` + `cp` shows as
 * ctime, size or sha256); "new_while_down": no baseline entry, or another inode; "unverified": the
 * baseline could not be trusted (`baseline_state`: first_run, missing, corrupt, edited) and the
 * package database does not vouch for the file. `package`: that check, on every such alert; a
 * "verified" one makes the alert a record (ldguard.excepted_by), paging no one.
 */
export interface BaselineFacts {
  status: 'changed_while_down' | 'new_while_down' | 'unverified';
  changed?: string[];
  before?: Record<string, string | number | null>;
  baseline_state?: string;
  package: { manager: 'dpkg' | 'rpm' | 'pacman'; verdict: 'verified' | 'mismatch' | 'inconclusive'; reason: string; name?: string };
}

/** ldguard.file_package: the resulting file judged against the watched root's package database (file-verdict.ts). */
export interface FilePackageFacts {
  manager: 'dpkg' | 'rpm' | 'pacman';
  /** The name the file was judged by when not its own: a temporary name's (X.dpkg-new) final X. */
  judged_as?: string;
  name?: string;
  version?: string;
  verdict: 'verified' | 'mismatch' | 'inconclusive';
  reason: string;
  /** What offers that very package: apt's index file (dpkg), the repository id (rpm) or name (pacman); absent when none does. */
  offered_by?: string;
}

/**
 * ldguard.package. verdict "verified": the image the writer runs has the bytes its package
 * recorded, and no tracer is attached; "mismatch": the package lists the path but the bytes
 * differ; "inconclusive": it could not be told, and `reason` says why (writer_unknown,
 * writer_gone, no_database, not_in_any_package, no_md5sum (dpkg) or no_digest (rpm), too_large, image_deleted, traced,
 * image_changed_since_start; interpreter_environment: a live interpreter started with a variable
 * that makes it run code besides its script, PYTHONPATH and the like).
 * `role` is "package_manager" when the owning package is a package manager's.
 * A writer whose image is the interpreter of a "#!" script the kernel executed (dnf is python3
 * running /usr/bin/dnf) is judged as both: `interpreter` is the image's own verdict, `script` the
 * script's; `name` and `role` are the script's package, and the verdict is "verified" only when
 * both are (otherwise the first of the two that is not, and its reason).
 */
export interface PackageFacts {
  /** The database that judged the executable (the script's, for a script): dpkg's; rpm's, then pacman's, where dpkg lists no such file. */
  manager: 'dpkg' | 'rpm' | 'pacman';
  name?: string;
  role?: 'package_manager';
  verdict: 'verified' | 'mismatch' | 'inconclusive';
  reason: string;
  interpreter?: PackageVerdict;
  script?: PackageVerdict & { path: string };
}

/** One executable file's verdict against its package (ldguard.package.interpreter and .script). */
export interface PackageVerdict {
  name?: string;
  role?: 'package_manager';
  verdict: 'verified' | 'mismatch' | 'inconclusive';
  reason: string;
}

// The middle of the agent: raw kernel events → ECS file events → rules → max_signals → sinks.
// Every match is emitted: past max_signals as a held-back record, with summaries (shared/throttle.ts).
// Events arrive in kernel order on the JS thread. A matching new regular file waits (briefly,
// bounded by writeWaitMs) for its first write to complete so the alert can carry the file's hash;
// links, renames and directories are complete at once. The rules' verdict is taken on the event as
// it arrived, with the process facts read at that moment; one exception: a verified package
// manager's write that a rule with exception lists matched waits until that writer exits (at most
// 120 s, settle.ts), for the resulting file's package verdict (ldguard.file_package), which the
// default exception reads. Any other writer's alert never waits for it.
import { randomUUID } from 'node:crypto';
import { buildAlert } from '../../shared/alert.js';
import { ECS_VERSION, fileEventMeta, type Alert, type EcsAgent, type EcsHost, type FileEvent } from '../../shared/ecs.js';
import { exceptedBy } from '../../shared/exceptions/match.js';
import type { Logger } from '../../shared/log.js';
import type { Rule } from '../../shared/rule.js';
import { Throttle } from '../../shared/throttle.js';
import { displayPath, eventPath, hostPathOf, pathKey, splitPath, type FsPath } from './byte-path.js';
import { applyFacts, fileFacts, fileNames, type FileFacts } from './enrich/file.js';
import { entryOfPackageDatabase, inPackageDatabase } from './enrich/package/databases.js';
import { carriesManagerName } from './enrich/package/managers.js';
import type { FileVerifier } from './enrich/package/file-verdict.js';
import { Settle } from './enrich/package/settle.js';
import type { PackageVerifier } from './enrich/package/verify.js';
import { ecsParent, ecsProcess, processEscaped, processOutsideRoot } from './enrich/proc.js';
import type { NameTable } from './enrich/users.js';
import type { RawFileEvent } from './source/source.js';
import { alertJson } from './sink/alert-json.js';
import { lstatNow } from './stat-now.js';
import { idText, type ViewChange } from './mounts.js';

export interface PipelineOptions {
  realRoot: string;
  source: 'fanotify' | 'inotify';
  agent: EcsAgent;
  host: () => EcsHost;
  names: { users: NameTable; groups: NameTable };
  hashMaxBytes: number;
  writeWaitMs: number;
  log: Logger;
  /** The host's name for a real path (default: its place under realRoot); the agent's maps a
   * watched directory swapped for a symlink back to the watched path (mounts.ts). */
  hostPath?: (realPath: FsPath) => FsPath;
  /** Host paths of the loaders the host's binaries name (enrich/interp.ts): alerts on them are never held back. */
  loadersInUse?: ReadonlySet<string>;
  /** Judges the writer's executable against its package database (ldguard.package), before the
   * rules: absent, no event carries package facts. */
  packages?: PackageVerifier;
  /** Judges the resulting file against the watched root's package database (ldguard.file_package)
   * for a verified package manager's writes, once it exited: absent, no event waits for it. */
  files?: FileVerifier;
  /** Called with each alert, held-back record and summary, in the order they complete. Must not throw. */
  emit: (alert: Alert) => void;
  /** A directory whose name the rules care about appeared: the agent marks it (the rule's * crosses /).
   * Real paths are Buffers when their bytes are not UTF-8 (byte-path.ts). `movedIn`: it was renamed
   * into place (with whatever it holds), by the writer of `event`; `alerted`: a rule fired on it. */
  onDirectory: (realDir: FsPath, movedIn?: { event: FileEvent; alerted: boolean }) => void;
  /**
   * A file was created or renamed in and no rule fired on it (a package manager wrote it, say): it
   * was seen appearing, so the agent puts it in the baseline now; otherwise the next start's
   * rescan would report it as having appeared unobserved. Must not throw.
   */
  onUnalerted?: (realPath: FsPath, hostPath: string) => void;
}

interface Waiting {
  path: FsPath;
  alerts: Array<{ event: FileEvent; rule: Rule }>;
  timer: NodeJS.Timeout;
}

/**
 * A new name that will see no write: a symlink, or a hard link to an existing file (ln makes no
 * close-write event). Only those wait for nothing; a regular file with one link may still be written.
 */
function complete(realPath: FsPath): boolean {
  const st = lstatNow(realPath);
  return !st || st.isSymbolicLink() || st.nlink > 1 || !st.isFile(); // gone already: nothing to wait for
}

export class Pipeline {
  private rules: readonly Rule[];
  private readonly throttle = new Throttle();
  private readonly waiting = new Map<string, Waiting>(); // by pathKey
  private readonly inFlight = new Set<Promise<void>>();
  private readonly settle = new Settle();
  /** Where temporary names went (X.dpkg-new → X), from renames seen, for the file's verdict; bounded. */
  private readonly renamedTo = new Map<string, string>();
  private summaryTimer: NodeJS.Timeout | undefined;
  /** When summaryTimer fires (Infinity: no timer). */
  private summaryAt = Infinity;
  readonly counts = { events: 0, matched: 0, alerts: 0, heldBack: 0, excepted: 0 };
  /** Events spared by an exception, per rule and item (rule_id, list_id and item_id joined by NUL), since start. */
  readonly excepted = new Map<string, number>();

  constructor(
    rules: readonly Rule[],
    private readonly o: PipelineOptions,
  ) {
    this.rules = rules;
  }

  setRules(rules: readonly Rule[]): void {
    this.rules = rules;
  }

  handle(events: readonly RawFileEvent[]): void {
    for (const raw of events) {
      if (raw.kind === 'overflow') continue; // the agent rescans; nothing to judge here
      this.counts.events++;
      const realPath = eventPath(raw);
      if (raw.kind === 'close_write') {
        const w = this.waiting.get(pathKey(realPath));
        if (w) this.release(realPath, w);
      }
      // A close-write ends a wait; a write or attribute event is the integrity watch's to judge
      // (integrity.ts), which hands a change it finds to handleChange. Neither is judged here: a
      // loader's every close would otherwise be a "modification" whether or not anything changed.
      // The exception: a write in place to a package database (databases.ts), which the integrity
      // watch does not know and which the database rule judges as a "modification".
      if (raw.kind === 'close_write' || raw.kind === 'attrib') continue;
      if (raw.kind === 'modify' && !(this.o.files && inPackageDatabase(displayPath(hostPathOf(this.o.realRoot, realPath))))) continue;
      const event = this.toEcs(raw, realPath);
      if (this.o.files && inPackageDatabase(event.file.path) && !raw.isDir && !verifiedManager(event)) this.distrust(event);
      const from = event.file.Ext?.original?.path;
      if (from !== undefined && this.o.files) {
        if (this.renamedTo.size >= RENAMES_MAX) this.renamedTo.clear();
        this.renamedTo.set(from, event.file.path);
      }
      const hits = this.rules.filter((r) => r.query.match(event));
      const matched = hits.length > 0;
      this.counts.matched += hits.length;
      // A verified package manager's write that an exception may spare waits for the file's
      // verdict (settle.ts): the default exception reads it. Any other writer's alert never waits.
      if (matched && this.o.files && raw.process?.startTicks != null && verifiedManager(event) && hits.some((r) => r.exceptions.length > 0)) {
        const files = this.o.files;
        this.settle.add(raw.pid, raw.process.startTicks, () => {
          const p = event.process;
          const writer = p.args ? { args: p.args, cwd: p.working_directory, outsideRoot: event.ldguard.process_outside_root === true } : undefined;
          event.ldguard.file_package = files.facts(event.file.path, this.renamedTo.get(event.file.path), writer);
          for (const rule of hits) this.hold(realPath, this.judged(event, rule), rule, false);
        });
      } else {
        for (const rule of hits) this.hold(realPath, this.judged(event, rule), rule, raw.kind === 'create' && !raw.isDir && !raw.writeDone);
      }
      // A directory appearing in a package database (dpkg's tmp.ci, unpacked by tar for each
      // package) is not followed, though the database rule's * crosses /: the watch is of the
      // database directories themselves (databases.ts), and their files are what verdicts read.
      if (raw.isDir && !(this.o.files && entryOfPackageDatabase(event.file.path))) this.o.onDirectory(realPath, raw.kind === 'moved_to' ? { event, alerted: matched } : undefined);
      // Not a package database's files: the baseline is of the watched library directories.
      if (!matched && !raw.isDir && (raw.kind === 'create' || raw.kind === 'moved_to') && !inPackageDatabase(event.file.path)) this.o.onUnalerted?.(realPath, event.file.path);
    }
  }

  /**
   * Takes an event through every step an alert takes, up to its JSON text, and throws the result
   * away: V8 compiles a function at its first call, and the first alert after start paid for the
   * whole pipeline (write→alert 7.6-16 ms, against ~2 ms for the next ones; quick bench, 9 runs).
   * The agent rehearses with its self-test's event before it says ready. Emits nothing, and
   * leaves the counts, the max_signals windows and the waiting files as they were.
   */
  rehearse(raw: RawFileEvent): void {
    const realPath = eventPath(raw);
    const event = this.toEcs(raw, realPath);
    for (const rule of this.rules) rule.query.match(event);
    complete(realPath);
    const facts = fileFacts(realPath, this.o.hashMaxBytes, this.o.names);
    if (!(facts instanceof Promise)) applyFacts(event, facts);
    if (this.rules[0]) alertJson(buildAlert(event, this.rules[0], new Date().toISOString()));
  }

  /**
   * Files a rescan found that nobody saw appear: judged as creations with an unknown writer, and
   * why when the agent can tell (`reason` created_before_dir_marked: found after a new directory).
   * `viewChange`: the id of the change of view (a mount) whose rescan found them. A file's
   * `ldguard`: facts the start's judgement adds (ldguard.baseline, and excepted_by when the package
   * database confirms the file: then the alert is a record, as an exception's).
   */
  handleRescan(found: ReadonlyArray<{ hostPath: string; realPath: FsPath; ldguard?: Partial<FileEvent['ldguard']> }>, o: { reason?: RawFileEvent['attributionReason']; viewChange?: string } = {}): void {
    const reason = o.reason;
    for (const f of found) {
      const { dir, name } = splitPath(f.realPath);
      const event = this.toEcs(
        { kind: 'create', dir: displayPath(dir), name: displayPath(name), isDir: false, pid: 0, timeNs: BigInt(Date.now()) * 1_000_000n, attribution: 'unknown', ...(reason ? { attributionReason: reason } : {}), process: null, parent: null },
        f.realPath,
      );
      event.ldguard.source = 'rescan';
      if (f.ldguard) Object.assign(event.ldguard, f.ldguard);
      if (o.viewChange) event.ldguard.view_change = { id: o.viewChange };
      const hits = this.rules.filter((r) => r.query.match(event)).map((rule) => ({ event: this.judged(event, rule), rule }));
      this.counts.matched += hits.length;
      if (hits.length > 0) this.finish(hits, f.realPath);
    }
  }

  /**
   * A watched path leads to another directory or file now (mounts.ts): judged as a "change" event
   * with the view's action (mounted, unmounted, mount_changed, directory_replaced), by the process
   * that mounted when the kernel named it. Carries both identities and the id its rescan's alerts
   * share. A directory gets no file facts; a file (mounted over a loader) those it shows now.
   */
  handleViewChange(c: ViewChange): void {
    this.counts.events++;
    const { dir, name } = splitPath(c.realPath);
    const now = BigInt(Date.now()) * 1_000_000n;
    const base: RawFileEvent = c.mount
      ? { ...c.mount, kind: 'create', dir: displayPath(dir), name: displayPath(name), isDir: c.isDir, timeNs: c.mount.timeNs }
      : { kind: 'create', dir: displayPath(dir), name: displayPath(name), isDir: c.isDir, pid: 0, timeNs: now, attribution: 'unknown', process: null, parent: null };
    const event = this.toEcs(base, c.realPath);
    event.event.type = ['change'];
    event.event.action = c.action;
    event.file = { ...fileNames(c.hostPath), ...(c.isDir ? { type: 'dir' as const } : {}) };
    event.ldguard.view_change = {
      id: c.id,
      ...(c.mount?.name ? { mount_id: c.mount.name } : {}),
      before: idText(c.before),
      after: idText(c.after),
      ...(c.noProcessReason ? { no_process_reason: c.noProcessReason } : {}),
    };
    const hits = this.rules.filter((r) => r.query.match(event)).map((rule) => ({ event: this.judged(event, rule), rule }));
    if (hits.length === 0) return;
    this.counts.matched += hits.length;
    this.finish(hits, c.realPath, c.isDir || !c.after ? {} : undefined);
  }

  /**
   * A watched file changed in place (integrity.ts): judged as Elastic Defend's Linux "change"
   * event, action "modification" (content) or "attributes_modified" (mode, owner), by the writer
   * the change names (unknown when the re-hash found it). The file is known by several names (its
   * own, and symlinks that resolve to it): the first name a rule fires on is the alert's, so one
   * change gives one alert per rule; the facts (hash, size, mode) are the file's, read now.
   */
  handleChange(c: { action: 'modification' | 'attributes_modified'; realPath: string; names: readonly string[]; writer: RawFileEvent | null; how: 'event' | 'rehash'; ldguard?: Partial<FileEvent['ldguard']> }): void {
    this.counts.events++;
    const { dir, name } = splitPath(c.realPath);
    const { rawDir: _d, rawName: _n, ...writer } = c.writer ?? {};
    const base: RawFileEvent = c.writer
      ? { ...(writer as RawFileEvent), dir: displayPath(dir), name: displayPath(name), isDir: false }
      : { kind: 'modify', dir: displayPath(dir), name: displayPath(name), isDir: false, pid: 0, timeNs: BigInt(Date.now()) * 1_000_000n, attribution: 'unknown', process: null, parent: null };
    for (const hostPath of c.names) {
      const event = this.toEcs(base, c.realPath);
      event.event.type = ['change'];
      event.event.action = c.action;
      event.file = { ...fileNames(hostPath), ...(hostPath !== c.names[0] ? { target_path: c.names[0] } : {}) };
      if (c.how === 'rehash') event.ldguard.source = 'rehash';
      if (c.ldguard) Object.assign(event.ldguard, c.ldguard);
      const hits = this.rules.filter((r) => r.query.match(event)).map((rule) => ({ event: this.judged(event, rule), rule }));
      if (hits.length === 0) continue;
      this.counts.matched += hits.length;
      // A symlink's name, the target's facts: the file read is the one that changed.
      const facts = fileFacts(c.realPath, this.o.hashMaxBytes, this.o.names);
      const keepName = (f: FileFacts) => {
        const { target_path: _t, ...rest } = f;
        return rest;
      };
      this.finish(hits, c.realPath, facts instanceof Promise ? facts.then(keepName) : keepName(facts));
      return;
    }
  }

  /**
   * Files found in a directory just renamed into place (see Agent.rescan): they came with that
   * rename, so each is judged as a rename by the same writer, under its new path, with its old
   * path when the directory's is known; never as a creation by nobody. One that no rule fires on
   * joins the baseline (onUnalerted) as any file seen arriving does.
   */
  handleMovedIn(found: ReadonlyArray<{ hostPath: string; realPath: FsPath }>, via: FileEvent): void {
    const from = via.file.Ext?.original?.path;
    for (const f of found) {
      const file = fileNames(f.hostPath);
      if (from && f.hostPath.startsWith(`${via.file.path}/`)) {
        const old = from + f.hostPath.slice(via.file.path.length);
        file.Ext = { original: { path: old, name: file.name } };
      }
      const { path_escaped: _, ...ldguard } = via.ldguard;
      const event: FileEvent = {
        ...via,
        event: { ...via.event, id: randomUUID() },
        file,
        ldguard: { ...ldguard, ...(typeof f.realPath === 'string' ? {} : { path_escaped: true }) },
      };
      const hits = this.rules.filter((r) => r.query.match(event)).map((rule) => ({ event: this.judged(event, rule), rule }));
      this.counts.matched += hits.length;
      if (hits.length > 0) this.finish(hits, f.realPath);
      else this.o.onUnalerted?.(f.realPath, f.hostPath);
    }
  }

  /**
   * The event as this rule's alert will carry it: flagged ldguard.excepted_by when an item of one
   * of the rule's exception lists spares it. Taken with the rule's verdict, on the event as it
   * arrived (so an exception cannot see the file's hash, which comes later). The flagged event is
   * a copy: the same event may page for another rule.
   */
  private judged(event: FileEvent, rule: Rule): FileEvent {
    if (rule.exceptions.length === 0) return event;
    const by = exceptedBy(rule.exceptions, event, Date.now());
    if (!by) return event;
    this.counts.excepted++;
    const key = `${rule.ruleId}\0${by.list_id}\0${by.item_id}`;
    this.excepted.set(key, (this.excepted.get(key) ?? 0) + 1);
    return { ...event, ldguard: { ...event.ldguard, excepted_by: by } };
  }

  /**
   * A package database was written by something that is not a verified package manager: no file
   * verdict read from it is trusted again (fail closed) until the agent restarts.
   */
  private distrust(event: FileEvent): void {
    const files = this.o.files!;
    if (files.tainted) return;
    files.taint(`${event.file.path} written by ${event.process.executable ?? `pid ${event.process.pid ?? 'unknown'}`}`);
    this.o.packages?.taint();
    this.o.log.warn({ path: event.file.path, writer: event.process.executable ?? null, pid: event.process.pid ?? null }, 'a package database was written by a process that is not a verified package manager: file verdicts read from it are inconclusive until the agent restarts');
  }

  /** Emit the max_signals summaries that are due (updates, windows that ended), and wake again for the next. */
  private tick(): void {
    this.summaryTimer = undefined;
    this.summaryAt = Infinity;
    for (const s of this.throttle.due(Date.now())) this.o.emit(s);
    this.scheduleSummary();
  }

  // No timer runs while nothing is held back: an idle agent does not wake up. A record that opens
  // a new group brings the next due time forward (an update within a second), so an earlier due
  // time replaces the timer.
  private scheduleSummary(): void {
    const due = this.throttle.nextDue();
    if (due === null || due >= this.summaryAt) return;
    clearTimeout(this.summaryTimer);
    this.summaryAt = due;
    this.summaryTimer = setTimeout(() => this.tick(), Math.max(0, due - Date.now()));
  }

  /** Finish every waiting alert and the open windows' final summaries; for shutdown. */
  async drain(): Promise<void> {
    this.settle.flush();
    clearTimeout(this.summaryTimer);
    for (const w of this.waiting.values()) this.release(w.path, w);
    await Promise.all(this.inFlight);
    for (const s of this.throttle.due(Date.now(), true)) this.o.emit(s);
  }

  /** realPath: the file's path as the filesystem knows it (a Buffer for bytes that are not UTF-8). */
  toEcs(raw: RawFileEvent, realPath: FsPath): FileEvent {
    const host = this.o.host();
    // A path that is not UTF-8 is reported escaped (byte-path.ts), and flagged so.
    const hostPath = displayPath(this.o.hostPath ? this.o.hostPath(realPath) : hostPathOf(this.o.realRoot, realPath));
    const at = new Date(Number(raw.timeNs / 1_000_000n)).toISOString();
    const rename = raw.kind === 'moved_to';
    const creation = raw.kind === 'create';
    const event: FileEvent = {
      '@timestamp': at,
      event: fileEventMeta(at, creation ? 'creation' : 'change', creation ? 'creation' : rename ? 'rename' : 'modification'),
      file: { ...fileNames(hostPath), ...(raw.isDir ? { type: 'dir' } : {}), ...originalOf(raw, this.o.realRoot) },
      // An unidentified writer keeps what is known: its pid, and its parent (who ran it).
      process: raw.process
        ? ecsProcess(raw.process, raw.parent, host.id ?? '', this.o.names, this.o.realRoot)
        : raw.pid > 0
          ? { pid: raw.pid, ...(raw.parent ? { parent: ecsParent(raw.parent, host.id ?? '', this.o.realRoot) } : {}) }
          : {},
      host,
      agent: this.o.agent,
      ecs: { version: ECS_VERSION },
      ldguard: {
        attribution: raw.attribution,
        ...(raw.attributionReason ? { attribution_reason: raw.attributionReason } : {}),
        source: this.o.source,
        ...(typeof realPath === 'string' ? {} : { path_escaped: true }),
        ...(processEscaped(raw.process, raw.parent) ? { process_escaped: true } : {}),
        ...(processOutsideRoot(raw.process, this.o.realRoot) ? { process_outside_root: true } : {}),
      },
    };
    // Before the rules, as the rest of the process facts: the masquerade rule reads the verdict.
    // Only for a writer carrying a package manager's name (see PACKAGE_MANAGER_NAMES: a lookup can
    // cost 90 ms, and no rule reads another writer's verdict).
    if (raw.process && this.o.packages && (carriesManagerName(raw.process) || inPackageDatabase(event.file.path))) event.ldguard.package = this.o.packages.facts(raw.pid, raw.process, raw.attribution);
    if (event.process.user) event.user = { ...event.process.user };
    if (event.process.group) event.group = { ...event.process.group };
    return event;
  }

  private hold(realPath: FsPath, event: FileEvent, rule: Rule, waitForWrite: boolean): void {
    if (!waitForWrite || complete(realPath)) {
      this.finish([{ event, rule }], realPath);
      return;
    }
    const key = pathKey(realPath);
    const w = this.waiting.get(key);
    if (w) {
      w.alerts.push({ event, rule });
      return;
    }
    const entry: Waiting = {
      path: realPath,
      alerts: [{ event, rule }],
      timer: setTimeout(() => this.release(realPath, entry), this.o.writeWaitMs),
    };
    this.waiting.set(key, entry);
  }

  private release(realPath: FsPath, w: Waiting): void {
    clearTimeout(w.timer);
    this.waiting.delete(pathKey(realPath));
    this.finish(w.alerts, realPath);
  }

  private finish(items: Array<{ event: FileEvent; rule: Rule }>, realPath: FsPath, known?: FileFacts | Promise<FileFacts>): void {
    const conclude = (facts: FileFacts) => {
      for (const { event, rule } of items) {
        applyFacts(event, facts);
        const now = Date.now();
        if (event.ldguard.excepted_by) {
          this.o.emit(buildAlert(event, rule, new Date(now).toISOString())); // on record, paging no one: outside max_signals
          continue;
        }
        for (const s of this.throttle.due(now)) this.o.emit(s);
        const alert = buildAlert(event, rule, new Date(now).toISOString());
        // Past max_signals the alert is still emitted, as a held-back record (shared/throttle.ts);
        // a write to the loader in use never is one.
        const { out, heldBack } = this.throttle.admit(alert, rule, now, this.o.loadersInUse?.has(alert.file.path) ?? false);
        for (const a of out) this.o.emit(a);
        if (heldBack) {
          this.counts.heldBack++;
          this.scheduleSummary();
        } else {
          this.counts.alerts++;
        }
      }
    };
    const facts = known ?? fileFacts(realPath, this.o.hashMaxBytes, this.o.names);
    if (!(facts instanceof Promise)) return conclude(facts); // the common case: no thread-pool hop
    const p = facts
      .then(conclude)
      .catch((err: unknown) => this.o.log.error({ err, path: displayPath(realPath) }, 'could not complete an alert'))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }
}

const RENAMES_MAX = 4096;

/** The writer is a package manager whose executable matches its package's database. */
function verifiedManager(e: FileEvent): boolean {
  return e.ldguard.package?.verdict === 'verified' && e.ldguard.package.role === 'package_manager';
}

/** A rename's source as Elastic Defend reports it (file.Ext.original.path and .name), in the host's
 * view like file.path; nothing when the source did not say where the file came from. */
function originalOf(raw: RawFileEvent, realRoot: string): Pick<FileEvent['file'], 'Ext'> {
  if (raw.kind !== 'moved_to' || raw.originalDir === undefined || raw.originalName === undefined) return {};
  const real = eventPath({ dir: raw.originalDir, name: raw.originalName, rawDir: raw.rawOriginalDir, rawName: raw.rawOriginalName });
  const path = displayPath(hostPathOf(realRoot, real));
  return { Ext: { original: { path, name: path.slice(path.lastIndexOf('/') + 1) } } };
}

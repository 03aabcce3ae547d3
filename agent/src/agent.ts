// The agent daemon, started as ordered steps: load config → load rules → resolve watched dirs →
// host facts → open source → self-test → open sinks → rescan for gaps → ready. Teardown always
// runs, in reverse, whatever step failed.
import { existsSync, lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { posix } from 'node:path';
import type { Alert, EcsAgent, EcsHost, FileEvent } from '../../shared/ecs.js';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { loadRuleSet, type Rule, type RuleSet } from '../../shared/rule.js';
import { fieldsNotSet } from '../../shared/rule-fields.js';
import { VERSION } from '../../shared/version.js';
import { loadConfig, optionsNeedingRestart, withLiveOptions, type AgentConfig } from './config.js';
import { HostFacts } from './enrich/host.js';
import { hostNameTables } from './enrich/users.js';
import { loadersInUse } from './enrich/interp.js';
import { entityId } from './enrich/proc.js';
import { Integrity } from './integrity.js';
import { changedFiles, rulesChangedAlerts, rulesDigest, type RulesDigest } from './rules-digest.js';
import { QueueBarrier } from './queue-barrier.js';
import { KnownFiles, pathMatcher, RecentFiles, resolveLossy, scanMatching, type FoundFile } from './known-files.js';
import { Pipeline } from './pipeline.js';
import { namePrefixes, ruleDirectories } from './prefilter.js';
import { SelfTest } from './selftest.js';
import { openSinks, type Sinks } from './sink/open.js';
import { readNewestSegment } from './sink/spool.js';
import { openSource } from './source/select.js';
import type { RawFileEvent, Source } from './source/source.js';
import { notifySystemd } from './systemd.js';
import { resolveDirInRoot, resolveWatchDirs, toHostPath, type WatchDir } from './watch-dirs.js';
import { identityOf, preferredHost, ViewWatch, type Identity } from './mounts.js';
import { agentId } from './identity.js';
import { displayPath, eventPath, hostPathOf, pathKey, splitPath, type FsPath } from './byte-path.js';
import { lstatNow } from './stat-now.js';
import { PACKAGE_DATABASE_DIRS } from './enrich/package/databases.js';
import { FileVerifier } from './enrich/package/file-verdict.js';
import { PackageVerifier } from './enrich/package/verify.js';
import { baselineLostAlert } from './baseline/alerts.js';
import { judgeAtStart, packageDbException } from './baseline/judge.js';
import { rootDatabases } from './baseline/package-check.js';
import { resolvePathInRoot } from './watch-dirs.js';

const DEGRADED_RESCAN_MS = 10_000;

export interface AgentHealth {
  source: string;
  degraded: boolean;
  selfTest: { ms: number; attributed: boolean } | null;
  overflows: number;
  rescans: number;
  watched: string[];
  missing: string[];
  rules: string[];
  /** Per rule, the fields it names that the agent never sets (see warnUnsetFields). */
  ruleWarnings: string[];
  /** Exception lists bound to the loaded rules, as "rule_id list_id (N items) file". */
  exceptionLists: string[];
  /** Loader files watched whole for in-place changes (integrity.ts), and how often they are re-hashed. */
  integrity: { watched: number; rehashMs: number; marks: boolean };
  /** sha256 of the loaded rule files and exception lists (rules-digest.ts); in every hello and heartbeat. */
  rulesDigest: string;
}

export class Agent {
  private cleanup: Array<() => void | Promise<void>> = [];
  private source: Source | undefined;
  private pipeline: Pipeline | undefined;
  private sinks: Sinks | undefined;
  private known: KnownFiles | undefined;
  private integrity: Integrity | undefined;
  private integritySync: NodeJS.Immediate | undefined;
  private ruleFiles: RulesDigest | undefined;
  /** What the agent's own alerts (rules changed on reload) say of the host and the agent. */
  private alertContext: { host: () => EcsHost; agent: EcsAgent } | undefined;
  private selfTest: SelfTest | undefined;
  private dirs: WatchDir[] = [];
  /** Every watched host path: the configured ones and those the rules name (see start). */
  private watchPaths: string[] = [];
  private view: ViewWatch | undefined;
  /** The watched directories' identities when the source marked them, for the view watch. */
  private markedIds: Array<Identity | null> = [];
  /** The last mount event that came before the view watch started (it checks once at its start). */
  private earlyMount: RawFileEvent | undefined;
  /** Watched directories whose host path is not their real place (swapped for a symlink): real → host. */
  private hostDirs = new Map<string, string>();
  private prefixes: string[] = [];
  private ruleDirs: string[] = [];
  private matcher: ((hostPath: string) => boolean) | null = null;
  private realRoot = '/';
  private readonly marked = new Set<string>(); // by pathKey
  private readonly attributed: Record<string, number> = {};
  private readonly seen = new RecentFiles();
  /** fanotify only: orders the rescan after a new directory after the live events (queue-barrier.ts). */
  private barrier: QueueBarrier | undefined;
  /** New directories (host paths) whose check is scheduled and has not listed the disk yet (checkNewDirectory). */
  private newDirs: string[] = [];
  /** Directories renamed in (host paths) whose own check has not judged them yet, with a count. */
  private readonly movedPending = new Map<string, number>();
  readonly health: AgentHealth = { source: 'none', degraded: true, selfTest: null, overflows: 0, rescans: 0, watched: [], missing: [], rules: [], ruleWarnings: [], exceptionLists: [], integrity: { watched: 0, rehashMs: 0, marks: false }, rulesDigest: '' };

  constructor(
    private cfg: Readonly<AgentConfig>,
    private readonly log: Logger,
    private readonly configFile: string | undefined,
    private readonly overrides: Partial<Record<keyof AgentConfig, unknown>>,
  ) {}

  async start(): Promise<void> {
    const { cfg, log } = this;
    mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
    // Before agentId() makes one: an agent id already there means this host ran the agent before,
    // so a baseline missing now was deleted, not never made.
    const stateExisted = existsSync(posix.join(cfg.stateDir, 'agent-id'));

    const ruleSet = loadRuleSet(cfg.rules, cfg.exceptionBindings);
    const rules = ruleSet.rules;
    this.noteRules(ruleSet);
    this.ruleFiles = rulesDigest(ruleSet);
    this.health.rulesDigest = this.ruleFiles.digest;
    log.info({ rules: rules.map((r) => ({ id: r.ruleId, name: r.name, version: r.version, file: r.file })), exceptionLists: this.health.exceptionLists, rulesDigest: this.health.rulesDigest }, 'rules loaded');

    // The configured directories, and those the rules name in file.directory (the multiarch rule's
    // /usr/lib/<triplet>): a rule about a directory nobody watches would be written in vain. Most
    // hosts have one or two triplets, so a rule directory that is absent is not a warning.
    this.ruleDirs = ruleDirectories(rules);
    this.watchPaths = [...cfg.watch, ...this.ruleDirs.filter((d) => !cfg.watch.includes(d))];
    const { dirs, missing } = resolveWatchDirs(cfg.root, this.watchPaths);
    this.realRoot = realpathSync(cfg.root);
    this.dirs = dirs;
    this.health.watched = dirs.map((d) => d.host);
    this.health.missing = missing.filter((m) => cfg.watch.includes(m));
    if (this.health.missing.length > 0) log.warn({ missing: this.health.missing }, 'some watched directories do not exist under the root; they are not watched');
    log.info({ fromRules: this.ruleDirs.filter((d) => !missing.includes(d)) }, 'directories named by the rules are watched too');
    if (dirs.length === 0) throw new LdgError('LDG_ERR_NO_DIRS', `none of ${cfg.watch.join(', ')} exists under ${cfg.root}; check --root and the watch option`);
    this.prefixes = namePrefixes(rules, dirs.flatMap((d) => [d.host, ...d.aliases]));
    this.matcher = pathMatcher(rules);

    const host = await HostFacts.start(cfg.root, (err) => log.warn({ err: errorMessage(err) }, 'host facts refresh failed'));
    this.cleanup.push(() => host.stop());
    const agent: EcsAgent = { id: agentId(cfg.stateDir), type: 'ldguard', version: VERSION, name: host.current.name };
    this.alertContext = { host: () => host.current, agent };

    const source = await openSource(cfg.source, dirs.map((d) => d.real), this.prefixes, cfg.execGraceMs, log, { nestedDirs: cfg.nestedDirs });
    this.markedIds = dirs.map((d) => identityOf(d.real));
    this.source = source;
    this.cleanup.push(() => source.close());
    this.health.source = source.name;
    this.health.degraded = source.degraded;
    // Without it (a kernel before 5.17, a filesystem that refuses the mark) a new directory is marked
    // once its event is read: a file made in it at once is reported, but as unidentified.
    if (source.name === 'fanotify' && !cfg.nestedDirs) log.info({ nestedDirs: false }, 'nested_dirs is off: a file made at once inside a new rule-matching directory is reported without its writer (created_before_dir_marked)');
    else if (source.name === 'fanotify' && source.stats().creationMarks === 0) log.warn({ creationMarks: 0 }, 'no filesystem creation mark (needs Linux 5.17 and a filesystem that allows it): a file made at once inside a new rule-matching directory is reported without its writer (created_before_dir_marked)');

    const names = hostNameTables(cfg.root);
    const loaders = loadersInUse(cfg.root);
    if (loaders.named.length === 0) log.warn({ root: cfg.root }, 'no program interpreter (PT_INTERP) found in the root\'s binaries (bin/sh, usr/bin/env …): writes to the loader in use may be held back by max_signals like any other');
    else log.info({ interpreters: loaders.named, paths: [...loaders.paths] }, 'loaders in use: alerts on them are never held back');
    const sourceHealth = () => ({
      name: source.name,
      degraded: source.degraded,
      ...(source.degraded ? { reason: 'fanotify is not permitted: writers are not identified exactly; run the agent as root with CAP_SYS_ADMIN' } : {}),
    });
    const attribution = () => ({ degraded: source.degraded, counts: { ...this.attributed } });
    // A file joins the baseline just after its alert is accepted (emit): a kill -9 in between
    // leaves an accepted alert whose file the start rescan would report a second time. Those
    // alerts are in the spool's newest segment, read here before the spool's recovery deletes
    // acked segments, and their files go into the baseline before that rescan (below).
    const spooled = cfg.collector.length > 0 ? spooledFiles(await readNewestSegment(posix.join(cfg.stateDir, 'spool'))) : [];
    const sinks = await openSinks(
      cfg,
      log,
      () => ({
        agentId: agent.id,
        version: VERSION,
        hostname: host.current.hostname ?? 'unknown',
        host: { architecture: host.current.architecture, ip: host.current.ip, os: host.current.os },
        rules: { count: this.health.rules.length, ids: this.health.rules.map((r) => r.split(' ')[0]!) },
        rulesDigest: this.health.rulesDigest,
        ...(host.current.id ? { hostId: host.current.id } : {}),
        ...(this.known?.seal ? { baseline: this.known.seal } : {}),
        source: sourceHealth(),
        attribution: attribution(),
      }),
      () => ({
        eventsLost: this.health.overflows, source: sourceHealth(), attribution: attribution(), exceptions: this.exceptionCounts(), rulesDigest: this.health.rulesDigest,
        ...(this.known?.seal ? { baseline: this.known.seal } : {}),
      }),
    );
    this.sinks = sinks;
    this.cleanup.push(() => sinks.close());

    // Before ready: the first writer judged against a package database must not parse it on the event loop.
    const packages = new PackageVerifier(this.realRoot);
    packages.warm();
    const pipeline = new Pipeline(rules, {
      realRoot: this.realRoot,
      source: source.name,
      agent,
      host: () => host.current,
      names,
      hashMaxBytes: cfg.hashMaxBytes,
      writeWaitMs: cfg.writeWaitMs,
      loadersInUse: loaders.paths,
      hostPath: (real) => this.hostPathOf(real),
      packages,
      files: new FileVerifier(this.realRoot),
      log,
      emit: (a) => this.emit(a),
      onDirectory: (dir, movedIn) => void this.markDirectory(dir, true, movedIn),
      onUnalerted: (real, hostPath) => {
        try {
          this.known?.add(hostPath, lstatSync(real).ino);
        } catch {
          // gone again: nothing to remember
        }
      },
    });
    this.pipeline = pipeline;
    this.cleanup.push(() => pipeline.drain());

    if (cfg.selfTest) {
      const st = new SelfTest(cfg.stateDir);
      this.selfTest = st;
      this.cleanup.push(() => st.cleanup());
    }
    source.start((events) => this.onEvents(events));
    await this.watchPackageDatabases(source, packages);
    if (this.selfTest) {
      const r = await this.selfTest.run(source);
      this.health.selfTest = { ms: r.ms, attributed: r.attributed };
      log.info({ ms: Math.round(r.ms * 1000) / 1000, attributed: r.attributed, writerPid: r.pid }, 'self-test passed');
      // So that the first real alert does not pay for compiling the pipeline; a speed-up only,
      // never a reason not to start.
      try {
        pipeline.rehearse(r.event);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'rehearsing the alert path failed; the first alert will be slower');
      }
    }

    if (source.name === 'fanotify') {
      try {
        const barrier = await QueueBarrier.open(cfg.stateDir, source);
        this.barrier = barrier;
        this.cleanup.push(() => barrier.cleanup());
      } catch (err) {
        // Never a reason not to start: the rescan after a new directory then runs at once, as before.
        log.warn({ stateDir: cfg.stateDir, err: errorMessage(err) }, 'no queue barrier in the state dir: a file made in a new directory may be reported twice, once as unobserved');
      }
    }

    const baselineFile = posix.join(cfg.stateDir, 'known-files.json');
    const known = KnownFiles.open(baselineFile, log, { realRoot: this.realRoot, hashMaxBytes: cfg.hashMaxBytes, stateExisted });
    this.known = known;
    this.cleanup.push(() => known.flush());
    known.onSaved = () => sinks.pushHealth();
    if (!known.firstRun) {
      for (const f of spooled) {
        if (f.inPlace) known.refresh(f.path);
        else known.add(f.path, f.inode);
      }
    }
    this.judgeStart(known, baselineFile);
    await known.flush(); // the baseline is on disk before the agent says it is ready

    // The files of the baseline are watched whole from now on, their first state taken before
    // ready: a change made after the ready line is compared with what was there before it.
    const integrity = new Integrity({
      realRoot: this.realRoot,
      source,
      hashMaxBytes: cfg.hashMaxBytes,
      rehashMs: cfg.rehashMs,
      log,
      changed: (c) => pipeline.handleChange(c),
      entityOf: (e) => (e.process ? entityId(host.current.id ?? '', e.pid, e.process.startTicks) : null),
    });
    this.integrity = integrity;
    this.cleanup.push(() => {
      clearImmediate(this.integritySync);
      integrity.close();
    });
    known.onChange = () => {
      this.integritySync ??= setImmediate(() => {
        this.integritySync = undefined;
        void integrity.sync(known.paths()).then(() => this.noteIntegrity());
      });
    };
    await integrity.sync(known.paths());
    this.health.integrity = { watched: 0, rehashMs: cfg.rehashMs, marks: !!source.watchFile };
    this.noteIntegrity();
    this.startViewWatch(source, known);
    log.info({ files: integrity.counts.watched, rehashMs: cfg.rehashMs, marks: !!source.watchFile }, 'loader files watched for in-place changes');
    if (source.degraded) {
      // @parcel/watcher swallows inotify queue overflows (the bench lost files in an 80k burst with
      // no sign), so the degraded source is backed by a periodic rescan: late, never silent.
      const every = setInterval(() => this.rescan('periodic (inotify)'), DEGRADED_RESCAN_MS);
      every.unref();
      this.cleanup.push(() => clearInterval(every));
      log.warn({ everyMs: DEGRADED_RESCAN_MS }, 'inotify cannot report lost events: rescanning the watched directories periodically');
    }

    log.info({ source: source.name, degraded: source.degraded, watched: this.health.watched, prefixes: this.prefixes, root: cfg.root }, 'ready');
    notifySystemd('READY=1\nSTATUS=watching');
    const watchdogUs = Number(process.env.WATCHDOG_USEC);
    if (watchdogUs > 0) {
      const wd = setInterval(() => notifySystemd('WATCHDOG=1'), Math.max(1, Math.floor(watchdogUs / 2000)));
      wd.unref();
      this.cleanup.push(() => clearInterval(wd));
    }
  }

  /**
   * The package databases of the root, watched whole (names and writes in place): what the file
   * verdicts trust (enrich/package/databases.ts). Those absent (no rpm on Debian) are skipped; one
   * that cannot be marked is a warning, never a reason not to start.
   */
  private async watchPackageDatabases(source: Source, packages: PackageVerifier): Promise<void> {
    // inotify names no writer: every write would distrust the database, and none could be judged.
    if (source.degraded) return this.log.info({ source: source.name }, 'package databases not watched: the source names no writers');
    // Nor can any writer be judged without a package database read (none, or rpm's Berkeley DB of
    // rpm < 4.16): each transaction would page.
    if (!packages.judgesWriters()) return this.log.info({}, 'package databases not watched: no dpkg or rpm (sqlite) database to verify their writers against');
    const watched: string[] = [];
    for (const host of PACKAGE_DATABASE_DIRS) {
      const real = resolveDirInRoot(this.realRoot, host);
      if (!real) continue;
      try {
        await source.addDir(real, { forwardAll: true, content: true });
        watched.push(host);
      } catch (err) {
        this.log.warn({ dir: host, err: errorMessage(err) }, 'a package database directory could not be watched: writes to it are not seen');
      }
    }
    this.log.info({ dirs: watched }, 'package databases watched');
  }

  private onEvents(events: RawFileEvent[]): void {
    let keep = events;
    // The host's mount table changed (the addon's mount group): the view watch compares every
    // watched path with what is marked; nothing else judges these.
    if (keep.some((e) => e.kind === 'mount')) {
      for (const e of keep) {
        if (e.kind !== 'mount') continue;
        if (this.view) void this.view.changed(e);
        else this.earlyMount = e;
      }
      keep = keep.filter((e) => e.kind !== 'mount');
    }
    if (this.selfTest) keep = keep.filter((e) => !this.selfTest!.observe(e));
    if (this.barrier) keep = keep.filter((e) => !this.barrier!.observe(e));
    keep = this.exactNames(keep);
    for (const e of keep) {
      if (e.kind === 'overflow') {
        this.health.overflows++;
        this.log.warn({ overflows: this.health.overflows }, 'the kernel event queue overflowed: rescanning the watched directories');
        setImmediate(() => this.rescan('overflow'));
      }
    }
    // A file a rescan already reported can still arrive as a live event (inotify delivers late):
    // one file, one alert.
    keep = keep.filter((e) => e.kind !== 'create' || !this.seen.fromRescan(eventPath(e)));
    for (const e of keep) if (e.kind === 'create' || e.kind === 'moved_to') this.seen.live(eventPath(e));
    this.integrity?.onEvents(keep);
    this.pipeline?.handle(keep);
  }

  /**
   * A source that hands names over as strings (inotify: @parcel/watcher) writes U+FFFD for each
   * byte of a name that is not UTF-8, and gives no rawName: that path names no file. Judged as it
   * came, it gave an alert without file facts and a baseline entry no rescan finds, so the next
   * rescan reported the file again. Such an event is looked up again as bytes, at once, and goes
   * on as fanotify's would: the exact path (escaped in the alert), the file facts once its write
   * completes, the baseline keyed by the same bytes, and the rescan's dedupe (seen) by them too.
   * The source's attribution is kept: its /proc fd scan compares links decoded the same lossy way,
   * so it names the holder of the file or, with look-alike names, perhaps of a look-alike.
   * A close_write goes to every candidate (it releases a waiting alert; no rule fires on it). A
   * creation goes to the one candidate; among look-alikes (names in one folder that differ only
   * in bytes that are not UTF-8), to those new against the baseline and not judged live a moment
   * ago, else to the one changed last: one alert at least, never none. A file gone before the
   * look-up is reported by the name as it came, as the source reports any vanished file.
   */
  private exactNames(events: RawFileEvent[]): RawFileEvent[] {
    // fanotify gives rawName/rawDir for such names: a U+FFFD from it is the name's own character.
    if (this.source?.name !== 'inotify' || !events.some(lossy)) return events;
    const listings = new Map<string, Buffer[]>(); // each folder read once per batch
    const out: RawFileEvent[] = [];
    for (const e of events) {
      const found = lossy(e) ? resolveLossy(posix.join(e.dir, e.name), listings) : [];
      if (found.length === 0) {
        out.push(e);
        continue;
      }
      for (const real of e.kind === 'close_write' ? found : this.created(found)) {
        const { dir, name } = splitPath(real);
        out.push({
          ...e,
          dir: displayPath(dir),
          name: displayPath(name),
          ...(typeof dir === 'string' ? {} : { rawDir: dir }),
          ...(typeof name === 'string' ? {} : { rawName: name }),
          isDir: lstatNow(real)?.isDirectory() ?? false,
        });
      }
    }
    return out;
  }

  /** Which of the look-alikes a lossy creation was (see exactNames). */
  private created(found: FsPath[]): FsPath[] {
    if (found.length === 1) return found;
    const files: FoundFile[] = [];
    for (const realPath of found) {
      const st = lstatNow(realPath);
      if (st) files.push({ hostPath: displayPath(hostPathOf(this.realRoot, realPath)), realPath, inode: st.ino });
    }
    const fresh = (this.known?.diff(files) ?? files).filter((f) => !this.seen.wasLive(f.realPath, f.inode));
    if (fresh.length > 0) return fresh.map((f) => f.realPath);
    const ctime = (f: FoundFile) => lstatNow(f.realPath)?.ctimeMs ?? 0; // lstatNow: the stat above, not another
    const last = files.reduce<FoundFile | undefined>((a, f) => (a && ctime(a) >= ctime(f) ? a : f), undefined);
    return [last?.realPath ?? found[0]!];
  }

  /** A new rule-matching directory: watch it and everything below (the rule's * crosses /). */
  private async markDirectory(real: FsPath, rescan = true, movedIn?: MovedIn): Promise<void> {
    const key = pathKey(real);
    if (!this.source) return;
    // What it brought is judged by its own check, naming the mover, not by one listed meanwhile.
    const moved = movedIn && displayPath(hostPathOf(this.realRoot, real));
    if (moved) this.movedPending.set(moved, (this.movedPending.get(moved) ?? 0) + 1);
    // A rescan may have marked it already (it saw the directory before its event came): its
    // event still gets its check, for a directory renamed in above all.
    if (!this.marked.has(key)) {
      this.marked.add(key);
      try {
        await this.source.addDir(real, { forwardAll: true });
      } catch (err) {
        this.log.warn({ dir: displayPath(real), err: errorMessage(err) }, 'could not watch a new rule-matching directory');
      }
    }
    // Files written before the mark was in place are found by the rescan, reported as unobserved,
    // except those a directory renamed into place brought with it (see rescan).
    if (rescan) this.checkNewDirectory(real, movedIn && { ...movedIn, dir: real });
    else if (moved) this.movedDone(moved);
  }

  private movedDone(hostDir: string): void {
    const n = (this.movedPending.get(hostDir) ?? 1) - 1;
    if (n > 0) this.movedPending.set(hostDir, n);
    else this.movedPending.delete(hostDir);
  }

  /**
   * The rescan after a new directory. With the queue barrier (fanotify), what is on disk is listed
   * first, then the barrier passes, then the list is judged: every file listed was created before
   * the barrier's file, so if the kernel queued its creation the live event has been judged by then
   * (seen.wasLive), with its exact writer. A file left over was made before its directory was in the
   * reader's table (subtree.c): reported unidentified, and why. The directories of one batch of
   * events (mkdir -p: one per level) share one check; a directory renamed in gets its own, which
   * names the mover for what it brought.
   */
  private checkNewDirectory(real: FsPath, movedIn?: MovedIn & { dir: FsPath }): void {
    if (!this.barrier) {
      this.rescan('new directory', true, movedIn);
      if (movedIn) this.movedDone(displayPath(hostPathOf(this.realRoot, movedIn.dir)));
      return;
    }
    const dir = displayPath(hostPathOf(this.realRoot, movedIn ? movedIn.dir : real));
    if (!movedIn) {
      this.newDirs.push(dir);
      if (this.newDirs.length > 1) return; // the check scheduled will list this one too
    }
    setImmediate(() => {
      const dirs = movedIn ? [dir] : this.newDirs.splice(0);
      const scan = this.scan();
      if (!scan) return;
      void this.barrier?.pass().then((passed) => {
        if (!passed) this.log.warn({ dirs }, 'the queue barrier did not come through: files found after a new directory may be reported as unobserved although a live event names their writer');
        this.judgeScan('new directory', scan, true, movedIn, 'merge', dirs);
        if (movedIn) this.movedDone(dir);
      });
    });
  }

  /**
   * The start's rescan: what differs from the baseline, judged with the package database
   * (baseline/judge.ts). A baseline that was there and is gone, unreadable or edited is an alert of
   * its own first. Files reported stay out of the baseline, or keep their old entry, until their
   * alerts are accepted (emit), so a crash in between reports them again rather than losing them.
   */
  private judgeStart(known: KnownFiles, baselineFile: string): void {
    if (!this.matcher || !this.pipeline || !this.alertContext) return;
    const { log } = this;
    const opened = known.opened;
    const lost = baselineLostAlert(opened, baselineFile, { host: this.alertContext.host(), agent: this.alertContext.agent });
    if (lost) {
      log.warn({ baseline: opened }, 'the baseline of rule-matching files is not what this agent saved: every rule-matching file is checked against the package database');
      void this.sinks?.send(lost);
    } else if (opened.kind === 'upgraded') log.info({ file: baselineFile }, 'baseline upgraded: the first format kept inodes only; the files\' facts are recorded now');
    this.health.rescans++;
    const { files: found, subdirs } = scanMatching(this.realRoot, this.dirs, this.prefixes, this.matcher, (real) => this.hostPathOf(real));
    for (const d of subdirs) if (!this.marked.has(pathKey(d))) void this.markDirectory(d, false);
    const plan = judgeAtStart(known, found, { dbs: rootDatabases(this.realRoot), realRoot: this.realRoot, hashMaxBytes: this.cfg.hashMaxBytes });
    if (plan.unchecked) log.info({ files: found.map((f) => f.hostPath), unchecked: 'no package database under the root' }, 'first run: baseline of rule-matching files recorded');
    else if (known.firstRun) log.info({ vouched: plan.vouched, state: opened.kind }, 'no trusted baseline: rule-matching files checked against the package database');
    const pending = new Set<FoundFile>();
    const keep = new Set<string>();
    for (const j of plan.judged) {
      const ldguard = { baseline: j.facts, ...(j.confirmed ? { excepted_by: packageDbException(j.facts.package) } : {}) };
      const real = typeof j.file.realPath === 'string' ? resolvePathInRoot(this.realRoot, j.file.hostPath) : null;
      if (j.as !== 'creation' && real) {
        keep.add(j.file.hostPath);
        this.pipeline.handleChange({ action: j.as, realPath: real, names: [j.file.hostPath], writer: null, how: 'rehash', ldguard: { ...ldguard, source: 'rescan' } });
      } else {
        pending.add(j.file);
        this.seen.rescanned(j.file.realPath, j.file.inode);
        this.pipeline.handleRescan([{ ...j.file, ldguard }]);
      }
    }
    const appeared = plan.judged.filter((j) => j.facts.status === 'new_while_down').map((j) => j.file.hostPath);
    if (appeared.length > 0) log.warn({ why: 'start', files: appeared }, 'rule-matching files appeared while unobserved');
    if (plan.judged.length > 0) {
      log.warn({ files: plan.judged.map((j) => ({ path: j.file.hostPath, status: j.facts.status, changed: j.facts.changed, package: j.facts.package.verdict, excepted: j.confirmed })) }, 'rule-matching files differ from the baseline at start');
    }
    known.replace(found.filter((f) => !pending.has(f)), keep);
  }

  /**
   * Mounts and directory lifecycle (mounts.ts): every watched path kept marked where the host sees
   * it now. Started after the baseline, so that a file a mount hides or reveals is told from one
   * the agent knew.
   */
  private startViewWatch(source: Source, known: KnownFiles): void {
    const view = new ViewWatch({
      realRoot: this.realRoot,
      paths: this.watchPaths,
      dirs: this.dirs.map((d, i) => ({ ...d, id: this.markedIds[i] ?? null })),
      log: this.log,
      mark: (real) => source.addDir(real),
      unmark: (real) => source.removeDir?.(real),
      setDirs: (dirs) => {
        this.dirs = dirs;
        this.hostDirs = new Map(dirs.filter((d) => preferredHost(d) !== toHostPath(this.realRoot, d.real)).map((d) => [d.real, preferredHost(d)]));
        this.health.watched = dirs.map((d) => preferredHost(d));
      },
      knownFiles: () => known.entries(),
      alert: (c) => this.pipeline?.handleViewChange(c),
      rescan: (why, link) => {
        // Rule-matching subdirectories are marked by path once: under a directory that is another
        // one now, a subdirectory of the same name is another too. The rescan marks those it finds.
        this.marked.clear();
        this.rescan(why, true, undefined, link);
      },
    });
    this.view = view;
    this.cleanup.push(() => view.close());
    // What changed between the marks and now (the self-test, the baseline) is found by this check.
    void view.changed(this.earlyMount ?? null);
    this.earlyMount = undefined;
    const how = source.stats().mounts;
    this.log.info({ mounts: typeof how === 'string' ? how : 'directory lifecycle only (inotify)', viewRoot: view.viewRoot }, 'watching mounts and the watched paths\' directories');
  }

  /** A real path as the host names it: under a watched directory reached through a symlink swapped
   * in (see mounts.ts preferredHost), by the watched path; otherwise by its place under the root. */
  private hostPathOf(real: FsPath): FsPath {
    if (this.hostDirs.size > 0 && typeof real === 'string') {
      for (const [dir, host] of this.hostDirs) if (real === dir || real.startsWith(`${dir}/`)) return host + real.slice(dir.length);
    }
    return hostPathOf(this.realRoot, real);
  }

  /** Compare what is on disk with the baseline; files nobody saw appear become rescan events.
   * `view`: a change of what the host sees caused it (mounts.ts): files found are linked to it. */
  private rescan(why: string, report = true, movedIn?: MovedIn & { dir: FsPath }, view?: View): void {
    const scan = this.scan();
    if (scan) this.judgeScan(why, scan, report, movedIn, 'replace', [], view);
  }

  /** What is on disk now, the subdirectories found watched from now on. */
  private scan(): FoundFile[] | null {
    if (!this.known || !this.matcher || !this.pipeline) return null;
    this.health.rescans++;
    const { files: found, subdirs } = scanMatching(this.realRoot, this.dirs, this.prefixes, this.matcher, (real) => this.hostPathOf(real));
    for (const d of subdirs) if (!this.marked.has(pathKey(d))) void this.markDirectory(d, false);
    return found;
  }

  /**
   * Judges a scan against the baseline. `baseline`: replace it with the scan (taken just now), or
   * merge the scan in (taken before a barrier: what live events added since must stay).
   */
  private judgeScan(why: string, found: FoundFile[], report: boolean, movedIn: (MovedIn & { dir: FsPath }) | undefined, baseline: 'replace' | 'merge', dirs: string[] = [], view?: View): void {
    if (!this.known || !this.pipeline) return;
    let reported: typeof found = [];
    const fresh = this.known.diff(found);
    if (this.known.firstRun || !report) {
      this.log.info({ why, files: found.map((f) => f.hostPath) }, this.known.firstRun ? 'first run: baseline of rule-matching files recorded' : 'baseline of rule-matching files recorded');
    } else {
      // Files that just arrived as live events are on their way to alerts already, and those
      // another rescan reported a moment ago too.
      reported = fresh.filter((f) => !this.seen.wasLive(f.realPath, f.inode) && !this.seen.wasRescanned(f.realPath, f.inode));
      // What another directory renamed in brought is that directory's check's to judge.
      const own = movedIn && displayPath(hostPathOf(this.realRoot, movedIn.dir));
      const others = [...this.movedPending.keys()].filter((d) => d !== own);
      if (others.length > 0) reported = reported.filter((f) => !under(f.hostPath, others));
      // One mv, one alert: files a directory renamed into place brought with it were not created
      // unobserved; the rename was observed, writer and all. They are those under it whose
      // ctime is not later than the rename event (a file made inside it since is not).
      const brought = movedIn ? reported.filter((f) => cameWith(f, movedIn)) : [];
      if (brought.length > 0) {
        reported = reported.filter((f) => !brought.includes(f));
        if (movedIn!.alerted) {
          // The directory's own alert names the rename; its contents join the baseline with it.
          this.log.info({ dir: movedIn!.event.file.path, files: brought.map((f) => f.hostPath), event: movedIn!.event.event.id }, 'files arrived with a directory already reported as renamed into place');
        } else {
          for (const f of brought) this.seen.rescanned(f.realPath, f.inode);
          this.pipeline.handleMovedIn(brought, movedIn!.event);
        }
      }
      // The file a mount covered or uncovered has the mount's alert already: one change, one alert.
      if (view) reported = reported.filter((f) => !view.covered.has(f.hostPath));
      if (reported.length > 0) {
        this.log.warn({ why, files: reported.map((f) => f.hostPath), viewChange: view?.id }, 'rule-matching files appeared while unobserved');
        for (const f of reported) this.seen.rescanned(f.realPath, f.inode);
        // After the barrier, a file left over in a new directory was made before that directory
        // was in the reader's table; one elsewhere has no such reason.
        const early = baseline === 'merge' ? reported.filter((f) => under(f.hostPath, dirs)) : [];
        const viewChange = view?.id;
        if (early.length > 0) this.pipeline.handleRescan(early, { reason: 'created_before_dir_marked', viewChange });
        if (early.length < reported.length) this.pipeline.handleRescan(reported.filter((f) => !early.includes(f)), { viewChange });
      }
    }
    // Fresh files stay out of the baseline until their alerts are accepted (see emit).
    const pending = new Set(reported);
    const kept: FoundFile[] = found.filter((f) => !pending.has(f));
    // A file a mount hides is not deleted: when the mount goes, the same file is back, no new one.
    // So after a change of view, known files no path leads to now stay known (a file deleted
    // meanwhile stays too, harmlessly: no path leads to it, and the next plain rescan drops it).
    if (view) {
      const seen = new Set(found.map((f) => f.hostPath));
      for (const e of this.known.entries()) {
        if (!seen.has(e.hostPath) && lstatNow(posix.join(this.realRoot, e.hostPath)) === null) kept.push({ hostPath: e.hostPath, realPath: posix.join(this.realRoot, e.hostPath), inode: e.inode });
      }
    }
    if (baseline === 'replace') this.known.replace(kept);
    else for (const f of kept) this.known.add(f.hostPath, f.inode);
    if (baseline === 'merge') this.log.info({ dirs, reported: reported.map((f) => f.hostPath) }, 'new directory checked');
  }

  /** Health's view of the loaded rules and their lists; each loader warning is logged (at start and at each reload). */
  private noteRules({ rules, warnings }: RuleSet): void {
    this.health.rules = rules.map((r) => `${r.ruleId} ${r.name} v${r.version}`);
    this.warnUnsetFields(rules);
    this.health.exceptionLists = rules.flatMap((r) => r.exceptions.map((l) => `${r.ruleId} ${l.listId} (${l.items.length} items) ${l.file}`));
    for (const w of warnings) this.log.warn({ warning: w }, 'exception list loaded with a warning');
  }

  /**
   * A reload's rule files against the last ones: each file whose content changed (or that came or
   * went) is an alert of the agent's own, naming it; it goes to the sinks as it is, outside
   * max_signals and exception lists (which are rules' business, and what may have been edited).
   */
  private noteRuleFiles(now: RulesDigest): void {
    const before = this.ruleFiles;
    this.ruleFiles = now;
    this.health.rulesDigest = now.digest;
    if (!before || before.digest === now.digest || !this.alertContext) return;
    const changes = changedFiles(before, now);
    this.log.warn({ before: before.digest, after: now.digest, files: changes }, 'the reload loaded rule files or exception lists that changed');
    for (const a of rulesChangedAlerts(changes, { host: this.alertContext.host(), agent: this.alertContext.agent, digest: now.digest })) void this.sinks?.send(a);
  }

  private noteIntegrity(): void {
    if (this.integrity) this.health.integrity.watched = this.integrity.counts.watched;
  }

  /** Events spared by exceptions since start, per rule and item (heartbeat health, collector metrics). */
  exceptionCounts(): Array<{ ruleId: string; listId: string; itemId: string; count: number }> {
    return [...(this.pipeline?.excepted ?? new Map<string, number>())].map(([key, count]) => {
      const [ruleId, listId, itemId] = key.split('\0') as [string, string, string];
      return { ruleId, listId, itemId, count };
    });
  }

  private emit(alert: Alert): void {
    const how = alert.ldguard?.attribution ?? 'unknown';
    if (!alert.ldguard?.summary) this.attributed[how] = (this.attributed[how] ?? 0) + 1;
    // The file joins the baseline only once its alert is accepted (spooled): a crash in between
    // leaves it out, so the next start's rescan reports it rather than losing it. A held-back
    // record is accepted the same way, so it counts as reported: a restart does not report its
    // file again as having appeared unobserved.
    // A change in place is no new file: its alert may name a symlink with its target's inode.
    const inPlace = alert.event?.action === 'modification' || alert.event?.action === 'attributes_modified';
    void this.sinks?.send(alert).then(() => {
      if (!alert.file?.path) return;
      // Its facts read again, so the next start does not report a change already reported.
      if (inPlace) this.known?.refresh(alert.file.path);
      else if (alert.file.inode) this.known?.add(alert.file.path, Number(alert.file.inode));
    });
    if (!inPlace && alert.file?.path && alert.process?.entity_id) this.integrity?.createdBy(alert.file.path, alert.process.entity_id);
  }

  /**
   * A rule naming a valid field that this agent never sets (process.Ext.ancestry, say) loads, as
   * it would in Elastic, but its conditions on that field see it missing: said in the log and in
   * health, per rule, so that nobody believes such a rule runs as it does in Elastic.
   */
  private warnUnsetFields(rules: readonly Rule[]): void {
    this.health.ruleWarnings = rules.flatMap((r) => {
      const unset = fieldsNotSet(r.ast);
      if (unset.length === 0) return [];
      this.log.warn({ rule: r.ruleId, file: r.file, fields: unset }, 'a rule names fields this agent never sets: conditions on them see the field missing');
      return [`${r.ruleId} ${r.name}: never set by this agent: ${unset.join(', ')}`];
    });
  }

  /**
   * SIGHUP: reload config and rules; on any error keep running with the old ones. The collector
   * link is applied at once (reconnecting); options that shaped what start-up opened are named in
   * a warning, for a restart. Reloads run one after another (two quick SIGHUPs do not interleave).
   */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadNow());
    return this.reloading;
  }

  private reloading = Promise.resolve();

  private async reloadNow(): Promise<void> {
    try {
      const cfg = loadConfig(this.configFile, this.overrides);
      const restart = optionsNeedingRestart(this.cfg, cfg);
      const ruleSet = loadRuleSet(cfg.rules, cfg.exceptionBindings);
      const rules = ruleSet.rules;
      const prefixes = namePrefixes(rules, this.dirs.flatMap((d) => [d.host, ...d.aliases]));
      const ruleDirs = ruleDirectories(rules);
      if (ruleDirs.join('\0') !== this.ruleDirs.join('\0')) {
        // Marks are placed at start (watch-dirs.ts resolves them with the source); say so rather than watch less than the rules say.
        this.log.warn({ before: this.ruleDirs, after: ruleDirs }, 'the rules name other directories now: restart the agent to watch them');
      }
      // The last step that can fail: nothing of the new configuration is applied before it.
      const delivery = (await this.sinks?.reconfigure(cfg)) ?? 'unchanged';
      if (prefixes.join('\0') !== this.prefixes.join('\0')) {
        this.source?.setPrefixes(prefixes);
        this.prefixes = prefixes;
        this.log.info({ prefixes }, 'kernel name filter updated for the new rules');
        // Files the new rules care about were not in the baseline: record them without alerting,
        // as at a first start (they were there before these rules, not created unobserved).
        this.rescan('rules reloaded', false);
      }
      this.pipeline?.setRules(rules);
      this.matcher = pathMatcher(rules);
      void this.view?.changed(null); // a reload looks at the watched paths again too (none is needed)
      this.cfg = withLiveOptions(this.cfg, cfg);
      this.noteRules(ruleSet);
      this.noteRuleFiles(rulesDigest(ruleSet));
      if (restart.length > 0) this.log.warn({ options: restart }, 'these options changed but apply only at a restart (systemctl restart ldguard-agent); until then the old values hold');
      this.log.info({ rules: rules.length, exceptionLists: this.health.exceptionLists, rulesDigest: this.health.rulesDigest, collector: delivery }, 'reloaded configuration and rules');
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'reload failed; still running with the previous configuration and rules');
    }
  }

  async stop(): Promise<void> {
    notifySystemd('STOPPING=1');
    const steps = this.cleanup.reverse();
    this.cleanup = [];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'a shutdown step failed; continuing with the rest');
      }
    }
  }
}

/** A change of what the host sees (mounts.ts) that caused a rescan: its alert's id, and the files it covered or uncovered. */
type View = { id: string; covered: ReadonlySet<string> };

/** A directory renamed into place, as its event was judged (see Pipeline.onDirectory). */
type MovedIn = { event: FileEvent; alerted: boolean };

/** Whether a host path lies under one of the host directories. */
function under(hostPath: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => hostPath.startsWith(`${d}/`));
}

/** Whether a file a rescan found came with the directory renamed into place (see rescan). */
function cameWith(f: FoundFile, m: MovedIn & { dir: FsPath }): boolean {
  const bytes = (p: FsPath) => (typeof p === 'string' ? Buffer.from(p) : p);
  const dir = Buffer.concat([bytes(m.dir), Buffer.from('/')]);
  if (!bytes(f.realPath).subarray(0, dir.length).equals(dir)) return false;
  const st = lstatNow(f.realPath);
  // @timestamp is when the agent read the rename, after it happened: a file created inside in
  // between is taken as brought by the mover, who made the directory appear there anyway.
  return st !== null && st.ctimeMs <= Date.parse(m.event['@timestamp']) + 1;
}

/** An event whose path lost bytes that are not UTF-8 to U+FFFD (see Agent.exactNames). */
function lossy(e: RawFileEvent): boolean {
  return e.kind !== 'overflow' && !e.rawDir && !e.rawName && (e.dir.includes('\uFFFD') || e.name.includes('\uFFFD'));
}

/** Path and inode of each alert's file in spool payloads (alert JSON), and whether it was a change in place (its inode may be a symlink's target's); anything else is skipped. */
function spooledFiles(payloads: readonly Buffer[]): Array<{ path: string; inode: number; inPlace: boolean }> {
  const out: Array<{ path: string; inode: number; inPlace: boolean }> = [];
  for (const p of payloads) {
    try {
      const a = JSON.parse(p.toString('utf8')) as Alert;
      const inPlace = a.event?.action === 'modification' || a.event?.action === 'attributes_modified';
      if (a.file?.path && a.file.inode) out.push({ path: a.file.path, inode: Number(a.file.inode), inPlace });
    } catch {
      // not an alert we can read: nothing to remember
    }
  }
  return out;
}

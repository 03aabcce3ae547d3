// The agent daemon, started as ordered steps: load config → load rules → resolve watched dirs →
// host facts → open source → self-test → open sinks → rescan for gaps → ready. Teardown always
// runs, in reverse, whatever step failed.
import { lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { posix } from 'node:path';
import type { Alert, EcsAgent, EcsHost, FileEvent } from '../../shared/ecs.js';
import { LdgError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { loadRuleSet, type Rule, type RuleSet } from '../../shared/rule.js';
import { fieldsNotSet } from '../../shared/rule-fields.js';
import { VERSION } from '../../shared/version.js';
import { loadConfig, type AgentConfig } from './config.js';
import { HostFacts } from './enrich/host.js';
import { hostNameTables } from './enrich/users.js';
import { loadersInUse } from './enrich/interp.js';
import { Integrity } from './integrity.js';
import { changedFiles, rulesChangedAlerts, rulesDigest, type RulesDigest } from './rules-digest.js';
import { KnownFiles, pathMatcher, RecentFiles, resolveLossy, scanMatching, type FoundFile } from './known-files.js';
import { Pipeline } from './pipeline.js';
import { namePrefixes, ruleDirectories } from './prefilter.js';
import { SelfTest } from './selftest.js';
import { openSinks, type Sinks } from './sink/open.js';
import { readNewestSegment } from './sink/spool.js';
import { openSource } from './source/select.js';
import type { RawFileEvent, Source } from './source/source.js';
import { notifySystemd } from './systemd.js';
import { resolveDirInRoot, resolveWatchDirs, type WatchDir } from './watch-dirs.js';
import { agentId } from './identity.js';
import { displayPath, eventPath, hostPathOf, pathKey, splitPath, type FsPath } from './byte-path.js';
import { lstatNow } from './stat-now.js';
import { PACKAGE_DATABASE_DIRS } from './enrich/package/databases.js';
import { FileVerifier } from './enrich/package/file-verdict.js';
import { PackageVerifier } from './enrich/package/verify.js';

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
  private prefixes: string[] = [];
  private ruleDirs: string[] = [];
  private matcher: ((hostPath: string) => boolean) | null = null;
  private realRoot = '/';
  private readonly marked = new Set<string>(); // by pathKey
  private readonly attributed: Record<string, number> = {};
  private readonly seen = new RecentFiles();
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
    const { dirs, missing } = resolveWatchDirs(cfg.root, [...cfg.watch, ...this.ruleDirs.filter((d) => !cfg.watch.includes(d))]);
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

    const source = await openSource(cfg.source, dirs.map((d) => d.real), this.prefixes, cfg.execGraceMs, log);
    this.source = source;
    this.cleanup.push(() => source.close());
    this.health.source = source.name;
    this.health.degraded = source.degraded;

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
    const spooled = cfg.collector ? spooledFiles(await readNewestSegment(posix.join(cfg.stateDir, 'spool'))) : [];
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
        source: sourceHealth(),
        attribution: attribution(),
      }),
      () => ({ eventsLost: this.health.overflows, source: sourceHealth(), attribution: attribution(), exceptions: this.exceptionCounts(), rulesDigest: this.health.rulesDigest }),
    );
    this.sinks = sinks;
    this.cleanup.push(() => sinks.close());

    const pipeline = new Pipeline(rules, {
      realRoot: this.realRoot,
      source: source.name,
      agent,
      host: () => host.current,
      names,
      hashMaxBytes: cfg.hashMaxBytes,
      writeWaitMs: cfg.writeWaitMs,
      loadersInUse: loaders.paths,
      packages: new PackageVerifier(this.realRoot),
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
    await this.watchPackageDatabases(source);
    if (this.selfTest) {
      const r = await this.selfTest.run(source);
      this.health.selfTest = { ms: r.ms, attributed: r.attributed };
      log.info({ ms: Math.round(r.ms * 1000) / 1000, attributed: r.attributed, pid: r.pid }, 'self-test passed');
      // So that the first real alert does not pay for compiling the pipeline; a speed-up only,
      // never a reason not to start.
      try {
        pipeline.rehearse(r.event);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'rehearsing the alert path failed; the first alert will be slower');
      }
    }

    const known = KnownFiles.open(posix.join(cfg.stateDir, 'known-files.json'), log);
    this.known = known;
    this.cleanup.push(() => known.flush());
    if (!known.firstRun) for (const f of spooled) known.add(f.path, f.inode);
    this.rescan('start');
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
  private async watchPackageDatabases(source: Source): Promise<void> {
    // inotify names no writer: every write would distrust the database, and none could be judged.
    if (source.degraded) return this.log.info({ source: source.name }, 'package databases not watched: the source names no writers');
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
    if (this.selfTest) keep = events.filter((e) => !this.selfTest!.observe(e));
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
    if (this.marked.has(key) || !this.source) return;
    this.marked.add(key);
    try {
      await this.source.addDir(real, { forwardAll: true });
      // Files written before the mark was in place are found by the rescan, reported as unobserved,
      // except those a directory renamed into place brought with it (see rescan).
      if (rescan) this.rescan('new directory', true, movedIn && { ...movedIn, dir: real });
    } catch (err) {
      this.log.warn({ dir: displayPath(real), err: errorMessage(err) }, 'could not watch a new rule-matching directory');
    }
  }

  /** Compare what is on disk with the baseline; files nobody saw appear become rescan events. */
  private rescan(why: string, report = true, movedIn?: MovedIn & { dir: FsPath }): void {
    if (!this.known || !this.matcher || !this.pipeline) return;
    this.health.rescans++;
    const { files: found, subdirs } = scanMatching(this.realRoot, this.dirs, this.prefixes, this.matcher);
    for (const d of subdirs) if (!this.marked.has(pathKey(d))) void this.markDirectory(d, false);
    let reported: typeof found = [];
    const fresh = this.known.diff(found);
    if (this.known.firstRun || !report) {
      this.log.info({ why, files: found.map((f) => f.hostPath) }, this.known.firstRun ? 'first run: baseline of rule-matching files recorded' : 'baseline of rule-matching files recorded');
    } else {
      // Files that just arrived as live events are on their way to alerts already.
      reported = fresh.filter((f) => !this.seen.wasLive(f.realPath, f.inode));
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
      if (reported.length > 0) {
        this.log.warn({ why, files: reported.map((f) => f.hostPath) }, 'rule-matching files appeared while unobserved');
        for (const f of reported) this.seen.rescanned(f.realPath, f.inode);
        this.pipeline.handleRescan(reported);
      }
    }
    // Fresh files stay out of the baseline until their alerts are accepted (see emit).
    const pending = new Set(reported);
    this.known.replace(found.filter((f) => !pending.has(f)));
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
      if (!inPlace && alert.file?.inode && alert.file.path) this.known?.add(alert.file.path, Number(alert.file.inode));
    });
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

  /** SIGHUP: reload config and rules; on any error keep running with the old ones. */
  reload(): void {
    try {
      const cfg = loadConfig(this.configFile, this.overrides);
      const ruleSet = loadRuleSet(cfg.rules, cfg.exceptionBindings);
      const rules = ruleSet.rules;
      const prefixes = namePrefixes(rules, this.dirs.flatMap((d) => [d.host, ...d.aliases]));
      const ruleDirs = ruleDirectories(rules);
      if (ruleDirs.join('\0') !== this.ruleDirs.join('\0')) {
        // Marks are placed at start (watch-dirs.ts resolves them with the source); say so rather than watch less than the rules say.
        this.log.warn({ before: this.ruleDirs, after: ruleDirs }, 'the rules name other directories now: restart the agent to watch them');
      }
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
      this.cfg = cfg;
      this.noteRules(ruleSet);
      this.noteRuleFiles(rulesDigest(ruleSet));
      this.log.info({ rules: rules.length, exceptionLists: this.health.exceptionLists, rulesDigest: this.health.rulesDigest }, 'reloaded configuration and rules');
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

/** A directory renamed into place, as its event was judged (see Pipeline.onDirectory). */
type MovedIn = { event: FileEvent; alerted: boolean };

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

/** Path and inode of each alert's file in spool payloads (alert JSON); anything else is skipped. */
function spooledFiles(payloads: readonly Buffer[]): Array<{ path: string; inode: number }> {
  const out: Array<{ path: string; inode: number }> = [];
  for (const p of payloads) {
    try {
      const a = JSON.parse(p.toString('utf8')) as Alert;
      if (a.file?.path && a.file.inode) out.push({ path: a.file.path, inode: Number(a.file.inode) });
    } catch {
      // not an alert we can read: nothing to remember
    }
  }
  return out;
}

// The loaders' integrity over time. Elastic's rule, and the creation rules beside it, look at new
// names only: the loader overwritten in place (`cat evil > ld-linux-x86-64.so.2`, cp over it,
// truncate, append, a write through a shared mapping), or its mode or owner changed, makes no
// creation. So each file the baseline knows (known-files.ts), and for a symlink the file it
// resolves to inside the root, is watched whole: the source marks its inode (Source.watchFile),
// and this module turns what the marks report into changes:
//
// - content: at each close-write of a description that had the file open for writing, the file is
//   hashed again (in the thread pool); a hash or size other than the last one known is a
//   "modification", whose writer is the process of the last write (FAN_MODIFY) since the previous
//   check, or the closer when it is that same pid or there was no write event (a write through a
//   shared mapping has none; its close-write comes at the mapping's last release). So an alert's
//   hash is the content when its writer finished, and a later change is a new alert.
// - attributes: at each attribute event, mode, owner and group are compared with the last known
//   ones; another is "attributes_modified", by the process that made the event. Times and link
//   counts are not compared: a truncate or touch is no change of attributes worth a page. The
//   file's creator setting them right after its creation (`install -m 0755`: create 0600, close,
//   chmod) is part of that creation, already paged: logged, not a second alert (see createdBy).
// - the backstop: a mapping that is never released makes no close-write, and a source that cannot
//   mark files (inotify: its update events are taken as close-writes, when it delivers them) may
//   miss a change; so every rehashMs each watched file is hashed
//   again, one at a time, in the thread pool, and a change found is a modification with the writer
//   of its last write event if there was one, else unknown (ldguard.source "rehash").
//
// Checks of one file run one after another (a chain per file), so two close-writes cannot report
// one change twice. The first state of a file (its baseline) is taken when it starts being watched;
// sync() resolves once those are taken, so a change made after it is compared with the state before.
import type { Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { displayPath, eventPath, type FsPath } from './byte-path.js';
import { sha256 } from './enrich/file.js';
import type { RawFileEvent, Source } from './source/source.js';
import { resolvePathInRoot, toHostPath } from './watch-dirs.js';

/** What is compared: content (size and hash) and attributes (mode, owner, group), per inode. */
interface FileState {
  ino: number;
  size: number;
  sha256: string | null;
  mode: number;
  uid: number;
  gid: number;
}

interface Watched {
  realPath: string;
  /** The file's own host path, then the host paths of the known symlinks that resolve to it. */
  names: string[];
  state: FileState | null;
  /** The last write event since the last content check: names the writer of a change. */
  writer: RawFileEvent | null;
  /** The checks of this file, one after another. */
  chain: Promise<void>;
  marked: boolean;
}

export interface Change {
  action: 'modification' | 'attributes_modified';
  /** The real path of the file whose content or attributes changed (what the alert's facts are read from). */
  realPath: string;
  /** Host paths it is known by, its own first: the alert names the first that a rule fires on. */
  names: string[];
  /** The event of the process that made the change; null when unknown (found by the re-hash). */
  writer: RawFileEvent | null;
  how: 'event' | 'rehash';
}

export interface IntegrityOptions {
  realRoot: string;
  source: Source;
  hashMaxBytes: number;
  /** How often every watched file is hashed again (the backstop, see above); 0: never. */
  rehashMs: number;
  log: Logger;
  /** A watched file changed. Must not throw. */
  changed: (c: Change) => void;
  /** The process identity (enrich/proc.ts entityId) of an event's writer; null when unknown. */
  entityOf: (e: RawFileEvent) => string | null;
}

/** How long after a creation its writer's attribute changes count as part of it. */
const CREATION_SETTLES_MS = 10_000;

export class Integrity {
  private readonly files = new Map<string, Watched>(); // by real path
  private timer: NodeJS.Timeout | undefined;
  private rehashing = false;
  /** Creations already alerted, by real path: their writer's identity, and until when it may still set attributes. */
  private readonly creators = new Map<string, { entity: string; until: number }>();
  readonly counts = { watched: 0, checks: 0, rehashes: 0, changes: 0 };

  constructor(private readonly o: IntegrityOptions) {
    if (o.rehashMs > 0) {
      this.timer = setInterval(() => void this.rehash(), o.rehashMs);
      this.timer.unref();
    }
  }

  /**
   * Watch exactly the files these host paths name (the baseline's), each symlink's target with
   * them; marks what is new, unmarks what is gone, and resolves once each new file's first state
   * is taken. A path whose name is not UTF-8 (shown escaped) is skipped: it names no file here.
   */
  async sync(hostPaths: Iterable<string>): Promise<void> {
    const want = new Map<string, string[]>(); // real path → host names
    for (const host of hostPaths) {
      if (host.includes('\\x')) continue;
      const real = resolvePathInRoot(this.o.realRoot, host);
      if (real === null) continue;
      const own = toHostPath(this.o.realRoot, real);
      const names = want.get(real) ?? [own];
      if (host !== own && !names.includes(host)) names.push(host);
      want.set(real, names);
    }
    const firsts: Array<Promise<void>> = [];
    for (const [real, w] of this.files) {
      if (want.has(real)) continue;
      this.unwatch(w);
      this.files.delete(real);
    }
    for (const [real, names] of want) {
      const w = this.files.get(real);
      if (w) {
        w.names = names;
        // Replaced under its name (a rename over it, reported as such): watch the new inode.
        firsts.push(this.queue(w, async () => {
          const st = await lstatOrNull(real);
          if (st && w.state && st.ino !== w.state.ino) {
            this.mark(w);
            w.state = await this.stateOf(real);
          }
        }));
        continue;
      }
      const fresh: Watched = { realPath: real, names, state: null, writer: null, chain: Promise.resolve(), marked: false };
      this.files.set(real, fresh);
      this.mark(fresh);
      firsts.push(this.queue(fresh, async () => {
        fresh.state = await this.stateOf(real);
      }));
    }
    this.counts.watched = this.files.size;
    await Promise.all(firsts);
  }

  /**
   * A creation was alerted with this writer (its entity id): for a short while, attribute changes
   * by that same process (pid and start time) are the rest of the creation, not a change.
   */
  createdBy(hostPath: string, entity: string): void {
    const real = resolvePathInRoot(this.o.realRoot, hostPath);
    if (real === null) return;
    const now = Date.now();
    // Kept in the order they expire (a path seen again goes to the end): the expired are at the
    // front, so a flood of creations costs each one the entries it removes, not the whole map.
    for (const [p, c] of this.creators) {
      if (c.until > now) break;
      this.creators.delete(p);
    }
    this.creators.delete(real);
    this.creators.set(real, { entity, until: now + CREATION_SETTLES_MS });
  }

  /** Events from the source; those about watched files become checks. Never throws. */
  onEvents(events: readonly RawFileEvent[]): void {
    for (const e of events) {
      if (e.kind !== 'modify' && e.kind !== 'attrib' && e.kind !== 'close_write') continue;
      const real = eventPath(e);
      const w = typeof real === 'string' ? this.files.get(real) : undefined;
      if (!w) continue; // a new file's close-write: the pipeline's business
      if (e.kind === 'modify') w.writer = e;
      else if (e.kind === 'attrib') void this.queue(w, () => this.checkAttributes(w, e));
      else void this.queue(w, () => this.checkContent(w, e, 'event'));
    }
  }

  /** Hash every watched file again, one at a time; a change found is reported (see above). */
  async rehash(): Promise<void> {
    if (this.rehashing) return; // the last round is still going: a slow disk gets no pile-up
    this.rehashing = true;
    try {
      this.counts.rehashes++;
      for (const w of [...this.files.values()]) await this.queue(w, () => this.checkContent(w, null, 'rehash'));
    } finally {
      this.rehashing = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private queue(w: Watched, step: () => Promise<void>): Promise<void> {
    const next = w.chain.then(step).catch((err: unknown) => this.o.log.warn({ file: w.realPath, err: errorMessage(err) }, 'integrity check failed'));
    w.chain = next;
    return next;
  }

  private async checkContent(w: Watched, closer: RawFileEvent | null, how: 'event' | 'rehash'): Promise<void> {
    this.counts.checks++;
    const now = await this.stateOf(w.realPath);
    const before = w.state;
    if (!now || !before) {
      w.state = now ?? before;
      return;
    }
    if (now.ino !== before.ino) {
      // Another file under the name: its creation or rename was an event of its own (known-files.ts).
      w.state = now;
      return;
    }
    // The closer, when it is the last writer's own pid: its event sits later in the queue, after any
    // exec in between (`sh -c 'exec cat x > f'` truncates as sh and writes as cat, and the kernel may
    // merge both writes into one event at the first one's place, where the exec cache says sh).
    const writer = w.writer && (!closer || closer.pid !== w.writer.pid) ? w.writer : (closer ?? w.writer);
    if (how === 'event' || now.size !== before.size || now.sha256 !== before.sha256) w.writer = null;
    w.state = { ...now, mode: before.mode, uid: before.uid, gid: before.gid }; // attributes are checkAttributes'
    if (now.size === before.size && now.sha256 === before.sha256) return;
    this.counts.changes++;
    this.o.changed({ action: 'modification', realPath: w.realPath, names: w.names, writer, how });
  }

  private async checkAttributes(w: Watched, e: RawFileEvent): Promise<void> {
    const st = await lstatOrNull(w.realPath);
    const before = w.state;
    if (!st || !before || st.ino !== before.ino) return;
    w.state = { ...before, mode: st.mode, uid: st.uid, gid: st.gid };
    if (st.mode === before.mode && st.uid === before.uid && st.gid === before.gid) return;
    const creator = this.creators.get(w.realPath);
    if (creator && creator.until > Date.now() && this.o.entityOf(e) === creator.entity) {
      this.o.log.info({ file: displayPath(w.realPath), mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid, pid: e.pid }, 'attributes set by the writer that created the file, just after its creation alert: part of that creation');
      return;
    }
    this.counts.changes++;
    this.o.changed({ action: 'attributes_modified', realPath: w.realPath, names: w.names, writer: e, how: 'event' });
  }

  private async stateOf(real: string): Promise<FileState | null> {
    const st = await lstatOrNull(real);
    if (!st || !st.isFile()) return null;
    const sha = st.size <= this.o.hashMaxBytes ? await sha256(real, this.o.hashMaxBytes) : null;
    return { ino: st.ino, size: st.size, sha256: sha, mode: st.mode, uid: st.uid, gid: st.gid };
  }

  private mark(w: Watched): void {
    if (!this.o.source.watchFile) return;
    try {
      this.o.source.watchFile(w.realPath, true);
      w.marked = true;
    } catch (err) {
      this.o.log.warn({ file: displayPath(w.realPath), err: errorMessage(err) }, 'cannot watch a loader file for in-place changes; the periodic re-hash still covers it');
    }
  }

  private unwatch(w: Watched): void {
    if (!w.marked || !this.o.source.watchFile) return;
    try {
      this.o.source.watchFile(w.realPath, false);
    } catch {
      // gone with its inode: nothing left to unmark
    }
  }
}

async function lstatOrNull(p: FsPath): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch {
    return null;
  }
}


// The durable on-disk spool between the matcher and the collector: every alert for the collector is
// appended here and fsync'd before it counts as accepted, and leaves only when the collector acks it.
//
// Layout in the spool folder (0700):
//   0000000000000001.seg   append-only segments named after the sequence of their first record
//   ack                    JSON {"ackedSeq":N}: every record ≤ N is stored by the collector
//
// A record is a 16-byte header then its payload (one alert as JSON):
//   u32 BE payload length | u32 BE CRC32 of (seq bytes + payload) | u64 BE seq | payload
// Sequences are consecutive within a segment; a gap can only appear between segments, where a
// corrupt record was cut off. Power loss can leave the last record torn (short, or zero-filled by the
// filesystem): open() finds the first record whose length, CRC or sequence is wrong, logs it, cuts the
// segment there and delivers everything else.
//
// Group commit: appends that arrive while an fsync is running wait together and share the next
// write + fdatasync, so many concurrent senders cost one disk flush, not one each.
//
// Overflow policy: when the spool is full the NEWEST alert is refused (not queued), counted in
// `overflow` and logged; the alerts already spooled are kept. The first alerts of an intrusion are
// the evidence: a later flood (perhaps the attacker's own) must not push them out, and the sender
// never has a record deleted under it. The refused alert still reaches the alerts file and
// `ldguard tail`; the count reaches the collector in every heartbeat.
import { mkdir, open, readdir, readFile, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import { fsyncDir } from '../fsync-dir.js';

const HEADER_BYTES = 16;
/** No alert comes near this; a larger length in a header means the header itself is garbage. */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^(\d{16})\.seg$/;
const ACK_FILE = 'ack';
const OVERFLOW_LOG_EVERY_MS = 10_000;

export interface SpoolOptions {
  /** The spool folder (created 0700), e.g. `<state_dir>/spool`. */
  dir: string;
  /** Bound on the bytes on disk (spool_max_bytes); past it new alerts are refused and counted. */
  maxBytes: number;
  /** Start a new segment past this size; acked segments are deleted whole (default: maxBytes/8, at most 8 MiB). */
  segmentBytes?: number;
  logger?: Logger;
}

export interface SpoolRecord {
  seq: number;
  data: Buffer;
}

export interface SpoolHealth {
  /** Records appended and not yet acked. */
  depth: number;
  /** Bytes on disk (acked records in a live segment count until that segment is deleted). */
  bytes: number;
  maxBytes: number;
  /** Alerts refused because the spool was full, since open. */
  overflow: number;
  /** Torn or corrupt records skipped, since open. */
  torn: number;
  ackedSeq: number;
  /** Sequence of the last durable record (0 when none was ever written). */
  lastSeq: number;
  /** fdatasync calls made for appends since open (group commit keeps this far below appends). */
  syncs: number;
}

interface Segment {
  firstSeq: number;
  /** firstSeq - 1 while empty. */
  lastSeq: number;
  /** Durable bytes: everything below this offset is fsync'd and verified. */
  size: number;
  path: string;
}

interface PendingAppend {
  payload: Buffer;
  resolve: (seq: number | null) => void;
  reject: (err: Error) => void;
}

function frame(seq: number, payload: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  buf.writeUInt32BE(payload.length, 0);
  buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 8);
  buf.writeUInt32BE(seq >>> 0, 12);
  payload.copy(buf, HEADER_BYTES);
  buf.writeUInt32BE(crc32(buf.subarray(8)), 4);
  return buf;
}

interface Parsed {
  /** Offset just past the last good record. */
  end: number;
  count: number;
  /** Why parsing stopped before the end of the buffer. */
  problem?: string;
}

/** Walks the records in `buf`, which starts at a record boundary whose record has sequence `seq`. */
function parseRecords(buf: Buffer, seq: number, onRecord?: (seq: number, data: Buffer) => boolean): Parsed {
  let off = 0;
  let count = 0;
  while (off < buf.length) {
    const left = buf.length - off;
    if (left < HEADER_BYTES) return { end: off, count, problem: `truncated header (${left} of ${HEADER_BYTES} bytes)` };
    const len = buf.readUInt32BE(off);
    if (len > MAX_RECORD_BYTES) return { end: off, count, problem: `record length ${len} is impossible (garbage header)` };
    if (left < HEADER_BYTES + len) return { end: off, count, problem: `truncated record (${left - HEADER_BYTES} of ${len} payload bytes)` };
    const crc = buf.readUInt32BE(off + 4);
    if (crc32(buf.subarray(off + 8, off + HEADER_BYTES + len)) !== crc) return { end: off, count, problem: 'CRC mismatch' };
    const recSeq = buf.readUInt32BE(off + 8) * 0x1_0000_0000 + buf.readUInt32BE(off + 12);
    if (recSeq !== seq) return { end: off, count, problem: `sequence ${recSeq} where ${seq} was expected` };
    if (onRecord && !onRecord(seq, buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len))) {
      return { end: off, count };
    }
    off += HEADER_BYTES + len;
    seq += 1;
    count += 1;
  }
  return { end: off, count };
}

/**
 * The payloads in the newest segment of a spool folder as they are on disk, acked or not, oldest
 * first; none when there is no spool. For the agent's restart: it reads them before Spool.open,
 * whose recovery deletes acked segments. The alerts a run accepted just before it died are always
 * in the newest segment (it is never deleted while it takes appends).
 */
export async function readNewestSegment(dir: string): Promise<Buffer[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => SEGMENT_NAME.test(n)).sort();
  const name = names.at(-1);
  if (!name) return [];
  const buf = await readFile(join(dir, name)).catch(() => undefined);
  const out: Buffer[] = [];
  if (buf) parseRecords(buf, Number(SEGMENT_NAME.exec(name)![1]), (_seq, data) => out.push(data) > 0);
  return out;
}

export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  private readonly log: Logger | undefined;
  private segments: Segment[] = [];
  /** The segment appends go to, with its open handle. Always the last of `segments`. */
  private active: { seg: Segment; fh: FileHandle } | undefined;
  private pending: PendingAppend[] = [];
  private pendingBytes = 0;
  private bytesOnDisk = 0;
  private flushing: Promise<void> | undefined;
  private nextSeq = 1;
  private acked = 0;
  private overflow = 0;
  private torn = 0;
  private syncs = 0;
  private lastOverflowLog = 0;
  private closed = false;
  private readonly listeners = new Set<() => void>();
  /** Sequential reads continue where the last one ended instead of rescanning the segment. */
  private reader: { seg: Segment; fh: FileHandle; offset: number; nextSeq: number } | undefined;
  /** Ack-file writes are coalesced: one at a time, the newest value wins. */
  private ackWriting: Promise<void> | undefined;
  private ackWritten = 0;
  /** Set once close() has written the last ack: later acks change memory only. */
  private closedFully = false;

  private constructor(opts: SpoolOptions) {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 64 * 1024) {
      throw new LdgError('LDG_ERR_CONFIG', `spool_max_bytes is ${opts.maxBytes}; set it to at least 65536 (64 KiB)`);
    }
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = opts.segmentBytes ?? Math.min(8 * 1024 * 1024, Math.floor(opts.maxBytes / 8));
    this.log = opts.logger;
  }

  /** Opens (creating) the spool, recovering from a crash: cuts torn records, drops acked segments. */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const spool = new Spool(opts);
    try {
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
      await spool.recover();
    } catch (err) {
      if (err instanceof LdgError) throw err;
      throw new LdgError('LDG_ERR_SPOOL_IO', `cannot open the spool in ${opts.dir}: ${errorMessage(err)}. Check that the state dir is writable by the agent (root) and the disk is not full`, { cause: err });
    }
    return spool;
  }

  private async recover(): Promise<void> {
    this.acked = await this.readAckFile();
    this.ackWritten = this.acked;
    await rm(join(this.dir, `${ACK_FILE}.tmp`), { force: true });
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_NAME.test(n)).sort();
    let maxSeq = this.acked;
    for (const name of names) {
      const path = join(this.dir, name);
      const firstSeq = Number(SEGMENT_NAME.exec(name)![1]);
      const buf = await readFile(path);
      const parsed = parseRecords(buf, firstSeq);
      if (parsed.problem) {
        this.torn += 1;
        this.log?.warn({ segment: path, offset: parsed.end, problem: parsed.problem, kept: parsed.count },
          'torn spool record skipped: cut the segment at the last good record (a power loss or crash during a write); the records before it will be delivered');
        const fh = await open(path, 'r+');
        try {
          await fh.truncate(parsed.end);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      const seg: Segment = { firstSeq, lastSeq: firstSeq + parsed.count - 1, size: parsed.end, path };
      if (parsed.count > 0) maxSeq = Math.max(maxSeq, seg.lastSeq);
      if (parsed.count === 0 || seg.lastSeq <= this.acked) {
        await unlink(path);
        continue;
      }
      this.segments.push(seg);
      this.bytesOnDisk += seg.size;
    }
    this.nextSeq = maxSeq + 1;
    const last = this.segments.at(-1);
    if (last && last.size < this.segmentBytes) {
      this.active = { seg: last, fh: await open(last.path, 'r+') };
    }
    if (names.length > 0) await fsyncDir(this.dir);
    const h = this.health();
    if (h.depth > 0) this.log?.info({ depth: h.depth, bytes: h.bytes, ackedSeq: h.ackedSeq }, 'spool holds alerts not yet acked by the collector; they will be sent');
  }

  private async readAckFile(): Promise<number> {
    let text: string;
    try {
      text = await readFile(join(this.dir, ACK_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    const v = (() => {
      try {
        return (JSON.parse(text) as { ackedSeq?: unknown }).ackedSeq;
      } catch {
        return undefined;
      }
    })();
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
    // Written atomically, so this is tampering or disk damage. Resending everything is safe: the
    // collector stores each alert once.
    this.log?.warn({ file: join(this.dir, ACK_FILE) }, 'spool ack file unreadable: resending every spooled alert (the collector ignores duplicates)');
    return 0;
  }

  /**
   * Appends one record. Resolves with its sequence once it is fsync'd, or with null when the spool
   * is full and the record was refused (counted in `overflow`). Rejects only on an I/O error, in
   * which case nothing of the record stays on disk.
   */
  append(data: string | Buffer): Promise<number | null> {
    if (this.closed) return Promise.reject(new LdgError('LDG_ERR_SPOOL_CLOSED', 'append after the spool was closed; the agent must stop its pipeline before closing its sinks'));
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (payload.length > MAX_RECORD_BYTES) {
      return Promise.reject(new LdgError('LDG_ERR_SPOOL_RECORD', `record of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}; shorten the alert before spooling it`));
    }
    const need = HEADER_BYTES + payload.length;
    if (this.bytesOnDisk + this.pendingBytes + need > this.maxBytes) {
      this.overflow += 1;
      const now = Date.now();
      if (now - this.lastOverflowLog >= OVERFLOW_LOG_EVERY_MS) {
        this.lastOverflowLog = now;
        this.log?.warn({ overflow: this.overflow, maxBytes: this.maxBytes, depth: this.health().depth },
          'spool full: newest alert refused (counted and reported to the collector); restore the collector connection or raise spool_max_bytes');
      }
      return Promise.resolve(null);
    }
    this.pendingBytes += need;
    return new Promise((resolve, reject) => {
      this.pending.push({ payload, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (!this.flushing) this.flushing = this.flushLoop();
  }

  private async flushLoop(): Promise<void> {
    // Yield once so every append made in the same tick joins the first group.
    await null;
    try {
      while (this.pending.length > 0) await this.writeGroup(this.pending.splice(0));
    } finally {
      // Set synchronously after the last emptiness check, so no append can find a loop that is
      // about to end and not start a new one.
      this.flushing = undefined;
    }
  }

  /** Writes a group of appends, one write + fdatasync per segment touched. */
  private async writeGroup(group: PendingAppend[]): Promise<void> {
    let i = 0;
    while (i < group.length) {
      let chunk: PendingAppend[] = [];
      try {
        const first = group[i]!;
        const target = await this.segmentFor(HEADER_BYTES + first.payload.length);
        const seg = target.seg;
        const frames: Buffer[] = [];
        let bytes = 0;
        let seq = this.nextSeq;
        for (let j = i; j < group.length; j++) {
          const item = group[j]!;
          const len = HEADER_BYTES + item.payload.length;
          if (j > i && seg.size + bytes + len > this.segmentBytes) break;
          frames.push(frame(seq++, item.payload));
          chunk.push(item);
          bytes += len;
        }
        i += chunk.length;
        const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes);
        try {
          await target.fh.write(buf, 0, buf.length, seg.size);
          // fdatasync also flushes the file size, which is all an append changes.
          await target.fh.datasync();
          this.syncs += 1;
        } catch (err) {
          // Leave nothing half-written behind: the next record must start at a clean boundary.
          await target.fh.truncate(seg.size).catch(() => undefined);
          throw err;
        }
        const firstSeq = this.nextSeq;
        seg.size += bytes;
        seg.lastSeq += chunk.length;
        this.bytesOnDisk += bytes;
        this.pendingBytes -= bytes;
        this.nextSeq = seq;
        chunk.forEach((item, k) => item.resolve(firstSeq + k));
        chunk = [];
        for (const l of this.listeners) {
          try {
            l();
          } catch (err) {
            this.log?.error({ err: errorMessage(err) }, 'spool listener threw');
          }
        }
      } catch (err) {
        const rest = [...chunk, ...group.slice(i)];
        i = group.length;
        for (const item of rest) this.pendingBytes -= HEADER_BYTES + item.payload.length;
        const e = new LdgError('LDG_ERR_SPOOL_IO', `cannot write the spool in ${this.dir}: ${errorMessage(err)}. Free disk space or fix the state dir; alerts are still written to the alerts file`, { cause: err });
        this.log?.error({ err: errorMessage(err), lost: rest.length }, 'spool write failed');
        for (const item of rest) item.reject(e);
      }
    }
  }

  /** The segment that takes the next record: the active one, or a new one when it is full. */
  private async segmentFor(len: number): Promise<{ seg: Segment; fh: FileHandle }> {
    if (this.active && this.active.seg.size > 0 && this.active.seg.size + len > this.segmentBytes) {
      await this.active.fh.close();
      this.active = undefined;
    }
    if (this.active) return this.active;
    const firstSeq = this.nextSeq;
    const path = join(this.dir, `${String(firstSeq).padStart(16, '0')}.seg`);
    // 'w': a leftover file of this name can only hold records that were never acknowledged as
    // written (its sequences are ≥ nextSeq), so truncating it is right.
    const fh = await open(path, 'w', 0o600);
    try {
      await fsyncDir(this.dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    const seg: Segment = { firstSeq, lastSeq: firstSeq - 1, size: 0, path };
    this.segments.push(seg);
    this.active = { seg, fh };
    return this.active;
  }

  /**
   * Reads durable records with sequence ≥ fromSeq, in order, up to maxRecords and about maxBytes of
   * payload (at least one record when any is there). A gap (a corrupt record was cut off) ends the
   * batch; the next read continues after it. One reader: calls must not overlap.
   */
  async read(fromSeq: number, maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    if (this.reader && !this.segments.includes(this.reader.seg)) {
      // Its segment was acked and deleted; the open handle kept the inode alive until now.
      await this.reader.fh.close();
      this.reader = undefined;
    }
    const seg = this.segments.find((s) => s.lastSeq >= fromSeq && s.lastSeq >= s.firstSeq);
    if (!seg) return [];
    const start = Math.max(fromSeq, seg.firstSeq);
    let r = this.reader;
    if (!r || r.seg !== seg || r.nextSeq !== start) {
      if (r && r.seg !== seg) {
        await r.fh.close();
        r = undefined;
      }
      const fh = r?.fh ?? (await open(seg.path, 'r'));
      r = this.reader = { seg, fh, offset: 0, nextSeq: seg.firstSeq };
      // Skip to `start` by hopping over headers (the records were verified when written or opened).
      const head = Buffer.allocUnsafe(HEADER_BYTES);
      while (r.nextSeq < start) {
        await fh.read(head, 0, HEADER_BYTES, r.offset);
        r.offset += HEADER_BYTES + head.readUInt32BE(0);
        r.nextSeq += 1;
      }
    }
    const reader = r;
    const out: SpoolRecord[] = [];
    let bytes = 0;
    const corrupt = (problem: string): void => {
      // The bytes changed on disk after they were verified (disk damage): skip the rest of this
      // segment rather than resend the same bad bytes forever.
      this.torn += 1;
      this.log?.error({ segment: seg.path, offset: reader.offset, problem, lost: seg.lastSeq - reader.nextSeq + 1 },
        'spool record corrupt on disk: skipping the rest of its segment; check the disk');
      seg.lastSeq = reader.nextSeq - 1;
      seg.size = reader.offset;
    };
    while (out.length < maxRecords && reader.offset < seg.size && bytes < maxBytes) {
      const avail = seg.size - reader.offset;
      if (avail < HEADER_BYTES) {
        corrupt('segment ends inside a header');
        break;
      }
      const want = Math.min(avail, Math.max(maxBytes - bytes, HEADER_BYTES) + HEADER_BYTES);
      let buf = Buffer.allocUnsafe(want);
      await reader.fh.read(buf, 0, want, reader.offset);
      const recLen = HEADER_BYTES + buf.readUInt32BE(0);
      if (recLen > avail) {
        corrupt('record runs past the end of the segment');
        break;
      }
      if (recLen > want) {
        // One record bigger than what is left of the byte budget: end the batch before it, or,
        // when it would be the first, read exactly it so a batch is never empty.
        if (out.length > 0) break;
        buf = Buffer.allocUnsafe(recLen);
        await reader.fh.read(buf, 0, recLen, reader.offset);
      }
      const parsed = parseRecords(buf, reader.nextSeq, (seq, data) => {
        if (out.length >= maxRecords || (out.length > 0 && bytes + data.length > maxBytes)) return false;
        out.push({ seq, data: Buffer.from(data) });
        bytes += data.length;
        reader.offset += HEADER_BYTES + data.length;
        reader.nextSeq = seq + 1;
        return true;
      });
      // "truncated" only means the read ended inside the next record: the next pass reads it.
      if (parsed.problem && !parsed.problem.startsWith('truncated')) {
        corrupt(parsed.problem);
        break;
      }
      if (parsed.count === 0) break;
    }
    return out;
  }

  /** Records every sequence ≤ upTo as stored by the collector; deletes segments wholly acked. */
  async ack(upTo: number): Promise<void> {
    const top = this.nextSeq - 1;
    if (upTo > top) upTo = top;
    if (upTo <= this.acked) return;
    this.acked = upTo;
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (seg.lastSeq > upTo || this.active?.seg === seg) break;
      this.segments.shift();
      this.bytesOnDisk -= seg.size;
      await unlink(seg.path).catch((err: unknown) => this.log?.warn({ segment: seg.path, err: errorMessage(err) }, 'cannot delete an acked spool segment'));
    }
    await this.persistAck();
  }

  private async persistAck(): Promise<void> {
    while (this.ackWriting) await this.ackWriting;
    if (this.ackWritten >= this.acked || this.closedFully) return;
    const value = this.acked;
    this.ackWriting = (async () => {
      const tmp = join(this.dir, `${ACK_FILE}.tmp`);
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(JSON.stringify({ ackedSeq: value }));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, join(this.dir, ACK_FILE));
      await fsyncDir(this.dir);
      this.ackWritten = value;
    })().finally(() => {
      this.ackWriting = undefined;
    });
    await this.ackWriting;
  }

  /** Calls `fn` whenever new records become durable (the sender's cue to read). */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get ackedSeq(): number {
    return this.acked;
  }

  health(): SpoolHealth {
    let depth = 0;
    for (const s of this.segments) depth += Math.max(0, s.lastSeq - Math.max(s.firstSeq - 1, this.acked));
    return {
      depth,
      bytes: this.bytesOnDisk,
      maxBytes: this.maxBytes,
      overflow: this.overflow,
      torn: this.torn,
      ackedSeq: this.acked,
      lastSeq: this.nextSeq - 1,
      syncs: this.syncs,
    };
  }

  /** Waits for pending appends and the ack file, then closes the files. Unacked records stay. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.flushing) await this.flushing;
    await this.persistAck();
    this.closedFully = true;
    await this.active?.fh.close();
    this.active = undefined;
    await this.reader?.fh.close();
    this.reader = undefined;
    this.listeners.clear();
  }
}

// An rpm header as rpm's database stores it (rpmdb.sqlite's Packages.blob, rpm 4.16+): il and dl
// (32-bit, big-endian), il index entries of 16 bytes (tag, type, offset, count) and dl bytes of
// data. The first entry is the immutable region (tag 63): its 16-byte trailer, at the entry's
// offset, gives -16 x the number of entries the package's own header had; what rpm added at install
// (the signature tags, INSTALLTIME …) comes after. The region with rpm's header magic in front is
// what SHA256HEADER digests and RSAHEADER/DSAHEADER sign (measured: the digest recomputed from a
// stored header equals its SHA256HEADER).
// Only the tags the verdicts need are read. Malformed input throws RpmHeaderError, never reads
// outside the blob.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';

const MAGIC = Buffer.from([0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);
const REGION = 63;
const T = {
  NAME: 1000, VERSION: 1001, RELEASE: 1002, EPOCH: 1003, ARCH: 1022, DESCRIPTION: 1005,
  FILEDIGESTS: 1035, DIRINDEXES: 1116, BASENAMES: 1117, DIRNAMES: 1118, FILEDIGESTALGO: 5011,
  RSAHEADER: 268, DSAHEADER: 267, SHA256HEADER: 273,
} as const;
const TYPE = { INT32: 4, STRING: 6, BIN: 7, STRING_ARRAY: 8, I18NSTRING: 9 } as const;
/** rpm's FILEDIGESTALGO numbers (PGP hash algorithm ids) that Node can compute; no tag: md5. */
const ALGOS: Record<number, string> = { 1: 'md5', 2: 'sha1', 8: 'sha256', 9: 'sha384', 10: 'sha512' };

export class RpmHeaderError extends Error {}

interface Entry {
  type: number;
  offset: number;
  count: number;
}

export class RpmHeader {
  private readonly entries = new Map<number, Entry>();
  private readonly data: Buffer;
  /** rpm's header magic and the immutable region: the bytes SHA256HEADER digests and the header signature signs. */
  readonly signed: Buffer;

  constructor(readonly blob: Buffer) {
    if (blob.length < 8) throw new RpmHeaderError('header shorter than its counts');
    const il = blob.readUInt32BE(0);
    const dl = blob.readUInt32BE(4);
    if (il < 1 || 8 + il * 16 + dl !== blob.length) throw new RpmHeaderError('header counts do not match its length');
    this.data = blob.subarray(8 + il * 16);
    for (let i = 0; i < il; i++) {
      const at = 8 + i * 16;
      const tag = blob.readUInt32BE(at);
      const e = { type: blob.readUInt32BE(at + 4), offset: blob.readInt32BE(at + 8), count: blob.readUInt32BE(at + 12) };
      if (e.offset < 0 || e.offset > dl) throw new RpmHeaderError(`tag ${tag} points outside the header`);
      if (!this.entries.has(tag)) this.entries.set(tag, e);
    }
    const region = this.entries.get(REGION);
    if (blob.readUInt32BE(8) !== REGION || !region || region.offset + 16 > dl) throw new RpmHeaderError('no immutable region');
    const ril = -this.data.readInt32BE(region.offset + 8) / 16;
    const rdl = region.offset + 16;
    if (!Number.isInteger(ril) || ril < 1 || ril > il) throw new RpmHeaderError('bad immutable region');
    const counts = Buffer.alloc(8);
    counts.writeUInt32BE(ril, 0);
    counts.writeUInt32BE(rdl, 4);
    this.signed = Buffer.concat([MAGIC, counts, blob.subarray(8, 8 + ril * 16), this.data.subarray(0, rdl)]);
  }

  private strings(tag: number): string[] {
    const e = this.entries.get(tag);
    if (!e || (e.type !== TYPE.STRING && e.type !== TYPE.STRING_ARRAY && e.type !== TYPE.I18NSTRING)) return [];
    const out: string[] = [];
    let at = e.offset;
    for (let i = 0; i < (e.type === TYPE.STRING ? 1 : e.count); i++) {
      const end = this.data.indexOf(0, at);
      if (end === -1) throw new RpmHeaderError(`tag ${tag} runs past the header`);
      out.push(this.data.toString('utf8', at, end));
      at = end + 1;
    }
    return out;
  }

  private ints(tag: number): number[] {
    const e = this.entries.get(tag);
    if (!e || e.type !== TYPE.INT32) return [];
    if (e.offset + e.count * 4 > this.data.length) throw new RpmHeaderError(`tag ${tag} runs past the header`);
    return Array.from({ length: e.count }, (_, i) => this.data.readUInt32BE(e.offset + i * 4));
  }

  private bin(tag: number): Buffer | null {
    const e = this.entries.get(tag);
    if (!e || e.type !== TYPE.BIN || e.offset + e.count > this.data.length) return null;
    return this.data.subarray(e.offset, e.offset + e.count);
  }

  get name(): string {
    return this.strings(T.NAME)[0] ?? '';
  }

  /** VERSION-RELEASE, as repositories and `rpm -q` name it. */
  get version(): string {
    return `${this.strings(T.VERSION)[0] ?? ''}-${this.strings(T.RELEASE)[0] ?? ''}`;
  }

  get epoch(): string {
    return String(this.ints(T.EPOCH)[0] ?? 0);
  }

  get arch(): string {
    return this.strings(T.ARCH)[0] ?? '';
  }

  get description(): string {
    return this.strings(T.DESCRIPTION)[0] ?? '';
  }

  /** Every path the package lists (DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]). */
  files(): string[] {
    const dirs = this.strings(T.DIRNAMES);
    const idx = this.ints(T.DIRINDEXES);
    return this.strings(T.BASENAMES).map((b, i) => `${dirs[idx[i]!] ?? ''}${b}`);
  }

  /** The digest the package recorded for the path (any of `names`), with its algorithm as Node names it; null when none. */
  digest(names: ReadonlySet<string>): { algo: string; hex: string; listed: string } | null {
    const algo = ALGOS[this.ints(T.FILEDIGESTALGO)[0] ?? 1];
    if (!algo) return null;
    const digests = this.strings(T.FILEDIGESTS);
    const files = this.files();
    for (let i = 0; i < files.length; i++) {
      const p = posix.normalize(files[i]!);
      if (names.has(p) && digests[i]) return { algo, hex: digests[i]!, listed: p };
    }
    return null;
  }

  /** The OpenPGP signature packet over `signed` (RSAHEADER, else DSAHEADER); null when unsigned. */
  signature(): Buffer | null {
    return this.bin(T.RSAHEADER) ?? this.bin(T.DSAHEADER);
  }

  /** Whether SHA256HEADER, when present, is the digest of the immutable region (rpm checks it on every read). */
  digestHolds(): boolean {
    const want = this.strings(T.SHA256HEADER)[0];
    return want === undefined || createHash('sha256').update(this.signed).digest('hex') === want;
  }
}

// The compressions package metadata comes in, told by their magic bytes: gzip (apt, createrepo_c,
// pacman's sync databases and Debian's packages), zstd (Fedora's repository metadata, Arch's
// packages; fzstd: Node 20's zlib has none) and none. Bounded: an archive that unpacks to more
// than UNPACKED_MAX, or that cannot be read, is null (the caller treats it as unreadable).
import { gunzipSync } from 'node:zlib';
import { decompress as unzstd } from 'fzstd';

const UNPACKED_MAX = 1024 * 1024 * 1024;
const GZIP = Buffer.from([0x1f, 0x8b]);
const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** xz, bzip2: formats Node cannot read without a native dependency. */
const UNREAD = [Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.from('BZh')];

/** `raw` unpacked when compressed, as it is when not; null when it is in a format not read, corrupt or too large. */
export function unpacked(raw: Buffer): Buffer | null {
  try {
    if (raw.subarray(0, 2).equals(GZIP)) return gunzipSync(raw, { maxOutputLength: UNPACKED_MAX });
    if (raw.subarray(0, 4).equals(ZSTD)) {
      const out = unzstd(raw);
      return out.length > UNPACKED_MAX ? null : Buffer.from(out.buffer, out.byteOffset, out.length);
    }
  } catch {
    return null;
  }
  return UNREAD.some((m) => raw.subarray(0, m.length).equals(m)) ? null : raw;
}

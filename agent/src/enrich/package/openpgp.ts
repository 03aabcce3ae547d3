// The key ids of an OpenPGP public key (RFC 4880 packets, armored or binary): what an rpm header's
// signature names ("Key ID 2a654ac80625be7c") and what a repository's `gpgkey=` file holds. Only
// the ids are read, never a signature: rpm itself checks each header's signature against its
// keyring when it reads the header from its database (rpm-origin.ts says how that is relied on).
// Version 4 keys only (rpm 4.x imports no other): the id is the last 8 bytes of the SHA-1
// fingerprint over 0x99, the body's 16-bit length and the body, for primary keys and subkeys.
import { createHash } from 'node:crypto';

const PUBLIC_KEY = 6;
const PUBLIC_SUBKEY = 14;

/** The packets' bytes of an armored block (the text between the headers' blank line and the checksum), or the input as it is when not armored. */
function dearmor(text: Buffer): Buffer[] {
  const s = text.toString('latin1');
  if (!s.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) return [text];
  const blocks: Buffer[] = [];
  const re = /-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n([\s\S]*?)-----END PGP PUBLIC KEY BLOCK-----/g;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const lines = m[1]!.split(/\r?\n/);
    const blank = lines.findIndex((l) => l.trim() === '');
    const body = lines.slice(blank + 1).filter((l) => l.trim() !== '' && !l.startsWith('='));
    blocks.push(Buffer.from(body.join(''), 'base64'));
  }
  return blocks;
}

/** The (tag, body) of each packet; stops at the first it cannot frame (partial lengths are not used by keys). */
function* packets(b: Buffer): Generator<{ tag: number; body: Buffer }> {
  let at = 0;
  while (at < b.length) {
    const h = b[at]!;
    if (!(h & 0x80)) return;
    let tag: number;
    let len: number;
    let start: number;
    if (h & 0x40) {
      tag = h & 0x3f;
      const o1 = b[at + 1];
      if (o1 === undefined) return;
      if (o1 < 192) [len, start] = [o1, at + 2];
      else if (o1 < 224) [len, start] = [((o1 - 192) << 8) + (b[at + 2] ?? 0) + 192, at + 3];
      else if (o1 === 255 && at + 6 <= b.length) [len, start] = [b.readUInt32BE(at + 2), at + 6];
      else return;
    } else {
      tag = (h >> 2) & 0x0f;
      const type = h & 3;
      if (type === 0 && at + 2 <= b.length) [len, start] = [b[at + 1]!, at + 2];
      else if (type === 1 && at + 3 <= b.length) [len, start] = [b.readUInt16BE(at + 1), at + 3];
      else if (type === 2 && at + 5 <= b.length) [len, start] = [b.readUInt32BE(at + 1), at + 5];
      else if (type === 3) [len, start] = [b.length - at - 1, at + 1];
      else return;
    }
    if (start + len > b.length) return;
    yield { tag, body: b.subarray(start, start + len) };
    at = start + len;
  }
}

/** The 16-hex-digit ids (lower case) of every v4 primary key and subkey in `key`; empty when it holds none. */
export function keyIds(key: Buffer): string[] {
  const ids: string[] = [];
  for (const block of dearmor(key)) {
    for (const p of packets(block)) {
      if ((p.tag !== PUBLIC_KEY && p.tag !== PUBLIC_SUBKEY) || p.body[0] !== 4 || p.body.length > 0xffff) continue;
      const head = Buffer.from([0x99, p.body.length >> 8, p.body.length & 0xff]);
      ids.push(createHash('sha1').update(head).update(p.body).digest('hex').slice(-16));
    }
  }
  return ids;
}

// OpenPGP (RFC 4880) as far as rpm's header signatures need it: the key ids of a public key
// (armored or binary: a repository's `gpgkey=` file, a key in rpm's keyring) and the check of a
// version 4 signature packet (rpm's RSAHEADER) over given bytes with one of those keys.
// Version 4 keys only (rpm 4.x imports no other): the id is the last 8 bytes of the SHA-1
// fingerprint over 0x99, the body's 16-bit length and the body, for primary keys and subkeys.
// Signatures by RSA keys only (what Fedora, RHEL and their rebuilds sign with); any other
// algorithm, or a version 3 signature, is not verified (the caller treats it as unsigned).
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';

const SIGNATURE = 2;
const PUBLIC_KEY = 6;
const PUBLIC_SUBKEY = 14;
const RSA_ALGOS = new Set([1, 2, 3]);
/** OpenPGP hash algorithm ids as Node names them. */
const HASHES: Record<number, string> = { 2: 'sha1', 8: 'sha256', 9: 'sha384', 10: 'sha512', 11: 'sha224' };
const ISSUER = 16;
const ISSUER_FINGERPRINT = 33;

export interface PublicKey {
  /** 16 hex digits, lower case. */
  id: string;
  /** The key, for an algorithm signatures are verified with (RSA); null for any other. */
  key: KeyObject | null;
}

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

/** An MPI at `at`: its bytes and where the next field starts; null when it runs past the end. */
function mpi(b: Buffer, at: number): { bytes: Buffer; next: number } | null {
  if (at + 2 > b.length) return null;
  const len = Math.ceil(b.readUInt16BE(at) / 8);
  if (at + 2 + len > b.length) return null;
  return { bytes: b.subarray(at + 2, at + 2 + len), next: at + 2 + len };
}

/** A v4 public key packet's RSA key (n, e), or null for another algorithm or a malformed body. */
function rsaKey(body: Buffer): KeyObject | null {
  if (!RSA_ALGOS.has(body[5] ?? -1)) return null;
  const n = mpi(body, 6);
  const e = n && mpi(body, n.next);
  if (!n || !e) return null;
  try {
    return createPublicKey({ key: { kty: 'RSA', n: n.bytes.toString('base64url'), e: e.bytes.toString('base64url') }, format: 'jwk' });
  } catch {
    return null;
  }
}

/** Every v4 primary key and subkey in `key`, with its id. */
export function publicKeys(key: Buffer): PublicKey[] {
  const out: PublicKey[] = [];
  for (const block of dearmor(key)) {
    for (const p of packets(block)) {
      if ((p.tag !== PUBLIC_KEY && p.tag !== PUBLIC_SUBKEY) || p.body[0] !== 4 || p.body.length > 0xffff) continue;
      const head = Buffer.from([0x99, p.body.length >> 8, p.body.length & 0xff]);
      out.push({ id: createHash('sha1').update(head).update(p.body).digest('hex').slice(-16), key: rsaKey(p.body) });
    }
  }
  return out;
}

/** The 16-hex-digit ids (lower case) of every v4 primary key and subkey in `key`; empty when it holds none. */
export function keyIds(key: Buffer): string[] {
  return publicKeys(key).map((k) => k.id);
}

/** The issuer key id named in a signature's subpackets (issuer, or issuer fingerprint of a v4 key). */
function issuer(sub: Buffer): string | null {
  let at = 0;
  while (at < sub.length) {
    const o1 = sub[at]!;
    let len: number;
    if (o1 < 192) [len, at] = [o1, at + 1];
    else if (o1 < 255) [len, at] = [((o1 - 192) << 8) + (sub[at + 1] ?? 0) + 192, at + 2];
    else if (at + 5 <= sub.length) [len, at] = [sub.readUInt32BE(at + 1), at + 5];
    else return null;
    if (len < 1 || at + len > sub.length) return null;
    const type = sub[at]! & 0x7f;
    const body = sub.subarray(at + 1, at + len);
    if (type === ISSUER && body.length === 8) return body.toString('hex');
    if (type === ISSUER_FINGERPRINT && body[0] === 4 && body.length === 21) return body.subarray(13).toString('hex');
    at += len;
  }
  return null;
}

/**
 * The id of the key among `keys` whose valid signature `sig` (one v4 signature packet, as rpm
 * stores it) is over `data`; null when the signature is not over these bytes, its key is not
 * among `keys`, or it cannot be checked (another algorithm, version 3, malformed).
 */
export function verifiedSigner(data: Buffer, sig: Buffer, keys: readonly PublicKey[]): string | null {
  const p = packets(sig).next().value;
  if (!p || p.tag !== SIGNATURE || p.body[0] !== 4 || p.body.length < 6) return null;
  const b = p.body;
  const [pubalg, hashalg] = [b[2]!, b[3]!];
  const hashed = b.readUInt16BE(4);
  if (6 + hashed + 2 > b.length) return null;
  const unhashed = b.readUInt16BE(6 + hashed);
  const after = 6 + hashed + 2 + unhashed;
  if (after + 2 > b.length) return null;
  const id = issuer(b.subarray(6, 6 + hashed)) ?? issuer(b.subarray(8 + hashed, after));
  const hash = HASHES[hashalg];
  const key = keys.find((k) => k.id === id)?.key;
  const s = mpi(b, after + 2);
  if (!id || !hash || !key || !RSA_ALGOS.has(pubalg) || !s) return null;
  const trailer = Buffer.alloc(6);
  trailer.writeUInt16BE(0x04ff, 0);
  trailer.writeUInt32BE(6 + hashed, 2);
  const size = Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
  if (s.bytes.length > size) return null;
  const padded = Buffer.concat([Buffer.alloc(size - s.bytes.length), s.bytes]);
  try {
    return verify(hash, Buffer.concat([data, b.subarray(0, 6 + hashed), trailer]), key, padded) ? id : null;
  } catch {
    return null;
  }
}

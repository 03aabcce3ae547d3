// rpm's database read by the agent itself (rpm-db.ts, rpm-header.ts, openpgp.ts), on databases the
// genuine rpm wrote: packages built by rpmbuild, signed by rpmsign with keys of the genuine gpg. A
// header is trusted as rpm trusts it: its digest must hold (else it is skipped, as rpm skips it),
// and its signer is only a key of rpm's keyring whose signature over the header checks out. The
// forgeries are edits of the stored header, as root could make them.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { RpmDb } from '../../agent/src/enrich/package/rpm-db.js';
import { RpmHeader } from '../../agent/src/enrich/package/rpm-header.js';
import { scratchRoot } from '../helpers/agent.js';
import { buildLoaderRpm, rpmDatabase, rpmInstall, signingKey, signRpm } from '../helpers/rpm.js';
import { removeWhenDone, tempDir } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasTools = ['rpmbuild', 'rpmsign', 'gpg'].every((t) => spawnSync(t, ['--version']).status === 0);
const UID = 'rpmdb test <rpmdb@ldguard.test>';
const LOADER = '/usr/lib64/ld-linux-ldgrpm.so.1';

/** The offset in the data area, and the count, of one tag of a stored header. */
function entry(blob: Buffer, tag: number): { offset: number; count: number } {
  const il = blob.readUInt32BE(0);
  for (let i = 0; i < il; i++) {
    const at = 8 + i * 16;
    if (blob.readUInt32BE(at) === tag) return { offset: 8 + il * 16 + blob.readInt32BE(at + 8), count: blob.readUInt32BE(at + 12) };
  }
  throw new Error(`no tag ${tag}`);
}

/** Rewrites the stored header of the package owning LOADER with `edit`. */
function forge(root: string, edit: (blob: Buffer) => void): void {
  const db = new Database(join(root, 'var/lib/rpm/rpmdb.sqlite'));
  const row = db.prepare("SELECT p.hnum, p.blob FROM Packages p JOIN Name n ON n.hnum = p.hnum WHERE n.key = 'ldg-rpmld'").get() as { hnum: number; blob: Buffer };
  const blob = Buffer.from(row.blob);
  edit(blob);
  db.prepare('UPDATE Packages SET blob = ? WHERE hnum = ?').run(blob, row.hnum);
  db.close();
}

/** A root whose rpm database holds ldg-rpmld, signed by `by` (none: unsigned), with `imported` keys in rpm's keyring. */
function rootWith(by: { key: ReturnType<typeof signingKey>; uid: string } | null, imported: Array<ReturnType<typeof signingKey>>): string {
  const root = removeWhenDone(scratchRoot('ldg-rpmdb-'));
  rpmDatabase(root);
  const pkg = buildLoaderRpm(false);
  if (by) signRpm(pkg, by.key, by.uid);
  for (const k of imported) {
    const file = join(tempDir('ldg-key-'), 'key.asc');
    writeFileSync(file, k.armored);
    execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '--import', file], { stdio: 'pipe' });
  }
  rpmInstall(root, pkg);
  return root;
}

describe.skipIf(!isRoot || !hasTools)('rpm\'s database, read directly (skipped: needs root, rpmbuild, rpmsign and gpg)', () => {
  let key: ReturnType<typeof signingKey>;
  beforeAll(() => {
    key = signingKey(UID);
  });

  it('finds the owner, its digest and its verified signer; unsigned or signed by a key outside the keyring, no signer', () => {
    const root = rootWith({ key, uid: UID }, [key]);
    const db = new RpmDb(root);
    const owner = db.owner(LOADER)!;
    expect(owner).toMatchObject({ name: 'ldg-rpmld', version: '1.0-1', arch: 'x86_64', epoch: '0', listed: LOADER });
    expect(db.owner('/lib64/ld-linux-ldgrpm.so.1')?.name).toBe('ldg-rpmld'); // the merged-/usr alias
    expect(db.owner('/usr/lib64/not-there.so')).toBeNull();
    expect(db.digest(owner, LOADER)).toEqual({ algo: 'sha256', hex: createHash('sha256').update(readFileSync(join(root, LOADER))).digest('hex') });
    expect(db.signer(owner)).toBe(key.id);
    db.close();

    const unsigned = new RpmDb(rootWith(null, [key]));
    expect(unsigned.signer(unsigned.owner(LOADER)!)).toBeNull();
    unsigned.close();
    const outside = new RpmDb(rootWith({ key, uid: UID }, []));
    expect(outside.signer(outside.owner(LOADER)!)).toBeNull();
    outside.close();
  });

  it('serves a snapshot up to maxAgeMs old, and takes a fresh copy when asked for the current state', () => {
    const root = rootWith(null, []);
    const db = new RpmDb(root);
    expect(db.owner(LOADER, 60_000)?.name).toBe('ldg-rpmld');
    rpmInstall(root, buildLoaderRpm(false, { name: 'ldg-second', loader: '/usr/lib64/ld-linux-second.so.1', content: '/usr/bin/true' }));
    expect(db.owner('/usr/lib64/ld-linux-second.so.1', 60_000)).toBeNull(); // the copy taken before the install
    expect(db.owner('/usr/lib64/ld-linux-second.so.1')?.name).toBe('ldg-second');
    db.close();
  });

  it('skips a header whose digest fails; a forged header with its digest recomputed has no signer', () => {
    const root = rootWith({ key, uid: UID }, [key]);
    // The loader's recorded digest, changed inside the signed region: SHA256HEADER no longer holds.
    forge(root, (blob) => {
      const d = entry(blob, 1035);
      blob.write('0', d.offset, 'latin1');
    });
    const skipped = new RpmDb(root);
    expect(skipped.owner(LOADER)).toBeNull();
    skipped.close();
    // The same, with SHA256HEADER (outside the region: rpm adds it at install) recomputed: the
    // header reads, and the signature over it fails.
    forge(root, (blob) => {
      const digest = createHash('sha256').update(new RpmHeader(blob).signed).digest('hex');
      blob.write(digest, entry(blob, 273).offset, 'latin1');
    });
    const forged = new RpmDb(root);
    const owner = forged.owner(LOADER);
    expect(owner?.name).toBe('ldg-rpmld');
    expect(forged.signer(owner!)).toBeNull();
    forged.close();
  });
});

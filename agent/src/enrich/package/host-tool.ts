// A host tool the agent runs (rpm, dpkg-deb) is trusted only once verified as a writer is: its bytes
// match the md5 its package recorded in the host's dpkg database. A tool that is swapped answers
// anything. Cached per path and (device, inode, size, ctime).
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { DpkgDb } from './dpkg-db.js';

const verdicts = new Map<string, { key: string; ok: boolean }>();

export function hostToolVerified(path: string, hostAdmindir = '/var/lib/dpkg'): boolean {
  let key: string;
  try {
    const st = statSync(path, { bigint: true });
    key = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}`;
  } catch {
    return false;
  }
  const held = verdicts.get(path);
  if (held?.key === key) return held.ok;
  let ok = false;
  try {
    const db = new DpkgDb(hostAdmindir);
    const owner = db.owner(path);
    const want = owner ? db.md5(owner.pkg, owner.listed) : null;
    ok = want !== null && createHash('md5').update(readFileSync(path)).digest('hex') === want;
  } catch {
    ok = false;
  }
  verdicts.set(path, { key, ok });
  return ok;
}

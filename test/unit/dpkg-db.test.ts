// The dpkg database parser on databases the genuine dpkg wrote: a scratch root where dpkg
// installed a package built by dpkg-deb, and the machine's own /var/lib/dpkg (read only).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DpkgDb, mergedUsrAliases, parseStatus } from '../../agent/src/enrich/package/dpkg-db.js';
import { scratchRoot } from '../helpers/agent.js';
import { buildFakePm, dpkgDatabase, dpkgInstall } from '../helpers/deb.js';
import { removeWhenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('dpkg database parser (skipped: dpkg -i into a scratch root needs root)', () => {
  let root: string;
  let admin: string;
  beforeAll(() => {
    root = removeWhenDone(scratchRoot('ldg-dpkgdb-'));
    admin = dpkgDatabase(root);
    dpkgInstall(root, buildFakePm());
  });

  it('reads the installed package from the status dpkg wrote', () => {
    const installed = parseStatus(readFileSync(join(admin, 'status'), 'utf8'));
    expect([...installed.keys()]).toEqual(['ldg-fakepm']);
    expect(new DpkgDb(admin).size).toBe(1);
  });

  it('finds the owner and the md5 dpkg recorded, matching the installed bytes', () => {
    const db = new DpkgDb(admin);
    const owner = db.owner('/usr/bin/dnf');
    expect(owner).toEqual({ pkg: { key: 'ldg-fakepm', name: 'ldg-fakepm' }, listed: '/usr/bin/dnf' });
    const md5 = createHash('md5').update(readFileSync(join(root, 'usr/bin/dnf'))).digest('hex');
    expect(db.md5(owner!.pkg, owner!.listed)).toBe(md5);
    expect(db.owner('/usr/bin/cp')).toBeNull();
    // Whole lines only: a listed path's prefix, or a path the listed one is a prefix of, is not it.
    expect(new DpkgDb(admin).owner('/usr/bin/dn')).toBeNull();
    expect(new DpkgDb(admin).owner('/usr/bin/dnf5')).toBeNull();
    // The first line has no newline before it: dpkg writes "/." there, but a path may be first.
    expect(readFileSync(join(admin, 'info/ldg-fakepm.list'), 'utf8').split('\n')[0]).toBe('/.');
    expect(new DpkgDb(admin).owner('/.')?.pkg.name).toBe('ldg-fakepm');
  });

  it('answers the same after indexing the directories packages use, without reading a .list for a path outside them', async () => {
    const db = new DpkgDb(admin);
    await db.indexDirs();
    expect(db.owner('/usr/bin/dnf')?.pkg.name).toBe('ldg-fakepm');
    expect(db.owner('/usr/lib64/ldg-fakepm.marker')?.listed).toBe('/lib64/ldg-fakepm.marker');
    expect(db.owner('/usr/bin/cp')).toBeNull();
    // The info directory away now: a lookup that still scanned it would throw (its readdir).
    renameSync(join(admin, 'info'), join(admin, 'info.away'));
    try {
      expect(db.owner('/tmp/nowhere/dnf')).toBeNull();
      expect(() => new DpkgDb(admin).owner('/tmp/nowhere/dnf')).toThrow();
    } finally {
      renameSync(join(admin, 'info.away'), join(admin, 'info'));
    }
  });

  it('finds a file listed under /lib64 by its real /usr/lib64 path (merged /usr)', () => {
    const db = new DpkgDb(admin);
    expect(db.owner('/usr/lib64/ldg-fakepm.marker')).toEqual({ pkg: { key: 'ldg-fakepm', name: 'ldg-fakepm' }, listed: '/lib64/ldg-fakepm.marker' });
    expect(mergedUsrAliases('/usr/bin/cp')).toEqual(['/usr/bin/cp', '/bin/cp']);
    expect(mergedUsrAliases('/opt/x')).toEqual(['/opt/x']);
  });

  it('does not count a package dpkg removed', () => {
    const r = removeWhenDone(scratchRoot('ldg-dpkgdb-rm-'));
    const a = dpkgDatabase(r);
    dpkgInstall(r, buildFakePm());
    // The genuine removal (its .list goes, status keeps a "deinstall ok config-files" or no entry).
    execFileSync('dpkg', ['--root=' + r, '--force-script-chrootless', '-r', 'ldg-fakepm'], { stdio: 'pipe' });
    expect(new DpkgDb(a).owner('/usr/bin/dnf')).toBeNull();
  });
});

describe.skipIf(!existsSync('/var/lib/dpkg/info/libc6:amd64.list'))('the host database (skipped: not a Debian amd64 host)', () => {
  it('names libc6 for the real path /usr/lib64/ld-linux-x86-64.so.2, which dpkg -S cannot find', () => {
    const db = new DpkgDb('/var/lib/dpkg');
    expect(db.owner('/usr/lib64/ld-linux-x86-64.so.2')?.pkg).toEqual({ key: 'libc6:amd64', name: 'libc6' });
    expect(db.owner('/usr/bin/cp')?.pkg.name).toBe('coreutils');
  });
});

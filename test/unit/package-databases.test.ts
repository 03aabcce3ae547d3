// Which package databases the agent watches (databases.ts) and when it watches them at all: only
// where a writer can be judged, i.e. a database the agent reads exists (dpkg's, rpm's sqlite or
// pacman's; the host's or the watched root's). Elsewhere every transaction would page.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { entryOfPackageDatabase, inPackageDatabase } from '../../agent/src/enrich/package/databases.js';
import { FileVerifier } from '../../agent/src/enrich/package/file-verdict.js';
import { PackageVerifier } from '../../agent/src/enrich/package/verify.js';
import { tempDir } from '../helpers/temp.js';

describe('package databases', () => {
  it('include rpm\'s files directly in /var/lib/rpm, not below it', () => {
    for (const f of ['rpmdb.sqlite', 'rpmdb.sqlite-wal', 'rpmdb.sqlite-shm', '.rpm.lock', 'Packages']) expect(inPackageDatabase(`/var/lib/rpm/${f}`), f).toBe(true);
    expect(inPackageDatabase('/var/lib/rpm/sub/rpmdb.sqlite')).toBe(false);
    expect(entryOfPackageDatabase('/var/lib/rpmstate/x')).toBe(false);
  });

  it('are judged only where a package database exists: the host\'s or the watched root\'s, dpkg\'s or rpm\'s (sqlite)', () => {
    const none = tempDir('ldg-nodb-');
    expect(new PackageVerifier(none, none).judgesWriters()).toBe(false);
    const root = tempDir('ldg-dpkgdb-');
    mkdirSync(join(root, 'var/lib/dpkg/info'), { recursive: true });
    writeFileSync(join(root, 'var/lib/dpkg/status'), '');
    expect(new PackageVerifier(root, none).judgesWriters()).toBe(true);
    expect(new PackageVerifier(none, root).judgesWriters()).toBe(true);
    const rpm = tempDir('ldg-rpmdb-');
    mkdirSync(join(rpm, 'var/lib/rpm'), { recursive: true });
    writeFileSync(join(rpm, 'var/lib/rpm/Packages'), ''); // rpm < 4.16's Berkeley DB: not read
    expect(new PackageVerifier(rpm, none).judgesWriters()).toBe(false);
    mkdirSync(join(rpm, 'usr/lib64'), { recursive: true });
    writeFileSync(join(rpm, 'usr/lib64/ld-linux-x86-64.so.2'), 'a loader');
    expect(new FileVerifier(rpm).facts('/usr/lib64/ld-linux-x86-64.so.2')).toEqual({ manager: 'rpm', verdict: 'inconclusive', reason: 'rpm_database_format_not_read' });
    writeFileSync(join(rpm, 'var/lib/rpm/rpmdb.sqlite'), '');
    expect(new PackageVerifier(rpm, none).judgesWriters()).toBe(true);
  });
});

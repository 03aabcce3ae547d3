// Which package databases the agent watches (databases.ts) and when it watches them at all: only
// where a writer can be judged, i.e. a dpkg database exists (the host's or the watched root's). On an
// rpm-only host every rpm and dnf transaction would otherwise page.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { entryOfPackageDatabase, inPackageDatabase } from '../../agent/src/enrich/package/databases.js';
import { PackageVerifier } from '../../agent/src/enrich/package/verify.js';
import { tempDir } from '../helpers/temp.js';

describe('package databases', () => {
  it('include rpm\'s files directly in /var/lib/rpm, not below it', () => {
    for (const f of ['rpmdb.sqlite', 'rpmdb.sqlite-wal', 'rpmdb.sqlite-shm', '.rpm.lock', 'Packages']) expect(inPackageDatabase(`/var/lib/rpm/${f}`), f).toBe(true);
    expect(inPackageDatabase('/var/lib/rpm/sub/rpmdb.sqlite')).toBe(false);
    expect(entryOfPackageDatabase('/var/lib/rpmstate/x')).toBe(false);
  });

  it('are judged only where a dpkg database exists: the host\'s or the watched root\'s', () => {
    const none = tempDir('ldg-nodb-');
    expect(new PackageVerifier(none, join(none, 'var/lib/dpkg')).judgesWriters()).toBe(false);
    const root = tempDir('ldg-dpkgdb-');
    mkdirSync(join(root, 'var/lib/dpkg/info'), { recursive: true });
    writeFileSync(join(root, 'var/lib/dpkg/status'), '');
    expect(new PackageVerifier(root, join(none, 'var/lib/dpkg')).judgesWriters()).toBe(true);
    expect(new PackageVerifier(none, join(root, 'var/lib/dpkg')).judgesWriters()).toBe(true);
  });
});

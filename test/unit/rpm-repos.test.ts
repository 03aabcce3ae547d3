// What the rpm side of the default exception reads (rpm-repos.ts, openpgp.ts): .repo files, the
// primary metadata createrepo_c makes (gzip, as Debian's createrepo_c writes it, and the same
// metadata recompressed with the genuine zstd, as Fedora's is published), and the key ids of keys
// the genuine gpg makes, compared with the ids gpg itself reports.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { keyIds } from '../../agent/src/enrich/package/openpgp.js';
import { parseRepoFile, primaryOffers, RpmRepos } from '../../agent/src/enrich/package/rpm-repos.js';
import { buildLoaderRpm, rpmRepository, signingKey } from '../helpers/rpm.js';
import { tempDir } from '../helpers/temp.js';

const has = (t: string) => spawnSync(t, ['--version']).status === 0;
const PKG = { name: 'ldg-repold', version: '2.0', release: '3', loader: '/usr/lib64/ld-linux-ldgrepo.so.1' };
const NEVRA = { name: 'ldg-repold', epoch: '0', version: '2.0-3', arch: 'x86_64' };

describe('.repo files', () => {
  it('reads enabled sections with their keys, continuation lines included; skips [main], disabled ones and comments', () => {
    const repos = parseRepoFile(
      [
        '[main]', 'gpgcheck=1', '',
        '# a comment', '[fedora]', 'name=Fedora $releasever', 'metalink=https://example.invalid/?repo=fedora', 'enabled=1',
        'gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-fedora-$releasever-$basearch', '       file:///etc/pki/rpm-gpg/RPM-GPG-KEY-extra',
        '[updates-testing]', 'enabled=0', 'gpgkey=file:///x',
        '[local]', 'baseurl=file:///srv/repo', 'gpgkey = file:///a, https://example.invalid/key',
      ].join('\n'),
    );
    expect(repos).toEqual([
      { id: 'fedora', gpgkeys: ['file:///etc/pki/rpm-gpg/RPM-GPG-KEY-fedora-$releasever-$basearch', 'file:///etc/pki/rpm-gpg/RPM-GPG-KEY-extra'] },
      { id: 'local', gpgkeys: ['file:///a', 'https://example.invalid/key'] },
    ]);
  });
});

describe('OpenPGP key ids', () => {
  it.skipIf(!has('gpg'))('gives the ids gpg reports for its own key, armored and binary (skipped: needs gpg)', () => {
    const key = signingKey('ids <ids@ldguard.test>');
    expect(keyIds(Buffer.from(key.armored))).toEqual([key.id]);
    const binary = execFileSync('gpg', ['--export', 'ids@ldguard.test'], { env: { ...process.env, GNUPGHOME: key.home }, stdio: ['ignore', 'pipe', 'pipe'] });
    expect(keyIds(binary)).toEqual([key.id]);
    // A key with a subkey: both ids.
    const env = { ...process.env, GNUPGHOME: key.home };
    const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(execFileSync('gpg', ['--with-colons', '--list-keys', 'ids@ldguard.test'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))![1]!;
    execFileSync('gpg', ['--batch', '--passphrase', '', '--quick-add-key', fpr, 'rsa2048', 'sign'], { env, stdio: 'pipe' });
    const colons = execFileSync('gpg', ['--with-colons', '--list-keys', 'ids@ldguard.test'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const want = [...colons.matchAll(/^(?:pub|sub):[^:]*:[^:]*:[^:]*:([0-9A-F]{16}):/gm)].map((m) => m[1]!.toLowerCase());
    expect(want).toHaveLength(2);
    expect(keyIds(Buffer.from(execFileSync('gpg', ['--armor', '--export', 'ids@ldguard.test'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })))).toEqual(want);
  });

  it('finds nothing in what is not a key, and does not throw on truncated packets', () => {
    expect(keyIds(Buffer.from('not a key'))).toEqual([]);
    expect(keyIds(Buffer.from([0x99, 0x01]))).toEqual([]);
    expect(keyIds(Buffer.from('-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGsW\n-----END PGP PUBLIC KEY BLOCK-----\n'))).toEqual([]);
  });
});

describe.skipIf(!has('rpmbuild') || !has('createrepo_c') || !has('zstd'))('primary metadata (skipped: needs rpmbuild, createrepo_c and zstd)', () => {
  let repo = '';
  let primaryGz = '';
  beforeAll(() => {
    repo = rpmRepository([buildLoaderRpm(false, PKG)]);
    primaryGz = join(repo, 'repodata', readdirSync(join(repo, 'repodata')).find((n) => n.endsWith('-primary.xml.gz'))!);
  });

  it('lists the package at its name, epoch, version, release and architecture only', () => {
    const xml = gunzipSync(readFileSync(primaryGz));
    expect(primaryOffers(xml, NEVRA)).toBe(true);
    expect(primaryOffers(xml, { ...NEVRA, version: '2.0-4' })).toBe(false);
    expect(primaryOffers(xml, { ...NEVRA, epoch: '1' })).toBe(false);
    expect(primaryOffers(xml, { ...NEVRA, arch: 'aarch64' })).toBe(false);
    expect(primaryOffers(xml, { ...NEVRA, name: 'ldg-repol' })).toBe(false);
  });

  /** A root whose dnf cache holds this repository's metadata as repository `id`, primary compressed as given. */
  const rootWith = (id: string, compress: 'gz' | 'zst') => {
    const root = tempDir('ldg-rpmrepos-');
    const cache = join(root, 'var/cache/dnf', `${id}-0123456789abcdef`);
    mkdirSync(cache, { recursive: true });
    cpSync(join(repo, 'repodata'), join(cache, 'repodata'), { recursive: true });
    if (compress === 'zst') {
      const xml = join(cache, 'repodata', 'primary.xml');
      writeFileSync(xml, gunzipSync(readFileSync(primaryGz)));
      execFileSync('zstd', ['-q', '--rm', xml]);
      const repomd = join(cache, 'repodata/repomd.xml');
      writeFileSync(repomd, readFileSync(repomd, 'utf8').replace(/repodata\/[0-9a-f]+-primary\.xml\.gz/, 'repodata/primary.xml.zst'));
    }
    mkdirSync(join(root, 'etc/yum.repos.d'), { recursive: true });
    return root;
  };

  for (const compress of ['gz', 'zst'] as const) {
    it(`a configured, enabled repository offers what its cached metadata lists (${compress})`, () => {
      const root = rootWith('ldgtest', compress);
      const repos = new RpmRepos(root);
      expect(repos.offering(NEVRA)).toEqual([]); // no .repo file names it
      writeFileSync(join(root, 'etc/yum.repos.d/ldgtest.repo'), '[ldgtest]\nbaseurl=file:///srv\nenabled=0\n');
      expect(repos.offering(NEVRA)).toEqual([]);
      writeFileSync(join(root, 'etc/yum.repos.d/ldgtest.repo'), '[ldgtest]\nbaseurl=file:///srv\n');
      expect(repos.offering(NEVRA)).toEqual(['ldgtest']);
      expect(repos.offering({ ...NEVRA, version: '2.0-4' })).toEqual([]);
    });
  }

  it('reads a repository\'s file:// keys inside the root, a variable in the file name matching any text', () => {
    const root = rootWith('ldgtest', 'gz');
    const a = signingKey('a <a@ldguard.test>');
    mkdirSync(join(root, 'etc/pki/rpm-gpg'), { recursive: true });
    writeFileSync(join(root, 'etc/pki/rpm-gpg/RPM-GPG-KEY-test-41-x86_64'), a.armored);
    const repos = new RpmRepos(root);
    expect(repos.keyIds({ id: 'x', gpgkeys: ['file:///etc/pki/rpm-gpg/RPM-GPG-KEY-test-$releasever-$basearch'] })).toEqual(new Set([a.id]));
    expect(repos.keyIds({ id: 'x', gpgkeys: ['https://example.invalid/RPM-GPG-KEY-test-41-x86_64'] })).toEqual(new Set());
    expect(repos.keyIds({ id: 'x', gpgkeys: ['file:///etc/pki/rpm-gpg/RPM-GPG-KEY-other'] })).toEqual(new Set());
  });
});

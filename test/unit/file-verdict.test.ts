// The file's package verdict (ldguard.file_package) on a database the genuine dpkg wrote: a scratch
// root where dpkg installed "ldg-symld" (a loader file and a /lib64 symlink to it, as libc6 ships
// its loader), and an apt index written as apt writes one. Each verdict and reason is reached by
// changing the real files, never by a stubbed database.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { offers } from '../../agent/src/enrich/package/apt-lists.js';
import { DpkgDb } from '../../agent/src/enrich/package/dpkg-db.js';
import type { WriterArgs } from '../../agent/src/enrich/package/deb-origin.js';
import { FileVerifier, finalNameOf } from '../../agent/src/enrich/package/file-verdict.js';
import { scratchRoot } from '../helpers/agent.js';
import { buildSymlinkLoaderDeb, dpkgDatabase, dpkgInstall } from '../helpers/deb.js';
import { buildLoaderRpm, rpmDatabase, rpmInstall } from '../helpers/rpm.js';
import { removeWhenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const hasRpm = spawnSync('rpmbuild', ['--version']).status === 0;
const INDEX = 'deb.example.org_debian_dists_test_main_binary-amd64_Packages';
const paragraph = (version: string, arch = 'amd64', sha256 = '0'.repeat(64)) => `Package: ldg-symld\nVersion: ${version}\nArchitecture: ${arch}\nFilename: pool/main/l/ldg-symld_${version}_${arch}.deb\nSHA256: ${sha256}\n`;

describe('temporary names and apt indexes', () => {
  it('judges dpkg and rpm temporary names by their final name, and nothing else', () => {
    expect(finalNameOf('/usr/lib64/ld-linux-x86-64.so.2.dpkg-new')).toBe('/usr/lib64/ld-linux-x86-64.so.2');
    expect(finalNameOf('/usr/lib64/ld-linux-x86-64.so.2.dpkg-tmp')).toBe('/usr/lib64/ld-linux-x86-64.so.2');
    expect(finalNameOf('/usr/lib64/ld-linux-x86-64.so.2;5f3a9c1e')).toBe('/usr/lib64/ld-linux-x86-64.so.2');
    expect(finalNameOf('/usr/lib64/ld-linux-x86-64.so.2')).toBeNull();
    expect(finalNameOf('/usr/lib64/ld-linux-x86-64.so.2.dpkg-old')).toBeNull();
    expect(finalNameOf('/usr/lib64/.dpkg-new')).toBeNull();
  });

  it('finds a package at a version and architecture, not a longer name or another version', () => {
    const index = Buffer.from(`Package: ldg-symld-dev\nVersion: 1.0\nArchitecture: amd64\n\n${paragraph('0.9')}\n${paragraph('1.0', 'arm64')}\n${paragraph('1.0')}`);
    expect(offers(index, 'ldg-symld', '1.0', 'amd64')).toBe(true);
    expect(offers(index, 'ldg-symld', '1.0', 'i386')).toBe(false);
    expect(offers(index, 'ldg-symld', '1.1', 'amd64')).toBe(false);
    expect(offers(Buffer.from(`Package: ldg-symld-dev\nVersion: 1.0\nArchitecture: amd64\n`), 'ldg-symld', '1.0', 'amd64')).toBe(false);
    expect(offers(Buffer.from(`Description: x\n Package: ldg-symld\nVersion: 1.0\nArchitecture: amd64\n`), 'ldg-symld', '1.0', 'amd64')).toBe(false);
  });
});

describe.skipIf(!isRoot)('the file against the root database dpkg wrote (skipped: dpkg -i into a scratch root needs root)', () => {
  let root: string;
  let deb: string;
  let sha: string;
  /** dpkg -i of that .deb, from outside the root: what the pipeline passes of the writer. */
  let writer: WriterArgs;
  const lists = () => join(root, 'var/lib/apt/lists');
  beforeAll(() => {
    root = removeWhenDone(scratchRoot('ldg-fileverdict-'));
    dpkgDatabase(root);
    deb = buildSymlinkLoaderDeb();
    sha = createHash('sha256').update(readFileSync(deb)).digest('hex');
    writer = { args: ['dpkg', `--root=${root}`, '-i', deb], cwd: '/', outsideRoot: true };
    dpkgInstall(root, deb);
    mkdirSync(lists(), { recursive: true });
    writeFileSync(join(lists(), INDEX), paragraph('1.0', 'amd64', sha));
  });

  it('verifies the file and the symlink (by its target), with the index offering them; a temporary name by its final name', () => {
    const v = new FileVerifier(root);
    const named = { manager: 'dpkg', name: 'ldg-symld', version: '1.0', verdict: 'verified', offered_by: INDEX };
    expect(v.facts('/usr/lib/x86_64-linux-gnu/ld-ldgtest.so.1', undefined, writer)).toEqual({ ...named, reason: 'md5_matches' });
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1', undefined, writer)).toEqual({ ...named, reason: 'target_md5_matches' });
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1.dpkg-new', undefined, writer)).toEqual({ ...named, judged_as: '/usr/lib64/ld-ldgtest.so.1', reason: 'target_md5_matches' });
    expect(v.facts('/usr/lib64/whatever.dpkg-new', '/usr/lib64/ld-ldgtest.so.1', writer)).toMatchObject({ judged_as: '/usr/lib64/ld-ldgtest.so.1', verdict: 'verified', offered_by: INDEX });
    // The .deb as a relative argument, from its folder.
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1', undefined, { ...writer, args: ['dpkg', '-i', basename(deb)], cwd: dirname(deb) }).offered_by).toBe(INDEX);
  });

  it('names no repository without the writer\'s .deb, or when the index gives another SHA256 for that version', () => {
    const v = new FileVerifier(root);
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1')).toMatchObject({ name: 'ldg-symld', verdict: 'verified' });
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1').offered_by).toBeUndefined();
    writeFileSync(join(lists(), INDEX), paragraph('1.0', 'amd64', 'f'.repeat(64)));
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1', undefined, writer).offered_by).toBeUndefined();
    writeFileSync(join(lists(), INDEX), paragraph('1.0', 'amd64', sha));
  });

  it('names no repository when the index offers another version, and sees the index change', () => {
    const v = new FileVerifier(root);
    writeFileSync(join(lists(), INDEX), paragraph('1.1', 'amd64', sha));
    const f = v.facts('/usr/lib/x86_64-linux-gnu/ld-ldgtest.so.1', undefined, writer);
    expect(f).toMatchObject({ name: 'ldg-symld', version: '1.0', verdict: 'verified' });
    expect(f.offered_by).toBeUndefined();
    writeFileSync(join(lists(), INDEX), `${paragraph('1.1')}\n${paragraph('1.0', 'amd64', sha)}`);
    expect(v.facts('/usr/lib/x86_64-linux-gnu/ld-ldgtest.so.1', undefined, writer).offered_by).toBe(INDEX);
  });

  it('reports a changed target, a symlink pointing outside its package, a stray file and a gone one', () => {
    const v = new FileVerifier(root);
    writeFileSync(join(root, 'usr/lib64/ld-stray.so.1'), 'stray');
    expect(v.facts('/usr/lib64/ld-stray.so.1')).toMatchObject({ verdict: 'inconclusive', reason: 'not_in_any_package' });
    expect(v.facts('/usr/lib64/ld-gone.so.1')).toMatchObject({ verdict: 'inconclusive', reason: 'file_gone' });
    // The symlink retargeted at the stray file: listed by ldg-symld, but its target is not.
    unlinkSync(join(root, 'usr/lib64/ld-ldgtest.so.1'));
    symlinkSync('/usr/lib64/ld-stray.so.1', join(root, 'usr/lib64/ld-ldgtest.so.1'));
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1')).toMatchObject({ name: 'ldg-symld', verdict: 'inconclusive', reason: 'target_not_in_package' });
    unlinkSync(join(root, 'usr/lib64/ld-ldgtest.so.1'));
    symlinkSync('/lib/x86_64-linux-gnu/ld-ldgtest.so.1', join(root, 'usr/lib64/ld-ldgtest.so.1'));
    appendFileSync(join(root, 'usr/lib/x86_64-linux-gnu/ld-ldgtest.so.1'), 'evil');
    expect(v.facts('/usr/lib/x86_64-linux-gnu/ld-ldgtest.so.1')).toMatchObject({ verdict: 'mismatch', reason: 'md5_differs' });
    expect(v.facts('/usr/lib64/ld-ldgtest.so.1')).toMatchObject({ verdict: 'mismatch', reason: 'target_md5_differs' });
  });

  it('finds a package dpkg has unpacked but not yet configured (a long upgrade), which a writer\'s verdict does not', () => {
    const r = removeWhenDone(scratchRoot('ldg-fileverdict-unpacked-'));
    const admin = dpkgDatabase(r);
    execFileSync('dpkg', [`--root=${r}`, '--force-script-chrootless', '--unpack', buildSymlinkLoaderDeb()], { stdio: 'pipe' });
    expect(readFileSync(join(admin, 'status'), 'utf8')).toContain('Status: install ok unpacked');
    expect(new FileVerifier(r).facts('/usr/lib64/ld-ldgtest.so.1')).toMatchObject({ name: 'ldg-symld', version: '1.0', verdict: 'verified' });
    expect(new DpkgDb(admin).owner('/usr/lib64/ld-ldgtest.so.1')).toBeNull();
  });

  it('fails closed once the database was touched, and without a database', () => {
    const v = new FileVerifier(root);
    v.taint('written by /usr/bin/cp');
    expect(v.facts('/usr/lib64/ld-stray.so.1')).toMatchObject({ verdict: 'inconclusive', reason: 'database_touched' });
    const bare = removeWhenDone(scratchRoot('ldg-fileverdict-bare-'));
    expect(new FileVerifier(bare).facts('/usr/lib64/x')).toEqual({ manager: 'dpkg', verdict: 'inconclusive', reason: 'no_database' });
    rmSync(join(bare, 'usr'), { recursive: true });
  });
});

describe.skipIf(!isRoot || !hasRpm)('the file against the rpm database rpm wrote (skipped: needs root, rpm and rpmbuild)', () => {
  it('reads rpm\'s database itself: verified by sha256, a temporary name by its final name, then a mismatch', () => {
    const root = removeWhenDone(scratchRoot('ldg-fileverdict-rpm-'));
    rpmDatabase(root);
    rpmInstall(root, buildLoaderRpm(false));
    const v = new FileVerifier(root);
    const named = { manager: 'rpm', name: 'ldg-rpmld', version: '1.0-1', verdict: 'verified', reason: 'sha256_matches' };
    expect(v.facts('/usr/lib64/ld-linux-ldgrpm.so.1')).toEqual(named);
    expect(v.facts('/usr/lib64/ld-linux-ldgrpm.so.1;6b164f02')).toEqual({ ...named, judged_as: '/usr/lib64/ld-linux-ldgrpm.so.1' });
    expect(v.facts('/lib64/ld-linux-ldgrpm.so.1')).toMatchObject({ name: 'ldg-rpmld', verdict: 'verified' }); // the merged-/usr alias
    appendFileSync(join(root, 'usr/lib64/ld-linux-ldgrpm.so.1'), 'evil');
    expect(v.facts('/usr/lib64/ld-linux-ldgrpm.so.1')).toEqual({ ...named, verdict: 'mismatch', reason: 'sha256_differs' });
    writeFileSync(join(root, 'usr/lib64/ld-linux-stray.so.1'), 'stray');
    expect(v.facts('/usr/lib64/ld-linux-stray.so.1')).toEqual({ manager: 'rpm', verdict: 'inconclusive', reason: 'not_in_any_package' });
  });
});

// The pieces of pacman's formats the verdicts read (pacman-db.ts, pacman-origin.ts, tar.ts,
// unpack.ts). The desc and mtree texts are as pacman 6.0 wrote them for a package makepkg built
// here (test/kernel/package-pacman.test.ts installs such packages for real); the archives are made
// by the genuine bsdtar, gzip, zstd and xz.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { mtreeDigest, sections } from '../../agent/src/enrich/package/pacman-db.js';
import { parsePacmanConf } from '../../agent/src/enrich/package/pacman-origin.js';
import { tarFiles } from '../../agent/src/enrich/package/tar.js';
import { unpacked } from '../../agent/src/enrich/package/unpack.js';
import { tempDir } from '../helpers/temp.js';

const has = (t: string) => spawnSync(t, ['--version']).status === 0;

const DESC = '%NAME%\nldg-pacld\n\n%VERSION%\n1.0-1\n\n%BASE%\nldg-pacld\n\n%DESC%\na loader built on this host\n\n%URL%\n\n\n%ARCH%\nx86_64\n\n%LICENSE%\nnone\n\n%VALIDATION%\nsha256\n\n';
const MTREE = [
  '#mtree',
  '/set type=file uid=0 gid=0 mode=644',
  './.PKGINFO time=1796658278.0 size=253 md5digest=6d64fc096512b2bb33d7e1a0512653cd sha256digest=05a425db6f075675e457d93d2e5289731fee6fb8c4c9e0771b22512aff3e352c',
  './usr time=1796658278.0 mode=755 type=dir',
  './usr/lib64/ld-linux-ldgpac.so.1 time=1796658278.0 mode=755 size=215000 md5digest=108877c29ef6a482337ddc42ea8b0985 sha256digest=02bcda52c1a5dfc236f94d9e5255b4a0e26347d8a372a5223b650e31f291ce3c',
  '',
].join('\n');

describe('pacman\'s database texts', () => {
  it('reads the sections of a desc file, an empty value included', () => {
    const s = sections(DESC);
    expect(s.get('NAME')).toEqual(['ldg-pacld']);
    expect(s.get('VERSION')).toEqual(['1.0-1']);
    expect(s.get('ARCH')).toEqual(['x86_64']);
    expect(s.get('URL')).toEqual([]);
  });

  it('finds a path\'s sha256 in an mtree, not a prefix of it, not a directory', () => {
    expect(mtreeDigest(MTREE, '/usr/lib64/ld-linux-ldgpac.so.1')).toBe('02bcda52c1a5dfc236f94d9e5255b4a0e26347d8a372a5223b650e31f291ce3c');
    expect(mtreeDigest(MTREE, '/usr/lib64/ld-linux-ldgpac.so')).toBeNull();
    expect(mtreeDigest(MTREE, '/usr')).toBeNull();
  });

  it('reads the repositories and cache directories of pacman.conf, [options] aside', () => {
    const conf = parsePacmanConf('[options]\nCacheDir = /var/cache/pacman/pkg/ /srv/cache/\n# [commented]\n\n[core]\nInclude = /etc/pacman.d/mirrorlist\n[extra] # a comment\nServer = file:///x\n');
    expect(conf).toEqual({ repos: ['core', 'extra'], cacheDirs: ['/var/cache/pacman/pkg/', '/srv/cache/'] });
    expect(parsePacmanConf('[core]\n').cacheDirs).toEqual(['/var/cache/pacman/pkg/']);
  });
});

describe.skipIf(!has('bsdtar') || !has('zstd') || !has('xz'))('archives (skipped: needs bsdtar, zstd and xz)', () => {
  it('unpacks gzip and zstd, passes plain bytes through, refuses xz; lists a bsdtar archive\'s files', () => {
    const dir = tempDir('ldg-tar-');
    mkdirSync(join(dir, 'in/ldg-pacld-1.0-1'), { recursive: true });
    writeFileSync(join(dir, 'in/ldg-pacld-1.0-1/desc'), DESC);
    writeFileSync(join(dir, 'in/.MTREE'), gzipSync(MTREE));
    const long = `${'d'.repeat(120)}/desc`;
    mkdirSync(join(dir, 'in', 'd'.repeat(120)));
    writeFileSync(join(dir, 'in', long), 'long');
    execFileSync('bsdtar', ['-cf', join(dir, 'a.tar'), '-C', join(dir, 'in'), '.MTREE', 'ldg-pacld-1.0-1', 'd'.repeat(120)]);
    const tar = readFileSync(join(dir, 'a.tar'));
    const files = [...tarFiles(tar)];
    expect(files.map((f) => f.name)).toEqual(['.MTREE', 'ldg-pacld-1.0-1/desc', long]);
    expect(files[1]!.data.toString()).toBe(DESC);
    expect(unpacked(files[0]!.data)!.toString()).toBe(MTREE);
    execFileSync('zstd', ['-q', '-k', join(dir, 'a.tar')]);
    execFileSync('xz', ['-k', join(dir, 'a.tar')]);
    expect(unpacked(readFileSync(join(dir, 'a.tar.zst')))!.equals(tar)).toBe(true);
    expect(unpacked(gzipSync(tar))!.equals(tar)).toBe(true);
    expect(unpacked(tar)!.equals(tar)).toBe(true);
    expect(unpacked(readFileSync(join(dir, 'a.tar.xz')))).toBeNull();
    expect(unpacked(Buffer.from([0x1f, 0x8b, 1, 2, 3]))).toBeNull(); // corrupt gzip
    expect([...tarFiles(tar.subarray(0, 700))].map((f) => f.name)).toEqual([]); // truncated: the walk ends
    // A name too long for ustar's fields: pax records it (bsdtar's default format).
    const deep = `${'e'.repeat(160)}/${'f'.repeat(90)}`;
    mkdirSync(join(dir, 'in', 'e'.repeat(160)));
    writeFileSync(join(dir, 'in', deep), 'deep');
    execFileSync('bsdtar', ['-cf', join(dir, 'b.tar'), '-C', join(dir, 'in'), deep]);
    expect([...tarFiles(readFileSync(join(dir, 'b.tar')))].map((f) => [f.name, f.data.toString()])).toEqual([[deep, 'deep']]);
  });
});

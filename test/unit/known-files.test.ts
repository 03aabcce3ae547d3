// The agent's baseline of known files: saved off the event loop, one save at a time, nothing
// changed meanwhile lost, and a failed save logged rather than thrown.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KnownFiles, scanMatching } from '../../agent/src/known-files.js';
import { createLogger } from '../../shared/log.js';
import { tempDir, whenDone } from '../helpers/temp.js';

const saved = (file: string) => Object.fromEntries(Object.entries((JSON.parse(readFileSync(file, 'utf8')) as { files: Record<string, { inode: number }> }).files).map(([p, e]) => [p, e.inode]));
const turn = () => new Promise((r) => setImmediate(r));

describe('KnownFiles', () => {
  it('saves the adds of one turn together, after the turn, and reopens them', async () => {
    const file = join(tempDir('ldg-known-'), 'known-files.json');
    const k = KnownFiles.open(file);
    expect(k.firstRun).toBe(true);
    k.replace([]);
    k.add('/lib64/ld-linux-x86-64.so.2', 11);
    k.add('/lib/ld-linux.so.2', 12);
    expect(existsSync(file)).toBe(false); // nothing written in the caller's turn
    await k.flush();
    expect(saved(file)).toEqual({ '/lib64/ld-linux-x86-64.so.2': 11, '/lib/ld-linux.so.2': 12 });
    const again = KnownFiles.open(file);
    expect(again.firstRun).toBe(false);
    expect(again.diff([{ hostPath: '/lib/ld-linux.so.2', realPath: '/x', inode: 12 }, { hostPath: '/lib/ld-linux.so.3', realPath: '/y', inode: 13 }]).map((f) => f.hostPath)).toEqual(['/lib/ld-linux.so.3']);
  });

  it('keeps what changes while a save runs, for the save after it', async () => {
    const file = join(tempDir('ldg-known-'), 'known-files.json');
    const k = KnownFiles.open(file);
    k.add('/lib/a', 1);
    await turn(); // the first save starts
    k.add('/lib/b', 2); // while it runs
    await turn();
    k.add('/lib/c', 3);
    await k.flush();
    expect(saved(file)).toEqual({ '/lib/a': 1, '/lib/b': 2, '/lib/c': 3 });
    expect(existsSync(`${file}.tmp`)).toBe(false);
  });

  it('logs a save that fails with its code and the fix, never throws, and saves once it can', async () => {
    const dir = join(tempDir('ldg-known-'), 'state');
    mkdirSync(dir);
    const file = join(dir, 'known-files.json');
    const lines: string[] = [];
    const log = createLogger('test', 'error');
    log.error = ((obj: { err: string; code: string }) => void lines.push(`${obj.code} ${obj.err}`)) as typeof log.error;
    const k = KnownFiles.open(file, log);
    rmSync(dir, { recursive: true }); // the state dir gone: every write in it fails
    k.add('/lib/a', 1);
    await turn();
    await k.flush();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toMatch(/^LDG_ERR_STATE .*known-files\.json.*state dir is writable/);
    mkdirSync(dir, { recursive: true });
    await k.flush();
    expect(saved(file)).toEqual({ '/lib/a': 1 });
  });
});

describe('KnownFiles: how the baseline is found at start', () => {
  const made = async () => {
    const dir = tempDir('ldg-known-');
    const file = join(dir, 'known-files.json');
    const k = KnownFiles.open(file);
    k.replace([]);
    k.add('/lib/a', 1);
    await k.flush();
    return { dir, file, seal: JSON.parse(readFileSync(`${file}.seal`, 'utf8')) as { generation: number; sha256: string; previous: string | null } };
  };

  it('trusts what it saved, and a save cut between the seal and the rename (the seal\'s previous vouches for the old file)', async () => {
    const { file, seal } = await made();
    expect(KnownFiles.open(file).opened).toEqual({ kind: 'ok', expectedGeneration: seal.generation, foundGeneration: seal.generation });
    expect(KnownFiles.open(file).seal).toEqual({ generation: seal.generation, sha256: seal.sha256 });
    writeFileSync(`${file}.seal`, JSON.stringify({ generation: seal.generation + 1, sha256: 'f'.repeat(64), previous: seal.sha256 }));
    const k = KnownFiles.open(file);
    expect(k.opened.kind).toBe('ok');
    expect(k.firstRun).toBe(false);
  });

  it('tells a first run from a baseline deleted, corrupt or edited, with the generation the seal expected', async () => {
    expect(KnownFiles.open(join(tempDir('ldg-known-'), 'known-files.json')).opened).toEqual({ kind: 'first_run' });
    expect(KnownFiles.open(join(tempDir('ldg-known-'), 'known-files.json'), undefined, { stateExisted: true }).opened.kind).toBe('missing');
    const { file, seal } = await made();
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, 20));
    expect(KnownFiles.open(file).opened).toMatchObject({ kind: 'corrupt', expectedGeneration: seal.generation });
    writeFileSync(file, text.replace('"/lib/a"', '"/lib/b"'));
    const edited = KnownFiles.open(file);
    expect(edited.opened).toMatchObject({ kind: 'edited', expectedGeneration: seal.generation, foundGeneration: seal.generation });
    expect(edited.firstRun).toBe(true); // not trusted: the start checks every file against the packages
    rmSync(file);
    expect(KnownFiles.open(file).opened).toMatchObject({ kind: 'missing', expectedGeneration: seal.generation });
  });
});

describe('scanMatching', () => {
  // The rule's * crosses /: /lib/ld-linux-q/…/evil.so matches however deep it lies.
  const underLib = (p: string) => p.startsWith('/lib/ld-linux') && p.endsWith('.so');

  it('finds a matching file 30 levels down a rule-matching directory, and returns every level to watch', () => {
    const root = tempDir('ldg-scan-');
    const rel = ['ld-linux-q', ...Array.from({ length: 29 }, (_, i) => `l${i + 1}`)].join('/');
    mkdirSync(join(root, 'lib', rel), { recursive: true });
    writeFileSync(join(root, 'lib', rel, 'evil.so'), 'x');
    const { files, subdirs } = scanMatching(root, [{ real: join(root, 'lib'), host: '/lib', aliases: ['/lib'] }], ['ld-linux'], underLib);
    expect(files.map((f) => f.hostPath)).toEqual([`/lib/${rel}/evil.so`]);
    expect(subdirs).toHaveLength(30);
  });

  it.skipIf(process.getuid?.() !== 0)('walks a directory bind-mounted into its own subtree once: each file once, under its real path (skipped: mount needs root)', () => {
    const root = tempDir('ldg-scan-loop-');
    const top = join(root, 'lib/ld-linux-c');
    mkdirSync(join(top, 'sub/loop'), { recursive: true });
    writeFileSync(join(top, 'sub/evil.so'), 'x');
    const m = spawnSync('mount', ['--bind', top, join(top, 'sub/loop')]);
    expect(m.status, String(m.stderr)).toBe(0);
    whenDone(() => spawnSync('umount', ['-l', join(top, 'sub/loop')]));
    const { files } = scanMatching(root, [{ real: join(root, 'lib'), host: '/lib', aliases: ['/lib'] }], ['ld-linux'], underLib);
    expect(files.map((f) => f.hostPath)).toEqual(['/lib/ld-linux-c/sub/evil.so']);
  });
});

// install.sh refuses what would leak or fail later before it builds or changes anything: a token
// on the command line (ps, shell history), an unreadable or empty token file, a CA file that is
// not PEM; and its help is the comment block only.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findRepoRoot } from '../../shared/paths.js';
import { tempDir } from '../helpers/temp.js';

const INSTALL = join(findRepoRoot(), 'install.sh');
const isRoot = process.getuid?.() === 0;

function install(args: string[], input = ''): { status: number | null; stdout: string; stderr: string } {
  // --prefix in a scratch folder: should a check be missing, nothing lands in /opt.
  const r = spawnSync('sh', [INSTALL, '--prefix', join(tempDir('ldg-prefix-'), 'opt'), ...args], { input, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('install.sh options', () => {
  it('prints its usage without the script lines that follow it', () => {
    const r = install(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--token-file FILE');
    expect(r.stdout).not.toMatch(/set -eu/);
  });

  it.skipIf(!isRoot)('refuses the token on the command line, naming --token-file (skipped: install.sh checks root first)', () => {
    const r = install(['--agent', '--collector-url', 'wss://collector.example:8750', '--token', 'ldg_secret']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--token-file/);
    expect(r.stderr + r.stdout).not.toContain('ldg_secret');
  });

  it.skipIf(!isRoot)('refuses an unreadable or empty token file and a CA file that is not PEM, before building (skipped: needs root)', () => {
    const dir = tempDir('ldg-install-');
    const token = join(dir, 'token');
    writeFileSync(token, 'ldg_abc\n', { mode: 0o600 });
    const url = ['--agent', '--collector-url', 'wss://collector.example:8750'];
    expect(install([...url, '--token-file', join(dir, 'missing')]).stderr).toMatch(/cannot be read/);
    expect(install([...url, '--token-file', '-'], '\n').stderr).toMatch(/empty token/);
    const notPem = install([...url, '--token-file', token, '--ca-file', token]);
    expect(notPem.status).toBe(1);
    expect(notPem.stderr).toMatch(/not a PEM certificate/);
    expect(notPem.stderr).not.toMatch(/building in/);
  });
});

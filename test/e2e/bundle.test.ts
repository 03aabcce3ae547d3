// The release bundle (issue 23, item 2), built by packaging/package.ts and run as a host would run
// it: extracted anywhere, started through its launcher with its own Node.js. The agent-only bundle's
// agent loads its native addon and alerts on a real write (root, scratch root); the full bundle's
// collector opens SQLite and answers; collector commands in the agent-only bundle say so; the
// launcher names the floor on a host below it.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FLOOR, floorProblems } from '../../packaging/floor.js';
import { findRepoRoot } from '../../shared/paths.js';
import { scratchRoot } from '../helpers/agent.js';
import { startDaemon } from '../helpers/daemon.js';
import { debianRoot } from '../helpers/debootstrap.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const repo = findRepoRoot();
const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;

/** Builds a bundle into `out` and extracts it into its own folder; returns the bundle's root. */
function buildAndExtract(out: string, agentOnly: boolean): string {
  const r = spawnSync(process.execPath, [join(repo, 'dist/packaging/package.js'), '--out', out, ...(agentOnly ? ['--agent-only'] : [])], { encoding: 'utf8', cwd: repo });
  expect(r.status, r.stderr).toBe(0);
  const name = `ldguard-${version}${agentOnly ? '-agent' : ''}-linux-x86_64`;
  const at = join(out, agentOnly ? 'agent' : 'full');
  mkdirSync(at);
  execFileSync('tar', ['-C', at, '-xzf', join(out, `${name}.tar.gz`)]);
  return join(at, name);
}

describe.skipIf(process.arch !== 'x64')('release bundles (skipped: the floor is stated for x86_64)', () => {
  const out = tempDir('ldg-bundle-');
  let full = '';
  let agent = '';
  beforeAll(() => {
    full = buildAndExtract(out, false);
    agent = buildAndExtract(out, true);
  }, 180_000);

  it('holds its own Node.js and checksums that verify, and SHA256SUMS names each tarball', () => {
    for (const b of [full, agent]) {
      expect(spawnSync('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: b, encoding: 'utf8' }).status).toBe(0);
      const v = spawnSync(join(b, 'bin/ldguard'), ['version'], { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
      expect(v.stdout).toContain(`ldguard ${version}`);
      expect(v.stdout).toContain(`node ${process.version} (bundled: ${join(b, 'bin/node')})`);
      expect(v.stdout).toContain(`glibc ${FLOOR.glibc}`);
    }
    expect(readFileSync(join(out, 'SHA256SUMS'), 'utf8').trim().split('\n').map((l) => l.split('  ')[1]).sort()).toEqual([
      `ldguard-${version}-agent-linux-x86_64.tar.gz`,
      `ldguard-${version}-linux-x86_64.tar.gz`,
      `ldguard_${version}_amd64.deb`,
    ].sort());
    // No other platform's parts, no collector dependencies in the agent's.
    expect(existsSync(join(full, 'node_modules/@parcel/watcher-linux-x64-glibc'))).toBe(true);
    expect(existsSync(join(full, 'node_modules/@parcel/watcher-linux-x64-musl'))).toBe(false);
    expect(existsSync(join(full, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
    expect(existsSync(join(agent, 'node_modules/pg'))).toBe(false);
    expect(existsSync(join(agent, 'node_modules/markdown-it'))).toBe(false);
    // The agent reads rpm's database (rpmdb.sqlite) itself: SQLite ships in its bundle too.
    expect(existsSync(join(agent, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
  });

  it('the full bundle runs a collector: SQLite loads from the bundle', async () => {
    const work = tempDir('ldg-bundle-col-');
    const d = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', join(work, 'c.db')], { bin: join(full, 'bin/ldguard') });
    whenDone(() => d.stop('SIGKILL'));
    const r = await fetch(`http://127.0.0.1:${d.ready.port as number}/healthz`);
    expect(r.status).toBe(200);
    expect(await d.stop()).toBe(0);
  });

  it('the agent-only bundle refuses collector commands, naming the full bundle', () => {
    const r = spawnSync(join(agent, 'bin/ldguard'), ['token', 'list', '--db', join(out, 'x.db')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/LDG_ERR_AGENT_ONLY|agent-only bundle/);
  });

  it.skipIf(!isRoot)('the agent-only bundle\'s agent loads its addon and alerts on a real write (skipped: fanotify needs root)', async () => {
    const root = removeWhenDone(scratchRoot());
    const work = tempDir('ldg-bundle-agent-');
    const alerts = join(work, 'alerts.ndjson');
    const d = await startDaemon(['agent', '--root', root, '--state-dir', join(work, 'state'), '--alerts-file', alerts, '--socket', join(work, 's.sock'), '--source', 'fanotify'], { bin: join(agent, 'bin/ldguard') });
    whenDone(() => d.stop('SIGKILL'));
    expect(d.ready).toMatchObject({ source: 'fanotify' });
    spawnSync('cp', ['/bin/true', join(root, 'lib64/ld-linux-x86-64.so.2.bundle')]);
    for (const end = Date.now() + 10_000; !(existsSync(alerts) && readFileSync(alerts, 'utf8').includes('.so.2.bundle')) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    const line = readFileSync(alerts, 'utf8').split('\n').find((l) => l.includes('.so.2.bundle'));
    expect(JSON.parse(line!)).toMatchObject({ file: { path: '/usr/lib64/ld-linux-x86-64.so.2.bundle' }, process: { name: 'cp' } });
    expect(await d.stop()).toBe(0);
  });

  it.skipIf(!isRoot)('install.sh --bundle installs it with no build: the installed ldguard runs the bundled Node.js (skipped: install.sh needs root)', () => {
    const stage = tempDir('ldg-bundle-install-');
    const prefix = join(stage, 'opt/ldguard');
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LDGUARD_INSTALL_BIN: join(stage, 'ldguard'), LDGUARD_INSTALL_ETC: join(stage, 'etc') };
    const tarball = join(out, `ldguard-${version}-linux-x86_64.tar.gz`);
    const r = spawnSync('sh', [join(repo, 'install.sh'), '--bundle', tarball, '--prefix', prefix, '--no-start', '--foreground'], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/building in|npm/);
    const v = spawnSync(join(stage, 'ldguard'), ['version'], { encoding: 'utf8' });
    expect(v.stdout).toContain(`(bundled: ${join(prefix, 'bin/node')})`);
    expect((statSync(join(stage, 'etc/agent.toml')).mode & 0o777).toString(8)).toBe('600');
    // A damaged download is refused before anything is unpacked.
    const bad = join(stage, 'dl');
    mkdirSync(bad);
    writeFileSync(join(bad, `ldguard-${version}-linux-x86_64.tar.gz`), readFileSync(tarball).subarray(0, 1_000_000));
    writeFileSync(join(bad, 'SHA256SUMS'), readFileSync(join(out, 'SHA256SUMS')));
    const refused = spawnSync('sh', [join(repo, 'install.sh'), '--bundle', join(bad, `ldguard-${version}-linux-x86_64.tar.gz`), '--prefix', join(stage, 'opt2'), '--no-start', '--foreground'], { encoding: 'utf8', env });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/does not match its SHA256SUMS/);
  });

  it('the launcher names the floor on a host below it', () => {
    const fake = tempDir('ldg-oldhost-');
    // getconf answering as glibc 2.31 would (Debian 11): the launcher reads it before starting Node.
    writeFileSync(join(fake, 'getconf'), '#!/bin/sh\necho "glibc 2.31"\n');
    chmodSync(join(fake, 'getconf'), 0o755);
    const r = spawnSync(join(agent, 'bin/ldguard'), ['version'], { encoding: 'utf8', env: { PATH: `${fake}:/usr/bin:/bin` } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`needs glibc >= ${FLOOR.glibc}`);
    expect(r.stderr).toContain('this host has glibc 2.31');
  });

  it('the floor check names a file and a symbol version past the floor', () => {
    expect(floorProblems('bin/x', ['GLIBC_2.17', 'GLIBC_2.34', 'GLIBC_2.38', 'GLIBCXX_3.4.30', 'CXXABI_1.3.13'], FLOOR)).toEqual(['bin/x needs GLIBC_2.38', 'bin/x needs GLIBCXX_3.4.30']);
  });
});

describe.skipIf(process.arch !== 'x64' || !isRoot)('the Debian package on a Debian 12 without Node.js or a compiler (skipped: needs root and x86_64)', () => {
  it('installs with dpkg, runs from its own Node.js, keeps tokens on reinstall, remove keeps data, purge removes it', { timeout: 600_000 }, () => {
    const out = tempDir('ldg-deb-');
    const r = spawnSync(process.execPath, [join(repo, 'dist/packaging/package.js'), '--out', out], { encoding: 'utf8', cwd: repo });
    expect(r.status, r.stderr).toBe(0);
    const deb = join(out, `ldguard_${version}_amd64.deb`);
    expect(readFileSync(join(out, 'SHA256SUMS'), 'utf8')).toContain(`  ldguard_${version}_amd64.deb`);
    // debootstrap's minbase: Debian 12 with neither Node.js nor a compiler.
    const root = debianRoot(removeWhenDone(tempDir('ldg-debroot-')));
    expect(existsSync(join(root, 'usr/bin/node')) || existsSync(join(root, 'usr/bin/cc'))).toBe(false);
    copyFileSync(deb, join(root, 'tmp/ldguard.deb'));
    const inRoot = (cmd: string) => spawnSync('chroot', [root, 'sh', '-c', cmd], { encoding: 'utf8' });

    const install = inRoot('dpkg -i /tmp/ldguard.deb');
    expect(install.status, install.stderr + install.stdout).toBe(0);
    expect(install.stdout + install.stderr).toContain('/etc/ldguard/admin-token');
    const admin = readFileSync(join(root, 'etc/ldguard/admin-token'), 'utf8').trim();
    expect(install.stdout + install.stderr).not.toContain(admin);
    expect((statSync(join(root, 'etc/ldguard/admin-token')).mode & 0o777).toString(8)).toBe('600');
    expect(inRoot('ldguard version').stdout).toContain('(bundled: /usr/lib/ldguard/bin/node)');
    expect(readFileSync(join(root, 'lib/systemd/system/ldguard-agent.service'), 'utf8')).toContain('ExecStart=/usr/bin/ldguard agent');
    const tokens = () => inRoot('ldguard token list --json --db /var/lib/ldguard-collector/ldguard.db').stdout;
    expect(tokens()).toMatch(/"name":"admin","role":"admin"/);

    // Installed again (as an upgrade does): the same tokens and settings, no new admin token.
    const before = tokens();
    expect(inRoot('dpkg -i /tmp/ldguard.deb').status).toBe(0);
    expect(tokens()).toBe(before);
    expect(readFileSync(join(root, 'etc/ldguard/admin-token'), 'utf8').trim()).toBe(admin);

    expect(inRoot('dpkg -r ldguard').status).toBe(0);
    expect(existsSync(join(root, 'usr/lib/ldguard'))).toBe(false);
    expect(existsSync(join(root, 'etc/ldguard/admin-token'))).toBe(true);
    expect(existsSync(join(root, 'var/lib/private/ldguard-collector/ldguard.db'))).toBe(true);
    expect(inRoot('dpkg -P ldguard').status).toBe(0);
    expect(existsSync(join(root, 'etc/ldguard'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/private/ldguard-collector'))).toBe(false);
  });
});

// SIGHUP applies the agent's collector settings at once: a new collector URL, a rotated token
// (same file, new content), a new token file; a bad setting keeps the old link; an option that
// only a restart applies is named in a warning. Real agent (fanotify, scratch root), two real
// collectors.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startAgent } from '../helpers/agent.js';
import { callApi, createToken, runCli, startTestCollector } from '../helpers/collector.js';
import { tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;

async function until<T>(what: () => Promise<T> | T, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!isRoot)('SIGHUP and the collector link (skipped: the agent needs root for fanotify)', () => {
  it('reconnects to a new URL and with a rotated token, keeps the old link on a bad one, names options that need a restart', async () => {
    const work = tempDir('ldg-reload-');
    const dbA = join(work, 'a.db');
    const dbB = join(work, 'b.db');
    const adminA = await createToken(dbA, 'admin', 'admin');
    const adminB = await createToken(dbB, 'admin', 'admin');
    const tokenA = join(work, 'a.token');
    const tokenB = join(work, 'b.token');
    writeFileSync(tokenA, `${await createToken(dbA, 'host-1')}\n`, { mode: 0o600 });
    writeFileSync(tokenB, `${await createToken(dbB, 'host-1')}\n`, { mode: 0o600 });
    const a = await startTestCollector(work, dbA);
    const b = await startTestCollector(work, dbB);
    whenDone(() => a.stop('SIGKILL'));
    whenDone(() => b.stop('SIGKILL'));

    const config = join(work, 'agent.toml');
    const writeConfig = (port: number, token: string, more = '') => writeFileSync(config, `collector = "ws://127.0.0.1:${port}"\ntoken_file = "${token}"\n${more}`);
    writeConfig(a.port, tokenA);
    const agent = await startAgent({ extra: ['--config', config] });
    whenDone(() => agent.stop('SIGKILL'));
    const reloads = () => agent.logs().filter((l) => l.msg === 'reloaded configuration and rules' || String(l.msg).startsWith('reload failed'));
    const hup = async () => {
      const n = reloads().length;
      agent.proc.kill('SIGHUP');
      await until(reloads, (r) => r.length > n);
      return reloads().at(-1)!;
    };
    const plant = (name: string) => {
      spawnSync('cp', ['/bin/true', join(agent.root, 'lib64', name)]);
      return `/usr/lib64/${name}`;
    };
    const paths = async (port: number, admin: string) => {
      const r = await callApi(port, '/api/alerts?limit=100', admin);
      return r.status === 200 ? (r.body.alerts as Array<{ file: { path: string } }>).map((x) => x.file.path) : [];
    };

    const first = plant('ld-linux-x86-64.so.2.a');
    expect(await until(() => paths(a.port, adminA), (p) => p.includes(first))).toContain(first);

    // A new URL and token file, and an option a reload cannot apply.
    writeConfig(b.port, tokenB, 'rehash_ms = 5000\n');
    expect(await hup()).toMatchObject({ msg: 'reloaded configuration and rules', collector: 'reconnected' });
    expect(agent.logs().find((l) => String(l.msg).includes('apply only at a restart'))).toMatchObject({ level: 40, options: ['rehash_ms'] });
    const second = plant('ld-linux-x86-64.so.2.b');
    expect(await until(() => paths(b.port, adminB), (p) => p.includes(second))).toContain(second);
    expect(await paths(a.port, adminA)).not.toContain(second);

    // The token rotated on the collector, the file rewritten: the old one is refused from now on.
    const rotated = await runCli(['token', 'rotate', '--db', dbB, '--name', 'host-1']);
    expect(rotated.status, rotated.stderr).toBe(0);
    writeFileSync(tokenB, `${rotated.stdout.trim()}\n`, { mode: 0o600 });
    expect(await hup()).toMatchObject({ collector: 'reconnected' });
    const third = plant('ld-linux-x86-64.so.2.c');
    expect(await until(() => paths(b.port, adminB), (p) => p.includes(third))).toContain(third);

    // A CA file that is not there: the reload fails whole, the old link carries on.
    writeConfig(b.port, tokenB, `rehash_ms = 5000\nca_file = "${join(work, 'missing-ca.pem')}"\n`);
    expect((await hup()).msg).toMatch(/^reload failed/);
    const fourth = plant('ld-linux-x86-64.so.2.d');
    expect(await until(() => paths(b.port, adminB), (p) => p.includes(fourth))).toContain(fourth);
    expect(await agent.stop()).toBe(0);
  });
});

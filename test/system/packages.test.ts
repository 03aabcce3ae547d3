// The release bundle and the Debian package on a systemd host that has neither Node.js nor a
// compiler (issue 23, item 4): a Debian bookworm machine (systemd-nspawn, machine.ts) built without
// make, g++ or python3 and staged without this host's Node.js. In order, on one machine:
// install.sh --bundle; an upgrade from that install to the .deb; a purge; the older .deb, then an
// upgrade to the new one; a purge. After each install a real `cp` of the machine's loader into
// /lib64 must reach the collector once, and upgrades keep config, tokens, agent id and alerts.
//
//   npm run test:system -- test/system/packages.test.ts
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HERE, Machine, runHost } from './machine.js';

const CACHE = process.env.LDGUARD_SYSTEST_CACHE ?? '/var/cache/ldguard-test/rootfs';
const CHECKOUT = resolve(HERE, '../..');
const MINUTE = 60_000;
const VERSION = (JSON.parse(readFileSync(join(CHECKOUT, 'package.json'), 'utf8')) as { version: string }).version;
const OLD = '0.0.9';
const LOADER = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
const SEED_RULE = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

let m: Machine | undefined;
const machine = (): Machine => {
  if (!m) throw new Error('the machine did not boot (see beforeAll)');
  return m;
};
const timings: Array<[string, number]> = [];
async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    timings.push([what, (performance.now() - t0) / 1000]);
  }
}

/** The machine's state an upgrade must keep. */
async function kept(): Promise<string> {
  return (await machine().sh('cat /etc/ldguard/agent.toml /etc/ldguard/agent.token /var/lib/ldguard/agent-id 2>/dev/null; ldguard token list --json --db /var/lib/ldguard-collector/ldguard.db')).stdout;
}

/** Plants a copy of the loader by `cp` and returns the seed rule's alerts for it from the API. */
async function plantAndFetch(tag: string): Promise<Array<Record<string, any>>> {
  const path = `/lib64/ld-linux-x86-64.so.2.${tag}`;
  await machine().sh(`cp ${LOADER} ${path}`);
  const end = Date.now() + 30_000;
  for (;;) {
    const r = await machine().sh(`curl -s -H "Authorization: Bearer $(cat /etc/ldguard/admin-token)" 'http://127.0.0.1:8750/api/alerts?limit=500'`, { check: false });
    const alerts = r.code === 0 && r.stdout.startsWith('{') ? ((JSON.parse(r.stdout) as { alerts: Array<Record<string, any>> }).alerts ?? []) : [];
    // /lib64 is a symlink to usr/lib64 on Debian 12: the alert names the file as the host resolves it.
    const mine = alerts.filter((a) => a.file?.path === `/usr${path}` && a.rule?.id === SEED_RULE);
    if (mine.length > 0) return mine;
    if (Date.now() > end) {
      // What an operator would look at: both services' last lines and what the API answered.
      const why = await machine().sh('systemctl --no-pager status ldguard-agent ldguard-collector | tail -n 30; journalctl -u ldguard-agent -n 25 --no-pager -o cat; journalctl -u ldguard-collector -n 10 --no-pager -o cat', { check: false });
      throw new Error(`no alert for ${path} at the collector within 30 s; the API said ${r.stdout.slice(0, 300)}\n${why.stdout.slice(-6000)}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function activeUnits(): Promise<string[]> {
  return (await machine().sh('systemctl is-active ldguard-agent ldguard-collector', { check: false })).stdout.trim().split('\n');
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the system test boots a machine with systemd-nspawn: run it as root');
  for (const tool of ['systemd-nspawn', 'debootstrap', 'nsenter']) {
    if ((await runHost('sh', ['-c', `command -v ${tool}`], 5000)).code !== 0) throw new Error(`${tool} is missing: apt-get install -y debootstrap systemd-container`);
  }
  await Machine.cleanStale();
  const built = await timed('bare root file system (rootfs.sh bare)', () => runHost(resolve(HERE, 'rootfs.sh'), [CACHE, 'bare'], 15 * MINUTE));
  if (built.code !== 0) throw new Error(`rootfs.sh failed:\n${built.stderr}`);
  m = await timed('stage and boot', () => Machine.boot(built.stdout.trim(), CHECKOUT, 'ldguard-systest-pkg', { bare: true }));
  // The release files, made on this host as a release build would make them.
  const out = join(machine().root, 'root/release');
  mkdirSync(out, { recursive: true });
  for (const version of [VERSION, OLD]) {
    const r = spawnSync(process.execPath, [join(CHECKOUT, 'dist/packaging/package.js'), '--out', out, '--version', version], { encoding: 'utf8', cwd: CHECKOUT });
    if (r.status !== 0) throw new Error(`package.js --version ${version} failed:\n${r.stderr}`);
  }
  cpSync(join(CHECKOUT, 'install.sh'), join(out, 'install.sh'));
}, 30 * MINUTE);

afterAll(async () => {
  console.log(['package system test timings (s):', ...timings.map(([w, t]) => `  ${t.toFixed(1).padStart(7)}  ${w}`)].join('\n'));
  await m?.stop();
}, 2 * MINUTE);

describe('ldguard from a release bundle and a .deb, on a host with no Node.js and no compiler', () => {
  it('has neither node nor a compiler', async () => {
    expect((await machine().sh('command -v node cc gcc g++ make', { check: false })).stdout.trim()).toBe('');
  });

  it('installs the bundle with install.sh --bundle and alerts', async () => {
    const r = await timed('install.sh --bundle', () => machine().sh(`cd /root/release && sh install.sh --bundle /root/release/ldguard-${VERSION}-linux-x86_64.tar.gz 2>/root/install.err`, { timeoutMs: 5 * MINUTE }));
    expect(r.stdout).toMatch(/admin token \(also in \/etc\/ldguard\/admin-token\): \S+/);
    expect(await activeUnits()).toEqual(['active', 'active']);
    expect((await machine().sh('ldguard version')).stdout).toContain('(bundled: /opt/ldguard/bin/node)');
    expect(await plantAndFetch('bundle')).toHaveLength(1);
  });

  it('upgrades from the install.sh install to the .deb, keeping config, tokens, agent id and alerts', async () => {
    const before = await kept();
    const r = await timed('apt install .deb over install.sh', () => machine().sh(`apt-get install -y /root/release/ldguard_${VERSION}_amd64.deb 2>&1`, { timeoutMs: 5 * MINUTE }));
    expect(r.stdout).toContain("replaced install.sh's ldguard-agent.service");
    expect(await kept()).toBe(before);
    expect((await machine().sh('ldguard version')).stdout).toContain('(bundled: /usr/lib/ldguard/bin/node)');
    expect((await machine().sh('ls /opt/ldguard /usr/local/bin/ldguard /etc/systemd/system/ldguard-agent.service 2>&1', { check: false })).stdout).toMatch(/No such file/);
    expect(await activeUnits()).toEqual(['active', 'active']);
    expect(await plantAndFetch('bundle')).toHaveLength(1); // still there, once
    expect(await plantAndFetch('deb')).toHaveLength(1);
  });

  it('purges to nothing, then upgrades from an older .deb to the new one, keeping everything', async () => {
    await machine().sh('apt-get purge -y ldguard', { timeoutMs: 2 * MINUTE });
    expect((await machine().sh('ls -d /etc/ldguard /var/lib/ldguard /var/lib/private/ldguard-collector /usr/lib/ldguard 2>&1', { check: false })).stdout.match(/No such file/g)).toHaveLength(4);
    await timed('apt install older .deb', () => machine().sh(`apt-get install -y /root/release/ldguard_${OLD}_amd64.deb`, { timeoutMs: 5 * MINUTE }));
    expect((await machine().sh('ldguard version')).stdout).toContain(`ldguard ${OLD}`);
    expect(await plantAndFetch('old')).toHaveLength(1);
    const before = await kept();
    await timed('apt upgrade to the new .deb', () => machine().sh(`apt-get install -y /root/release/ldguard_${VERSION}_amd64.deb`, { timeoutMs: 5 * MINUTE }));
    expect((await machine().sh('ldguard version')).stdout).toContain(`ldguard ${VERSION}`);
    expect(await kept()).toBe(before);
    expect(await activeUnits()).toEqual(['active', 'active']);
    expect(await plantAndFetch('old')).toHaveLength(1);
    expect(await plantAndFetch('new')).toHaveLength(1);
    await machine().sh('apt-get purge -y ldguard', { timeoutMs: 2 * MINUTE });
    expect((await machine().sh('ls -d /etc/ldguard /usr/lib/ldguard 2>&1', { check: false })).stdout.match(/No such file/g)).toHaveLength(2);
  });
});

// The system test: ldguard installed by its README's command on a real systemd host, and checked as
// an operator would. The host is a Debian bookworm machine booted with systemd-nspawn (machine.ts
// says how it is built, booted, entered and stopped). Every file this test creates in /lib64 is in
// that machine's own root (a tmpfs), never in this host's.
//
// The steps depend on each other (install, then alerts, restart, kill -9, upgrade, uninstall) and
// run in order on one machine: a failing step makes the later ones fail too.
//
//   npm run test:system                      LDGUARD_SYSTEST_KEEP=1 keeps the machine for a look
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HERE, Machine, runHost } from './machine.js';

const CACHE = process.env.LDGUARD_SYSTEST_CACHE ?? '/var/cache/ldguard-test/rootfs';
const KEEP = process.env.LDGUARD_SYSTEST_KEEP === '1';
const CHECKOUT = resolve(HERE, '../..');
const MINUTE = 60_000;
const COLLECTOR_PORT = 8750; // install.sh's default; the machine shares this host's network

// The machine's real loader, copied to a new name in /lib64 (its /lib64 links to /usr/lib64).
const LOADER = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
const linker = (tag: string) => `/lib64/ld-linux-x86-64.so.2.${tag}`;
const SEED_RULE = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a'; // Elastic's "Dynamic Linker (ld.so) Creation"
const MASQUERADE_RULE = 'b7c1e9a2-4f3d-4a6b-9e2c-1d8f5a7b3c64'; // ldguard's "… Package Manager Masquerade"
const UNATTRIBUTED_RULE = '3d5e7a90-1b2c-4d3e-8f4a-6b7c8d9e0f12';
const VIEW_RULE = '5b0e8c2a-7d4f-4a61-9c3e-2f1a6d8b7e45'; // ldguard's "… Covered, Uncovered or Replaced"
// The agent unit's CapabilityBoundingSet: what it may hold (nspawn itself withholds CAP_NET_ADMIN).
const CAP = { DAC_READ_SEARCH: 2, NET_ADMIN: 12, SYS_PTRACE: 19, SYS_ADMIN: 21 };

let m: Machine | undefined;
let admin = '';
const timings: Array<[string, number]> = [];

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    timings.push([what, (performance.now() - t0) / 1000]);
  }
}

function machine(): Machine {
  if (!m) throw new Error('the machine did not boot (see beforeAll)');
  return m;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, f: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(250);
  }
}

/** Every alert in the collector, through its API with the admin token, as an operator reads them. */
async function alerts(token = admin): Promise<any[]> {
  const r = await machine().sh(`curl -fsS -H 'Authorization: Bearer ${token}' 'http://127.0.0.1:${COLLECTOR_PORT}/api/alerts?limit=1000'`);
  return (JSON.parse(r.stdout) as { alerts: any[] }).alerts;
}

const forFile = (all: any[], tag: string) => all.filter((a) => String(a.file?.path).endsWith(`ld-linux-x86-64.so.2.${tag}`));

/** The alerts about none of these files, in brief: what the test did not write is shown whole. */
const others = (all: any[], tags: string[]) =>
  all.filter((a) => !tags.some((t) => forFile([a], t).length > 0)).map((a) => ({ rule: a.rule?.name, action: a.event?.action, file: a.file?.path, notice: a.ldguard?.notice, baseline: a.ldguard?.baseline, process: a.process?.executable }));

/** Waits until each tag has an alert, then a little longer, so a late duplicate would show too. */
async function settledAlerts(tags: string[]): Promise<any[]> {
  await waitFor(`alerts for ${tags.join(', ')}`, async () => {
    const all = await alerts();
    return tags.every((t) => forFile(all, t).length > 0) && all;
  }, 60_000);
  await sleep(3000);
  return alerts();
}

/** Writes a linker with `cp` (or another program) and returns the writer's pid inside the machine. */
async function writeLinker(tag: string, program = 'cp', from = LOADER): Promise<number> {
  const r = await machine().sh(`sh -c 'echo $$; exec ${program} ${from} ${linker(tag)}'`);
  return Number(r.stdout.trim());
}

async function unit(name: string): Promise<{ state: string; pid: number; restarts: number }> {
  const r = await machine().sh(`systemctl show -p ActiveState -p MainPID -p NRestarts ${name}`);
  const p = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=') as [string, string]));
  return { state: p.ActiveState ?? '', pid: Number(p.MainPID), restarts: Number(p.NRestarts) };
}

async function journal(unitName: string): Promise<any[]> {
  const r = await machine().sh(`journalctl -u ${unitName} -o cat --no-pager`);
  return r.stdout.split('\n').flatMap((l) => {
    try {
      return l.startsWith('{') ? [JSON.parse(l)] : [];
    } catch {
      return [];
    }
  });
}

async function capabilities(pid: number): Promise<{ eff: bigint; uid: number }> {
  const status = (await machine().sh(`cat /proc/${pid}/status`)).stdout;
  return { eff: BigInt(`0x${/^CapEff:\s+(\w+)/m.exec(status)?.[1]}`), uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]) };
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the system test boots a machine with systemd-nspawn: run it as root');
  for (const tool of ['systemd-nspawn', 'debootstrap', 'nsenter']) {
    if ((await runHost('sh', ['-c', `command -v ${tool}`], 5000)).code !== 0) {
      throw new Error(`${tool} is missing: apt-get install -y debootstrap systemd-container`);
    }
  }
  // The machine shares this host's network, so its collector needs the port here.
  if (!(await portFree(COLLECTOR_PORT))) {
    throw new Error(`127.0.0.1:${COLLECTOR_PORT} is taken on this host (an ldguard up or collector running?); the machine's collector needs it: stop that first`);
  }
  await Machine.cleanStale();
  const built = await timed('root file system (rootfs.sh)', () => runHost(resolve(HERE, 'rootfs.sh'), [CACHE], 15 * MINUTE));
  if (built.code !== 0) throw new Error(`rootfs.sh failed:\n${built.stderr}`);
  const root = built.stdout.trim();
  m = await timed('stage and boot', () => Machine.boot(root, CHECKOUT, 'ldguard-systest'));
}, 25 * MINUTE);

afterAll(async () => {
  const total = timings.reduce((s, [, t]) => s + t, 0);
  console.log(['system test timings (s):', ...timings.map(([w, t]) => `  ${t.toFixed(1).padStart(7)}  ${w}`), `  ${total.toFixed(1).padStart(7)}  total`].join('\n'));
  if (!m) return;
  if (KEEP) {
    console.log(`LDGUARD_SYSTEST_KEEP: the machine is still running; enter it with\n  nsenter --target ${m.leader} --all --root --wd bash\nand stop it with\n  ${resolve(HERE, 'stop.sh')} ${m.runDir}`);
    return;
  }
  await m.stop();
}, 2 * MINUTE);

describe('ldguard on a systemd host (Debian bookworm under systemd-nspawn)', () => {
  it('installs with ./install.sh and runs both services', async () => {
    // stdout and stderr apart: the token is on stdout only (stderr ends up in logs).
    const r = await timed('install.sh (first install)', () => machine().sh('cd /root/ldguard && ./install.sh 2>/root/install.err', { timeoutMs: 12 * MINUTE }));
    const err = (await machine().sh('cat /root/install.err')).stdout;
    expect(err).toContain('ldguard is running under systemd');
    const token = /admin token \(also in \/etc\/ldguard\/admin-token\): (\S+)/.exec(r.stdout)?.[1];
    expect(token, 'install.sh prints the admin token once, on stdout').toBeTruthy();
    expect(err).not.toContain(token!);
    expect((await machine().sh('cat /etc/ldguard/admin-token; stat -c %a /etc/ldguard/admin-token')).stdout.trim().split('\n')).toEqual([token, '600']);
    admin = token!;
    const active = await machine().sh('systemctl is-active ldguard-agent ldguard-collector', { check: false });
    expect(active.stdout.trim().split('\n')).toEqual(['active', 'active']);
    expect((await machine().sh('systemctl is-enabled ldguard-agent ldguard-collector')).stdout.trim().split('\n')).toEqual(['enabled', 'enabled']);
    // Secrets stay root's.
    const modes = await machine().sh('stat -c "%a %U %n" /etc/ldguard /etc/ldguard/agent.toml /etc/ldguard/collector.toml /etc/ldguard/agent.token');
    expect(modes.stdout.trim().split('\n').map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['700 root', '600 root', '600 root', '600 root']);
  }, 15 * MINUTE);

  it('has units that systemd-analyze verify finds clean, with their security scores', async () => {
    const units = ['/etc/systemd/system/ldguard-agent.service', '/etc/systemd/system/ldguard-collector.service'];
    const verify = await machine().sh(`systemd-analyze verify ${units.join(' ')} 2>&1`, { check: false });
    expect(verify.stdout.trim(), 'systemd-analyze verify output').toBe('');
    expect(verify.code).toBe(0);
    const scores: string[] = [];
    for (const u of units) {
      const s = await machine().sh(`systemd-analyze security --offline=true --no-pager ${u}`, { check: false });
      const line = /Overall exposure level for (\S+): ([\d.]+) (\S+)/.exec(s.stdout);
      expect(line, s.stdout).toBeTruthy();
      scores.push(`${line![1]}: ${line![2]} ${line![3]}`);
      // Falco's unit scores 8.6 and auditd's 8.9 (10 is fully exposed).
      expect(Number(line![2])).toBeLessThan(5);
    }
    console.log(`systemd-analyze security --offline=true (inside the machine):\n  ${scores.join('\n  ')}`);
  });

  it('runs the agent with only its capabilities, every thread at nice -10, and the collector unprivileged', async () => {
    const pid = (await unit('ldguard-agent')).pid;
    const agent = await capabilities(pid);
    // The unit's Nice=: the fanotify reader cannot ask for -10 itself without CAP_SYS_NICE.
    const nices = (await machine().sh(`sed 's/.*) //' /proc/${pid}/task/*/stat | cut -d' ' -f17`)).stdout.trim().split('\n').map(Number);
    expect(nices.length).toBeGreaterThan(1);
    expect([...new Set(nices)]).toEqual([-10]);
    const allowed = Object.values(CAP).reduce((s, b) => s | (1n << BigInt(b)), 0n);
    expect(agent.eff & ~allowed, `agent CapEff ${agent.eff.toString(16)}`).toBe(0n);
    expect(agent.eff & (1n << BigInt(CAP.SYS_ADMIN))).not.toBe(0n);
    const collector = await capabilities((await unit('ldguard-collector')).pid);
    expect(collector.eff).toBe(0n);
    expect(collector.uid).not.toBe(0);
  });

  it("logs the agent's self-test and readiness on fanotify in the journal", async () => {
    const lines = await journal('ldguard-agent');
    const selfTest = lines.find((l) => l.msg === 'self-test passed');
    expect(selfTest, 'a "self-test passed" line').toBeTruthy();
    expect(selfTest.attributed).toBe(true);
    const ready = lines.find((l) => l.msg === 'ready');
    expect(ready, 'a "ready" line').toMatchObject({ source: 'fanotify', degraded: false });
    expect((await journal('ldguard-collector')).some((l) => l.msg === 'ready')).toBe(true);
  });

  it('alerts once on a linker written by cp (ldguard tail and the collector); a copy of cp named dnf is the masquerade rule\'s, never silence', async () => {
    const tail = machine().spawnSh('echo $$; exec ldguard tail');
    let out = '';
    tail.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    tail.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const tailPid = await waitFor('ldguard tail to start', async () => Number(/^(\d+)\n/.exec(out)?.[1]) || undefined, 10_000);
      // Connected once it holds a socket (it connects before anything else and prints nothing).
      await waitFor('ldguard tail to connect', async () => {
        const fds = await machine().sh(`ls -l /proc/${tailPid}/fd 2>/dev/null | grep -c 'socket:'`, { check: false });
        return Number(fds.stdout.trim()) > 0;
      }, 15_000);
      await sleep(500);

      // dnf first: once the cp file's alert is in, the dnf file's event was handled before it.
      await machine().sh('cp /usr/bin/cp /tmp/dnf');
      const dnfPid = await writeLinker('dnf', '/tmp/dnf', '/bin/true');
      const cpPid = await writeLinker('test');
      expect(dnfPid).toBeGreaterThan(0);

      const line = await waitFor('ldguard tail to print the alert', async () => out.split('\n').find((l) => l.includes('ld-linux-x86-64.so.2.test')), 30_000);
      expect(line).toContain('Dynamic Linker (ld.so) Creation');
      expect(line).toContain('process=cp');
      expect(line).toContain(`pid=${cpPid}`);

      const all = await settledAlerts(['test']);
      // The seed rule spares it by name; the masquerade rule does not (it is in no package).
      expect(forFile(all, 'dnf').map((a) => a.rule.id), 'the linker written by a copy of cp named dnf').toEqual([MASQUERADE_RULE]);
      const cp = forFile(all, 'test');
      expect(cp).toHaveLength(1);
      expect(cp[0].rule.id).toBe(SEED_RULE);
      expect(cp[0].process).toMatchObject({ name: 'cp', executable: '/usr/bin/cp', pid: cpPid });
      expect(all).toHaveLength(2);
      expect(out).toContain('.so.2.dnf');
      await machine().sh(`kill ${tailPid}`);
    } finally {
      tail.kill();
    }
  });

  it('loses and duplicates nothing across systemctl restart ldguard-agent', async () => {
    const before = await unit('ldguard-agent');
    await timed('systemctl restart ldguard-agent', () =>
      machine().sh(`cp ${LOADER} ${linker('before-restart')} && systemctl restart ldguard-agent && cp ${LOADER} ${linker('after-restart')}`),
    );
    const after = await unit('ldguard-agent');
    expect(after.state).toBe('active');
    expect(after.pid).not.toBe(before.pid);
    const all = await settledAlerts(['before-restart', 'after-restart']);
    for (const tag of ['test', 'before-restart', 'after-restart']) expect(forFile(all, tag), tag).toHaveLength(1);
    expect(forFile(all, 'after-restart')[0].process.name).toBe('cp');
    expect(others(all, ['test', 'dnf', 'before-restart', 'after-restart'])).toEqual([]);
  });

  it('is restarted by systemd after kill -9, and stores what was written around it exactly once', async () => {
    // before-kill is written and the agent killed at once, in one shell: whether the agent had
    // spooled its alert (then delivered after the restart) or not (then reported by the start's
    // rescan as unobserved), the collector must hold one alert for it, never two.
    const before = await unit('ldguard-agent');
    await machine().sh(`cp ${LOADER} ${linker('before-kill')}; kill -9 ${before.pid}; cp ${LOADER} ${linker('while-down')}`);
    const after = await timed('restart by systemd after kill -9', () =>
      waitFor('systemd to restart the agent', async () => {
        const u = await unit('ldguard-agent');
        return u.state === 'active' && u.pid !== before.pid && u.pid > 0 && u;
      }, 60_000),
    );
    expect(after.restarts).toBe(before.restarts + 1);
    const all = await settledAlerts(['before-kill', 'while-down']);
    for (const tag of ['test', 'before-restart', 'after-restart', 'before-kill', 'while-down']) expect(forFile(all, tag), tag).toHaveLength(1);
    // Written while no agent ran: found by the rescan at start, with no writer to name.
    expect(forFile(all, 'while-down')[0].rule.id).toBe(UNATTRIBUTED_RULE);
    expect(others(all, ['test', 'dnf', 'before-restart', 'after-restart', 'before-kill', 'while-down'])).toEqual([]);
  });

  it('sees a mount over /usr/lib64 made in the host\'s namespace, though its unit has one of its own, and the loader written under it', async () => {
    // A copy of the directory bound over it, as an attacker would to keep the machine running (an
    // empty tmpfs would hide the loader every program needs); the unit's ProtectSystem and
    // PrivateTmp give the agent a mount namespace of its own, so only watching PID 1's sees this.
    await machine().sh('mkdir -p /root/l64 && cp -a /usr/lib64/. /root/l64/ && mount --bind /root/l64 /usr/lib64');
    let pid = 0;
    try {
      pid = await writeLinker('under-mount');
      const all = await settledAlerts(['under-mount']);
      const view = all.filter((a) => a.rule.id === VIEW_RULE && a.file?.path === '/usr/lib64');
      expect(view.map((a) => [a.event.action, a.process?.name])).toEqual([['mounted', 'mount']]);
      expect(forFile(all, 'under-mount').map((a) => [a.rule.id, a.process.name, a.process.pid])).toEqual([[SEED_RULE, 'cp', pid]]);
      // The loader the mount shows is another file under the loader's name: reported, linked to it.
      const shown = all.filter((a) => a.file?.path === '/usr/lib64/ld-linux-x86-64.so.2');
      expect(shown.map((a) => a.ldguard?.view_change?.id)).toEqual([view[0].ldguard.view_change.id]);
    } finally {
      await machine().sh('umount /usr/lib64');
    }
    await waitFor('the unmounted alert', async () => (await alerts()).some((a) => a.rule.id === VIEW_RULE && a.file?.path === '/usr/lib64' && a.event.action === 'unmounted'), 30_000);
  });

  it('upgrades by re-running install.sh, keeping config, tokens, spool and database', async () => {
    // The agent's identity and token, both configs; its spool and baseline are where they were.
    const keep = 'sha256sum /etc/ldguard/agent.toml /etc/ldguard/collector.toml /etc/ldguard/agent.token /var/lib/ldguard/agent-id; ls -d /var/lib/ldguard/spool /var/lib/ldguard/known-files.json';
    const kept = (await machine().sh(keep)).stdout;
    const tokens = (await machine().sh('ldguard token list --db /var/lib/ldguard-collector/ldguard.db --json')).stdout;
    const old = (await alerts()).map((a) => a.kibana.alert.uuid).sort();
    const agents = async () => (JSON.parse((await machine().sh(`curl -fsS -H 'Authorization: Bearer ${admin}' http://127.0.0.1:${COLLECTOR_PORT}/api/agents`)).stdout) as { agents: any[] }).agents;
    const agentsBefore = (await agents()).map((a) => `${a.agentId} ${a.tokenName}`);
    expect(agentsBefore).toHaveLength(1);
    const agentBefore = await unit('ldguard-agent');

    const r = await timed('install.sh (upgrade)', () => machine().sh('cd /root/ldguard && ./install.sh 2>&1', { timeoutMs: 12 * MINUTE }));
    expect(r.stdout).toContain('ldguard is running under systemd');
    expect(r.stdout, 'no new admin token on upgrade').not.toContain('admin token (also in');
    expect((await machine().sh(keep)).stdout).toBe(kept);
    expect((await machine().sh('ldguard token list --db /var/lib/ldguard-collector/ldguard.db --json')).stdout).toBe(tokens);
    expect((await machine().sh('systemctl is-active ldguard-agent ldguard-collector')).stdout.trim().split('\n')).toEqual(['active', 'active']);
    expect((await unit('ldguard-agent')).pid).not.toBe(agentBefore.pid);
    // The collector's dynamic user still owns all of its state, whatever root did there.
    const owners = await machine().sh('stat -c %U /var/lib/private/ldguard-collector /var/lib/private/ldguard-collector/* | sort -u');
    expect(owners.stdout.trim().split('\n')).toHaveLength(1);
    expect(owners.stdout.trim()).not.toBe('root');

    // The old admin token still reads the old alerts; the agent delivers with its old token.
    const cpPid = await writeLinker('after-upgrade');
    const all = await settledAlerts(['after-upgrade']);
    expect(all.map((a) => a.kibana.alert.uuid).filter((u) => old.includes(u)).sort()).toEqual(old);
    expect(forFile(all, 'after-upgrade')).toHaveLength(1);
    expect(forFile(all, 'after-upgrade')[0].process.pid).toBe(cpPid);
    expect(all).toHaveLength(old.length + 1);
    expect((await agents()).map((a) => `${a.agentId} ${a.tokenName}`), 'the same agent, with the same token').toEqual(agentsBefore);
  }, 15 * MINUTE);

  it('uninstalls with --uninstall: units and program gone, data and config kept', async () => {
    const r = await machine().sh('cd /root/ldguard && ./install.sh --uninstall 2>&1');
    expect(r.stdout).toContain('removed ldguard');
    const files = await machine().sh('systemctl list-unit-files "ldguard*" --no-legend', { check: false }); // exit 1: none
    expect(files.stdout.trim()).toBe('');
    const gone = await machine().sh('for f in /etc/systemd/system/ldguard-agent.service /etc/systemd/system/ldguard-collector.service /usr/local/bin/ldguard /opt/ldguard; do [ -e $f ] && echo $f; done; true');
    expect(gone.stdout.trim()).toBe('');
    // [/]: the pattern must not match this very shell's command line.
    const running = await machine().sh("pgrep -af '[/]opt/ldguard/dist'", { check: false });
    expect(running.stdout.trim()).toBe('');
    const kept = await machine().sh('ls /etc/ldguard/agent.toml /etc/ldguard/collector.toml /etc/ldguard/agent.token /var/lib/private/ldguard-collector/ldguard.db /var/lib/ldguard');
    expect(kept.code).toBe(0);
  });
});

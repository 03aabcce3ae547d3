// The agent as systemd and an operator meet it: readiness and watchdog notifications, SIGHUP
// reloads (a bad reload keeps the old rules), clean SIGTERM, refusal of a bad config, and gap
// detection across a restart.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledRulesDir } from '../../shared/paths.js';
import { CLI, scratchRoot, startAgent } from '../helpers/agent.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

/** A Unix datagram socket that records what is sent to it (Node has no AF_UNIX datagrams). */
function notifyListener() {
  const dir = tempDir('ldg-notify-');
  const sock = join(dir, 'notify.sock');
  const log = join(dir, 'messages');
  const py = spawn('python3', ['-c', `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode() + "\\n---\\n"); f.flush()
`, sock, log], { stdio: ['ignore', 'pipe', 'inherit'] });
  whenDone(() => py.kill());
  const ready = new Promise<void>((resolve) => py.stdout.once('data', () => resolve()));
  return { sock, ready, messages: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''), stop: () => py.kill() };
}

describe.skipIf(!isRoot)('agent lifecycle (skipped: needs root for fanotify)', () => {
  it('notifies systemd: READY=1 once watching, WATCHDOG=1 keep-alives, STOPPING=1 on SIGTERM', async () => {
    const n = notifyListener();
    await n.ready;
    const agent = await startAgent({ env: { NOTIFY_SOCKET: n.sock, WATCHDOG_USEC: '200000' } });
    whenDone(() => agent.stop('SIGKILL')); // a no-op once the test has stopped it
    await new Promise((r) => setTimeout(r, 400));
    expect(await agent.stop()).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    n.stop();
    const msgs = n.messages();
    expect(msgs).toContain('READY=1');
    expect(msgs).toContain('WATCHDOG=1');
    expect(msgs).toContain('STOPPING=1');
    expect(msgs.indexOf('READY=1')).toBeLessThan(msgs.indexOf('STOPPING=1'));
  });

  it('reloads rules on SIGHUP, and keeps the old ones when the new ones are invalid', async () => {
    const rules = tempDir('ldg-rules-');
    cpSync(bundledRulesDir(), rules, { recursive: true });
    const agent = await startAgent({ extra: ['--rule', rules] });
    whenDone(() => agent.stop('SIGKILL'));
    const seedFile = join(rules, 'linux/defense_evasion_ld_so_creation.toml');
    const seed = readFileSync(seedFile, 'utf8');

    // 1. a broken rule file: the reload fails with the position, the agent keeps alerting
    writeFileSync(seedFile, seed.replace('not process.name in (', 'not process.name in (('));
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs().some((l) => l.msg === 'reload failed; still running with the previous configuration and rules'));
    const failed = agent.logs().find((l) => String(l.msg).startsWith('reload failed'))!;
    expect(String(failed.err)).toMatch(/defense_evasion_ld_so_creation\.toml:\d+:\d+/);
    spawnSync('touch', [join(agent.root, 'lib64/ld-linux-x86-64.so.2.still')]);
    let alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.still')));
    expect(alerts.filter((x) => x.file.path.endsWith('.still')).map((x) => x.rule.id)).toEqual([SEED_ID]);

    // 2. a valid change (touch is now excluded by name): applied without a restart
    writeFileSync(seedFile, seed.replace('"dockerd", "yum"', '"dockerd", "touch", "yum"'));
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs().some((l) => l.msg === 'reloaded configuration and rules'));
    spawnSync('touch', [join(agent.root, 'lib64/ld-linux-x86-64.so.2.excluded')]);
    spawnSync('cp', ['/bin/true', join(agent.root, 'lib64/ld-linux-x86-64.so.2.marker')]);
    alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.marker')));
    expect(alerts.filter((x) => x.file.path.endsWith('.excluded'))).toEqual([]);
    expect(await agent.stop()).toBe(0);
  });

  it('reports, after a restart, a linker file that appeared while it was stopped', async () => {
    const root = removeWhenDone(scratchRoot());
    const state = tempDir('ldg-state-');
    writeFileSync(join(root, 'usr/lib64/ld-linux-x86-64.so.2'), 'the real one');
    let agent = await startAgent({ root, stateDir: state });
    whenDone(() => agent.stop('SIGKILL')); // whichever agent runs when the test ends
    expect(agent.logs().some((l) => l.msg === 'first run: baseline of rule-matching files recorded')).toBe(true);
    expect(await agent.stop()).toBe(0);
    expect(agent.alerts()).toEqual([]); // the baseline is not an alert

    writeFileSync(join(root, 'usr/lib64/ld-linux-x86-64.so.2.planted'), 'evil');
    agent = await startAgent({ root, stateDir: state });
    const alerts = await agent.waitForAlerts((a) => a.length > 0);
    expect(alerts.map((a) => [a.file.path, a.rule.name, a.ldguard.source, a.ldguard.attribution])).toEqual([
      ['/usr/lib64/ld-linux-x86-64.so.2.planted', 'Dynamic Linker (ld.so) Created by an Unidentified Process', 'rescan', 'unknown'],
    ]);
    expect(alerts[0]!.file.hash.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await agent.stop()).toBe(0);
  });

  it('refuses a bad configuration at start with the code and every problem, exit status 2', () => {
    const dir = tempDir('ldg-badcfg-');
    writeFileSync(join(dir, 'agent.toml'), 'source = "ebpf"\nwatch = []\n');
    const r = spawnSync(process.execPath, [CLI, 'agent', '--config', join(dir, 'agent.toml')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('LDG_ERR_CONFIG');
    expect(r.stderr).toContain('option source');
    expect(r.stderr).toContain('option watch');
  });

  it('refuses a root where none of the watched directories exist', () => {
    const empty = tempDir('ldg-empty-');
    const r = spawnSync(process.execPath, [CLI, 'agent', '--root', empty, '--state-dir', join(empty, 'state'), '--alerts-file', join(empty, 'a'), '--socket', join(empty, 's')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('LDG_ERR_NO_DIRS');
  });
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

// `ldguard tail` across an agent restart, as an operator leaves it running: it waits for the agent,
// prints what was written while it was away (from the alerts file) and what comes after, and
// Ctrl-C ends it quietly with 130. The real agent (fanotify, scratch root).
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { CLI } from '../helpers/cli.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;

async function until(ok: () => boolean, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; !ok() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
}

describe.skipIf(!isRoot)('ldguard tail across a restart (skipped: the agent needs root for fanotify)', () => {
  it('follows the agent through a restart, fills the gap from the alerts file, quits on Ctrl-C with 130', { timeout: 90_000 }, async () => {
    const work = tempDir('ldg-tail-');
    const root = removeWhenDone(scratchRoot());
    const stateDir = join(work, 'state');
    const socket = join(work, 'agent.sock');
    const alertsFile = join(work, 'alerts.ndjson');
    const start = () => startAgent({ root, stateDir, extra: ['--socket', socket, '--alerts-file', alertsFile] });
    let agent: RunningAgent = await start();
    whenDone(() => agent.stop('SIGKILL'));
    const plant = (name: string) => {
      spawnSync('cp', ['/bin/true', join(root, 'lib64', name)]);
      return `/usr/lib64/${name}`;
    };

    const tail = spawn(process.execPath, [CLI, 'tail', '--socket', socket, '--since', '1m', '--alerts-file', alertsFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    whenDone(() => void tail.kill('SIGKILL'));
    let out = '';
    let err = '';
    tail.stdout.on('data', (d) => (out += String(d)));
    tail.stderr.on('data', (d) => (err += String(d)));
    const exited = new Promise<number | null>((r) => tail.on('exit', (code) => r(code)));
    const clients = () => agent.logs().filter((l) => l.msg === 'tail client connected').length;
    await until(() => clients() > 0);

    const before = plant('ld-linux-x86-64.so.2.before');
    await until(() => out.includes(before));
    expect(out).toContain(before);
    expect(out).toMatch(/writer=running|writer=exited/);
    expect(out).not.toContain('attribution=');

    expect(await agent.stop()).toBe(0);
    await until(() => err.includes('waiting for it'));
    // Planted while the agent is down: its start-up rescan reports it, perhaps before tail is back.
    const during = plant('ld-linux-x86-64.so.2.during');
    agent = await start();
    await until(() => err.includes('the agent is back'));
    const after = plant('ld-linux-x86-64.so.2.after');
    await until(() => out.includes(after) && out.includes(during));
    for (const p of [before, during, after]) expect(out.split('\n').filter((l) => l.includes(p)), p).toHaveLength(1);

    tail.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(err.split('\n').filter(Boolean)).toEqual([
      'ldguard tail: the agent stopped or is restarting; waiting for it to come back (Ctrl-C to quit)',
      'ldguard tail: the agent is back; following again',
    ]);
    expect(await agent.stop()).toBe(0);
  });
});

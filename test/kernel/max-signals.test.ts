// max_signals against an attacker, on the real kernel: real writer processes flood a scratch root
// past the rule's cap (100 per 5 minutes and host) and then write what matters. Every match must be
// recorded (an alert, or a held-back record), the file that differs must be named by a summary
// update, a write to the loader in use must be an alert of its own, and a kill -9 followed by a
// restart must report nothing again.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { removeWhenDone, tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const SEED = 'Dynamic Linker (ld.so) Creation';

/** One sh process writes `n` files usr/lib64/ld-linux-<tag>-<i>.so.2; `distinct`: each with other content (another hash). */
function flood(root: string, tag: string, n: number, distinct = false): string[] {
  execFileSync('/bin/sh', ['-c', `i=0; while [ $i -lt ${n} ]; do echo ${distinct ? 'decoy-$i' : 'decoy'} > "$1/usr/lib64/ld-linux-${tag}-$i.so.2"; i=$((i+1)); done`, 'sh', root]);
  return Array.from({ length: n }, (_, i) => `/usr/lib64/ld-linux-${tag}-${i}.so.2`);
}

/** A root whose binaries name /lib64/ld-linux-x86-64.so.2 as their interpreter (a copy of the host's env). */
function rootWithBinaries(): string {
  const root = removeWhenDone(scratchRoot());
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  copyFileSync('/usr/bin/env', join(root, 'usr/bin/env'));
  return root;
}

const seed = (a: RunningAgent) => a.alerts().filter((x) => x.rule.name === SEED);
const summaries = (all: Array<Record<string, any>>) => all.filter((x) => x.ldguard.summary);
const paged = (all: Array<Record<string, any>>) => all.filter((x) => !x.ldguard.summary && x.ldguard.held_back_by === undefined);
const records = (all: Array<Record<string, any>>) => all.filter((x) => x.ldguard.held_back_by !== undefined);

describe.skipIf(!isRoot)('max_signals under a flood (skipped: needs root for fanotify)', () => {
  it('200 identical decoys, one different file, one more decoy: all recorded, the different file named by a summary update', async () => {
    const agent = await startAgent({ root: rootWithBinaries() });
    whenDone(() => agent.stop('SIGKILL'));
    let tail = '';
    const t = spawn(process.execPath, [CLI, 'tail', '--socket', agent.socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    whenDone(() => t.kill());
    t.stdout.on('data', (d) => (tail += String(d)));
    await agent.waitForAlerts(() => agent.logs().some((l) => l.msg === 'tail client connected'));

    const decoys = flood(agent.root, 'same', 200);
    await agent.waitForAlerts((a) => a.filter((x) => x.rule.name === SEED && !x.ldguard.summary).length >= 200);
    const odd = '/usr/lib64/ld-linux-odd.so.2';
    execFileSync('cp', ['/bin/true', join(agent.root, odd)]);
    const wroteAt = Date.now();
    const last = flood(agent.root, 'after', 1);
    const all = await agent.waitForAlerts((a) => a.some((x) => x.ldguard.summary?.new_groups?.some((g: any) => g.first.path === odd)), 10_000);
    const namedAt = Date.now();
    console.log(`different file named by a summary update ${namedAt - wroteAt} ms after its write (the issue asks for 5 s)`);
    const s = summaries(seed(agent));
    const update = s.find((x) => x.ldguard.summary.new_groups.some((g: any) => g.first.path === odd));
    expect(update).toBeDefined();
    expect(update!.file.path).toBe(odd);
    expect(update!.kibana.alert.reason).toContain(odd);
    expect(update!.kibana.alert.suppression.terms).toEqual([
      { field: 'process.executable', value: [execFileSync('sh', ['-c', 'readlink -f "$(command -v cp)"'], { encoding: 'utf8' }).trim()] },
      { field: 'file.hash.sha256', value: [expect.stringMatching(/^[0-9a-f]{64}$/)] },
    ]);

    // Every write is recorded once: the first 100 as alerts, the rest as records of one summary id.
    await agent.waitForAlerts((a) => [...decoys, odd, ...last].every((p) => a.some((x) => x.file.path === p)));
    const mine = seed(agent).filter((x) => !x.ldguard.summary);
    expect(mine.map((x) => x.file.path).sort()).toEqual([...decoys, odd, ...last].sort());
    expect(paged(mine)).toHaveLength(100);
    const id = s[0]!.ldguard.summary.id;
    expect(records(mine)).toHaveLength(102);
    expect(records(mine).every((x) => x.ldguard.held_back_by === id && x.kibana.alert.building_block_type === 'default')).toBe(true);
    expect(s.every((x) => x.ldguard.summary.id === id)).toBe(true);
    expect(s[0]!.kibana.alert.uuid).toBe(id);
    expect(new Set(s.map((x) => x.kibana.alert.uuid)).size).toBe(s.length);
    expect(all.length).toBeGreaterThan(0);

    // tail: marks the summaries, and says when holding back starts; records only with --held-back.
    await agent.waitForAlerts(() => tail.includes(odd));
    expect(tail).toContain('-- max_signals reached: holding back further alerts of Dynamic Linker (ld.so) Creation');
    expect(tail).toMatch(new RegExp(`SUMMARY .*new: ${odd.replace(/\./g, '\\.')}`));
    expect(tail.split('\n').filter((l) => l.includes('ld-linux-same-')).length).toBeLessThan(110); // 100 alerts and the summaries, not 200 lines

    // Ending the agent closes the window: the final summary, and tail's line that holding back ended.
    expect(await agent.stop()).toBe(0);
  });

  it('200 distinct decoys, then a write to the loader in use: that write is an alert of its own', async () => {
    const agent = await startAgent({ root: rootWithBinaries() });
    whenDone(() => agent.stop('SIGKILL'));
    expect(agent.logs().some((l) => l.msg === 'loaders in use: alerts on them are never held back')).toBe(true);
    const decoys = flood(agent.root, 'distinct', 200, true);
    await agent.waitForAlerts((a) => decoys.every((p) => a.some((x) => x.file.path === p)));
    const loader = '/usr/lib64/ld-linux-x86-64.so.2';
    execFileSync('cp', ['/bin/true', join(agent.root, 'lib64/ld-linux-x86-64.so.2')]);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path === loader));
    const hit = seed(agent).filter((x) => x.file.path === loader && !x.ldguard.summary);
    expect(hit).toHaveLength(1);
    expect(hit[0]!.ldguard.held_back_by).toBeUndefined();
    expect(hit[0]!.kibana.alert.building_block_type).toBeUndefined();
    // …while the decoys past the cap were held back (the cap was reached before the loader's write).
    expect(records(alerts.filter((x) => x.rule.name === SEED)).length).toBe(100);
    expect(await agent.stop()).toBe(0);
  });

  it('kill -9 in the middle of a flood, restart: nothing already recorded is reported again as unidentified', async () => {
    const root = rootWithBinaries();
    const state = tempDir('ldg-state-');
    let agent = await startAgent({ root, stateDir: state });
    whenDone(() => agent.stop('SIGKILL'));
    const files = flood(root, 'kill', 180);
    await agent.waitForAlerts((a) => files.every((p) => a.some((x) => x.file.path === p)));
    expect(records(seed(agent)).length).toBe(80);
    const before = agent.alerts();
    await new Promise((r) => setTimeout(r, 300)); // the baseline is saved right after (known-files.ts): that is what is tested
    await agent.stop('SIGKILL');

    agent = await startAgent({ root, stateDir: state });
    await new Promise((r) => setTimeout(r, 500)); // the start rescan has run before ready; give a late one a moment
    const again = agent.alerts().filter((a) => files.includes(a.file.path));
    expect(again).toEqual([]); // a new alerts file: nothing of the flood was reported again
    expect(before.filter((a) => a.ldguard.source === 'rescan')).toEqual([]);
    expect(await agent.stop()).toBe(0);
  });
});

// Uncertainty never resolves into silence (issue #17): a rename into place by a writer the agent
// cannot name still alerts. The agent runs in a pid namespace of its own, as in a container
// that watches the host's library directories: fanotify reports pid 0 for a writer outside it,
// so nothing can name the writer; the rename rule needs process.executable and stays silent.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../helpers/agent.js';

const isRoot = process.getuid?.() === 0;
const hasUnshare = spawnSync('unshare', ['--version']).status === 0;
const UNIDENTIFIED = 'Dynamic Linker (ld.so) Created by an Unidentified Process';

describe.skipIf(!isRoot || !hasUnshare)('a writer the agent cannot see (skipped: needs root and unshare(1))', () => {
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await startAgent({ source: 'fanotify', wrap: ['unshare', '--pid', '--fork', '--mount-proc', '--'] });
  });
  afterAll(async () => {
    // unshare(1) blocks SIGTERM while it waits: the agent (its child) is told directly.
    const pid = readFileSync(`/proc/${agent.proc.pid}/task/${agent.proc.pid}/children`, 'utf8').trim().split(' ')[0];
    if (pid) process.kill(Number(pid), 'SIGTERM');
    expect(await agent.stop()).toBe(0);
  });

  it('a rename into place by an unidentified writer is an alert that says so, with the path and no process', async () => {
    const src = join(agent.stateDir, 'staged-loader');
    writeFileSync(src, 'not a loader');
    expect(spawnSync('mv', [src, join(agent.root, 'lib64/ld-linux-x86-64.so.2')]).status).toBe(0);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2'));
    const hits = alerts.filter((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2');
    expect(hits.map((a) => [a.rule.name, a.event.action, a.ldguard.attribution, a.process?.executable])).toEqual([[UNIDENTIFIED, 'rename', 'unknown', undefined]]);
  });
});

// Debian's multiarch loader directory, /usr/lib/<triplet>/, under a scratch --root: the agent
// watches it because a rule names it in file.directory (it is not in the configured watch list),
// and the multiarch rule fires for a real writer there. Never the real /usr/lib/x86_64-linux-gnu.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent } from '../helpers/agent.js';
import { whenDone } from '../helpers/temp.js';
import { removeTools, WRITERS } from '../helpers/writers.js';

const isRoot = process.getuid?.() === 0;
const MULTIARCH = 'Dynamic Linker (ld.so) Creation in a Multiarch Directory';

afterAll(removeTools);

describe.skipIf(!isRoot)('multiarch loader directory (skipped: needs root for fanotify and the scratch root)', () => {
  it('watches ROOT/usr/lib/x86_64-linux-gnu from the rules and alerts on a loader written there', async () => {
    const agent = await startAgent();
    whenDone(() => agent.stop('SIGKILL'));
    expect(agent.logs().find((l) => l.msg === 'directories named by the rules are watched too')?.fromRules).toContain('/usr/lib/x86_64-linux-gnu');
    const dir = join(agent.root, 'usr/lib/x86_64-linux-gnu');
    spawnSync('touch', [join(dir, 'libunrelated.so.1')]); // not the loader: no alert
    const w = await WRITERS.cp!(join(dir, 'ld-linux-x86-64.so.2'));
    // Through the /lib alias too: merged /usr reports it under the real directory.
    const viaLib = await WRITERS.touch!(join(agent.root, 'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.dpkg-new'));
    const alerts = await agent.waitForAlerts((a) => a.filter((x) => x.rule.name === MULTIARCH).length >= 2);
    const hits = alerts.filter((a) => a.rule.name === MULTIARCH);
    expect(hits.map((a) => [a.file.path, a.file.directory, a.process.pid, a.process.executable])).toEqual([
      ['/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu', w.pid, w.exe],
      ['/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.dpkg-new', '/usr/lib/x86_64-linux-gnu', viaLib.pid, viaLib.exe],
    ]);
    expect(alerts.filter((a) => a.file.path.includes('libunrelated'))).toEqual([]);
    expect(await agent.stop()).toBe(0);
  });
});

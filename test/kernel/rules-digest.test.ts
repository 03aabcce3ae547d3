// The rules the agent runs, as one digest (agent/src/rules-digest.ts), and the alert a SIGHUP that
// loads changed rules raises: an edited rule file that still parses must not reload unnoticed.
// The real agent on a scratch root, its rules a copy of the bundled ones.
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledRulesDir } from '../../shared/paths.js';
import { loadRuleSet } from '../../shared/rule.js';
import { startAgent } from '../helpers/agent.js';
import { tempDir, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const CHANGED = 'ldguard Rules Changed on Reload';
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The digest as documented: sha256 over "path\0sha256\n" of each loaded file, sorted by path. */
function expectedDigest(rulesDir: string): string {
  const set = loadRuleSet([rulesDir]);
  const files = [...new Set(set.rules.flatMap((r) => [r.file, ...r.exceptions.map((l) => l.file)]))].sort();
  return sha(files.map((f) => `${f}\0${sha(readFileSync(f))}\n`).join(''));
}

async function waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
}

describe.skipIf(!isRoot)('the rules digest (skipped: needs root for fanotify and the scratch root)', () => {
  it('names the rule file an edit changed when SIGHUP reloads it, and says the new digest', async () => {
    const rules = tempDir('ldg-rules-');
    cpSync(bundledRulesDir(), rules, { recursive: true });
    const agent = await startAgent({ extra: ['--rule', rules] });
    whenDone(() => agent.stop('SIGKILL'));
    const first = agent.logs().find((l) => l.msg === 'rules loaded')!.rulesDigest;
    expect(first).toBe(expectedDigest(rules));

    // A reload with nothing changed is no alert.
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs().filter((l) => l.msg === 'reloaded configuration and rules').length === 1);

    const seedFile = join(rules, 'linux/defense_evasion_ld_so_creation.toml');
    const edited = readFileSync(seedFile, 'utf8').replace('"dockerd", "yum"', '"dockerd", "evil-tool", "yum"');
    writeFileSync(seedFile, edited);
    agent.proc.kill('SIGHUP');
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.rule.name === CHANGED));
    const changed = alerts.filter((x) => x.rule.name === CHANGED);
    const now = expectedDigest(rules);
    expect(now).not.toBe(first);
    expect(changed.map((a) => [a.file.path, a.file.hash?.sha256, a.event.action, a.ldguard.rule_file_change, a.ldguard.rules_digest])).toEqual([
      [seedFile, sha(edited), 'rules_reloaded', 'modified', now],
    ]);
    // The alert is in the alerts file (written at once) before the log line crosses the pipe.
    await waitFor(() => agent.logs().filter((l) => l.msg === 'reloaded configuration and rules').length === 2);
    expect(agent.logs().filter((l) => l.msg === 'reloaded configuration and rules').map((l) => l.rulesDigest)).toEqual([first, now]);
    expect(await agent.stop()).toBe(0);
  });
});

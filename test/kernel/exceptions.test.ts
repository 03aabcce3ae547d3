// Exception lists in the running agent: a real writer excepted by its executable path is recorded
// (ldguard.excepted_by, closed) and pages no one, while another real writer alerts; SIGHUP reloads
// the list, and a bad list is refused naming its item_id while the previous one stays in force.
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';
import { CLI, startAgent } from '../helpers/agent.js';
import { tempDir, whenDone } from '../helpers/temp.js';
import { prepareTools, removeTools, WRITERS } from '../helpers/writers.js';

const isRoot = process.getuid?.() === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';
const LIST = 'ld-so-package-managers';

afterAll(removeTools);

/** The Kibana export fixture with its first item's executable replaced (and optionally a broken item). */
function exportWith(executable: string, broken = false): string {
  const lines = readFileSync(join(findRepoRoot(), 'test/fixtures/exceptions/ld_so_package_managers.ndjson'), 'utf8').trim().split('\n');
  const item = JSON.parse(lines[1]!);
  item.item_id = 'trusted-writer';
  item.entries = [{ field: 'process.executable', operator: 'included', type: 'match', value: executable }];
  if (broken) item.entries.push({ field: 'process.executable', operator: 'included', type: 'list', list: { id: 'exes', type: 'keyword' } });
  lines[1] = JSON.stringify(item);
  return lines.join('\n') + '\n';
}

async function waitFor(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
}

describe.skipIf(!isRoot)('exception lists in the agent (skipped: needs root for fanotify and the scratch root)', () => {
  it('records an excepted writer without paging, alerts on another, reloads the list on SIGHUP', async () => {
    const { writer } = prepareTools();
    const rules = tempDir('ldg-exc-rules-');
    cpSync(join(bundledRulesDir(), 'linux'), rules, { recursive: true });
    const ruleFile = join(rules, 'defense_evasion_ld_so_creation.toml');
    writeFileSync(ruleFile, `${readFileSync(ruleFile, 'utf8')}\n[[rule.exceptions_list]]\nid = "8e4a1f30-69a2-11f1-9c1b-2b5f0e3d7a11"\nlist_id = "${LIST}"\nnamespace_type = "single"\ntype = "detection"\n`);
    const listFile = join(rules, 'ld_so_package_managers.ndjson');
    writeFileSync(listFile, exportWith(writer));

    const agent = await startAgent({ extra: ['--rule', rules] });
    whenDone(() => agent.stop('SIGKILL'));
    const lib64 = join(agent.root, 'lib64');

    const trusted = await WRITERS['static writer exits at once']!(join(lib64, 'ld-linux-x86-64.so.2.trusted'));
    const other = await WRITERS.cp!(join(lib64, 'ld-linux-x86-64.so.2.other'));
    let alerts = await agent.waitForAlerts((a) => ['.trusted', '.other'].every((s) => a.some((x) => x.file.path.endsWith(s))));
    const excepted = alerts.filter((a) => a.file.path.endsWith('.trusted'));
    const paged = alerts.filter((a) => a.file.path.endsWith('.other'));
    expect(excepted).toHaveLength(1);
    expect(excepted[0]).toMatchObject({
      rule: { id: SEED_ID },
      process: { pid: trusted.pid, executable: trusted.exe },
      ldguard: { excepted_by: { list_id: LIST, item_id: 'trusted-writer' } },
      kibana: { alert: { workflow_status: 'closed' } },
    });
    expect(paged).toHaveLength(1);
    expect(paged[0]).toMatchObject({ rule: { id: SEED_ID }, process: { pid: other.pid }, kibana: { alert: { workflow_status: 'open' } } });
    expect(paged[0]!.ldguard.excepted_by).toBeUndefined();

    // `ldguard tail` shows the record as excepted, not as a page.
    const tail = spawn(process.execPath, [CLI, 'tail', '--since', '1h', '--alerts-file', agent.alertsFile, '--socket', agent.socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    whenDone(() => tail.kill());
    let out = '';
    tail.stdout.on('data', (b: Buffer) => (out += b.toString()));
    await waitFor(() => out.includes('.trusted') && out.includes('.other'));
    tail.kill();
    const lines = out.split('\n');
    expect(lines.find((l) => l.includes('.trusted'))).toMatch(/EXCEPTED .*excepted_by=ld-so-package-managers\/trusted-writer/);
    expect(lines.find((l) => l.includes('.other'))).toMatch(/LOW /);

    // A broken list on SIGHUP: refused naming the item, and the previous list stays in force.
    writeFileSync(listFile, exportWith(writer, true));
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs().some((l) => String(l.msg).startsWith('reload failed')));
    expect(String(agent.logs().find((l) => String(l.msg).startsWith('reload failed'))?.err)).toMatch(/LDG_ERR_EXCEPTION_INVALID: .*ld_so_package_managers\.ndjson:2: item_id "trusted-writer": entries\[1\]: type "list"/s);
    await WRITERS['static writer exits at once']!(join(lib64, 'ld-linux-x86-64.so.2.still'));
    alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.still')));
    expect(alerts.find((a) => a.file.path.endsWith('.still'))?.ldguard.excepted_by).toEqual({ list_id: LIST, item_id: 'trusted-writer' });

    // A good list on SIGHUP that no longer names the writer: it pages again.
    writeFileSync(listFile, exportWith('/usr/bin/dpkg'));
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs().some((l) => l.msg === 'reloaded configuration and rules'));
    await WRITERS['static writer exits at once']!(join(lib64, 'ld-linux-x86-64.so.2.after'));
    alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path.endsWith('.after')));
    const after = alerts.find((a) => a.file.path.endsWith('.after'))!;
    expect(after.ldguard.excepted_by).toBeUndefined();
    expect(after.kibana.alert.workflow_status).toBe('open');
    expect(await agent.stop()).toBe(0);
  });

  it('warns at start about an exception on process.name (the comm hole)', async () => {
    const rules = tempDir('ldg-exc-rules-');
    cpSync(join(bundledRulesDir(), 'linux'), rules, { recursive: true });
    const ruleFile = join(rules, 'defense_evasion_ld_so_creation.toml');
    writeFileSync(ruleFile, `${readFileSync(ruleFile, 'utf8')}\n[[rule.exceptions_list]]\nlist_id = "${LIST}"\n`);
    writeFileSync(join(rules, 'l.ndjson'), exportWith('x').replace('"field":"process.executable"', '"field":"process.name"'));
    const agent = await startAgent({ extra: ['--rule', rules] });
    whenDone(() => agent.stop('SIGKILL'));
    const warning = agent.logs().find((l) => l.msg === 'exception list loaded with a warning');
    expect(String(warning?.warning)).toMatch(/item_id "trusted-writer".*process\.name/);
    expect(await agent.stop()).toBe(0);
  });
});

// `ldguard match` as a user runs it: the built CLI, events on stdin, alerts on stdout.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bundledRulesDir, findRepoRoot } from '../../shared/paths.js';

const root = findRepoRoot();
const cli = `${root}/dist/agent/src/cli.js`;
const fixtures = `${root}/test/fixtures`;
const SEED = `${bundledRulesDir()}/linux/defense_evasion_ld_so_creation.toml`;

function match(rules: string[], input: string) {
  const r = spawnSync(process.execPath, [cli, 'match', ...rules.flatMap((x) => ['--rule', x])], { input, encoding: 'utf8' });
  const alerts = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return { status: r.status, alerts, stderr: r.stderr };
}

describe('ldguard match', () => {
  const events = readFileSync(`${fixtures}/events/ld_so_creation.ndjson`, 'utf8');
  const expected = JSON.parse(readFileSync(`${fixtures}/events/ld_so_creation.expected.json`, 'utf8')) as { seed: string[]; v1: string[]; current: string[] };

  it('gives exactly the expected alerts for the seed rule', () => {
    const { status, alerts, stderr } = match([SEED], events);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(alerts.map((a) => a.kibana.alert.original_event.id)).toEqual(expected.seed);
    for (const a of alerts) {
      expect(a.event.kind).toBe('signal');
      expect(a.kibana.alert.rule).toMatchObject({ rule_id: '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a', version: 1 });
      expect(a.kibana.alert.severity).toBe('low');
    }
  });

  it.each([
    ['v1', { severity: 'low', risk_score: 21 }, 1],
    ['current', { severity: 'medium', risk_score: 47 }, 107],
  ] as const)('gives exactly the expected alerts for the upstream %s revision, unchanged', (rev, kibana, version) => {
    const { alerts, stderr } = match([`${root}/shared/rules-upstream/defense_evasion_ld_so_creation.${rev}.toml`], events);
    expect(stderr).toBe('');
    expect(alerts.map((a) => a.kibana.alert.original_event.id)).toEqual(expected[rev]);
    expect(alerts[0].kibana.alert).toMatchObject(kibana);
    expect(alerts[0].kibana.alert.rule.version).toBe(version); // from the .source's version_lock
  });

  it('reports bad lines with their number on stderr and goes on', () => {
    const lines = events.split('\n');
    const input = [lines[0], '{not json', '[1,2]', lines[3]].join('\n');
    const { status, alerts, stderr } = match([SEED], input);
    expect(status).toBe(0);
    expect(stderr).toContain('line 2: not JSON');
    expect(stderr).toContain('line 3: expected a JSON object');
    expect(alerts.map((a) => a.kibana.alert.original_event.id)).toEqual(['ev-01', 'ev-04']);
  });

  it('records what goes over max_signals in a window as held-back records of a summary, and closes the window with a final one', () => {
    const base = JSON.parse(events.split('\n')[0]!);
    const input = Array.from({ length: 105 }, (_, i) =>
      JSON.stringify({ ...base, '@timestamp': new Date(Date.UTC(2026, 10, 26, 6, 0, i)).toISOString(), event: { ...base.event, id: `burst-${i}` }, file: { ...base.file, path: `/lib64/ld-linux-${i}.so.2`, hash: { sha256: 'ab'.repeat(32) } } }),
    ).join('\n');
    const { alerts } = match([SEED], input);
    // One writer, one content: one group. 100 alerts, the first summary, 5 records, the final
    // summary: every event is in the output.
    expect(alerts).toHaveLength(107);
    const [first, ...rest] = alerts.filter((a) => a.ldguard?.summary);
    expect(first.ldguard.summary).toMatchObject({ update: 0, final: false, held_back: 1 });
    expect(rest).toHaveLength(1);
    expect(rest[0].ldguard.summary).toMatchObject({ id: first.ldguard.summary.id, final: true, held_back: 5, groups_total: 1 });
    expect(rest[0].kibana.alert.suppression.docs_count).toBe(5);
    const records = alerts.filter((a) => a.ldguard?.held_back_by);
    expect(records.map((a) => a.file.path)).toEqual([100, 101, 102, 103, 104].map((i) => `/lib64/ld-linux-${i}.so.2`));
    expect(records.every((a) => a.ldguard.held_back_by === first.kibana.alert.uuid)).toBe(true);
  });

  it('stops quietly when its reader goes away (`ldguard match … | head -1`)', async () => {
    const base = JSON.parse(events.split('\n')[0]!);
    // Each event an hour after the last: every one is its own max_signals window, so each matches.
    const event = (i: number) => `${JSON.stringify({ ...base, '@timestamp': new Date(Date.UTC(2026, 0, 1) + i * 3_600_000).toISOString(), event: { ...base.event, id: `pipe-${i}` } })}\n`;
    const p = spawn(process.execPath, [cli, 'match', '--rule', SEED], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += String(d)));
    p.stdin.on('error', () => undefined); // it may exit before reading all of stdin, as it should
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    let gone = false;
    void exited.then(() => (gone = true));
    // As head -1: read the first line, then close the pipe's read end.
    let buf = '';
    const first = new Promise<string>((resolve) => {
      p.stdout.on('data', (d) => {
        buf += String(d);
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          p.stdout.destroy();
          resolve(buf.slice(0, nl));
        }
      });
    });
    let i = 0;
    p.stdin.write(event(i++));
    expect(JSON.parse(await first).kibana.alert.original_event.id).toBe('pipe-0');
    // Keep it matching (and writing into the closed pipe) for a while, then end its input.
    const until = Date.now() + 1_500;
    while (!gone && Date.now() < until) {
      p.stdin.write(event(i++));
      await new Promise((r) => setTimeout(r, 2));
    }
    if (!gone) p.stdin.end();
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
  });

  it('refuses an invalid rule file with its position', () => {
    const r = spawnSync(process.execPath, [cli, 'match', '--rule', `${fixtures}/rules/invalid/bad_query.toml`], { input: '', encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/LDG_ERR_RULE_INVALID/);
    expect(r.stderr).toMatch(/bad_query\.toml:\d+:\d+: query: LDG_ERR_EQL_PARSE/);
  });

  it('has a --help that works from the repo root through package.json bin', () => {
    const bin = (JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { bin: { ldguard: string } }).bin.ldguard;
    const r = spawnSync(process.execPath, [bin, '--help'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('match');
  });
});

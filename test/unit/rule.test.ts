import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildAlert } from '../../shared/alert.js';
import type { FileEvent } from '../../shared/ecs.js';
import { bundledRulesDir } from '../../shared/paths.js';
import { loadRuleFile, loadRules } from '../../shared/rule.js';
import { refusalOf } from '../helpers/rules.js';

const SEED = `${bundledRulesDir()}/linux/defense_evasion_ld_so_creation.toml`;
const seedText = readFileSync(SEED, 'utf8');

const problemsOf = (text: string) => refusalOf(text);

describe('the bundled seed rule', () => {
  const rule = loadRuleFile(SEED);

  it('carries the seed page metadata', () => {
    expect(rule).toMatchObject({
      ruleId: '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a',
      name: 'Dynamic Linker (ld.so) Creation',
      severity: 'low',
      riskScore: 21,
      version: 1,
      from: 'now-9m',
      interval: '5m',
      intervalMs: 300_000,
      maxSignals: 100,
      index: ['logs-endpoint.events.file*'],
      author: ['Elastic'],
      license: 'Elastic License v2',
    });
    expect(rule.tags).toContain('Tactic: Defense Evasion');
    expect(rule.tags).toHaveLength(7);
  });

  it('maps MITRE as the seed page does', () => {
    const ids = rule.threat.map((t) => [t.tactic.id, ...(t.technique ?? []).flatMap((x) => [x.id, ...(x.subtechnique ?? []).map((s) => s.id)])]);
    expect(ids).toEqual([
      ['TA0005', 'T1218'],
      ['TA0002', 'T1059', 'T1059.004'],
      ['TA0003', 'T1574', 'T1574.006'],
    ]);
  });

  const seedPath = new URL('../../../shared/seeds/000_30a4defbfe4d734c.txt', import.meta.url);
  it.skipIf(!existsSync(seedPath))('holds the seed query verbatim (skipped: the seed page ../shared/seeds is not beside this checkout)', () => {
    const seedPage = readFileSync(seedPath, 'utf8');
    const fromPage = /```js\n([\s\S]*?)```/.exec(seedPage)?.[1];
    expect(fromPage).toBeTruthy();
    expect(rule.query.source.trim()).toBe(fromPage!.trim());
  });

  it('loads with the ldguard rules from the bundled folder, each rule_id once', () => {
    const rules = loadRules([bundledRulesDir()]);
    expect(rules.map((r) => r.name).sort()).toEqual([
      'Dynamic Linker (ld.so) Changed in Place',
      'Dynamic Linker (ld.so) Created by a Package Manager',
      'Dynamic Linker (ld.so) Created by an Unidentified Process',
      'Dynamic Linker (ld.so) Creation',
      'Dynamic Linker (ld.so) Creation in a Multiarch Directory',
      'Dynamic Linker (ld.so) Renamed Into Place',
      'Dynamic Linker (ld.so) Written by a Process Posing as a Package Manager',
      'Library Directory or Dynamic Linker (ld.so) Covered, Uncovered or Replaced',
      'Package Database Written by a Process Other Than a Package Manager',
    ]);
  });
});

describe('invalid rule files are refused with file, line, column and what was expected', () => {
  it('a TOML syntax error', () => {
    const e = problemsOf('[rule]\nname = "x\n');
    expect(e.code).toBe('LDG_ERR_RULE_INVALID');
    expect(e.problems[0]).toMatchObject({ line: 2 });
    expect(e.message).toContain('bad.toml:2:');
  });

  it('every bad field at once, each at its own line', () => {
    const text = seedText.replace('severity = "low"', 'severity = "urgent"').replace('risk_score = 21', 'risk_score = 210').replace('interval = "5m"', 'interval = "five"');
    const e = problemsOf(text);
    const lineOf = (key: string) => text.split('\n').findIndex((l) => l.startsWith(key)) + 1;
    expect(e.problems).toEqual(
      expect.arrayContaining([
        { line: lineOf('severity'), column: 1, message: expect.stringContaining('expected one of low, medium, high, critical') },
        { line: lineOf('risk_score'), column: 1, message: expect.stringContaining('expected an integer from 0 to 100') },
        { line: lineOf('interval'), column: 1, message: expect.stringContaining('expected a duration') },
      ]),
    );
  });

  it('a query error is placed at its line and column in the file', () => {
    const text = seedText.replace('not process.name in (', 'not process.name in ((');
    const e = problemsOf(text);
    const line = text.split('\n').findIndex((l) => l.startsWith('not process.name in ((')) + 1;
    expect(e.problems).toHaveLength(1);
    expect(e.problems[0]!.line).toBe(line);
    expect(e.problems[0]!.column).toBeGreaterThan(20);
    expect(e.problems[0]!.message).toMatch(/LDG_ERR_EQL/);
  });

  it('unsupported EQL is refused, not mis-evaluated', () => {
    const text = seedText.replace(/query = '''[\s\S]*?'''/, `query = '''\nsequence by process.entity_id [file where true] [process where true]\n'''`);
    expect(problemsOf(text).message).toMatch(/sequence/);
  });

  it('a missing [rule] table or required field', () => {
    expect(problemsOf('[metadata]\nmaturity = "production"\n').message).toContain('expected a [rule] table');
    const e = problemsOf(seedText.replace(/^rule_id = .*$/m, ''));
    expect(e.message).toContain('missing rule_id');
  });
});

describe('alerts', () => {
  const rule = loadRuleFile(SEED);
  const event = {
    '@timestamp': '2026-11-26T06:00:00.000Z',
    event: { id: 'e1', kind: 'event', category: ['file'], type: ['creation'], action: 'creation', dataset: 'endpoint.events.file', module: 'endpoint', created: '2026-11-26T06:00:00.000Z', outcome: 'success' },
    file: { path: '/lib64/ld-linux-x86-64.so.2', name: 'ld-linux-x86-64.so.2', directory: '/lib64' },
    process: { pid: 42, executable: '/usr/bin/cp', name: 'cp', parent: { name: 'bash' } },
    user: { name: 'root' },
    host: { name: 'web-1', os: { type: 'linux' } },
    agent: { id: 'a', type: 'ldguard', version: '0' },
    ecs: { version: '8.11.0' },
    ldguard: { attribution: 'live_proc', source: 'fanotify' },
  } as FileEvent;

  it('are shaped like Elastic Security alerts', () => {
    const a = buildAlert(event, rule, '2026-11-26T06:00:01.000Z');
    expect(a.event.kind).toBe('signal');
    expect(a.rule).toMatchObject({ id: rule.ruleId, name: rule.name, version: '1' });
    expect(a.kibana.alert).toMatchObject({
      original_time: '2026-11-26T06:00:00.000Z',
      severity: 'low',
      risk_score: 21,
      workflow_status: 'open',
      reason: 'file event with process cp, parent process bash, file ld-linux-x86-64.so.2, by root on web-1 created low alert Dynamic Linker (ld.so) Creation.',
      rule: { rule_id: rule.ruleId, type: 'eql', from: 'now-9m', interval: '5m', max_signals: 100, version: 1 },
    });
    expect(a.threat).toHaveLength(3);
    expect(a.kibana.alert.original_event.kind).toBe('event');
    expect(a.process.executable).toBe('/usr/bin/cp');
  });

  it('get the same id when the same event is judged again, another for another event', () => {
    const a = buildAlert(event, rule, '2026-11-26T06:00:01.000Z');
    const b = buildAlert(event, rule, '2026-11-26T06:09:00.000Z');
    const c = buildAlert({ ...event, event: { ...event.event, id: 'e2' } }, rule, '2026-11-26T06:00:01.000Z');
    expect(a.kibana.alert.uuid).toBe(b.kibana.alert.uuid);
    expect(a.kibana.alert.uuid).not.toBe(c.kibana.alert.uuid);
    expect(a.kibana.alert.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

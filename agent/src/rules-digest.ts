// What rules the agent runs, as one value: the sha256 of its loaded rule files and exception lists
// (each file's path and sha256, sorted by path). It goes in every hello and in health, so that a
// fleet view can tell which hosts run which rules; and a SIGHUP that loads other rules raises an
// alert naming each file that changed: an edited rule file that still parses reloads silently
// otherwise, and a rule quietly weakened is what an intruder with root would do next.
//
// The alert is the agent's own, like the max_signals summaries: its rule (RULES_CHANGED below) is
// never matched against events, so it neither widens the kernel name filter nor needs a file.path
// the prefilter could reduce. The files are read again here, after loadRuleSet parsed them: an
// edit in between is in the digest and not yet in the rules, and the next reload reports it again.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { buildAlert } from '../../shared/alert.js';
import { ECS_VERSION, fileEventMeta, type Alert, type EcsAgent, type EcsHost, type FileEvent } from '../../shared/ecs.js';
import { parseRule, type RuleSet } from '../../shared/rule.js';
import { fileNames } from './enrich/file.js';

export interface RulesDigest {
  /** sha256 (hex) over "path\0sha256\n" of every file, sorted by path. */
  digest: string;
  /** Each loaded rule file and exception list: path → sha256 of its content (null when unreadable now). */
  files: ReadonlyMap<string, string | null>;
}

export function rulesDigest(set: RuleSet): RulesDigest {
  const paths = new Set<string>();
  for (const r of set.rules) {
    paths.add(r.file);
    for (const l of r.exceptions) paths.add(l.file);
  }
  const files = new Map<string, string | null>();
  for (const p of [...paths].sort()) files.set(p, sha256Of(p));
  const all = createHash('sha256');
  for (const [p, h] of files) all.update(`${p}\0${h ?? ''}\n`);
  return { digest: all.digest('hex'), files };
}

export type RuleFileChange = { path: string; how: 'modified' | 'added' | 'removed'; sha256: string | null };

/** The files whose content differs between two digests, by path. */
export function changedFiles(before: RulesDigest, after: RulesDigest): RuleFileChange[] {
  const out: RuleFileChange[] = [];
  for (const [p, h] of after.files) {
    if (!before.files.has(p)) out.push({ path: p, how: 'added', sha256: h });
    else if (before.files.get(p) !== h) out.push({ path: p, how: 'modified', sha256: h });
  }
  for (const p of before.files.keys()) if (!after.files.has(p)) out.push({ path: p, how: 'removed', sha256: null });
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

const RULES_CHANGED = parseRule(
  `[metadata]
creation_date = "2026/12/07"
maturity = "production"
updated_date = "2026/12/07"

[rule]
author = ["ldguard"]
description = "The agent reloaded (SIGHUP) rule files or exception lists whose content changed. Rules decide what is seen: a rule edited to exclude an intruder's tool still loads."
from = "now-9m"
language = "eql"
license = "Apache-2.0"
name = "ldguard Rules Changed on Reload"
risk_score = 47
rule_id = "c3e0b9a4-5d1f-4f6e-8a27-71d2b6f0e913"
severity = "medium"
tags = ["Domain: Endpoint", "OS: Linux", "Tactic: Defense Evasion", "Data Source: ldguard"]
type = "eql"
version = 1
query = '''
file where event.type == "change" and event.action == "rules_reloaded"
'''
`,
  '<built-in: ldguard rules changed>',
);

/** One alert per changed file, each naming it (file.path) with its new hash; pure but for the clock and ids. */
export function rulesChangedAlerts(changes: readonly RuleFileChange[], ctx: { host: EcsHost; agent: EcsAgent; digest: string }, now = new Date()): Alert[] {
  const at = now.toISOString();
  return changes.map((c) => {
    const event: FileEvent = {
      '@timestamp': at,
      event: fileEventMeta(at, c.how === 'added' ? 'creation' : c.how === 'removed' ? 'deletion' : 'change', 'rules_reloaded'),
      file: { ...fileNames(c.path), ...(c.sha256 ? { hash: { sha256: c.sha256 } } : {}) },
      process: {},
      host: ctx.host,
      agent: ctx.agent,
      ecs: { version: ECS_VERSION },
      ldguard: { attribution: 'unknown', source: 'reload', rules_digest: ctx.digest, rule_file_change: c.how },
    };
    return buildAlert(event, RULES_CHANGED, at);
  });
}

function sha256Of(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

// The agent's own alert when its baseline was there before and is gone, unreadable, or not what it
// saved last (known-files.ts BaselineOpened): deleting or editing the baseline is how an intruder
// with root would make a planted loader part of "what was always there". Never a silent first run:
// this alert pages, and every rule-matching file is then checked against the package database
// (judge.ts). Like the rules-changed alert, its rule is never matched against events.
import { buildAlert } from '../../../shared/alert.js';
import { ECS_VERSION, fileEventMeta, type Alert, type EcsAgent, type EcsHost, type FileEvent } from '../../../shared/ecs.js';
import { parseRule } from '../../../shared/rule.js';
import { fileNames } from '../enrich/file.js';
import type { BaselineOpened } from '../known-files.js';

const BASELINE_LOST = parseRule(
  `[metadata]
creation_date = "2026/12/07"
maturity = "production"
updated_date = "2026/12/07"

[rule]
author = ["ldguard"]
description = "The agent's baseline of loader files was deleted, corrupted or edited while the agent was down. Without it, a loader planted meanwhile would look like one that was always there; every loader is checked against the package database instead, and those it does not vouch for are alerts of their own."
from = "now-9m"
language = "eql"
license = "Apache-2.0"
name = "ldguard Baseline Missing or Tampered"
risk_score = 73
rule_id = "8d6a2f41-3b7e-4c19-b5e0-9a4c2d7f16e3"
severity = "high"
tags = ["Domain: Endpoint", "OS: Linux", "Tactic: Defense Evasion", "Data Source: ldguard"]
type = "eql"
version = 1
query = '''
file where event.action in ("baseline_missing", "baseline_corrupt", "baseline_edited")
'''
`,
  '<built-in: ldguard baseline missing or tampered>',
);

/** The alert for a baseline found missing, corrupt or edited; null for any other state. Pure but for the clock and ids. */
export function baselineLostAlert(opened: BaselineOpened, file: string, ctx: { host: EcsHost; agent: EcsAgent }, now = new Date()): Alert | null {
  if (opened.kind !== 'missing' && opened.kind !== 'corrupt' && opened.kind !== 'edited') return null;
  const at = now.toISOString();
  const event: FileEvent = {
    '@timestamp': at,
    event: fileEventMeta(at, opened.kind === 'missing' ? 'deletion' : 'change', `baseline_${opened.kind}`),
    file: fileNames(file),
    process: {},
    host: ctx.host,
    agent: ctx.agent,
    ecs: { version: ECS_VERSION },
    ldguard: {
      attribution: 'unknown',
      source: 'start',
      baseline_state: {
        kind: opened.kind,
        ...(opened.detail ? { detail: opened.detail } : {}),
        ...(opened.expectedGeneration !== undefined ? { expected_generation: opened.expectedGeneration } : {}),
        ...(opened.foundGeneration !== undefined ? { found_generation: opened.foundGeneration } : {}),
      },
    },
  };
  return buildAlert(event, BASELINE_LOST, at);
}

// `ldguard match`: run rules over ECS events offline. Reads NDJSON events on stdin, writes one alert
// per match as NDJSON on stdout, and reports bad lines on stderr with their number, then goes on.
// max_signals applies per window of the events' own @timestamp, as it would have live: past it each
// match is printed as a held-back record, with the window's summaries (shared/throttle.ts).
import { createInterface } from 'node:readline';
import { buildAlert } from '../../../shared/alert.js';
import type { FileEvent } from '../../../shared/ecs.js';
import { bundledRulesDir } from '../../../shared/paths.js';
import { exceptedBy } from '../../../shared/exceptions/match.js';
import { loadRuleSet } from '../../../shared/rule.js';
import { Throttle } from '../../../shared/throttle.js';
import { parseOptions } from '../args.js';
import { DEFAULTS } from '../config.js';
import { exitWhenStdoutCloses } from '../stdout-closed.js';

const HELP = `Usage: ldguard match [--rule FILE|DIR ...] [--now ISO] < events.ndjson > alerts.ndjson

Runs each rule's EQL query over ECS events (one JSON object per line on stdin) and prints an
alert document per match (NDJSON). Bad lines are reported on stderr with their line number.

  --rule PATH   a rule file (.toml) or a folder of them; repeatable (default: the bundled rules)
  --now ISO     the alerts' @timestamp (default: the time of the match)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseOptions('match', argv, { rule: { type: 'string', multiple: true }, now: { type: 'string' } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // The default binding (Elastic's rule → ldguard's default exception) goes with the bundled rules;
  // rules given with --rule run as given.
  const { rules, warnings } = loadRuleSet(values.rule?.length ? values.rule : [bundledRulesDir()], values.rule?.length ? [] : DEFAULTS.exceptionBindings);
  for (const w of warnings) process.stderr.write(`ldguard match: warning: ${w}\n`);
  // `ldguard match … | head -1`: the reader leaving ends the run, quietly.
  exitWhenStdoutCloses('match');
  const throttle = new Throttle();
  const write = (doc: unknown) => process.stdout.write(`${JSON.stringify(doc)}\n`);
  let lineNo = 0;
  let bad = 0;
  let lastMs = 0;
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    lineNo++;
    if (line.trim() === '') continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (err) {
      bad++;
      process.stderr.write(`ldguard match: line ${lineNo}: not JSON (${(err as Error).message}); skipped\n`);
      continue;
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      bad++;
      process.stderr.write(`ldguard match: line ${lineNo}: expected a JSON object (an ECS event); skipped\n`);
      continue;
    }
    const ts = Date.parse(String((doc as { '@timestamp'?: unknown })['@timestamp']));
    const atMs = Number.isFinite(ts) ? ts : Date.now();
    lastMs = Math.max(lastMs, atMs);
    for (const rule of rules) {
      if (!rule.query.match(doc)) continue;
      // An exception's expire_time is judged at the event's own time, as max_signals is.
      const by = rule.exceptions.length > 0 ? exceptedBy(rule.exceptions, doc, atMs) : null;
      const event = by ? { ...(doc as FileEvent), ldguard: { ...(doc as FileEvent).ldguard, excepted_by: by } } : (doc as FileEvent);
      const alert = buildAlert(event, rule, values.now ?? new Date().toISOString());
      if (by) {
        write(alert); // on record, paging no one: outside max_signals
        continue;
      }
      for (const s of throttle.due(atMs)) write(s);
      for (const a of throttle.admit(alert, rule, atMs).out) write(a);
    }
  }
  for (const s of throttle.due(lastMs, true)) write(s);
  if (bad > 0) process.stderr.write(`ldguard match: ${bad} bad line(s) of ${lineNo} skipped\n`);
  return 0;
}

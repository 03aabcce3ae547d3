// Investigation guidance shown with an alert: the rule's own `note` (Elastic's "investigation
// guide" field) when the bundled rule has one, otherwise ldguard's steps for a new dynamic linker.
import { errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import { bundledRulesDir } from '../../../shared/paths.js';
import { loadRules } from '../../../shared/rule.js';
import type { Guide } from '../../web/src/api-types.js';
import { renderInline, renderMarkdown } from './markdown.js';

export type { Guide };

const LINKER_STEPS = [
  'Identify the writer: check process.executable, its command line and the parent chain below. A package manager (dpkg, apt, rpm, dnf) during an update is expected; anything else is not. Compare with the host\'s package log (/var/log/dpkg.log, /var/log/dnf.rpm.log) at the alert\'s time.',
  'Compare file.hash.sha256 with the loader the distribution ships: `dpkg -S PATH` then `debsums -s libc6` on Debian and Ubuntu, `rpm -Vf PATH` on RPM systems. A hash no package explains is a strong sign of tampering.',
  'Look for programs that point at the new file: `readelf -l BINARY | grep interpreter` on recently changed binaries, and check /etc/ld.so.preload and /etc/ld.so.conf.d for changes at the same time.',
  'Search this dashboard for the same hash, path or process on other hosts: one host or many tells an accident from a campaign.',
  'If the writer is unexplained: isolate the host, keep a copy of the file with its hash, review the sessions of user.name around the alert\'s time, then acknowledge the alert and record what you found.',
];

// Rendered once: the rules and the steps are fixed for the life of the process.
const STEPS_MD = LINKER_STEPS.map(renderInline);
const GENERIC: Guide = { steps: LINKER_STEPS, stepsMd: STEPS_MD, references: [] };

export class Guides {
  private readonly byRule = new Map<string, Guide>();

  constructor(log: Logger) {
    try {
      for (const r of loadRules([bundledRulesDir()])) {
        this.byRule.set(r.ruleId, { ...(r.note ? { note: r.note, noteMd: renderMarkdown(r.note) } : {}), steps: LINKER_STEPS, stepsMd: STEPS_MD, references: [...r.references] });
      }
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'dashboard: could not load the bundled rules for their investigation notes; showing the generic steps');
    }
  }

  for(ruleId: string | undefined): Guide {
    return (ruleId && this.byRule.get(ruleId)) || GENERIC;
  }
}

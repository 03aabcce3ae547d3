// What the kernel reader forwards to JavaScript. The rules' own file.path patterns are reduced to
// the lowercase name prefixes they allow in each watched directory ("/lib/ld-linux*.so*" gives
// "ld-linux" in /lib), so unrelated churn in /usr/lib is dropped in C. A rule that pins
// file.directory and file.name instead (the multiarch rule) gives its file.name prefixes, in every
// directory: wider than needed, never narrower. The reduction only ever widens: a pattern whose
// wildcard could reach the directory itself forwards everything (''), and a rule that pins neither
// file.path nor file.name to a finite set of patterns forwards everything too.
import { fieldConstraint } from '../../shared/eql/index.js';
import type { Rule } from '../../shared/rule.js';

/** Name prefixes (lowercase) for files directly inside a directory known by these host paths. */
export function namePrefixes(rules: readonly Rule[], hostDirs: readonly string[]): string[] {
  const out = new Set<string>();
  for (const rule of rules) {
    const c = fieldConstraint(rule.ast, 'file.path');
    if (!c) {
      const names = fieldConstraint(rule.ast, 'file.name');
      if (!names) return [''];
      for (const n of [...names.patterns, ...names.exact]) out.add(n.toLowerCase().split(/[*?]/)[0]!);
      continue;
    }
    // An exact value's '*' or '?' is literal; cutting the prefix there only widens it, which is safe.
    for (const pattern of [...c.patterns, ...c.exact]) {
      const p = pattern.toLowerCase();
      const wild = p.search(/[*?]/);
      const head = wild < 0 ? p : p.slice(0, wild);
      for (const d of hostDirs) {
        const dir = d.toLowerCase().replace(/\/+$/, '') + '/';
        if (dir.startsWith(head)) {
          if (wild >= 0) out.add(''); // the wildcard may stand for the directory part: anything can match
        } else if (head.startsWith(dir)) {
          out.add(head.slice(dir.length).split('/')[0]!);
        }
      }
    }
  }
  return out.has('') ? [''] : [...out].sort();
}

/**
 * The directories the rules name exactly in file.directory (as the host sees them): the agent
 * watches each that exists, beside the configured ones, so a rule about /usr/lib/<triplet> is not
 * written in vain. Only exact values: a wildcard directory cannot be marked in advance.
 */
export function ruleDirectories(rules: readonly Rule[]): string[] {
  const out = new Set<string>();
  for (const rule of rules) {
    const c = fieldConstraint(rule.ast, 'file.directory');
    if (!c) continue;
    for (const d of [...c.exact, ...c.patterns.filter((p) => !/[*?]/.test(p))]) if (d.startsWith('/')) out.add(d);
  }
  return [...out].sort();
}

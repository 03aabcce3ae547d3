// What the kernel reader forwards to JavaScript. The rules' own file.path patterns are reduced to
// the lowercase name prefixes they allow in each watched directory ("/lib/ld-linux*.so*" gives
// "ld-linux" in /lib), so unrelated churn in /usr/lib is dropped in C. A rule that pins
// file.directory and file.name instead (the multiarch rule) gives its file.name prefixes, in every
// directory: wider than needed, never narrower. The reduction only ever widens: a pattern whose
// wildcard could reach the directory itself forwards everything (''), and a rule that pins neither
// file.path nor file.name to a finite set of patterns forwards everything too. The conditions are
// read through and/or: a rule naming paths in one branch and names in another is still bounded.
import { fieldConstraint, type Expr } from '../../shared/eql/index.js';
import type { Rule } from '../../shared/rule.js';
import { VIEW_ACTIONS } from './mounts.js';

/**
 * Name prefixes (lowercase) for files directly inside a directory known by these host paths: what
 * the kernel's name filter lets through. Derived from each rule's file.path and file.name
 * conditions through and/or, so that a rule naming paths in one branch and a directory and names
 * in another (the masquerade rule) still bounds its names. [''] (everything) when a rule does not.
 */
export function namePrefixes(rules: readonly Rule[], hostDirs: readonly string[]): string[] {
  const out = new Set<string>();
  for (const rule of rules) {
    const p = prefixesOf(rule.ast.condition, hostDirs);
    if (!p) return [''];
    for (const x of p) out.add(x);
  }
  return out.has('') ? [''] : [...out].sort();
}

/** The name prefixes `e` can match in hostDirs (see namePrefixes); null when it does not bound them. */
function prefixesOf(e: Expr, hostDirs: readonly string[]): Set<string> | null {
  switch (e.kind) {
    case 'and': {
      // Either side alone is a sound bound; the smaller one filters more.
      const l = prefixesOf(e.left, hostDirs);
      const r = prefixesOf(e.right, hostDirs);
      if (!l || !r) return l ?? r;
      return l.size <= r.size ? l : r;
    }
    case 'or': {
      const l = prefixesOf(e.left, hostDirs);
      const r = prefixesOf(e.right, hostDirs);
      return l && r ? new Set([...l, ...r]) : null;
    }
    case 'bool':
      return e.value ? null : new Set();
    case 'compare':
    case 'in':
    case 'like': {
      if (neverKernelFileEvent(e)) return new Set(); // the agent raises these: the kernel forwards none
      if (e.field.path !== 'file.path' && e.field.path !== 'file.name') return null;
      const values = e.kind === 'like' ? e.patterns : e.kind === 'in' ? e.values : e.op === '==' ? [e.value] : [];
      if (values.length === 0 || values.some((v) => typeof v !== 'string')) return null;
      const out = new Set<string>();
      // An exact value's '*' or '?' is literal; cutting the prefix there only widens it, which is safe.
      for (const v of values as string[]) {
        const low = v.toLowerCase();
        const wild = low.search(/[*?]/);
        const head = wild < 0 ? low : low.slice(0, wild);
        if (e.field.path === 'file.name') {
          out.add(head);
          continue;
        }
        for (const d of hostDirs) {
          const dir = d.toLowerCase().replace(/\/+$/, '') + '/';
          if (dir.startsWith(head)) {
            if (wild >= 0) out.add(''); // the wildcard may stand for the directory part: anything can match
          } else if (head.startsWith(dir)) {
            out.add(head.slice(dir.length).split('/')[0]!);
          }
        }
      }
      return out;
    }
    default:
      return null;
  }
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

/**
 * Whether `e` pins event.action to the agent's own view actions (a mount over a watched path, a
 * watched directory replaced: agent/src/mounts.ts VIEW_ACTIONS). Those events are raised by the
 * agent, never forwarded by the kernel filter, found by a rescan or watched in place, so a rule
 * about them widens neither the filter nor the baseline. Any other action keeps its rule's paths:
 * the in-place rule's "modification" still decides which files the baseline (and so the integrity
 * watch) holds.
 */
export function neverKernelFileEvent(e: Expr): boolean {
  if (e.kind !== 'in' && !(e.kind === 'compare' && e.op === '==')) return false;
  if (e.field.path !== 'event.action') return false;
  const values = e.kind === 'in' ? e.values : [e.value];
  return values.length > 0 && values.every((v) => typeof v === 'string' && (VIEW_ACTIONS as readonly string[]).includes(v.toLowerCase()));
}

// Builds a rendered investigation guide (the collector parses the Markdown: collector/src/web/
// markdown.ts) into DOM through h(), like every other element of the page: tags from a fixed list,
// text as text nodes, links only where safeHref allows them (the URL is shown as text otherwise).
import type { MdNode, MdTag } from './api-types.js';
import { h, safeHref, type Child } from './dom.js';

const ALLOWED = new Set<MdTag>(['p', 'h3', 'h4', 'ul', 'ol', 'li', 'blockquote', 'strong', 'em', 'a', 'code', 'pre', 'br', 'hr', 'span', 'table', 'thead', 'tbody', 'tr', 'th', 'td']);

export function markdown(nodes: MdNode[]): Child[] {
  return nodes.map((n): Child => {
    if (typeof n === 'string') return n;
    // Anything the server did not promise is shown as its text: a newer server cannot widen this.
    if (!ALLOWED.has(n.t)) return markdown(n.c);
    if (n.t === 'a') {
      const href = n.href ?? '';
      return safeHref(href) ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, markdown(n.c)) : h('span', { class: 'md-link' }, markdown(n.c), href ? h('span', { class: 'muted' }, ` (${href})`) : null);
    }
    return h(n.t, null, markdown(n.c));
  });
}

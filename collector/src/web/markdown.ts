// A rule's investigation guide (Markdown) made safe to show: markdown-it parses it with raw HTML
// off (html: false, so `<img onerror=…>` stays text), and the tokens become a small tree of the
// few elements a guide needs. The page builds DOM from that tree with createElement and text nodes
// (collector/web/src/markdown.ts), so no HTML string is made anywhere and the CSP and Trusted Types
// stay as they are. Parsing here, not in the page, keeps the library off the page entirely.
import MarkdownIt from 'markdown-it';
import type { Token } from 'markdown-it';
import type { MdNode, MdTag } from '../../web/src/api-types.js';

export type { MdNode };

// linkify off: a bare path or host in a guide is text, not a link a click would follow.
const md = new MarkdownIt({ html: false, linkify: false, typographer: false });

/** Block and inline tags a guide may use; a heading is demoted under the card's own title. */
const TAGS: Record<string, MdTag> = {
  paragraph: 'p', bullet_list: 'ul', ordered_list: 'ol', list_item: 'li', blockquote: 'blockquote',
  strong: 'strong', em: 'em', s: 'em', link: 'a', table: 'table', thead: 'thead', tbody: 'tbody', tr: 'tr', th: 'th', td: 'td',
};

interface Frame { c: MdNode[] }

/** Appends the token stream (block or inline) to `top`, opening and closing elements on nesting. */
function walk(tokens: Token[], top: MdNode[]): void {
  const stack: Frame[] = [{ c: top }];
  const here = () => stack[stack.length - 1]!.c;
  for (const t of tokens) {
    if (t.type === 'inline') {
      walk(t.children ?? [], here());
      continue;
    }
    if (t.type === 'text' || t.type === 'html_inline' || t.type === 'html_block') {
      here().push(t.content);
      continue;
    }
    if (t.type === 'code_inline') {
      here().push({ t: 'code', c: [t.content] });
      continue;
    }
    if (t.type === 'code_block' || t.type === 'fence') {
      here().push({ t: 'pre', c: [{ t: 'code', c: [t.content.replace(/\n$/, '')] }] });
      continue;
    }
    if (t.type === 'softbreak') {
      here().push('\n');
      continue;
    }
    if (t.type === 'hardbreak') {
      here().push({ t: 'br', c: [] });
      continue;
    }
    if (t.type === 'hr') {
      here().push({ t: 'hr', c: [] });
      continue;
    }
    if (t.type === 'image') {
      // Never loaded: the page makes no request for a guide's images. Its description is shown.
      here().push(t.content || String(t.attrGet('src') ?? ''));
      continue;
    }
    const base = t.type.replace(/_(open|close)$/, '');
    const tag: MdTag | undefined = base === 'heading' ? (t.tag === 'h1' || t.tag === 'h2' ? 'h3' : 'h4') : TAGS[base];
    // A tight list's paragraphs are hidden by markdown-it: their text goes straight into the item.
    if (base === 'paragraph' && t.hidden) continue;
    if (t.nesting === 1) {
      const node = { t: tag ?? 'span', c: [] as MdNode[], ...(base === 'link' ? { href: String(t.attrGet('href') ?? '') } : {}) };
      here().push(node);
      stack.push(node);
    } else if (t.nesting === -1 && stack.length > 1) {
      stack.pop();
    }
  }
}

/** A Markdown document as a tree of safe elements. */
export function renderMarkdown(text: string): MdNode[] {
  const out: MdNode[] = [];
  walk(md.parse(text, {}), out);
  return out;
}

/** One line of Markdown (a guide step): its inline content, without a wrapping paragraph. */
export function renderInline(text: string): MdNode[] {
  const out: MdNode[] = [];
  walk(md.parseInline(text, {}), out);
  return out;
}

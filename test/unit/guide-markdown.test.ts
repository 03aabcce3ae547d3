// The investigation guide's Markdown (collector/src/web/markdown.ts): parsed by markdown-it with raw
// HTML off into a tree of allowed elements; HTML written in a guide stays text, images are never
// loaded, and a link keeps its URL only as data (the page decides whether it may be followed).
import { describe, expect, it } from 'vitest';
import { renderInline, renderMarkdown, type MdNode } from '../../collector/src/web/markdown.js';
import { Guides } from '../../collector/src/web/guide.js';
import { createLogger } from '../../shared/log.js';

const TAGS = new Set(['p', 'h3', 'h4', 'ul', 'ol', 'li', 'blockquote', 'strong', 'em', 'a', 'code', 'pre', 'br', 'hr', 'span', 'table', 'thead', 'tbody', 'tr', 'th', 'td']);

function tags(nodes: MdNode[], out: string[] = []): string[] {
  for (const n of nodes) {
    if (typeof n === 'string') continue;
    out.push(n.t);
    tags(n.c, out);
  }
  return out;
}

function text(nodes: MdNode[]): string {
  return nodes.map((n) => (typeof n === 'string' ? n : text(n.c))).join('');
}

describe('investigation guide Markdown', () => {
  it('renders headings, lists, emphasis and code as elements', () => {
    const tree = renderMarkdown('## Triage\n\nRun `dpkg -S PATH` first.\n\n- a **bold** step\n- an *emphasised* one\n\n```\nrpm -Vf PATH\n```\n');
    expect(tree[0]).toEqual({ t: 'h3', c: ['Triage'] });
    expect(tree[1]).toEqual({ t: 'p', c: ['Run ', { t: 'code', c: ['dpkg -S PATH'] }, ' first.'] });
    expect(tree[2]).toEqual({ t: 'ul', c: [{ t: 'li', c: ['a ', { t: 'strong', c: ['bold'] }, ' step'] }, { t: 'li', c: ['an ', { t: 'em', c: ['emphasised'] }, ' one'] }] });
    expect(tree[3]).toEqual({ t: 'pre', c: [{ t: 'code', c: ['rpm -Vf PATH'] }] });
  });

  it('keeps raw HTML as text, and never an image or script element', () => {
    const hostile = 'Look <img src=x onerror=alert(1)> here\n\n<script>alert(2)</script>\n\n<iframe src="https://evil.example"></iframe>\n\n![x](https://evil.example/x.png)';
    const tree = renderMarkdown(hostile);
    for (const t of tags(tree)) expect(TAGS.has(t)).toBe(true);
    expect(tags(tree)).not.toContain('img');
    const all = text(tree);
    expect(all).toContain('<img src=x onerror=alert(1)>');
    expect(all).toContain('<script>alert(2)</script>');
    expect(all).not.toContain('https://evil.example/x.png'); // the image's description is shown, not its URL
  });

  it('passes a link\'s URL as data, and refuses a javascript: one (markdown-it validateLink)', () => {
    const tree = renderInline('[ATT&CK](https://attack.mitre.org/techniques/T1574/006/) and [x](javascript:alert(1))');
    expect(tree[0]).toEqual({ t: 'a', href: 'https://attack.mitre.org/techniques/T1574/006/', c: ['ATT&CK'] });
    expect(tags(tree).filter((t) => t === 'a')).toHaveLength(1);
    expect(text(tree)).toContain('[x](javascript:alert(1))');
  });

  it('renders ldguard\'s steps, whose commands were shown with their backticks', () => {
    const g = new Guides(createLogger('test', 'silent'));
    const steps = g.for(undefined).stepsMd;
    expect(steps).toHaveLength(g.for(undefined).steps.length);
    expect(tags(steps.flat())).toContain('code');
    expect(text(steps.flat())).not.toContain('`');
  });
});

// Building the page without HTML strings: every element is created with createElement and every
// value goes in as a text node or a plain attribute. With the CSP's Trusted Types (no policy), an
// HTML sink such as innerHTML would throw anyway; this module is the only way the page makes DOM.
//
// Text is also shown as it is, not as it renders: every string child and every attribute a person
// reads (title, aria-label, label) goes through visible(), so a bidirectional override or a
// zero-width character in a file or host name is shown as <U+202E>, never obeyed (the same escaping
// as `ldguard tail`). Here, at the one place text enters the DOM, no view can forget it. Values a
// person does not read (href, data-*, an input's or option's value) stay exact: filters must match
// the stored text. Text that is meant to span lines goes in through lines().
import { visible } from './visible.js';

export type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined | ((ev: Event) => void);
export type Attrs = Record<string, AttrValue>;

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(visible(String(c))));
  }
}

/** Attributes whose value is shown to a person (a tooltip, a screen reader's name, an option's label). */
const READ_ATTRS = new Set(['title', 'aria-label', 'label']);

function setAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') {
      el.addEventListener(k.replace(/^on/, '').toLowerCase(), v);
    } else if (k === 'style' || /^on/i.test(k)) {
      // Inline styles and handlers are refused by the CSP; keep them out of the code as well.
      throw new Error(`dom: attribute ${k} is not allowed`);
    } else if (k === 'href' && typeof v === 'string' && !safeHref(v) && !DOWNLOAD.test(v)) {
      continue;
    } else {
      el.setAttribute(k, v === true ? '' : READ_ATTRS.has(k) ? visible(String(v)) : String(v));
    }
  }
}

/** The page's own download links (the alert list's export); never offered to a guide's links. */
const DOWNLOAD = /^\/ui\/api\/alerts\/export\?[A-Za-z0-9%._~=&+*-]*$/;

/** Links the page itself makes (#/…) and MITRE ATT&CK references; anything else is shown as text. */
export function safeHref(u: string): boolean {
  return u.startsWith('#/') || /^https:\/\/attack\.mitre\.org\/[A-Za-z0-9/._-]*$/.test(u);
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/**
 * Text of several lines (a rule's description, an investigation note, a field's value): each line
 * escaped as any text is, joined by real newlines, which the element's CSS shows as line breaks
 * (pre, pre-wrap) or, in flowing text, as spaces, as before.
 */
export function lines(text: string): Node[] {
  return text.split('\n').flatMap((l, i) => (i === 0 ? [document.createTextNode(visible(l))] : [document.createTextNode('\n'), document.createTextNode(visible(l))]));
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/** A value from a JSON document by dotted path (`process.parent.pid`), or undefined. */
export function get(doc: unknown, path: string): unknown {
  let v: unknown = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** A string or number at `path` as text, or undefined. */
export function str(doc: unknown, path: string): string | undefined {
  const v = get(doc, path);
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

/**
 * A path or host name with line-break opportunities (<wbr>) after each separator, so a long one
 * wraps at a `/` or `.` as a reader expects; the CSS's overflow-wrap breaks inside a part only when
 * one part alone is wider than the cell. The text (textContent) is unchanged.
 */
export function breakable(text: string | undefined, after = /(?<=[/.\-_])/): Child {
  if (text === undefined) return undefined;
  return text.split(after).flatMap((part, i) => (i === 0 ? [part] : [h('wbr'), part]));
}

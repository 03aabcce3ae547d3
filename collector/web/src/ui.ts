// Small pieces the views share: badges, cards, key/value tables. Values are always text.
import { h, str, type Child } from './dom.js';

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export const STATUSES = ['open', 'acknowledged', 'closed'] as const;

export function severityBadge(sev: string | undefined): HTMLElement {
  const known = (SEVERITIES as readonly string[]).includes(sev ?? '') ? sev : 'unknown';
  return h('span', { class: `badge sev sev-${known}` }, sev ?? '?');
}

export function statusPill(status: string | undefined): HTMLElement {
  const known = (STATUSES as readonly string[]).includes(status ?? '') ? status : 'unknown';
  return h('span', { class: `pill status-${known}` }, status ?? '?');
}

const ATTRIBUTION: Record<string, { cls: string; title: string }> = {
  live_proc: { cls: 'ok', title: 'writer read from /proc while it was alive' },
  exec_cache: { cls: 'ok', title: 'writer named by the kernel-fed exec cache (it had exited or exec\'d)' },
  fd_scan: { cls: 'warn', title: 'inotify fallback: a process holding the file open was found' },
  unknown: { cls: 'bad', title: 'nothing could name the writer' },
};

export function attributionBadge(a: string | undefined): HTMLElement {
  const k = a ?? 'unknown';
  const meta = ATTRIBUTION[k] ?? { cls: 'warn', title: '' };
  return h('span', { class: `badge attr attr-${meta.cls}`, title: meta.title }, k.replace('_', ' '));
}

export function card(title: Child, ...body: Child[]): HTMLElement {
  return h('section', { class: 'card' }, h('h2', { class: 'card-title' }, title), ...body);
}

/** Rows of label / value; a missing value shows as a dash. `mono` rows use a fixed-width face. */
export function kv(rows: Array<[string, Child, { mono?: boolean; wide?: boolean }?]>): HTMLElement {
  return h(
    'dl',
    { class: 'kv' },
    rows.map(([k, v, o]) => [
      h('dt', null, k),
      h('dd', { class: [o?.mono ? 'mono' : '', v === undefined || v === null || v === '' ? 'muted' : ''].filter(Boolean).join(' ') || null }, v === undefined || v === null || v === '' ? '—' : v),
    ]),
  );
}

export function docField(doc: unknown, path: string): string | undefined {
  return str(doc, path);
}

export function empty(text: string, ...more: Child[]): HTMLElement {
  return h('div', { class: 'empty' }, h('p', null, text), ...more);
}

export function errorBox(err: unknown): HTMLElement {
  return h('div', { class: 'error-box', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

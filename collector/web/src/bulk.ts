// The alert list's bulk action bar (#22 item 1): acknowledge, close, reopen or assign the rows
// ticked on the page, or every alert the filters match. For the latter the collector counts first
// (POST /ui/api/alerts/bulk/preview) and the bar asks to confirm that number; the change then
// carries the preview's bound, so alerts that arrive meanwhile are left alone. The list owns the
// selection; the bar only reads it, and tells the list when a change is done.
import { api } from './api.js';
import { h, replace } from './dom.js';
import { errorBox } from './ui.js';

interface Preview {
  count: number;
  upTo: number;
}

interface Result {
  changed: number;
  unchanged: number;
  missing: string[];
}

export interface BulkBarOptions {
  /** The uuids ticked on the page. */
  selected: () => string[];
  /** The list's filters as the collector takes them, or a reason why "all matching" is not offered. */
  filters: () => Record<string, string> | { unavailable: string };
  /** A change was applied (the list reloads and clears its ticks); `message` says what it did. */
  done: (message: string) => void;
}

const ACTIONS: Array<[action: string, label: string, verb: string]> = [
  ['acknowledge', 'Acknowledge', 'Acknowledged'],
  ['close', 'Close', 'Closed'],
  ['reopen', 'Reopen', 'Reopened'],
];

export interface BulkBar {
  el: HTMLElement;
  /** The ticks changed: show their count (and leave "all matching" if it was chosen). */
  update(): void;
}

export function bulkBar(o: BulkBarOptions): BulkBar {
  /** Chosen "all matching": the preview and the filters it counted. */
  let matching: { preview: Preview; filter: Record<string, string> } | undefined;
  let busy = false;
  const el = h('div', { class: 'bulk-bar', hidden: true, role: 'region', 'aria-label': 'Bulk actions' });
  const assignee = h('input', { type: 'text', name: 'bulk-assignee', placeholder: 'Login name', 'aria-label': 'Assign to', maxlength: 128, autocomplete: 'off', spellcheck: 'false' });
  const message = h('span', { class: 'bulk-message', role: 'status' });

  const count = () => (matching ? matching.preview.count : o.selected().length);

  const apply = async (action: string, verb: string, extra: Record<string, unknown>) => {
    if (busy) return;
    busy = true;
    const sel = matching ? { filter: matching.filter, upTo: matching.preview.upTo } : { ids: o.selected() };
    try {
      const r = await api.post<Result>('/ui/api/alerts/bulk', { action, ...extra, ...sel });
      matching = undefined;
      const parts = [`${verb}: ${r.changed.toLocaleString('en')} changed`];
      if (r.unchanged > 0) parts.push(`${r.unchanged.toLocaleString('en')} already so`);
      if (r.missing.length > 0) parts.push(`${r.missing.length} no longer found`);
      o.done(parts.join(', '));
    } catch (err) {
      replace(message, errorBox(err));
    } finally {
      busy = false;
      render();
    }
  };

  /** Acting on every matching alert asks first, with the number the collector counted. */
  const ask = (action: string, label: string, verb: string, extra: Record<string, unknown> = {}) => {
    if (!matching) {
      void apply(action, verb, extra);
      return;
    }
    const n = matching.preview.count.toLocaleString('en');
    replace(
      el,
      h('span', { class: 'bulk-confirm-text' }, `${label} all ${n} alerts matching these filters? Alerts that arrived after they were counted are left alone.`),
      h('button', { type: 'button', class: 'btn primary small', 'data-bulk-confirm': action, onclick: () => void apply(action, verb, extra) }, `${label} ${n}`),
      h('button', { type: 'button', class: 'btn ghost small', 'data-bulk-cancel': '', onclick: () => render() }, 'Cancel'),
    );
  };

  const selectMatching = async () => {
    const f = o.filters();
    if ('unavailable' in f) return;
    try {
      const preview = await api.post<Preview>('/ui/api/alerts/bulk/preview', { filter: f });
      matching = { preview, filter: f };
    } catch (err) {
      replace(message, errorBox(err));
    }
    render();
  };

  function render(): void {
    const n = o.selected().length;
    el.hidden = n === 0 && !matching;
    if (el.hidden) return;
    const f = o.filters();
    const scope = matching
      ? h('span', { class: 'bulk-count', 'data-count': matching.preview.count }, `All ${matching.preview.count.toLocaleString('en')} alerts matching these filters selected`)
      : h('span', { class: 'bulk-count', 'data-count': n }, `${n} selected on this page`);
    const widen = matching
      ? h('button', { type: 'button', class: 'btn ghost small', 'data-bulk-page': '', onclick: () => { matching = undefined; render(); } }, 'Only the ticked rows')
      : 'unavailable' in f
        ? h('span', { class: 'muted small' }, f.unavailable)
        : h('button', { type: 'button', class: 'btn ghost small', 'data-bulk-all': '', onclick: () => void selectMatching() }, 'Select all matching');
    replace(
      el,
      scope,
      widen,
      h('span', { class: 'spacer' }),
      ACTIONS.map(([action, label, verb]) => h('button', { type: 'button', class: 'btn small', 'data-bulk': action, disabled: count() === 0, onclick: () => ask(action, label, verb) }, label)),
      h(
        'form',
        { class: 'bulk-assign', onsubmit: (ev: Event) => {
          ev.preventDefault();
          const name = assignee.value.trim() || null;
          ask('assign', name ? `Assign to ${name}` : 'Unassign', name ? `Assigned to ${name}` : 'Unassigned', { assignee: name });
        } },
        assignee,
        h('button', { type: 'submit', class: 'btn small', 'data-bulk': 'assign', disabled: count() === 0 }, 'Assign'),
      ),
      message,
    );
  }

  return {
    el,
    update: () => {
      matching = undefined;
      replace(message);
      render();
    },
  };
}

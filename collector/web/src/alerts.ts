// The alerts list: newest first, filters and free-text search in the URL (#/alerts?host=…), keyset
// paging ("Load older"), and new alerts from the live feed prepended as they are stored. Each change
// of the filters the list acts on is a history entry (nav.ts): back returns to the previous filters,
// a reload or a shared link opens the same view. The export links download what the filters select.
// Rows can be ticked (or all on the page) for the bulk action bar (bulk.ts).
import { api, query } from './api.js';
import { bulkBar } from './bulk.js';
import { breakable, get, h, replace, str } from './dom.js';
import { fullTime, time, zoneLabel } from './format.js';
import type { Live } from './live.js';
import { writeHash } from './nav.js';
import { boundFromUrl, boundToUrl, instantOf } from './range.js';
import { GROUPINGS, groupsHead, groupsInto, inGroup, membersBar } from './groups.js';
import { attributionBadge, empty, errorBox, SEVERITIES, severityBadge, STATUSES, statusPill } from './ui.js';

interface Page {
  alerts: unknown[];
  next: string | null;
  partial: boolean;
  scanned: number;
  order: 'time' | 'received';
  indexLag: number;
}

interface Facets {
  hosts: string[];
  rules: Array<{ ruleId: string; name: string | null }>;
}

export interface Filters {
  q?: string;
  host?: string;
  rule?: string;
  severity?: string;
  status?: string;
  range?: string;
  from?: string;
  to?: string;
  /** Group by (groups.ts): the list shows groups, or with `of` one group's members. */
  by?: string;
  of?: string;
  key?: string;
}

const RANGES: Record<string, { label: string; ms?: number }> = {
  '': { label: 'Any time' },
  '15m': { label: 'Last 15 minutes', ms: 15 * 60_000 },
  '1h': { label: 'Last hour', ms: 3_600_000 },
  '24h': { label: 'Last 24 hours', ms: 86_400_000 },
  '7d': { label: 'Last 7 days', ms: 7 * 86_400_000 },
  '30d': { label: 'Last 30 days', ms: 30 * 86_400_000 },
  custom: { label: 'Between…' },
};

const KEYS = ['q', 'host', 'rule', 'severity', 'status', 'range', 'from', 'to', 'by', 'of', 'key'] as const;
/** Not fields of the filter form: kept when the form is read (a group's members stay open while the other filters change). */
const MEMBER_KEYS = ['of', 'key'] as const;
const MAX_ROWS = 1000;

/** The fields free-text search covers (the collector's SEARCH_FIELDS), for matching live alerts here. */
const SEARCH_FIELDS = [
  'host.name', 'file.path', 'file.hash.sha256', 'process.name', 'process.executable', 'process.command_line', 'process.pid',
  'process.parent.name', 'process.parent.executable', 'process.parent.pid', 'user.name', 'process.user.name', 'rule.name',
  'kibana.alert.uuid', 'ldguard.attribution', 'ldguard.source',
];

export function filtersFrom(params: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of KEYS) {
    const v = params.get(k);
    if (v) f[k] = k === 'from' || k === 'to' ? boundFromUrl(v) : v;
  }
  return f;
}

function timeBounds(f: Filters, now = Date.now()): { since?: number; until?: number } {
  if (f.range === 'custom') {
    // A datetime-local value has no zone: it is read in the zone the list shows (range.ts).
    const since = instantOf(f.from);
    const until = instantOf(f.to);
    return { ...(Number.isNaN(since) ? {} : { since }), ...(Number.isNaN(until) ? {} : { until }) };
  }
  const ms = f.range ? RANGES[f.range]?.ms : undefined;
  return ms ? { since: now - ms } : {};
}

/** The filters as the collector's list and export take them (times absolute, as of now). */
function serverFilters(f: Filters): Record<string, string | undefined> {
  const { since, until } = timeBounds(f);
  return {
    q: f.q, host: f.host, rule: f.rule, severity: f.severity, status: f.status, of: f.of, key: f.of ? f.key : undefined,
    since: since !== undefined ? new Date(since).toISOString() : undefined,
    until: until !== undefined ? new Date(until).toISOString() : undefined,
  };
}

/** The download of everything the filters select (GET /ui/api/alerts/export, by the session). */
export function exportHref(f: Filters, format: 'csv' | 'ndjson'): string {
  return `/ui/api/alerts/export${query({ format, ...serverFilters(f) })}`;
}

const tokens = (s: string) => s.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];

/** Whether a live alert belongs in the list as filtered: the server's rules, applied here. */
export function matches(doc: unknown, f: Filters, now = Date.now()): boolean {
  if (f.host && str(doc, 'host.name') !== f.host) return false;
  if (f.rule && str(doc, 'kibana.alert.rule.rule_id') !== f.rule) return false;
  if (f.severity && str(doc, 'kibana.alert.severity') !== f.severity) return false;
  if (f.status && (str(doc, 'kibana.alert.workflow_status') ?? 'open') !== f.status) return false;
  if (!inGroup(doc, f.of, f.key)) return false;
  const { since, until } = timeBounds(f, now);
  const ts = Date.parse(str(doc, '@timestamp') ?? '');
  if (since !== undefined && !(ts >= since)) return false;
  if (until !== undefined && !(ts < until)) return false;
  if (f.q) {
    const hay = tokens(SEARCH_FIELDS.map((p) => str(doc, p) ?? '').join(' '));
    const words = f.q.trim().split(/\s+/).filter(Boolean);
    return words.every((w, wi) => {
      const t = tokens(w);
      if (t.length === 0) return true;
      if (wi === words.length - 1 && t.length > 1 && t.at(-1)!.length === 1) t.pop();
      const prefix = wi === words.length - 1 && (t.at(-1)?.length ?? 0) >= 2;
      for (let i = 0; i + t.length <= hay.length; i++) {
        if (t.every((x, j) => (j === t.length - 1 && prefix ? hay[i + j]!.startsWith(x) : hay[i + j] === x))) return true;
      }
      return false;
    });
  }
  return true;
}

function uuidOf(doc: unknown): string {
  return str(doc, 'kibana.alert.uuid') ?? '';
}

function row(doc: unknown, fresh: boolean, onTick: () => void): HTMLTableRowElement {
  const uuid = uuidOf(doc);
  const href = `#/alerts/${encodeURIComponent(uuid)}`;
  const ts = str(doc, '@timestamp');
  const pid = str(doc, 'process.pid');
  const summary = get(doc, 'ldguard.summary');
  // An excepted alert is on record, not a page: it shows "excepted" where a page shows its severity.
  const exceptedBy = str(doc, 'ldguard.excepted_by.item_id') ? `${str(doc, 'ldguard.excepted_by.list_id') ?? '?'} / ${str(doc, 'ldguard.excepted_by.item_id')}` : null;
  const tr = h(
    'tr',
    {
      class: `alert-row${fresh ? ' fresh' : ''}`,
      tabindex: 0,
      'data-uuid': uuid,
      onclick: (ev: Event) => {
        if ((ev.target as Element).closest('a, .col-select')) return;
        location.hash = href;
      },
      onkeydown: (ev: Event) => {
        if ((ev as KeyboardEvent).key === 'Enter' && !(ev.target as Element).closest('.col-select')) location.hash = href;
      },
    },
    h('td', { class: 'col-select' }, h('input', { type: 'checkbox', class: 'tick', 'data-uuid': uuid, 'aria-label': 'Select this alert', onchange: onTick })),
    h('td', { class: 'col-time nowrap', title: fullTime(ts) }, time(ts)),
    h('td', { class: 'col-sev' }, exceptedBy ? h('span', { class: 'badge excepted', title: `excepted by ${exceptedBy}` }, 'excepted') : severityBadge(str(doc, 'kibana.alert.severity'))),
    h('td', { class: 'col-rule' }, h('a', { href }, str(doc, 'rule.name') ?? str(doc, 'kibana.alert.rule.name') ?? '(rule)'), summary ? h('span', { class: 'badge summary' }, 'summary') : null),
    h('td', { class: 'col-host' }, breakable(str(doc, 'host.name')) ?? '—'),
    h('td', { class: 'col-path mono', title: str(doc, 'file.path') ?? '' }, breakable(str(doc, 'file.path')) ?? '—'),
    h(
      'td',
      { class: 'col-proc' },
      h('div', null, h('strong', null, str(doc, 'process.name') ?? '—'), pid ? h('span', { class: 'muted' }, ` · pid ${pid}`) : null),
      h('div', { class: 'mono muted small' }, breakable(str(doc, 'process.executable'))),
    ),
    h('td', { class: 'col-user' }, str(doc, 'user.name') ?? str(doc, 'process.user.name') ?? '—'),
    h('td', { class: 'col-attr' }, attributionBadge(str(doc, 'ldguard.attribution'))),
    h('td', { class: 'col-status' }, statusPill(str(doc, 'kibana.alert.workflow_status')),
      str(doc, 'ldguard.assignee') ? h('span', { class: 'badge assignee', title: 'assignee' }, str(doc, 'ldguard.assignee')) : null),
  );
  return tr;
}

export function alertsView(root: HTMLElement, live: Live, params: URLSearchParams): () => void {
  let f = filtersFrom(params);
  let next: string | null = null;
  let loading = false;
  let generation = 0;
  const shown = new Set<string>();
  let newCount = 0;

  const tbody = h('tbody');
  const status = h('div', { class: 'list-status' });
  const more = h('div', { class: 'list-more' });
  const banner = h('div', { class: 'banner', hidden: true });
  const hostList = h('datalist', { id: 'host-options' });
  const ruleSelect = h('select', { name: 'rule', 'aria-label': 'Rule' }, h('option', { value: '' }, 'All rules'));
  const notice = h('div', { class: 'notice', role: 'status', hidden: true });
  const ticks = () => Array.from(tbody.querySelectorAll<HTMLInputElement>('input.tick'));
  const selected = () => ticks().filter((t) => t.checked).map((t) => t.dataset.uuid ?? '');
  const tickAll = h('input', { type: 'checkbox', class: 'tick-all', 'aria-label': 'Select all on this page', onchange: () => {
    for (const t of ticks()) t.checked = tickAll.checked;
    bar.update();
  } });
  const onTick = () => {
    const all = ticks();
    tickAll.checked = all.length > 0 && all.every((t) => t.checked);
    bar.update();
  };
  const bar = bulkBar({
    selected,
    // Free text selects through a search index read a page at a time: a bulk change by filter
    // takes the columns only (the collector refuses q), so search results are ticked by page.
    filters: () => {
      if (f.q) return { unavailable: 'Search results: tick the rows (all matching is for filters without search)' };
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(serverFilters(f))) if (v !== undefined && k !== 'q') out[k] = v;
      return out;
    },
    done: (message) => {
      notice.hidden = false;
      replace(notice, message);
      void load(true);
    },
  });

  // Export links: the time range is read at the click, so "last hour" means the hour before it.
  const exportLink = (format: 'csv' | 'ndjson', label: string) => {
    const a = h('a', { class: 'btn ghost small', href: exportHref(f, format), download: '', 'data-export': format }, label);
    a.addEventListener('click', () => a.setAttribute('href', exportHref(f, format)));
    return a;
  };
  const exports = [exportLink('csv', 'Export CSV'), exportLink('ndjson', 'Export NDJSON')];

  /** The filters the list now acts on, into the address bar (a history entry) and the export links. */
  const hashOf = () => {
    const p = new URLSearchParams();
    // The range's bounds as instants with their zone: a shared link means the same alerts anywhere.
    for (const k of KEYS) if (f[k] !== undefined && (f[k] || k === 'key')) p.set(k, k === 'from' || k === 'to' ? boundToUrl(f[k]!) : f[k]!);
    const s = p.toString();
    return `#/alerts${s ? `?${s}` : ''}`;
  };
  const commit = () => {
    writeHash(hashOf(), true);
    notice.hidden = true;
    for (const a of exports) a.setAttribute('href', exportHref(f, a.dataset.export as 'csv' | 'ndjson'));
  };

  const summaryText = (page?: Page) => {
    const n = shown.size;
    const parts = [`${n.toLocaleString('en')} alert${n === 1 ? '' : 's'} shown`];
    parts.push(f.q ? 'search results, newest received first' : 'newest first');
    if (newCount > 0) parts.push(`${newCount} new since you opened this list`);
    replace(status, parts.join(' · '), page && page.indexLag > 0 ? h('span', { class: 'muted' }, ` · ${page.indexLag.toLocaleString('en')} newest alerts not yet searchable`) : null);
  };

  const renderMore = (page: Page) => {
    if (!next) {
      replace(more, shown.size > 0 ? h('span', { class: 'muted' }, 'End of the list.') : null);
      return;
    }
    replace(
      more,
      page.partial ? h('span', { class: 'muted' }, `Looked through ${page.scanned.toLocaleString('en')} alerts without filling the page. `) : null,
      h('button', { class: 'btn', type: 'button', onclick: () => void load(false) }, page.partial ? 'Look further back' : 'Load older'),
    );
  };

  /** The address bar's filters (the group rows link to their members with them). */
  const urlFilters = () => Object.fromEntries(KEYS.map((k) => [k, f[k]])) as Record<string, string | undefined>;
  const grouped = () => Boolean(f.by && !f.of);
  const reloadGroups = () => groupsInto(tbody, more, status, f.by!, urlFilters(), serverFilters(f))();

  const load = async (reset: boolean) => {
    if (grouped()) {
      await reloadGroups();
      return;
    }
    if (loading && !reset) return;
    loading = true;
    const gen = reset ? ++generation : generation;
    if (reset) {
      next = null;
      newCount = 0;
      banner.hidden = true;
    }
    try {
      const page = await api.get<Page>(`/ui/api/alerts${query({ ...serverFilters(f), cursor: reset ? undefined : (next ?? undefined), limit: 50 })}`);
      if (gen !== generation) return;
      if (reset) {
        shown.clear();
        replace(tbody);
        tickAll.checked = false;
        bar.update();
      }
      for (const doc of page.alerts) {
        const id = uuidOf(doc);
        if (shown.has(id)) continue;
        shown.add(id);
        tbody.appendChild(row(doc, false, onTick));
      }
      next = page.next;
      if (shown.size === 0) {
        replace(tbody, h('tr', null, h('td', { colspan: 10 }, empty(Object.keys(f).length ? 'No alert matches these filters.' : 'No alerts yet. New ones appear here as soon as the collector stores them.'))));
      }
      summaryText(page);
      renderMore(page);
    } catch (err) {
      if (gen === generation) replace(tbody, h('tr', null, h('td', { colspan: 10 }, errorBox(err))));
    } finally {
      if (gen === generation) loading = false;
    }
  };

  // Filters: a menu reloads the list at once; typing (search, host, dates) waits for a pause.
  let typing: number | undefined;
  const read = () => {
    const data = new FormData(form);
    const members = Object.fromEntries(MEMBER_KEYS.map((k) => [k, f[k]]));
    const by = f.by;
    f = {};
    for (const k of KEYS) {
      const v = String(data.get(k) ?? '').trim();
      if (v) f[k] = v;
    }
    custom.hidden = f.range !== 'custom';
    if (f.range !== 'custom') {
      delete f.from;
      delete f.to;
    }
    // Another grouping closes the group that was open.
    if (f.by === by) Object.assign(f, Object.fromEntries(Object.entries(members).filter(([, v]) => v !== undefined)));
  };
  const onInput = (ev: Event) => {
    const t = ev.target as HTMLElement;
    if (t.tagName === 'SELECT') return;
    read();
    window.clearTimeout(typing);
    typing = window.setTimeout(() => {
      commit();
      void load(true);
    }, (t as HTMLInputElement).name === 'q' ? 250 : 400);
  };
  const onChange = (ev: Event) => {
    if ((ev.target as HTMLElement).tagName !== 'SELECT') return;
    const wasGrouped = grouped();
    read();
    window.clearTimeout(typing);
    // Between alerts and groups the table changes shape: a navigation, so the router draws the view again.
    if (wasGrouped !== grouped()) {
      location.hash = hashOf();
      return;
    }
    commit();
    void load(true);
  };
  const sel = (name: string, label: string, options: Array<[string, string]>, value?: string) =>
    h('select', { name, 'aria-label': label }, options.map(([v, t]) => h('option', { value: v, selected: v === (value ?? '') }, t)));
  const custom = h(
    'span',
    { class: 'custom-range', hidden: f.range !== 'custom' },
    h('input', { type: 'datetime-local', name: 'from', 'aria-label': 'From', value: f.from ?? '' }),
    h('span', { class: 'muted' }, 'to'),
    h('input', { type: 'datetime-local', name: 'to', 'aria-label': 'To', value: f.to ?? '' }),
    h('span', { class: 'muted range-zone' }, zoneLabel(Date.now())),
  );
  const form = h(
    'form',
    { class: 'filters', role: 'search', onsubmit: (ev: Event) => ev.preventDefault(), oninput: onInput, onchange: onChange },
    h('input', { class: 'search', type: 'search', name: 'q', value: f.q ?? '', placeholder: 'Search path, process, host, user, hash, pid…', 'aria-label': 'Search', autocomplete: 'off', spellcheck: 'false' }),
    h('input', { type: 'text', name: 'host', value: f.host ?? '', placeholder: 'Host', list: 'host-options', 'aria-label': 'Host', autocomplete: 'off', spellcheck: 'false' }),
    hostList,
    ruleSelect,
    sel('severity', 'Severity', [['', 'Any severity'], ...SEVERITIES.map((s): [string, string] => [s, s])], f.severity),
    sel('status', 'Status', [['', 'Any status'], ...STATUSES.map((s): [string, string] => [s, s])], f.status),
    sel('range', 'Time range', Object.entries(RANGES).map(([k, v]): [string, string] => [k, v.label]), f.range),
    sel('by', 'Group by', [['', 'No grouping'], ...GROUPINGS], f.by),
    custom,
    h('button', {
      type: 'button',
      class: 'btn ghost',
      onclick: () => {
        if (f.by || f.of) {
          // The view changes shape (groups, or a group's members, to the plain list): the router draws it.
          location.hash = '#/alerts';
          return;
        }
        f = {};
        form.reset();
        for (const el of Array.from(form.elements) as HTMLInputElement[]) if ('value' in el && el.tagName !== 'BUTTON') el.value = '';
        custom.hidden = true;
        commit();
        void load(true);
      },
    }, 'Clear'),
  );

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', null, 'Alerts'), status, h('span', { class: 'spacer' }), exports),
    form,
    f.of ? membersBar(urlFilters(), f.of, f.key) : null,
    banner,
    notice,
    bar.el,
    h(
      'div',
      { class: 'table-wrap' },
      grouped()
        ? h('table', { class: 'alerts groups' }, groupsHead(f.by!), tbody)
        : h('table', { class: 'alerts' },
          h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'col-select' }, tickAll), ['Time', 'Severity', 'Rule', 'Host', 'File', 'Process', 'User', 'Attribution', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody),
    ),
    more,
  );

  void api.get<Facets>('/ui/api/facets').then((fc) => {
    // The label (escaped, as text is) is what the suggestion list shows; the value stays exact.
    replace(hostList, fc.hosts.map((x) => h('option', { value: x, label: x })));
    for (const r of fc.rules) ruleSelect.appendChild(h('option', { value: r.ruleId, selected: r.ruleId === f.rule }, r.name ?? r.ruleId));
    if (f.rule && !fc.rules.some((r) => r.ruleId === f.rule)) ruleSelect.appendChild(h('option', { value: f.rule, selected: true }, f.rule));
  }).catch(() => undefined);

  const offAlerts = live.on('alerts', (docs, skipped) => {
    // Groups are counted by the collector: the list of groups is refreshed by a filter change or a reload.
    if (grouped()) return;
    const fresh = docs.filter((d) => matches(d, f) && !shown.has(uuidOf(d)));
    if (skipped > 0 || fresh.length > 0) {
      if (shown.size === 0) replace(tbody);
    }
    // Newest last in the message: insert in reverse so the newest ends on top.
    for (const d of fresh) {
      shown.add(uuidOf(d));
      tbody.insertBefore(row(d, true, onTick), tbody.firstChild);
      newCount += 1;
    }
    while (tbody.rows.length > MAX_ROWS) {
      const last = tbody.rows[tbody.rows.length - 1]!;
      shown.delete(last.dataset.uuid ?? '');
      last.remove();
    }
    if (skipped > 0) {
      banner.hidden = false;
      replace(banner, `${skipped.toLocaleString('en')} more alerts arrived than the live view shows. `, h('button', { class: 'btn small', type: 'button', onclick: () => void load(true) }, 'Reload the list'));
    }
    if (fresh.length > 0) summaryText();
  });
  const offResync = live.on('resync', () => void load(true));
  void load(true);
  return () => {
    offAlerts();
    offResync();
    window.clearTimeout(typing);
  };
}

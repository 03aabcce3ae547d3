// The alert list grouped (#22 item 2): with "Group by" set (#/alerts?by=host), the list shows one
// row per key of the filtered alerts (GET /ui/api/alerts/groups: count, held-back records among
// them, first and last seen in the zone the page shows), newest last seen first. A row links to
// its members: the same filters plus of=BY&key=KEY (no key: the alerts without one), which the
// list shows as alerts; "All groups" links back. Both are plain links, so the address bar, back
// and a reload keep where the analyst is.
import { api, query } from './api.js';
import { breakable, get, h, replace, str } from './dom.js';
import { fullTime, time } from './format.js';
import { empty, errorBox } from './ui.js';

export const GROUPINGS: Array<[string, string]> = [
  ['rule', 'Rule'], ['host', 'Host'], ['hash', 'File hash'], ['executable', 'Executable'], ['package', 'Package'], ['sender', 'Sender'],
];

const label = (by: string) => GROUPINGS.find(([k]) => k === by)?.[1] ?? by;

interface Group {
  key: string | null;
  count: number;
  heldBack: number;
  firstSeen: string;
  lastSeen: string;
}

interface GroupPage {
  groups: Group[];
  next: number | null;
}

const PAGE = 50;

/** A document's key in a grouping, as the collector fills it (store/group-keys.ts), for live alerts. */
export function groupKeyOf(doc: unknown, by: string): string | null {
  const path = {
    rule: 'kibana.alert.rule.rule_id', host: 'host.name', hash: 'file.hash.sha256', executable: 'process.executable',
    package: 'ldguard.file_package.name', sender: 'ldguard.received_from.token_name',
  }[by];
  const v = path ? get(doc, path) : undefined;
  return typeof v === 'string' ? v : null;
}

/** The address of the view: the list's hash with these parameters. */
function href(params: Record<string, string | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) p.set(k, v);
  const s = p.toString();
  return `#/alerts${s ? `?${s}` : ''}`;
}

/** The bar above a group's members: which group, and the way back to all groups. */
export function membersBar(urlFilters: Record<string, string | undefined>, by: string, key: string | undefined): HTMLElement {
  const { of: _of, key: _key, ...back } = urlFilters;
  return h(
    'div',
    { class: 'group-members', 'data-group-of': by },
    h('span', { class: 'muted' }, `${label(by)}: `),
    h('strong', { class: 'mono' }, key === undefined ? `(no ${label(by).toLowerCase()})` : breakable(key)),
    ' · ',
    h('a', { href: href({ ...back, by: back.by ?? by }), class: 'all-groups' }, 'All groups'),
  );
}

/**
 * The groups of the filtered alerts into `tbody` (5 columns), a page at a time into `more`.
 * `urlFilters`: the list's filters as the address bar holds them (a row's link adds of and key);
 * `serverFilters`: as the collector takes them. Returns a reload.
 */
export function groupsInto(tbody: HTMLElement, more: HTMLElement, status: HTMLElement, by: string,
  urlFilters: Record<string, string | undefined>, serverFilters: Record<string, string | undefined>): () => Promise<void> {
  let offset = 0;
  let shown = 0;
  let generation = 0;
  const row = (g: Group) => {
    const link = href({ ...urlFilters, by, of: by, key: g.key ?? undefined });
    return h(
      'tr',
      { class: 'group-row', tabindex: 0, 'data-key': g.key ?? '', onclick: (ev: Event) => {
        if (!(ev.target as Element).closest('a')) location.hash = link;
      }, onkeydown: (ev: Event) => {
        if ((ev as KeyboardEvent).key === 'Enter') location.hash = link;
      } },
      h('td', { class: 'col-key mono' }, h('a', { href: link }, g.key === null ? h('span', { class: 'muted' }, `(no ${label(by).toLowerCase()})`) : breakable(g.key))),
      h('td', { class: 'col-count num' }, g.count.toLocaleString('en')),
      h('td', { class: 'col-held num' }, g.heldBack > 0 ? h('span', { title: 'held-back records (past the rule\'s max_signals), listed with their summary' }, g.heldBack.toLocaleString('en')) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'col-time nowrap', title: fullTime(g.firstSeen) }, time(g.firstSeen)),
      h('td', { class: 'col-time nowrap', title: fullTime(g.lastSeen) }, time(g.lastSeen)),
    );
  };
  const load = async (reset: boolean) => {
    const gen = reset ? ++generation : generation;
    if (reset) {
      offset = 0;
      shown = 0;
    }
    try {
      const page = await api.get<GroupPage>(`/ui/api/alerts/groups${query({ ...serverFilters, by, offset, limit: PAGE })}`);
      if (gen !== generation) return;
      if (reset) replace(tbody);
      for (const g of page.groups) tbody.appendChild(row(g));
      shown += page.groups.length;
      if (shown === 0) replace(tbody, h('tr', null, h('td', { colspan: 5 }, empty('No alert matches these filters.'))));
      replace(status, `${shown.toLocaleString('en')} group${shown === 1 ? '' : 's'} by ${label(by).toLowerCase()} shown · newest last seen first`);
      if (page.next !== null) {
        offset = page.next;
        replace(more, h('button', { class: 'btn', type: 'button', onclick: () => void load(false) }, 'More groups'));
      } else replace(more, shown > 0 ? h('span', { class: 'muted' }, 'End of the groups.') : null);
    } catch (err) {
      if (gen === generation) replace(tbody, h('tr', null, h('td', { colspan: 5 }, errorBox(err))));
    }
  };
  return () => load(true);
}

/** The head of the groups table. */
export function groupsHead(by: string): HTMLElement {
  return h('thead', null, h('tr', null, [label(by), 'Alerts', 'Held back', 'First seen', 'Last seen'].map((c) => h('th', { scope: 'col' }, c))));
}

/** Whether a live alert belongs to the group the list shows (its key, as the collector fills it). */
export function inGroup(doc: unknown, of: string | undefined, key: string | undefined): boolean {
  if (!of) return true;
  // A held-back record is filed under its summary's keys, which the page cannot see: a reload shows it.
  if (str(doc, 'ldguard.held_back_by') !== undefined) return false;
  return groupKeyOf(doc, of) === (key ?? null);
}

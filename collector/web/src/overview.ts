// The overview: alerts over time (an SVG bar chart drawn here), where they come from (hosts,
// rules, severities) and how many are still open. Counts come from the collector's per-minute and
// per-hour tables; a live alert schedules a refresh.
import { api } from './api.js';
import { h, replace, s } from './dom.js';
import { fullTime, stamp, zoneLabel } from './format.js';
import type { Live } from './live.js';
import { writeHash } from './nav.js';
import { niceTicks } from './ticks.js';
import { errorBox } from './ui.js';
import type { Overview } from './api-types.js';
import { zone } from './zone.js';


const WINDOWS: Array<[string, string]> = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

/** A bucket's clock time in the login's zone; the zone itself is written once, under the y axis. */
function tickLabel(iso: string, bucketMs: number): string {
  const [ymd = '', hms = ''] = stamp(Date.parse(iso), { zone: zone() }).split(' ');
  if (bucketMs <= 3_600_000) return hms.slice(0, 5);
  return `${ymd.slice(5)} ${hms.slice(0, 2)}h`;
}

export function chart(o: Overview, windowKey: string): SVGSVGElement {
  const W = 900;
  const H = 240;
  const L = 44;
  const R = 12;
  const T = 12;
  const B = 28;
  const ticks = niceTicks(Math.max(0, ...o.buckets.map((b) => b.n)));
  const max = ticks.at(-1)!;
  const bw = (W - L - R) / Math.max(1, o.buckets.length);
  const y = (n: number) => T + (H - T - B) * (1 - n / max);
  const every = Math.ceil(o.buckets.length / 8);
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Alerts over the ${windowKey}: ${o.total} in all` },
    ticks.map((t) => [
      s('line', { class: 'grid', x1: L, x2: W - R, y1: y(t), y2: y(t) }),
      s('text', { class: 'axis y-tick', x: L - 6, y: y(t) + 4, 'text-anchor': 'end' }, String(t)),
    ]),
    o.buckets.map((b, i) => [
      b.n > 0
        ? s('rect', { class: 'bar', x: L + i * bw + 1, y: y(b.n), width: Math.max(1, bw - 2), height: Math.max(1, H - B - y(b.n)), rx: 2 }, s('title', null, `${fullTime(b.t)}: ${b.n} alert${b.n === 1 ? '' : 's'}`))
        : null,
      i % every === 0 ? s('text', { class: 'axis', x: L + i * bw + bw / 2, y: H - 8, 'text-anchor': 'middle' }, tickLabel(b.t, o.bucketMs)) : null,
    ]),
    s('line', { class: 'baseline', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    // The x axis' zone, at the window's end (a DST change inside it shows in the bars' titles).
    s('text', { class: 'axis x-zone', x: L - 6, y: H - 8, 'text-anchor': 'end' }, zoneLabel(Date.parse(o.to))),
  );
}

function bars(title: string, rows: Array<{ label: string; n: number; href?: string }>): HTMLElement {
  const max = Math.max(1, ...rows.map((r) => r.n));
  return h(
    'section',
    { class: 'card' },
    h('h2', { class: 'card-title' }, title),
    rows.length === 0
      ? h('p', { class: 'muted' }, 'Nothing in this window.')
      : h(
          'ul',
          { class: 'hbars' },
          rows.map((r) => {
            const fill = h('span', { class: 'hbar-fill' });
            // CSSOM, not a style attribute: allowed by the CSP's style-src 'self'.
            fill.style.width = `${Math.max(2, (100 * r.n) / max)}%`;
            return h('li', null, h('div', { class: 'hbar-label' }, r.href ? h('a', { href: r.href }, r.label) : r.label, h('span', { class: 'hbar-n' }, r.n.toLocaleString('en'))), h('div', { class: 'hbar' }, fill));
          }),
        ),
  );
}

export function overviewView(root: HTMLElement, live: Live, params: URLSearchParams): () => void {
  let windowKey = WINDOWS.some(([k]) => k === params.get('window')) ? params.get('window')! : '24h';
  const body = h('div');
  let timer: number | undefined;

  const load = async () => {
    try {
      const o = await api.get<Overview>(`/ui/api/overview?window=${windowKey}`);
      const q = (k: string, v: string) => `#/alerts?${new URLSearchParams({ [k]: v, range: windowKey }).toString()}`;
      replace(
        body,
        h(
          'div',
          { class: 'stats' },
          h('a', { class: 'stat bad', href: `#/alerts?status=open&range=${windowKey}` }, h('div', { class: 'stat-value' }, o.status.open.toLocaleString('en')), h('div', { class: 'stat-label' }, 'Open')),
          h('a', { class: 'stat warn', href: `#/alerts?status=acknowledged&range=${windowKey}` }, h('div', { class: 'stat-value' }, o.status.acknowledged.toLocaleString('en')), h('div', { class: 'stat-label' }, 'Acknowledged')),
          h('a', { class: 'stat good', href: `#/alerts?status=closed&range=${windowKey}` }, h('div', { class: 'stat-value' }, o.status.closed.toLocaleString('en')), h('div', { class: 'stat-label' }, 'Closed')),
          h('a', { class: 'stat', href: `#/alerts?range=${windowKey}` }, h('div', { class: 'stat-value' }, o.total.toLocaleString('en')), h('div', { class: 'stat-label' }, 'All alerts')),
        ),
        h('section', { class: 'card' }, h('h2', { class: 'card-title' }, 'Alerts over time'), chart(o, windowKey), o.indexLag > 0 ? h('p', { class: 'muted small' }, `${o.indexLag.toLocaleString('en')} newest alerts are not counted yet.`) : null),
        h(
          'div',
          { class: 'grid3' },
          bars('Top hosts', o.byHost.map((x) => ({ label: x.host, n: x.n, href: q('host', x.host) }))),
          bars('Top rules', o.byRule.map((x) => ({ label: x.name ?? x.ruleId, n: x.n, href: q('rule', x.ruleId) }))),
          bars('By severity', ['critical', 'high', 'medium', 'low'].filter((k) => (o.bySeverity[k] ?? 0) > 0).map((k) => ({ label: k, n: o.bySeverity[k] ?? 0, href: q('severity', k) }))),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };

  replace(
    root,
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Overview'),
      h(
        'select',
        {
          'aria-label': 'Window',
          onchange: (ev: Event) => {
            windowKey = (ev.target as HTMLSelectElement).value;
            writeHash(`#/overview?window=${windowKey}`, false);
            void load();
          },
        },
        WINDOWS.map(([k, label]) => h('option', { value: k, selected: k === windowKey }, label)),
      ),
    ),
    body,
  );
  const off = live.on('alerts', () => {
    // Counts are indexed a moment after the alert is stored: refresh shortly, once per burst.
    if (timer === undefined) timer = window.setTimeout(() => ((timer = undefined), void load()), 1_000);
  });
  void load();
  return () => {
    off();
    window.clearTimeout(timer);
  };
}

// The dashboard's entry point: asks who is logged in, then shows the login form or the app (a
// header with the live indicator and the views, routed by the URL's hash).
import { alertsView } from './alerts.js';
import { api, setCsrf, type SessionInfo } from './api.js';
import type { TimeZonePref, WebPrefs } from './api-types.js';
import { detailView } from './detail.js';
import { h, replace } from './dom.js';
import { fullTime } from './format.js';
import { fleetView } from './fleet.js';
import { Live, type FleetSummary, type LiveState } from './live.js';
import { loginView } from './login.js';
import { currentHash, takeNavigation } from './nav.js';
import { overviewView } from './overview.js';
import { errorBox } from './ui.js';
import { setZone, zone } from './zone.js';

const root = document.getElementById('app')!;
let live: Live | undefined;
let teardown: (() => void) | undefined;

function route(view: HTMLElement, nav: HTMLElement): void {
  teardown?.();
  teardown = undefined;
  takeNavigation();
  const hash = currentHash();
  const [path = '', qs = ''] = hash.slice(1).split('?');
  const params = new URLSearchParams(qs);
  const parts = path.split('/').filter(Boolean);
  const section = parts[0] ?? 'alerts';
  for (const a of Array.from(nav.querySelectorAll('a'))) a.classList.toggle('active', a.dataset.section === section);
  window.scrollTo(0, 0);
  if (section === 'alerts' && parts[1]) {
    let uuid = parts[1];
    try {
      uuid = decodeURIComponent(uuid);
    } catch {
      // shown as not found
    }
    teardown = detailView(view, uuid);
  } else if (section === 'fleet') teardown = fleetView(view, live!);
  else if (section === 'overview') teardown = overviewView(view, live!, params);
  else teardown = alertsView(view, live!, params);
  document.title = `ldguard · ${section === 'alerts' && parts[1] ? 'alert' : section}`;
}

/**
 * The header's UTC / local switch. The choice is saved for the login first (PUT /ui/api/prefs),
 * then the view is drawn again in it: what the page shows is what a reload or another browser of
 * the same login will show. A refused save leaves the zone as it was and says why.
 */
function zoneSwitch(view: HTMLElement, nav: HTMLElement): HTMLElement {
  const options: Array<[TimeZonePref, string, string]> = [['utc', 'UTC', 'times in UTC, as ldguard tail and the journal show them'], ['local', 'Local', 'times in this browser\'s zone, with its offset']];
  const buttons = options.map(([z, label, title]) => h('button', {
    class: 'btn ghost small zone-option', type: 'button', title, 'data-zone': z, 'aria-pressed': String(zone() === z),
    onclick: async () => {
      if (zone() === z) return;
      try {
        const saved = await api.put<WebPrefs>('/ui/api/prefs', { timeZone: z });
        setZone(saved.timeZone);
      } catch (e) {
        view.prepend(errorBox(e));
        return;
      }
      for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.zone === zone()));
      route(view, nav);
    },
  }, label));
  return h('span', { class: 'zone-switch', role: 'group', 'aria-label': 'Time zone' }, buttons);
}

function app(session: SessionInfo): void {
  setCsrf(session.csrf);
  setZone(session.prefs?.timeZone ?? 'utc');
  live?.stop();
  live = new Live();
  const indicator = h('span', { class: 'live live-connecting', title: 'live feed' }, 'Connecting');
  const fleetBadge = h('span', { class: 'nav-badge', hidden: true });
  const nav = h(
    'nav',
    { class: 'nav' },
    h('a', { href: '#/alerts', 'data-section': 'alerts' }, 'Alerts'),
    h('a', { href: '#/overview', 'data-section': 'overview' }, 'Overview'),
    h('a', { href: '#/fleet', 'data-section': 'fleet' }, 'Fleet', fleetBadge),
  );
  const view = h('main', { class: 'view' });
  replace(
    root,
    h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: '#/alerts' }, h('span', { class: 'brand-mark' }, 'ld'), 'ldguard'),
      nav,
      h('div', { class: 'spacer' }),
      indicator,
      zoneSwitch(view, nav),
      h('span', { class: 'user', title: `session until ${fullTime(session.expires)}` }, session.name),
      h('button', {
        class: 'btn ghost small',
        type: 'button',
        onclick: async () => {
          try {
            await api.post('/ui/logout', {});
          } finally {
            logout();
          }
        },
      }, 'Log out'),
    ),
    view,
  );
  const labels: Record<LiveState, string> = { connecting: 'Connecting', live: 'Live', offline: 'Reconnecting' };
  live.on('state', (st) => {
    indicator.className = `live live-${st}`;
    indicator.textContent = labels[st];
  });
  live.on('fleet', (f: FleetSummary) => {
    fleetBadge.hidden = f.attention === 0;
    fleetBadge.textContent = String(f.attention);
    fleetBadge.title = `${f.offline} offline, ${f.degraded} degraded`;
  });
  live.start();
  // A link changes the hash (hashchange); back and forward over the entries the list pushed for its
  // filters change it too (popstate; Chromium sends both for one step): one rebuild either way.
  const navigated = () => {
    if (takeNavigation()) route(view, nav);
  };
  window.onhashchange = navigated;
  window.onpopstate = navigated;
  route(view, nav);
}

function logout(): void {
  teardown?.();
  teardown = undefined;
  live?.stop();
  live = undefined;
  window.onhashchange = null;
  window.onpopstate = null;
  setCsrf('');
  loginView(root, app);
}

window.addEventListener('ldg:logged-out', () => {
  if (live) logout();
});

api.get<SessionInfo>('/ui/api/session').then(app, () => loginView(root, app));

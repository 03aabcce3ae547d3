// The fleet: every agent with what the security team needs to trust its silence. Agents with a
// problem (offline, degraded source or attribution, lost events, a full or deep spool) come first
// and stand out. Refreshed when the live feed's fleet summary changes.
import { api } from './api.js';
import type { FleetAgent as Agent } from './api-types.js';
import { h, replace } from './dom.js';
import { ago, count, duration, fullTime } from './format.js';
import type { FleetSummary, Live } from './live.js';
import { empty, errorBox } from './ui.js';

interface Reply {
  now: string;
  agents: Agent[];
  summary: FleetSummary;
}

const MAX_SHOWN = 500;

function rank(a: Agent): number {
  if (!a.online) return 0;
  if (a.problems.some((p) => p.level === 'error')) return 1;
  if (a.problems.length > 0) return 2;
  return 3;
}

function stat(label: string, value: string, cls = ''): HTMLElement {
  return h('div', { class: `stat ${cls}` }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}

export function fleetView(root: HTMLElement, live: Live): () => void {
  let filter = '';
  let reply: Reply | undefined;
  const stats = h('div', { class: 'stats' });
  const tbody = h('tbody');
  const note = h('p', { class: 'muted small' });

  const render = () => {
    if (!reply) return;
    const s = reply.summary;
    replace(
      stats,
      stat('Agents', count(s.total)),
      stat('Online', count(s.online), 'good'),
      stat('Offline', count(s.offline), s.offline > 0 ? 'bad' : ''),
      stat('Degraded', count(s.degraded), s.degraded > 0 ? 'warn' : ''),
      stat('Events lost', count(s.eventsLost), s.eventsLost > 0 ? 'warn' : ''),
      stat('Waiting in spools', count(s.spoolDepth)),
    );
    const now = Date.now();
    const f = filter.toLowerCase();
    const list = reply.agents
      .filter((a) => !f || [a.hostname, a.agentId, a.version, a.os, a.kernel, a.source?.name].some((v) => v?.toLowerCase().includes(f)))
      .sort((a, b) => rank(a) - rank(b) || (a.hostname ?? '').localeCompare(b.hostname ?? '') || a.agentId.localeCompare(b.agentId));
    replace(
      tbody,
      list.length === 0 ? h('tr', null, h('td', { colspan: 9 }, empty(reply.agents.length ? 'No agent matches.' : 'No agent has connected yet. Start one with --collector pointing here.'))) : null,
      list.slice(0, MAX_SHOWN).map((a) => {
        const state = !a.online ? 'offline' : a.problems.length > 0 ? 'degraded' : 'healthy';
        const src = a.source;
        return h(
          'tr',
          { class: `agent-row agent-${state}`, 'data-agent': a.agentId },
          h('td', null, h('span', { class: `dot dot-${state}` }), h('strong', null, a.online ? 'Online' : 'Offline'), a.online && !a.connected ? h('div', { class: 'small muted' }, 'via another collector') : null),
          h('td', null, h('div', null, h('strong', null, a.hostname ?? '—')), h('div', { class: 'mono small muted' }, a.agentId)),
          h('td', { title: a.lastSeen ? fullTime(a.lastSeen) : '' }, ago(a.lastSeen, now), a.heartbeatMs ? h('div', { class: 'small muted' }, `every ${a.heartbeatMs < 1000 ? `${a.heartbeatMs} ms` : `${Math.round(a.heartbeatMs / 1000)} s`}`) : null),
          h('td', null, a.version ?? '—', a.uptimeSec !== null ? h('div', { class: 'small muted' }, `up ${duration(a.uptimeSec)}`) : null),
          h('td', null, a.os ?? '—', h('div', { class: 'mono small muted' }, [a.kernel, a.architecture].filter(Boolean).join(' · '))),
          h('td', null, src ? h('span', { class: `badge ${src.degraded ? 'attr-warn' : 'attr-ok'}`, title: src.reason ?? '' }, src.degraded ? `${src.name} (degraded)` : src.name) : '—'),
          h('td', null, a.attribution ? h('span', { class: `badge ${a.attribution.degraded ? 'attr-warn' : 'attr-ok'}`, title: a.attribution.reason ?? '' }, a.attribution.degraded ? 'degraded' : 'healthy') : '—'),
          h('td', { class: 'num' }, count(a.spoolDepth), (a.spoolOverflow ?? 0) > 0 ? h('div', { class: 'small bad-text' }, `${count(a.spoolOverflow)} refused`) : null),
          h('td', { class: `num${(a.eventsLost ?? 0) > 0 ? ' warn-text' : ''}` }, count(a.eventsLost)),
        );
      }),
      list.length > MAX_SHOWN ? h('tr', null, h('td', { colspan: 9, class: 'muted' }, `${list.length - MAX_SHOWN} more; narrow the list with the filter.`)) : null,
    );
    const problems = reply.agents.filter((a) => a.problems.length > 0);
    replace(note, problems.length ? `${problems.length} agent${problems.length === 1 ? '' : 's'} need${problems.length === 1 ? 's' : ''} attention: ${problems.slice(0, 3).map((a) => `${a.hostname ?? a.agentId}: ${a.problems.map((p) => p.text).join('; ')}`).join(' — ')}${problems.length > 3 ? ' …' : ''}` : 'Every agent is online and at full fidelity.');
  };

  const load = async () => {
    try {
      reply = await api.get<Reply>('/ui/api/agents');
      render();
    } catch (err) {
      replace(tbody, h('tr', null, h('td', { colspan: 9 }, errorBox(err))));
    }
  };

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', null, 'Fleet'), h('span', { class: 'muted' }, 'agents reporting to this collector')),
    stats,
    note,
    h('div', { class: 'filters' }, h('input', { type: 'search', class: 'search', placeholder: 'Filter by host, agent id, version, OS, kernel, source…', 'aria-label': 'Filter agents', oninput: (ev: Event) => ((filter = (ev.target as HTMLInputElement).value), render()) })),
    h('div', { class: 'table-wrap' }, h('table', { class: 'fleet' }, h('thead', null, h('tr', null, ['Status', 'Host', 'Last heartbeat', 'Version', 'OS / kernel', 'Source', 'Attribution', 'Spool', 'Events lost'].map((c) => h('th', { scope: 'col' }, c)))), tbody)),
  );

  // A small fleet is re-read on every summary the feed pushes (every few seconds), so heartbeats
  // stay current; a large one when its counts change, and at least once a minute.
  let last = '';
  let loadedAt = Date.now();
  const offFleet = live.on('fleet', (s) => {
    const key = JSON.stringify([s.total, s.online, s.degraded, s.eventsLost, s.spoolOverflow]);
    if (key !== last || s.total <= 1000 || Date.now() - loadedAt > 60_000) {
      last = key;
      loadedAt = Date.now();
      void load();
    }
  });
  // Relative times ("12 s ago") keep moving between refreshes.
  const ticker = window.setInterval(render, 5_000);
  void load();
  return () => {
    offFleet();
    window.clearInterval(ticker);
  };
}

// The live feed from the collector (/ui/live): new alerts as they are stored and the fleet summary.
// Reconnects with back-off; listeners hear 'alerts', 'fleet', 'resync' and state changes.

import type { FleetSummary } from './api-types.js';

export type { FleetSummary };

export type LiveState = 'connecting' | 'live' | 'offline';

type Events = {
  alerts: (alerts: unknown[], skipped: number) => void;
  fleet: (f: FleetSummary) => void;
  resync: () => void;
  state: (s: LiveState) => void;
};

export class Live {
  state: LiveState = 'connecting';
  fleet: FleetSummary | undefined;
  private ws: WebSocket | undefined;
  private backoff = 500;
  private stopped = false;
  private timer: number | undefined;
  private readonly listeners: { [K in keyof Events]: Set<Events[K]> } = { alerts: new Set(), fleet: new Set(), resync: new Set(), state: new Set() };

  on<K extends keyof Events>(ev: K, fn: Events[K]): () => void {
    this.listeners[ev].add(fn);
    return () => this.listeners[ev].delete(fn);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close();
    this.ws = undefined;
  }

  private set(s: LiveState): void {
    this.state = s;
    for (const fn of this.listeners.state) fn(s);
  }

  private connect(): void {
    this.set('connecting');
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ui/live`);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      this.set('live');
    };
    ws.onmessage = (ev) => {
      let m: { type?: string; alerts?: unknown[]; skipped?: number; fleet?: FleetSummary };
      try {
        m = JSON.parse(String(ev.data)) as typeof m;
      } catch {
        return;
      }
      if (m.type === 'alerts' && Array.isArray(m.alerts)) for (const fn of this.listeners.alerts) fn(m.alerts, m.skipped ?? 0);
      else if (m.type === 'fleet' && m.fleet) {
        this.fleet = m.fleet;
        for (const fn of this.listeners.fleet) fn(m.fleet);
      } else if (m.type === 'resync') for (const fn of this.listeners.resync) fn();
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.set('offline');
      if (ev.code === 4401) window.dispatchEvent(new Event('ldg:logged-out'));
      if (this.stopped) return;
      // Jittered exponential back-off, so many open dashboards do not reconnect in step.
      this.timer = window.setTimeout(() => this.connect(), this.backoff * (0.5 + Math.random()));
      this.backoff = Math.min(this.backoff * 2, 15_000);
    };
  }
}

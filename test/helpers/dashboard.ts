// A dashboard's back end for the browser tests: the real collector (a child process on a SQLite
// file in `work`), an admin token named alice, and one real agent sink connected over the protocol.
import { join } from 'node:path';
import { WebSocketSink } from '../../agent/src/sink/websocket.js';
import { createToken } from './collector.js';
import { startDaemon, type Daemon } from './daemon.js';
import { makeFacts, waitFor } from './delivery.js';

export interface DashboardBackEnd {
  collector: Daemon;
  /** http://127.0.0.1:PORT */
  base: string;
  admin: string;
  sink: WebSocketSink;
}

/** `agentId`: the sink's agent id (its alerts must name it); `bin`: an installed tree's ldguard instead of the checkout's. */
export async function startDashboardBackEnd(work: string, agentId: string, opts: { bin?: string } = {}): Promise<DashboardBackEnd> {
  const db = join(work, 'collector.db');
  const admin = await createToken(db, 'alice', 'admin');
  const agentToken = await createToken(db, 'agent-1');
  const collector = await startDaemon(['collector', '--listen', '127.0.0.1:0', '--db', db], { ...(opts.bin ? { bin: opts.bin } : {}), readyMs: 15_000 });
  const base = `http://127.0.0.1:${collector.ready.port as number}`;
  const sink = await WebSocketSink.open({
    url: `ws://${base.slice('http://'.length)}`, token: agentToken, spoolDir: join(work, 'spool'), spoolMaxBytes: 16 * 1024 * 1024,
    facts: () => makeFacts(agentId, 'web-1'), heartbeatMs: 2000, backoffInitialMs: 50, backoffMaxMs: 400,
  });
  await waitFor(() => sink.health().connected, 5000, 'the agent to connect');
  return { collector, base, admin, sink };
}

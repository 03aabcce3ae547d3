// The agent's sinks, opened together and fed in one order: the alerts file and `ldguard tail`
// clients first (their writes are synchronous, and they are where people on the host watch, so
// nothing should stand before them), then the delivery spool (an alert counts as accepted once it
// is fsync'd there, which happens off the event loop). One sink's failure is logged and never
// keeps an alert from the others.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Alert } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { AgentFacts, AgentHealth } from '../../../shared/protocol.js';
import type { AgentConfig } from '../config.js';
import { AlertsFile } from './alerts-file.js';
import { LocalSink } from './local.js';
import type { Sink } from './sink.js';
import type { CollectorLink, WebSocketSink } from './websocket.js';

export interface Sinks {
  /** Resolves once every sink has taken the alert (the spool: fsync'd) or refused it (logged). */
  send(a: Alert): Promise<void>;
  /** The collector link's health, when there is one. */
  delivery(): ReturnType<WebSocketSink['health']> | null;
  /** Sends the agent's health to the collector now (a baseline save), when connected. */
  pushHealth(): void;
  /**
   * A reload's collector settings (collector, token_file and the token in it, ca_file, cert_file,
   * key_file, allow_insecure): the link reconnects with them, opens or closes. Throws, keeping the
   * old link, when the new settings are unusable. Returns what it did, for the log.
   */
  reconfigure(cfg: Readonly<AgentConfig>): Promise<'unchanged' | 'reconnected' | 'opened' | 'closed'>;
  close(): Promise<void>;
}

export async function openSinks(
  cfg: Readonly<AgentConfig>,
  log: Logger,
  facts: () => AgentFacts,
  health: () => Pick<AgentHealth, 'eventsLost' | 'source' | 'attribution' | 'exceptions' | 'rulesDigest' | 'baseline'>,
): Promise<Sinks> {
  const opened: Array<{ name: string; sink: Sink }> = [];
  let ws: WebSocketSink | null = null;
  const openCollector = async (c: Readonly<AgentConfig>): Promise<WebSocketSink> => {
    // Loaded only with a collector: ws costs an agent without one ~6 MB.
    const { WebSocketSink } = await import('./websocket.js');
    return WebSocketSink.open({
      ...link(c),
      spoolDir: join(c.stateDir, 'spool'),
      spoolMaxBytes: c.spoolMaxBytes,
      facts,
      health,
      logger: log.child({ sink: 'collector' }),
    });
  };
  try {
    opened.push({ name: 'alerts file', sink: await AlertsFile.open({ path: cfg.alertsFile, maxBytes: cfg.alertsFileMaxBytes, keep: cfg.alertsFileKeep, logger: log }) });
    opened.push({ name: 'local socket', sink: await LocalSink.open({ path: cfg.socket, logger: log }) });
    if (cfg.collector.length > 0) {
      ws = await openCollector(cfg);
      opened.push({ name: 'collector', sink: ws });
    }
  } catch (err) {
    await Promise.allSettled(opened.map((o) => o.sink.close()));
    throw err;
  }
  log.info({ sinks: opened.map((o) => o.name), collector: ws?.urls.map((u) => u.href) ?? null }, 'sinks open');
  const inFlight = new Set<Promise<void>>();
  return {
    async send(a) {
      // Each sink queues in call order, so calling them all now keeps every sink's order while the
      // alerts file and tail need not wait for the spool's fsync.
      const all = opened.map(({ name, sink }) => {
        const p: Promise<void> = sink
          .send(a)
          .catch((err: unknown) => log.error({ sink: name, alert: a.kibana.alert.uuid, err: errorMessage(err) }, 'a sink refused an alert'))
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
        return p;
      });
      await Promise.all(all);
    },
    delivery: () => ws?.health() ?? null,
    pushHealth: () => ws?.pushHealth(),
    async reconfigure(c) {
      const wanted = c.collector.length > 0;
      if (ws && wanted) return ws.relink(link(c)) ? 'reconnected' : 'unchanged';
      if (!ws && !wanted) return 'unchanged';
      if (wanted) {
        ws = await openCollector(c);
        opened.push({ name: 'collector', sink: ws });
        return 'opened';
      }
      // No collector any more: what is spooled stays on disk for the next one.
      const old = ws!;
      ws = null;
      opened.splice(opened.findIndex((o) => o.sink === old), 1);
      await Promise.allSettled([...inFlight]);
      await old.close();
      return 'closed';
    },
    async close() {
      await Promise.allSettled([...inFlight]);
      await Promise.allSettled(opened.map((o) => o.sink.close()));
    },
  };
}

/** The link settings of a config with a collector (the token read from its file now). */
function link(cfg: Readonly<AgentConfig>): CollectorLink {
  return {
    url: cfg.collector,
    token: readToken(cfg.tokenFile!),
    caFile: cfg.caFile,
    certFile: cfg.certFile,
    keyFile: cfg.keyFile,
    allowInsecure: cfg.allowInsecure,
  };
}

/** The token file must be the agent's alone (0600): a readable token lets anyone speak as this host. */
function readToken(file: string): string {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new LdgError('LDG_ERR_TOKEN', `token file ${file} does not exist; create a token with \`ldguard token create --name HOST --role agent\` and save it there (mode 0600)`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new LdgError('LDG_ERR_TOKEN', `token file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
  }
  const token = readFileSync(file, 'utf8').trim();
  if (!token) throw new LdgError('LDG_ERR_TOKEN', `token file ${file} is empty; put the agent's token in it`);
  return token;
}

// The last stage of the agent's pipeline (source → enrich → match → sink).
import type { Alert } from '../../../shared/ecs.js';

/**
 * Takes alerts out of the agent. The sink owns the alert once `send` resolves; the caller must not
 * change it afterwards. `send` resolves when the alert is as safe as this sink can make it (spooled
 * and fsync'd for the collector sink, written for the alerts file, handed to the socket buffers
 * for the local stream); awaiting it is the pipeline's back-pressure. A sink never blocks on a peer
 * (a slow collector or `ldguard tail` client): it buffers within a bound, and past it counts what it
 * had to drop and reports that in its health, never silently. Errors that the caller can do nothing
 * about (a peer gone) are logged and retried inside the sink; `send` rejects only when the alert
 * could not be accepted at all (e.g. the disk refused the write). The agent closes each sink once,
 * after the last `send` has resolved; `close` releases files and sockets, and alerts not yet
 * delivered stay in the spool for the next start.
 */
export interface Sink {
  send(a: Alert): Promise<void>;
  close(): Promise<void>;
}

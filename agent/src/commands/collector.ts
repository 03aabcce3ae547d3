// `ldguard collector`: receives alerts from agents over WebSocket, stores them in SQLite or
// PostgreSQL and serves the HTTP API, all on one port.
import { LdgError } from '../../../shared/errors.js';
import { createLogger } from '../../../shared/log.js';
import { VERSION } from '../../../shared/version.js';
import { DEFAULTS, loadCollectorConfig } from '../../../collector/src/config.js';
import { CollectorServer } from '../../../collector/src/server.js';
import { openStore, parseDb } from '../../../collector/src/store/open.js';
import { parseOptions } from '../args.js';
import { notifySystemd } from '../systemd.js';

const HELP = `Usage: ldguard collector [--listen HOST:PORT] [--db FILE|URL] [--config FILE]

Receives alerts from agents (wss://HOST:PORT/agent), stores each once in SQLite or PostgreSQL and
serves the HTTP API (/api/alerts, /api/agents, /healthz, /metrics) on the same port.

  --listen HOST:PORT   where to listen (default ${DEFAULTS.listen}; port 0 picks a free port)
  --db FILE|URL        SQLite database (default ${DEFAULTS.db}; created 0600), or
                       postgres://USER@HOST:PORT/DATABASE: several collectors may share one
                       (PG* variables and PGPASSFILE honoured; ?sslmode=verify-full for TLS)
  --config FILE        TOML file with the options above and TLS, rate limits, timeouts
                       (see collector/collector.example.toml)

Tokens: ldguard token create --db FILE --name HOST --role agent|admin
Logs are JSON lines on stdout; the "ready" line carries the port.
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseOptions('collector', argv, {
    listen: { type: 'string' },
    db: { type: 'string' },
    config: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const log = createLogger('collector');
  // A URL of an unknown scheme is refused here, with its own code, before anything is created.
  if (values.db !== undefined) parseDb(values.db);
  const config = loadCollectorConfig(values.config, { listen: values.listen, db: values.db });
  const store = await openStore(config.db, {
    collector: true, leaseMissedHeartbeats: config.offlineAfterMissedHeartbeats,
    onMigrate: (m) => log.info({ db: config.db }, m), onWarning: (m) => log.warn(m),
  });
  let server: CollectorServer;
  let addr: Awaited<ReturnType<CollectorServer['listen']>>;
  try {
    server = new CollectorServer({ config, store, log });
    addr = await server.listen();
    log.info({ host: addr.address, port: addr.port, tls: Boolean(config.tlsCert), db: store.location, version: VERSION }, 'ready');
  } catch (err) {
    await store.close();
    throw err;
  }
  // Under systemd (Type=notify, WatchdogSec=): ready only once the port is open; the watchdog
  // ping comes from the event loop, so a collector whose loop is stuck gets restarted.
  const onNotifyError = (msg: string) => log.warn(msg);
  notifySystemd(`READY=1\nSTATUS=listening on ${addr.address}:${addr.port}`, onNotifyError);
  const watchdogUs = Number(process.env.WATCHDOG_USEC);
  const watchdog = watchdogUs > 0 ? setInterval(() => notifySystemd('WATCHDOG=1', onNotifyError), Math.max(1, Math.floor(watchdogUs / 2000))) : undefined;
  watchdog?.unref();

  // Teardown always runs to the end: stop accepting, commit and ack what arrived, close the db.
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'stopping: no new connections; committing what was received');
  notifySystemd('STOPPING=1', onNotifyError);
  if (watchdog) clearInterval(watchdog);
  let code = 0;
  try {
    await server.close();
  } catch (err) {
    code = 1;
    log.error({ err: err instanceof LdgError ? err.message : String(err) }, 'error while stopping');
  } finally {
    await store.close();
  }
  log.info('stopped');
  return code;
}

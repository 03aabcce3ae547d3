// `ldguard collector`: receives alerts from agents over WebSocket, stores them in SQLite and serves
// the HTTP API, all on one port.
import { LdgError } from '../../../shared/errors.js';
import { createLogger } from '../../../shared/log.js';
import { VERSION } from '../../../shared/version.js';
import { DEFAULTS, loadCollectorConfig } from '../../../collector/src/config.js';
import { CollectorServer } from '../../../collector/src/server.js';
import { Store } from '../../../collector/src/store/sqlite.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard collector [--listen HOST:PORT] [--db FILE] [--config FILE]

Receives alerts from agents (wss://HOST:PORT/agent), stores each once in SQLite and serves the
HTTP API (/api/alerts, /api/agents, /healthz, /metrics) on the same port.

  --listen HOST:PORT   where to listen (default ${DEFAULTS.listen}; port 0 picks a free port)
  --db FILE            SQLite database (default ${DEFAULTS.db}; created 0600)
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
  const config = loadCollectorConfig(values.config, { listen: values.listen, db: values.db });
  const store = Store.open(config.db, { workers: true });
  let server: CollectorServer;
  try {
    server = new CollectorServer({ config, store, log });
    const addr = await server.listen();
    log.info({ host: addr.address, port: addr.port, tls: Boolean(config.tlsCert), db: config.db, version: VERSION }, 'ready');
  } catch (err) {
    await store.close();
    throw err;
  }

  // Teardown always runs to the end: stop accepting, commit and ack what arrived, close the db.
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'stopping: no new connections; committing what was received');
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

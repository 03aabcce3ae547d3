// `ldguard agent`: the daemon. Flags override the config file; SIGTERM/SIGINT stop it cleanly,
// SIGHUP reloads config and rules.
import { LdgError, errorMessage } from '../../../shared/errors.js';
import { createLogger } from '../../../shared/log.js';
import { Agent } from '../agent.js';
import { parseOptions } from '../args.js';
import { DEFAULTS, loadConfig, type AgentConfig } from '../config.js';

const HELP = `Usage: ldguard agent [options]

Watches ${DEFAULTS.watch.join(', ')} for new dynamic linker files, identifies the writing process and
runs the rules; alerts go to the alerts file, to \`ldguard tail\`, and to the collector when one is set.

  --config FILE        agent configuration (TOML; see agent/agent.example.toml)
  --root DIR           host root prefix: watch DIR/lib … and report paths as the host sees them (default /)
  --state-dir DIR      spool, baseline and self-test scratch (default ${DEFAULTS.stateDir})
  --alerts-file FILE   NDJSON alerts file (default ${DEFAULTS.alertsFile})
  --socket PATH        local socket for \`ldguard tail\` (default ${DEFAULTS.socket})
  --source S           auto | fanotify | inotify (default auto: fanotify, else inotify)
  --rule PATH          rule file or folder; repeatable (default: the bundled rules)
  --rule-revision R    seed | v1 | current: the bundled revision of Elastic's ld.so creation rule (default seed)
  --collector URL      ws(s)://HOST:PORT of the collector; repeat it for fallbacks (the first is
                       preferred, the next used while it is unreachable)
  --token-file FILE    this agent's collector token (0600)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseOptions('agent', argv, {
    config: { type: 'string' },
    root: { type: 'string' },
    'state-dir': { type: 'string' },
    'alerts-file': { type: 'string' },
    socket: { type: 'string' },
    source: { type: 'string' },
    rule: { type: 'string', multiple: true },
    'rule-revision': { type: 'string' },
    collector: { type: 'string', multiple: true },
    'token-file': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const overrides: Partial<Record<keyof AgentConfig, unknown>> = {
    root: values.root,
    stateDir: values['state-dir'],
    alertsFile: values['alerts-file'],
    socket: values.socket,
    source: values.source,
    rules: values.rule,
    ruleRevision: values['rule-revision'],
    collector: values.collector,
    tokenFile: values['token-file'],
  };
  const cfg = loadConfig(values.config, overrides);
  const log = createLogger('ldguard-agent');
  const agent = new Agent(cfg, log, values.config, overrides);

  // The daemon lives until a signal: this ref'd timer (which never fires in practice) keeps the
  // event loop alive even when every kernel and socket handle is unref'd.
  const keepAlive = setInterval(() => undefined, 2 ** 31 - 1);
  let stopping = false;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void agent.stop().finally(() => {
      clearInterval(keepAlive);
      stopped();
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void agent.reload());
  // A bug in one alert's handling must not take the watcher down; it is logged and the agent goes on.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception; the agent goes on'));
  process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection; the agent goes on'));

  try {
    await agent.start();
  } catch (err) {
    log.fatal({ code: (err as LdgError).code, err: errorMessage(err) }, 'could not start');
    clearInterval(keepAlive);
    await agent.stop();
    throw err;
  }
  await done;
  log.info('stopped');
  return 0;
}

#!/usr/bin/env node
// The one `ldguard` command. Each subcommand lives in its own module under commands/ and is loaded
// only when used, so `ldguard tail` does not pay for the collector's SQLite or the agent's addon.
import { setFlagsFromString } from 'node:v8';
import { LdgError, errorMessage } from '../../shared/errors.js';
import { VERSION } from '../../shared/version.js';

interface Command {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number> }>;
  /** V8 flags set before the command's modules load (see AGENT_V8_FLAGS). */
  v8Flags?: readonly string[];
}

// The agent daemon keeps V8's young generation at its initial 1 MB semi-space. Left to grow (to
// 16 MB) under load it only holds more garbage: measured over 600 alerts among 80k unrelated
// creations, peak RSS is 13-15 MB lower (74 MB instead of 90) and idle RSS 1-5 MB lower. The cost is
// more, shorter scavenges (~230 of 1.2 ms on average instead of ~40 of 5 ms, on a loaded 2-core VM;
// the longest alike); the bench's write→alert latency did not change beyond its noise. V8 sizes
// the heap at start-up, so --max-semi-space-size works only on node's command line, which each way
// of starting the daemon (the unit's wrapper, npm's bin link, `ldguard up`, the tests) writes
// differently; the growth factor is read whenever a scavenge would grow the space, so setting it
// here, before the agent's modules load, covers them all.
//
// No TurboFan either: the agent's JavaScript runs once per alert (the C thread filters everything
// else), never hot enough to repay an optimising compiler, whose code pages and compile zones
// cost 4 MB of RSS (quick bench, three runs each way: peak 56.0 MB instead of 59.9, write→alert
// p50 1.9-2.2 ms either way). Turning it off is read at each tier-up decision, so it holds from here.
//
// And --optimize-for-size (V8's heuristics that trade speed for memory): peak RSS 58.2 MB against
// 59.7-59.8 in full fanotify benches with a collector, alternated, two each, write→alert within the
// runs' noise (quiet p50 2.2-2.4 against 2.1-2.5 ms): what is left of an alert's time is cold caches.
// A flag given to node itself (on its command line or in NODE_OPTIONS) wins over the one here.
const AGENT_V8_FLAGS = ['--semi-space-growth-factor=1', '--no-turbofan', '--optimize-for-size'];

const COMMANDS: Record<string, Command> = {
  agent: { summary: 'run the agent daemon: watch for new ld.so files and alert', load: () => import('./commands/agent.js'), v8Flags: AGENT_V8_FLAGS },
  up: { summary: 'run the agent, a local collector and its dashboard in the foreground (Ctrl-C stops all)', load: () => import('./commands/up.js') },
  match: { summary: 'run rules over ECS events (NDJSON on stdin), print alerts as NDJSON', load: () => import('./commands/match.js') },
  collector: { summary: 'receive alerts from agents, store them (SQLite) and serve the API', load: () => import('./commands/collector.js') },
  token: { summary: 'create, list or revoke collector tokens (agent or admin)', load: () => import('./commands/token.js') },
  db: { summary: "create the collector's database, back it up while the collector runs, or copy a stopped one into PostgreSQL", load: () => import('./commands/db.js') },
  tail: { summary: "print this host's alerts as they happen (from the agent's socket)", load: () => import('./commands/tail.js') },
  version: { summary: 'print the version of ldguard and of the Node.js running it', load: () => import('./commands/version.js') },
};

/** Commands that need the collector's parts, which an agent-only release bundle leaves out. */
const COLLECTOR_COMMANDS = new Set(['up', 'collector', 'token', 'db']);

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return `ldguard ${VERSION}: detects creation of the dynamic linker (ld.so) on Linux hosts\n\n` +
    `Usage: ldguard <command> [options]\n\nCommands:\n${lines.join('\n')}\n\n` +
    `Run 'ldguard <command> --help' for a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`ldguard: unknown command '${name}'. Run 'ldguard --help' for the list.\n`);
    return 2;
  }
  const given = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.replace(/_/g, '-');
  for (const flag of cmd.v8Flags ?? []) {
    const name = flag.replace(/^--(no-)?/, '').split('=')[0]!;
    // semi-space-* flags are one family: a size given to node makes the growth factor moot.
    const family = name.startsWith('semi-space') ? 'semi-space' : name;
    if (!given.includes(family)) setFlagsFromString(flag);
  }
  let mod: Awaited<ReturnType<Command['load']>>;
  try {
    mod = await cmd.load();
  } catch (err) {
    if (COLLECTOR_COMMANDS.has(name) && (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      throw new LdgError('LDG_ERR_AGENT_ONLY', `'ldguard ${name}' needs the collector, which this agent-only bundle leaves out; install the full bundle (ldguard-VERSION-linux-ARCH.tar.gz) on the collector's host`);
    }
    throw err;
  }
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    // A usage or configuration error is the user's to fix: print the message, not a stack.
    process.stderr.write(`ldguard: ${err instanceof LdgError ? err.message : errorMessage(err)}\n`);
    if (!(err instanceof LdgError) && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof LdgError ? 2 : 1;
  },
);

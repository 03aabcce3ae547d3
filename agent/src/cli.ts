#!/usr/bin/env node
// The one `ldguard` command. Each subcommand lives in its own module under commands/ and is loaded
// only when used, so `ldguard tail` does not pay for the collector's SQLite or the agent's addon.
import { LdgError, errorMessage } from '../../shared/errors.js';
import { VERSION } from '../../shared/version.js';

interface Command {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number> }>;
}

const COMMANDS: Record<string, Command> = {
  agent: { summary: 'run the agent daemon: watch for new ld.so files and alert', load: () => import('./commands/agent.js') },
  up: { summary: 'run the agent, a local collector and its dashboard in the foreground (Ctrl-C stops all)', load: () => import('./commands/up.js') },
  match: { summary: 'run rules over ECS events (NDJSON on stdin), print alerts as NDJSON', load: () => import('./commands/match.js') },
  collector: { summary: 'receive alerts from agents, store them (SQLite) and serve the API', load: () => import('./commands/collector.js') },
  token: { summary: 'create, list or revoke collector tokens (agent or admin)', load: () => import('./commands/token.js') },
  tail: { summary: "print this host's alerts as they happen (from the agent's socket)", load: () => import('./commands/tail.js') },
};

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
  return (await cmd.load()).run(rest);
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

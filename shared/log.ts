// One pino logger per process: JSON lines on stdout (journald reads them), level from LDGUARD_LOG.
import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';

export type { Logger };

// pino is CommonJS: required, not imported, so that Node's ESM loader does not run its CommonJS
// export lexer over it. Once no CommonJS package is imported, the lexer is never loaded nor
// optimized, which keeps the agent daemon's RSS lower (~0.2 MB for pino's one entry file, ~4 MB
// for ws, whose ESM wrapper imports eight CommonJS files).
const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };

/** pino's level numbers → syslog priorities (sd-daemon(3)): fatal crit, error err, warn warning, info, debug. */
const PRIORITY: Record<number, number> = { 60: 2, 50: 3, 40: 4, 30: 6, 20: 7, 10: 7 };

/**
 * Under systemd (JOURNAL_STREAM set: stdout is a journal stream) each line starts with `<N>`,
 * which journald strips and keeps as the entry's priority, so `journalctl -p warning` finds the
 * warnings; anywhere else the line stays plain JSON for whatever reads it.
 */
export function journalPrefix(line: string): string {
  const level = /^\{"level":(\d+)/.exec(line)?.[1];
  return `<${PRIORITY[Number(level)] ?? 6}>${line}`;
}

export function createLogger(name: string, level = process.env.LDGUARD_LOG ?? 'info'): Logger {
  const hooks = process.env.JOURNAL_STREAM ? { streamWrite: journalPrefix } : {};
  return pino({ name, level, base: { pid: process.pid }, hooks });
}

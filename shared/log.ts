// One pino logger per process: JSON lines on stdout (journald reads them), level from LDGUARD_LOG.
import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';

export type { Logger };

// pino is CommonJS: required, not imported, so that Node's ESM loader does not run its CommonJS
// export lexer over it. Once no CommonJS package is imported, the lexer is never loaded nor
// optimized, which keeps the agent daemon's RSS lower (~0.2 MB for pino's one entry file, ~4 MB
// for ws, whose ESM wrapper imports eight CommonJS files).
const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };

export function createLogger(name: string, level = process.env.LDGUARD_LOG ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

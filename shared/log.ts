// One pino logger per process: JSON lines on stdout (journald reads them), level from LDGUARD_LOG.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.LDGUARD_LOG ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

// A small, strict option parser over node:util's parseArgs: unknown options are errors that name
// the command's --help, never silently ignored.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LdgError } from '../../shared/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parseOptions<O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (err) {
    throw new LdgError('LDG_ERR_USAGE', `${(err as Error).message}. Run 'ldguard ${command} --help' for its options.`);
  }
}

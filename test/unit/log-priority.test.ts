// Under systemd each log line carries its syslog priority for journald; elsewhere it stays JSON.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findRepoRoot } from '../../shared/paths.js';

const LOG = join(findRepoRoot(), 'dist/shared/log.js');

/** The lines a process writes through createLogger: one per level, fatal to debug. */
function lines(env: NodeJS.ProcessEnv): string[] {
  const script = `import { createLogger } from ${JSON.stringify(LOG)};
const log = createLogger('t', 'debug');
log.fatal('f'); log.error('e'); log.warn('w'); log.info('i'); log.debug('d');`;
  const { JOURNAL_STREAM: _, ...rest } = process.env;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...rest, ...env }, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

describe('log priorities', () => {
  it('prefixes each line with <N> from its pino level when stdout is a journal stream', () => {
    const out = lines({ JOURNAL_STREAM: '8:12345' });
    expect(out.map((l) => l.slice(0, 3))).toEqual(['<2>', '<3>', '<4>', '<6>', '<7>']);
    expect(JSON.parse(out[2]!.slice(3))).toMatchObject({ msg: 'w', level: 40 });
  });

  it('writes plain JSON lines anywhere else', () => {
    const out = lines({});
    expect(out).toHaveLength(5);
    for (const l of out) expect(() => JSON.parse(l)).not.toThrow();
  });
});

// The password file as libpq reads it (collector/src/store/pgpass.ts): fields, wildcards,
// escapes, first match, and a file others can read ignored.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectionPassword, findPassword } from '../../collector/src/store/pgpass.js';
import { tempDir } from '../helpers/temp.js';

const FILE = [
  '# comment',
  'db1.example:5432:ldguard:ldg:first',
  'db1.example:5432:ldguard:ldg:second (never: the first match wins)',
  '*:6543:*:ldg:any\\:host\\\\6543',
  'localhost:5432:ldguard:ldg:socket',
  'short:line',
].join('\n');

describe('password file', () => {
  it('takes the first line whose fields match, with * for anything and \\: \\\\ unescaped', () => {
    expect(findPassword(FILE, { host: 'db1.example', port: 5432, database: 'ldguard', user: 'ldg' })).toBe('first');
    expect(findPassword(FILE, { host: 'db2.example', port: 6543, database: 'x', user: 'ldg' })).toBe('any:host\\6543');
    expect(findPassword(FILE, { host: 'db2.example', port: 5432, database: 'ldguard', user: 'ldg' })).toBeUndefined();
    // A socket directory counts as localhost.
    expect(findPassword(FILE, { host: '/run/postgresql', port: 5432, database: 'ldguard', user: 'ldg' })).toBe('socket');
  });

  it('prefers a password given in the URL, and ignores a file others may read', async () => {
    const dir = tempDir('ldg-pgpass-');
    const file = join(dir, 'pgpass');
    writeFileSync(file, FILE, { mode: 0o600 });
    const target = { host: 'db1.example', port: 5432, database: 'ldguard', user: 'ldg' };
    expect(await connectionPassword(target, { PGPASSFILE: file })).toBe('first');
    expect(await connectionPassword({ ...target, password: 'from-url' }, { PGPASSFILE: file })).toBe('from-url');
    chmodSync(file, 0o644);
    expect(await connectionPassword(target, { PGPASSFILE: file })).toBeUndefined();
  });
});

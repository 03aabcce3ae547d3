// The collector's config file: relative paths in it resolve against the file (under systemd, the
// unit's credentials directory, where its TLS files are put beside it); flags against the cwd.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCollectorConfig } from '../../collector/src/config.js';
import { tempDir } from '../helpers/temp.js';

const dir = tempDir('ldg-ccfg-');

describe('collector config paths', () => {
  it('resolves relative paths in the file against its folder, and flags against the cwd', () => {
    writeFileSync(join(dir, 'tls_c.pem'), 'x');
    writeFileSync(join(dir, 'tls_c.key'), 'x');
    const file = join(dir, 'collector.toml');
    writeFileSync(file, 'tls_cert = "tls_c.pem"\ntls_key = "./tls_c.key"\ndb = "data/c.db"\n');
    const cfg = loadCollectorConfig(file, {});
    expect(cfg.tlsCert).toBe(join(dir, 'tls_c.pem'));
    expect(cfg.tlsKey).toBe(join(dir, 'tls_c.key'));
    expect(cfg.db).toBe(join(dir, 'data/c.db'));
    expect(loadCollectorConfig(file, { db: 'elsewhere.db' }).db).toBe(resolve('elsewhere.db'));
  });

  it('names the resolved path of a relative TLS file that is missing', () => {
    const file = join(dir, 'missing.toml');
    writeFileSync(file, 'tls_cert = "tls_none.pem"\ntls_key = "tls_c.key"\n');
    expect(() => loadCollectorConfig(file, {})).toThrow(`option tls_cert: ${join(dir, 'tls_none.pem')} does not exist`);
  });
});

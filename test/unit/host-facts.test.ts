// host.* facts as the agent collects them (systeminformation's modules, required one by one),
// checked against what Node and the files of this machine say.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces, release } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectHostFacts } from '../../agent/src/enrich/host.js';
import { tempDir } from '../helpers/temp.js';

describe('collectHostFacts', () => {
  it('names this host, its kernel and its addresses', async () => {
    const h = await collectHostFacts('/nonexistent-root');
    expect(h.name).toBe(hostname());
    expect(h.os?.kernel).toBe(release());
    expect(h.os?.type).toBe('linux');
    expect(h.architecture).toMatch(/^(x64|arm64|ia32|arm|ppc64|s390x|riscv64)$/);
    // systeminformation reports one IPv4 and one IPv6 address per interface: the first of each.
    for (const list of Object.values(networkInterfaces())) {
      const ext = (list ?? []).filter((i) => !i.internal);
      const v4 = ext.find((i) => i.family === 'IPv4');
      if (v4) expect(h.ip).toContain(v4.address);
      if (ext[0] && ext[0].mac !== '00:00:00:00:00:00') expect(h.mac).toContain(ext[0].mac);
    }
    let machineId: string | undefined;
    try {
      machineId = readFileSync('/etc/machine-id', 'utf8').trim() || undefined;
    } catch {
      machineId = undefined;
    }
    if (machineId) expect(h.id).toBe(machineId);
    else expect(h.id).toBeTruthy();
  });

  it("takes host.id from the watched root's machine-id (the host mounted at --root)", async () => {
    const root = tempDir('ldg-host-');
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
    const h = await collectHostFacts(root);
    expect(h.id).toBe('0123456789abcdef0123456789abcdef');
  });
});

// host.* facts from systeminformation, collected at start and refreshed rarely in the background:
// never on the hot path (a systeminformation call forks tools and takes tens of milliseconds).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type Si from 'systeminformation';
import type { EcsHost } from '../../../shared/ecs.js';

const REFRESH_MS = 60 * 60 * 1000;

// CommonJS, so required rather than imported: see shared/log.ts on the ESM loader's lexer. Only
// the two modules whose functions we call: the package's index loads all 25 of its modules, which
// kept 2.6 MB more resident in the daemon (measured) for facts collected once an hour.
const req = createRequire(import.meta.url);
const si = {
  ...(req('systeminformation/lib/osinfo') as Pick<typeof Si, 'osInfo' | 'uuid'>),
  ...(req('systeminformation/lib/network') as Pick<typeof Si, 'networkInterfaces'>),
};

export async function collectHostFacts(root: string): Promise<EcsHost> {
  const [os, ifaces, uuid] = await Promise.all([si.osInfo(), si.networkInterfaces(), si.uuid()]);
  const list = Array.isArray(ifaces) ? ifaces : [ifaces];
  const up = list.filter((i) => !i.internal);
  // The host's machine-id, inside --root when the agent watches a mounted host, as Elastic's host.id.
  let id = readMachineId(join(root, 'etc/machine-id')) ?? readMachineId('/etc/machine-id') ?? uuid.os;
  if (!id) id = os.hostname;
  return {
    id,
    name: os.hostname,
    hostname: os.hostname,
    architecture: os.arch,
    ip: [...new Set(up.flatMap((i) => [i.ip4, i.ip6].filter(Boolean)))],
    mac: [...new Set(up.map((i) => i.mac).filter((m) => m && m !== '00:00:00:00:00:00'))],
    os: {
      type: 'linux',
      name: os.distro,
      version: os.release,
      kernel: os.kernel,
      family: os.codename ? os.distro.toLowerCase().split(' ')[0] : os.platform,
      platform: (os.distro.split(' ')[0] ?? os.platform).toLowerCase(),
      full: `${os.distro} ${os.release}`.trim(),
    },
  };
}

function readMachineId(path: string): string | undefined {
  try {
    const id = readFileSync(path, 'utf8').trim();
    return id || undefined;
  } catch {
    return undefined;
  }
}

/** Holds the current host facts; refreshes them hourly off the hot path. */
export class HostFacts {
  private timer: NodeJS.Timeout | undefined;
  private constructor(
    private readonly root: string,
    public current: EcsHost,
  ) {}

  static async start(root: string, onError: (err: unknown) => void): Promise<HostFacts> {
    const h = new HostFacts(root, await collectHostFacts(root));
    h.timer = setInterval(() => {
      collectHostFacts(root).then((f) => (h.current = f), onError);
    }, REFRESH_MS).unref();
    return h;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// A Debian machine booted with systemd as PID 1 under systemd-nspawn, for the system test.
//
// Lifecycle: rootfs.sh builds (once, cached) the Debian root; stage.sh lays a fresh copy of it on a
// tmpfs in a run folder with Node.js and the checkout; boot() starts systemd-nspawn --boot in the
// background and waits until the machine's systemd reports "running"; stop() (always called from
// afterAll) shuts it down and removes the run folder through stop.sh.
//
// How commands get in: this host has no systemd as PID 1, so nspawn runs with --register=no
// --keep-unit and there is no systemd-machined: no `machinectl shell`, no `systemd-run --machine`.
// Instead sh() runs `nsenter --target LEADER --all --root --wd` with LEADER the machine's PID 1
// as the host sees it (nspawn's only child): the command then sees the machine's mounts, pids,
// hostname, IPC and cgroup namespace, and its root, as a root shell on that machine would, with
// an environment of its own (env -i), never the test runner's. It keeps the host's capabilities
// and is not in the machine's own seccomp filter, so triggers run from it behave as an operator's
// shell on a real host. The machine's own services, started by its systemd, get nspawn's reduced
// capability set and seccomp filter; see NSPAWN_ARGS for what is let through and why.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
/** Run folders live here, one per run: run-<pid of the test process>. */
export const RUNS = '/var/tmp/ldguard-systest';

const MACHINE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'LANG=C.UTF-8', 'TERM=dumb', 'NO_COLOR=1'];

/**
 * nspawn's own seccomp filter refuses fanotify_init(2) with EPERM, and open_by_handle_at(2) too,
 * whatever the capabilities: a container must not watch or open the host's files by handle. A
 * real host has no such filter, and the agent (fanotify with FAN_REPORT_DFID_NAME, directory
 * handles opened by handle) needs both, so they are let through. The machine's root is a tmpfs of
 * its own (stage.sh), so what those calls can reach is the machine's own files. Everything else
 * is nspawn's default: its capability set (no CAP_NET_ADMIN: the kernel ignores process-connector
 * subscriptions from outside the initial pid namespace anyway), and the host's network, shared.
 */
const NSPAWN_ARGS = ['--boot', '--register=no', '--keep-unit', '--console=read-only', '--system-call-filter=fanotify_init fanotify_mark open_by_handle_at name_to_handle_at'];

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a host command; resolves with its exit code and output (never rejects on a non-zero exit). */
export function runHost(file: string, args: string[], timeoutMs: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${file} ${args.join(' ')}: ${err.message}${err.killed ? ` (killed after ${timeoutMs} ms)` : ''}\n${stderr}`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil<T>(f: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined || Date.now() > end) return v;
    await sleep(200);
  }
}

export class Machine {
  private constructor(
    readonly runDir: string,
    readonly root: string,
    readonly nspawnPid: number,
    readonly leader: number,
  ) {}

  /** Copies the cached root and the checkout into a new run folder and boots it. */
  static async boot(cachedRoot: string, checkout: string, name: string, opts: { bare?: boolean } = {}): Promise<Machine> {
    const runDir = join(RUNS, `run-${process.pid}`);
    mkdirSync(runDir, { recursive: true });
    // bare: nothing of this host's Node.js goes in (see stage.sh).
    const staged = await runHost(join(HERE, 'stage.sh'), [cachedRoot, runDir, checkout, ...(opts.bare ? ['bare'] : [])], 5 * 60_000);
    if (staged.code !== 0) throw new Error(`stage.sh failed (${staged.code}):\n${staged.stderr}`);
    const root = join(runDir, 'root');

    const consoleFd = openSync(join(runDir, 'console.log'), 'a');
    const child: ChildProcess = spawn('systemd-nspawn', [...NSPAWN_ARGS, '-M', name, '-D', root], {
      detached: true, // its own process group: the test runner's signals are not the machine's
      stdio: ['ignore', consoleFd, consoleFd],
    });
    closeSync(consoleFd);
    child.unref();
    if (child.pid === undefined) throw new Error('systemd-nspawn did not start');
    writeFileSync(join(runDir, 'nspawn.pid'), `${child.pid}\n`);

    try {
      let leader: number | undefined;
      for (let i = 0; i < 100 && leader === undefined; i++) {
        if (child.exitCode !== null) break;
        leader = findLeader(child.pid);
        if (leader === undefined) await sleep(100);
      }
      if (leader === undefined) {
        const log = existsSync(join(runDir, 'console.log')) ? readFileSync(join(runDir, 'console.log'), 'utf8') : '';
        throw new Error(`systemd-nspawn (pid ${child.pid}) started no machine:\n${log.slice(-4000)}`);
      }
      writeFileSync(join(runDir, 'leader.pid'), `${leader}\n`);
      const m = new Machine(runDir, root, child.pid, leader);
      // Until nspawn has exec'd systemd as PID 1 and it has set itself up, systemctl answers at
      // once with nothing or "offline"; after that, --wait waits for the boot's end.
      let last = '';
      const state = await waitUntil(async () => {
        const r = await m.sh('systemctl is-system-running --wait', { timeoutMs: 120_000, check: false });
        last = `${r.stdout.trim()} ${r.stderr.trim()}`.trim();
        const s = r.stdout.trim();
        return s === '' || s === 'offline' ? undefined : s;
      }, 60_000);
      if (state !== 'running') {
        const failed = await m.sh('systemctl --failed --no-pager; journalctl -b -p warning --no-pager | tail -n 40', { check: false });
        throw new Error(`the machine did not come up: systemctl is-system-running said ${JSON.stringify(last)}:\n${failed.stdout}`);
      }
      return m;
    } catch (err) {
      // The test's afterAll knows no machine yet: stop this one here.
      await runHost(join(HERE, 'stop.sh'), [runDir], 60_000).catch(() => undefined);
      throw err;
    }
  }

  private nsenter(): string[] {
    return ['--target', String(this.leader), '--all', '--root', '--wd', 'env', '-i', ...MACHINE_ENV];
  }

  /** Runs a shell script as root inside the machine. With check (the default) a non-zero exit throws. */
  async sh(script: string, opts: { timeoutMs?: number; check?: boolean } = {}): Promise<Result> {
    const r = await runHost('nsenter', [...this.nsenter(), 'sh', '-c', script], opts.timeoutMs ?? 60_000);
    if ((opts.check ?? true) && r.code !== 0) {
      throw new Error(`inside the machine, exit ${r.code}: ${script}\n--- stdout\n${r.stdout.slice(-8000)}\n--- stderr\n${r.stderr.slice(-8000)}`);
    }
    return r;
  }

  /** Starts a long-running shell script inside the machine; its output is streamed to the caller. */
  spawnSh(script: string): ChildProcess {
    return spawn('nsenter', [...this.nsenter(), 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Shuts the machine down (SIGTERM to nspawn, SIGKILL after 30 s) and removes the run folder. */
  async stop(): Promise<void> {
    const r = await runHost(join(HERE, 'stop.sh'), [this.runDir], 60_000);
    if (r.code !== 0) throw new Error(`stop.sh ${this.runDir} failed:\n${r.stderr}`);
  }

  /** Removes what an earlier run left behind (a test process killed before its afterAll). */
  static async cleanStale(): Promise<void> {
    if (!existsSync(RUNS)) return;
    for (const name of readdirSync(RUNS)) {
      const pid = Number(/^run-(\d+)$/.exec(name)?.[1]);
      if (!pid || pid === process.pid || existsSync(`/proc/${pid}`)) continue; // that test is still running
      await runHost(join(HERE, 'stop.sh'), [join(RUNS, name)], 60_000);
    }
  }
}

/** The machine's PID 1 as this host sees it: the child of nspawn whose innermost pid is 1. */
function findLeader(nspawnPid: number): number | undefined {
  let children: string;
  try {
    children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8');
  } catch {
    return undefined;
  }
  for (const c of children.trim().split(/\s+/).filter(Boolean)) {
    try {
      const nspid = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${c}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
      if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return Number(c);
    } catch {
      // gone already
    }
  }
  return undefined;
}

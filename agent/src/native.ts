// The native addon (agent/native: C on Node-API): fanotify and the exec cache in a C thread.
// This module finds and loads the build, and wraps its Watcher so that every failure is an
// LdgError whose message names the fix. The contract itself is documented in
// agent/native/index.d.ts; the types are re-exported from here.
//
// Loading is lazy (first `new Watcher()` or loadNative()): importing this module never fails, so
// the source selection can fall back to inotify when the addon is missing.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Addon from '../native/index.js';
import { LdgError, errorMessage } from '../../shared/errors.js';
import { findRepoRoot } from '../../shared/paths.js';

export type {
  Attribution,
  NativeEvent,
  NativeEventKind,
  WatcherStats,
  WatchOptions,
} from '../native/index.js';

/**
 * The addon's ProcInfo (agent/native/index.d.ts) with the exact bytes of its text fields. Linux
 * names and argv are bytes: `exe`, `comm`, `args` and `cwd` are decoded as UTF-8 with U+FFFD for
 * each byte sequence that is not UTF-8, so `/tmp/\xff/cp` would show as a path that names no
 * file. For each such field the addon (addon.c proc_object) also sets its bytes; well-formed
 * fields, nearly all, carry nothing more. enrich/proc.ts turns them into escaped text.
 */
export interface ProcInfo extends Addon.ProcInfo {
  rawExe?: Buffer;
  /** At most 15 bytes: the kernel cuts comm there, even inside a UTF-8 sequence. */
  rawComm?: Buffer;
  /** The argv bytes as read (NUL after each argument; the last may lack it when cut at 4 KiB),
   * present when any argument is not UTF-8. */
  rawArgs?: Buffer;
  rawCwd?: Buffer;
}

type AddonModule = typeof Addon;

/** What loadNative() returns: the addon's API with errors turned into LdgError. */
export interface NativeModule {
  Watcher: typeof Watcher;
  sdNotify(socket: string, state: string): void;
}

const require = createRequire(import.meta.url);
let addon: AddonModule | undefined;

/** Where the addon may be, in the order tried: $LDGUARD_NATIVE_ADDON (a build elsewhere, e.g. a
 * sanitizer build or a packaged one), then the checkout's Release and Debug builds. */
export function nativeAddonPaths(): string[] {
  const dir = join(findRepoRoot(), 'agent', 'native', 'build');
  const override = process.env.LDGUARD_NATIVE_ADDON;
  return [...(override ? [override] : []), join(dir, 'Release', 'ldguard_native.node'), join(dir, 'Debug', 'ldguard_native.node')];
}

/** The command that builds the addon, for error messages. */
export function nativeBuildCommand(): string {
  return `cd ${findRepoRoot()} && npx node-gyp rebuild --directory agent/native (or: npm rebuild; needs a C compiler, make and python3)`;
}

/** Loads the addon once; throws LDG_ERR_NATIVE_LOAD listing the paths tried and how to build it. */
function loadAddon(): AddonModule {
  if (addon) return addon;
  const tried: string[] = [];
  let lastError: unknown;
  for (const path of nativeAddonPaths()) {
    if (!existsSync(path)) {
      tried.push(`${path} (missing)`);
      continue;
    }
    try {
      addon = require(path) as AddonModule;
      return addon;
    } catch (err) {
      lastError = err;
      tried.push(`${path} (${errorMessage(err)})`);
    }
  }
  throw new LdgError(
    'LDG_ERR_NATIVE_LOAD',
    `the native addon could not be loaded; tried ${tried.join(', ')}. Build it with: ${nativeBuildCommand()}`,
    { cause: lastError },
  );
}

/** Loads the addon (throws LDG_ERR_NATIVE_LOAD when it cannot) and returns its API. */
export function loadNative(): NativeModule {
  loadAddon();
  return { Watcher, sdNotify };
}

/** sd_notify(3): one datagram to $NOTIFY_SOCKET. Throws LDG_ERR_SD_NOTIFY or LDG_ERR_NATIVE_LOAD. */
export function sdNotify(socket: string, state: string): void {
  const { sdNotify: send } = loadAddon();
  native(() => send(socket, state));
}

const HINTS: Record<string, string> = {
  LDG_ERR_FANOTIFY_EPERM:
    'Run the agent as root, or give the service CAP_SYS_ADMIN (and CAP_DAC_READ_SEARCH, CAP_NET_ADMIN for the exec cache), or set source = "inotify".',
  LDG_ERR_FANOTIFY_UNAVAILABLE:
    'This kernel lacks fanotify with FAN_REPORT_DFID_NAME (Linux 5.9 or later, CONFIG_FANOTIFY=y); set source = "inotify".',
  LDG_ERR_FANOTIFY_MARK:
    'Check that the directory exists and is on a filesystem that reports file handles (ext4, xfs, btrfs, tmpfs; not /proc).',
  LDG_ERR_WATCHER_CLOSED: 'Create a new Watcher.',
  LDG_ERR_SD_NOTIFY: 'Check NOTIFY_SOCKET (set by systemd for Type=notify services).',
};

/** Runs a call into the addon; its coded errors become LdgError with the fix appended. */
function native<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('LDG_ERR_')) {
      const hint = HINTS[code];
      throw new LdgError(code as `LDG_ERR_${string}`, `${errorMessage(err)}.${hint ? ` ${hint}` : ''}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Watches directories for creations, renames into them and completed writes, attributing each
 * forwarded event to the process that made it. See agent/native/index.d.ts for every field.
 *
 * Ownership: the watcher owns a C thread and kernel resources until close(); while running it
 * keeps the event loop alive (unref() to opt out). Back-pressure: the C thread never waits for
 * JavaScript; batches queue in memory, and a kernel queue overflow is reported as an event.
 */
export class Watcher implements Addon.Watcher {
  readonly #native: Addon.Watcher;

  constructor(options: Addon.WatchOptions, onEvents: (events: Addon.NativeEvent[]) => void) {
    const { Watcher: NativeWatcher } = loadAddon();
    this.#native = native(() => new NativeWatcher(options, onEvents));
  }

  addDir(dir: string | Buffer, opts?: { forwardAll?: boolean; content?: boolean }): void {
    native(() => this.#native.addDir(dir, opts));
  }

  removeDir(dir: string | Buffer): void {
    native(() => this.#native.removeDir(dir));
  }

  watchFile(file: string | Buffer, on = true): void {
    native(() => this.#native.watchFile(file, on));
  }

  setPrefixes(prefixes: string[]): void {
    native(() => this.#native.setPrefixes(prefixes));
  }

  stats(): Addon.WatcherStats {
    return this.#native.stats();
  }

  close(): void {
    this.#native.close();
  }

  ref(): void {
    this.#native.ref();
  }

  unref(): void {
    this.#native.unref();
  }
}

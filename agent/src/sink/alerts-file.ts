// Every alert as one NDJSON line in the alerts file (alerts_file, 0600), rotated by size:
// alerts.ndjson → alerts.ndjson.1 → … → alerts.ndjson.<keep>, the oldest deleted, so a busy host
// never fills its disk. `ldguard tail --since` reads these files back, oldest first.
//
// Writes are synchronous: an append only copies into the page cache (no fsync: the spool is the
// durable copy for delivery; this file is for people on the host), which costs less than a
// thread-pool round trip, and the line is in the file before `send` returns: this file is where
// write→alert latency is measured. Rotation is a few renames, rare, and synchronous too, so lines
// are never reordered around it.
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Alert } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { Sink } from './sink.js';
import { alertJson } from './alert-json.js';

export interface AlertsFileOptions {
  /** alerts_file, e.g. /var/log/ldguard/alerts.ndjson. */
  path: string;
  /** alerts_file_max_bytes: rotate before a write would take the file past this size. */
  maxBytes: number;
  /** alerts_file_keep: rotated files kept (0: the current file only, truncated at the bound). */
  keep: number;
  logger?: Logger;
}

/** The alerts files that exist for `path`, oldest first (path.N … path.1, path). */
export function alertsFiles(path: string, keep = 99): string[] {
  const out: string[] = [];
  for (let i = keep; i >= 1; i--) out.push(`${path}.${i}`);
  out.push(path);
  return out;
}

export class AlertsFile implements Sink {
  private fd: number | undefined;
  private size = 0;
  private closed = false;
  private readonly log: Logger | undefined;

  private constructor(private readonly opts: AlertsFileOptions) {
    this.log = opts.logger;
  }

  static async open(opts: AlertsFileOptions): Promise<AlertsFile> {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 4096) {
      throw new LdgError('LDG_ERR_CONFIG', `alerts_file_max_bytes is ${opts.maxBytes}; set it to at least 4096`);
    }
    if (!Number.isSafeInteger(opts.keep) || opts.keep < 0) {
      throw new LdgError('LDG_ERR_CONFIG', `alerts_file_keep is ${opts.keep}; set it to a whole number ≥ 0`);
    }
    const f = new AlertsFile(opts);
    try {
      mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      f.openCurrent();
    } catch (err) {
      throw new LdgError('LDG_ERR_ALERTS_FILE', `cannot open the alerts file ${opts.path}: ${errorMessage(err)}; check alerts_file and that its folder is writable by the agent`, { cause: err });
    }
    return f;
  }

  private openCurrent(): void {
    this.fd = openSync(this.opts.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  send(a: Alert): Promise<void> {
    if (this.closed) return Promise.reject(new LdgError('LDG_ERR_SINK_CLOSED', 'send after close; the agent must stop its pipeline before closing its sinks'));
    const line = `${alertJson(a)}\n`;
    try {
      const bytes = Buffer.byteLength(line);
      if (this.size > 0 && this.size + bytes > this.opts.maxBytes) this.rotate();
      writeSync(this.fd!, line);
      this.size += bytes;
      return Promise.resolve();
    } catch (err) {
      this.log?.error({ err: errorMessage(err) }, 'alerts file write failed');
      return Promise.reject(new LdgError('LDG_ERR_ALERTS_FILE', `cannot write the alerts file ${this.opts.path}: ${errorMessage(err)}; free disk space or fix alerts_file`, { cause: err }));
    }
  }

  /** alerts.ndjson.(k) → .(k+1) from the oldest down, then the current file → .1, and a new file. */
  private rotate(): void {
    const path = this.opts.path;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.opts.keep === 0) {
      rmSync(path, { force: true });
    } else {
      rmSync(`${path}.${this.opts.keep}`, { force: true });
      for (let i = this.opts.keep - 1; i >= 1; i--) {
        try {
          renameSync(`${path}.${i}`, `${path}.${i + 1}`);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      renameSync(path, `${path}.1`);
      // A file beyond `keep` is left from a larger keep in an earlier config: remove one per rotation.
      if (existsSync(`${path}.${this.opts.keep + 1}`)) rmSync(`${path}.${this.opts.keep + 1}`, { force: true });
    }
    this.openCurrent();
    this.log?.info({ file: path, keep: this.opts.keep }, 'alerts file rotated');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

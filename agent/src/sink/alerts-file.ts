// Every alert as one NDJSON line in the alerts file (alerts_file, 0600), rotated by size:
// alerts.ndjson → alerts.ndjson.1 → … → alerts.ndjson.<keep>, the oldest deleted, so a busy host
// never fills its disk. `ldguard tail --since` reads these files back, oldest first.
//
// Back-pressure: `send` resolves once its line is written (not fsync'd: the spool is the durable copy
// for delivery; this file is for people on the host). Lines arriving during a write are batched
// into the next one.
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Alert } from '../../../shared/ecs.js';
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { Sink } from './sink.js';

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

interface Pending {
  line: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class AlertsFile implements Sink {
  private fh: FileHandle | undefined;
  private size = 0;
  private pending: Pending[] = [];
  private writing: Promise<void> | undefined;
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
      await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 });
      await f.openCurrent();
    } catch (err) {
      throw new LdgError('LDG_ERR_ALERTS_FILE', `cannot open the alerts file ${opts.path}: ${errorMessage(err)}; check alerts_file and that its folder is writable by the agent`, { cause: err });
    }
    return f;
  }

  private async openCurrent(): Promise<void> {
    this.fh = await open(this.opts.path, 'a', 0o600);
    this.size = (await this.fh.stat()).size;
  }

  send(a: Alert): Promise<void> {
    if (this.closed) return Promise.reject(new LdgError('LDG_ERR_SINK_CLOSED', 'send after close; the agent must stop its pipeline before closing its sinks'));
    const line = `${JSON.stringify(a)}\n`;
    return new Promise((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      // Started on a microtask: the loop can finish synchronously, and its `finally` must clear
      // `writing` after this assignment, not before it.
      if (!this.writing) this.writing = Promise.resolve().then(() => this.writeLoop());
    });
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0);
        try {
          // Group lines into writes that each fit the current file, rotating between them.
          let i = 0;
          while (i < batch.length) {
            let text = '';
            let bytes = 0;
            const start = i;
            for (; i < batch.length; i++) {
              const n = Buffer.byteLength(batch[i]!.line);
              if (i > start && this.size + bytes + n > this.opts.maxBytes) break;
              if (i === start && this.size > 0 && this.size + n > this.opts.maxBytes) await this.rotate();
              text += batch[i]!.line;
              bytes += n;
            }
            // A synchronous append: it only copies into the page cache (no fsync), which is far
            // cheaper than a thread-pool round trip queued behind the spool's fdatasyncs.
            writeSync(this.fh!.fd, text);
            this.size += bytes;
            for (let k = start; k < i; k++) batch[k]!.resolve();
          }
        } catch (err) {
          const e = new LdgError('LDG_ERR_ALERTS_FILE', `cannot write the alerts file ${this.opts.path}: ${errorMessage(err)}; free disk space or fix alerts_file`, { cause: err });
          this.log?.error({ err: errorMessage(err) }, 'alerts file write failed');
          for (const p of batch) p.reject(e); // resolving twice is a no-op for those already written
        }
      }
    } finally {
      this.writing = undefined;
    }
  }

  /** alerts.ndjson.(k) → .(k+1) from the oldest down, then the current file → .1, and a new file. */
  private async rotate(): Promise<void> {
    const path = this.opts.path;
    await this.fh?.close();
    this.fh = undefined;
    if (this.opts.keep === 0) {
      await rm(path, { force: true });
    } else {
      await rm(`${path}.${this.opts.keep}`, { force: true });
      for (let i = this.opts.keep - 1; i >= 1; i--) {
        await rename(`${path}.${i}`, `${path}.${i + 1}`).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      }
      await rename(path, `${path}.1`);
      // A file beyond `keep` is left from a larger keep in an earlier config: remove one per rotation.
      if (await stat(`${path}.${this.opts.keep + 1}`).catch(() => undefined)) await rm(`${path}.${this.opts.keep + 1}`, { force: true });
    }
    await this.openCurrent();
    this.log?.info({ file: path, keep: this.opts.keep }, 'alerts file rotated');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writing) await this.writing;
    await this.fh?.close();
    this.fh = undefined;
  }
}

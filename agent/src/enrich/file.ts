// File facts for an alert: type, size, mode, owner, inode and sha256. Read once the first write has
// completed (or the wait for it ran out), bounded in size so a huge file cannot stall the agent.
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, readSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import type { EcsFile, FileEvent } from '../../../shared/ecs.js';
import { displayPath, fromBytes, type FsPath } from '../byte-path.js';
import { lstatNow } from '../stat-now.js';
import type { NameTable } from './users.js';

// Reads of 64 KiB: a 1 MiB buffer per alert piled up until the next GC (~5-10 MB of peak RSS).
const CHUNK = 64 << 10;
const SYNC_BYTES = 1 << 20; // hashed on the JS thread up to this size (see fileFacts)

/** The path parts of file.*; always known, even when the file is already gone. */
export function fileNames(hostPath: string): EcsFile {
  const name = posix.basename(hostPath);
  const dot = name.lastIndexOf('.');
  return {
    path: hostPath,
    name,
    directory: posix.dirname(hostPath),
    ...(dot > 0 && dot < name.length - 1 ? { extension: name.slice(dot + 1) } : {}),
  };
}

// Carries ldguard.file_type from fileFacts to applyFacts inside the facts object, under a key
// no ECS field can have, so the facts stay one value (they may come from a promise).
const SPECIAL = Symbol('ldguard.file_type');
export type FileFacts = Partial<EcsFile> & { [SPECIAL]?: NonNullable<FileEvent['ldguard']['file_type']> };

/** Puts the facts on the event: file.* fields, and ldguard.file_type for a FIFO, socket or device. */
export function applyFacts(event: FileEvent, facts: FileFacts): void {
  const { [SPECIAL]: special, ...file } = facts;
  event.file = { ...event.file, ...file };
  if (special) {
    delete event.file.type; // toEcs may have said nothing, or "dir"; lstat knows better
    event.ldguard.file_type = special;
  }
}

/**
 * lstat and hash the file at realPath (a Buffer when its bytes are not UTF-8: every call below
 * takes it as is); missing facts stay absent (the file may be gone).
 * Files up to SYNC_BYTES (a dynamic linker is ~200 KiB) are read synchronously: four thread-pool
 * round trips cost more than the read itself and are the bulk of an alert's latency on a busy host.
 * Larger files are hashed asynchronously so they never stall the event loop.
 */
export function fileFacts(
  realPath: FsPath,
  maxHashBytes: number,
  names: { users: NameTable; groups: NameTable },
): FileFacts | Promise<FileFacts> {
  const st = lstatNow(realPath);
  if (!st) return {};
  // ECS allows file, dir and symlink only: a FIFO, socket or device is left out of file.type
  // (not reported as "file") and named in ldguard.file_type by applyFacts.
  const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined;
  const special = st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'char_device' : st.isBlockDevice() ? 'block_device' : undefined;
  const owner = names.users.name(st.uid);
  const group = names.groups.name(st.gid);
  const facts: FileFacts = {
    ...(type ? { type } : {}),
    ...(special ? { [SPECIAL]: special } : {}),
    size: st.size,
    inode: String(st.ino),
    mode: (st.mode & 0o7777).toString(8).padStart(4, '0'),
    uid: String(st.uid),
    gid: String(st.gid),
    ...(owner ? { owner } : {}),
    ...(group ? { group } : {}),
    ...(st.isSymbolicLink() ? targetOf(realPath) : {}),
  };
  if (!st.isFile() || st.size > maxHashBytes) return facts;
  const withHash = (sha: string | null) => (sha ? { ...facts, hash: { sha256: sha } } : facts);
  if (st.size <= SYNC_BYTES) return withHash(sha256Sync(realPath, Math.min(maxHashBytes, SYNC_BYTES * 2)));
  return sha256(realPath, maxHashBytes).then(withHash);
}

/** A symlink's target (file.target_path): max_signals groups symlinks by it (shared/throttle.ts). */
function targetOf(realPath: FsPath): Partial<EcsFile> {
  try {
    return { target_path: displayPath(fromBytes(readlinkSync(realPath, { encoding: 'buffer' }))) };
  } catch {
    return {}; // replaced or gone since the lstat
  }
}

// The path was a regular file a moment ago: do not follow a swapped-in symlink, and do not block
// on a swapped-in FIFO.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

// One buffer for every synchronous hash: nothing else runs while one is in progress.
const SYNC_BUF = Buffer.allocUnsafeSlow(CHUNK);

function sha256Sync(path: FsPath, max: number): string | null {
  let fd;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch {
    return null;
  }
  try {
    const h = createHash('sha256');
    const buf = SYNC_BUF;
    let total = 0;
    for (let n = readSync(fd, buf, 0, CHUNK, null); n > 0; n = readSync(fd, buf, 0, CHUNK, null)) {
      total += n;
      if (total > max) return null; // grew past the bound while we read
      h.update(buf.subarray(0, n));
    }
    return h.digest('hex');
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** sha256 of the file, read in the thread pool (never on the event loop); null when it cannot be
 * read, is a symlink, or is or grows larger than max. */
export async function sha256(path: FsPath, max: number): Promise<string | null> {
  let fh;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch {
    return null;
  }
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > max) return null; // grew past the bound while we read
      h.update(buf.subarray(0, bytesRead));
    }
    return h.digest('hex');
  } catch {
    return null;
  } finally {
    await fh.close();
  }
}

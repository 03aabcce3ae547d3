// What the baseline keeps of one rule-matching file, so that a change made while the agent was down
// can be told apart at the next start: the creation rules see new names only, and `rm` + `cp` over
// a loader reuses the inode on ext4, so an inode alone (the first baseline) misses it.
// For a symlink (Debian's /usr/lib64/ld-linux-x86-64.so.2) the record holds the link's target and
// the facts of the file it resolves to inside the root: that file is what runs.
// Read synchronously, at start and when an alert about the file is accepted: the rule-matching files
// are a handful of loaders, each a few hundred KB.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { displayPath, fromBytes, type FsPath } from '../byte-path.js';
import { resolvePathInRoot } from '../watch-dirs.js';

export interface FileRecord {
  dev: number;
  ino: number;
  size: number;
  /** st_mode: the type bits and the permissions. */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  ctimeMs: number;
  /** The symlink's target as it reads (readlink); the other facts are then the resolved file's. */
  target?: string;
  /** null when the file is larger than the hash bound or could not be read. */
  sha256: string | null;
}

/** The fields a difference is named by, in the order an alert lists them. */
export const RECORD_FIELDS = ['target', 'dev', 'ino', 'size', 'sha256', 'mode', 'uid', 'gid', 'mtimeMs', 'ctimeMs'] as const;
export type RecordField = (typeof RECORD_FIELDS)[number];
/** Fields whose change is one of content (a "modification"); the rest are attributes or times. */
const CONTENT: ReadonlySet<RecordField> = new Set(['target', 'dev', 'ino', 'size', 'sha256']);
const ATTRIBUTES: ReadonlySet<RecordField> = new Set(['mode', 'uid', 'gid']);

/**
 * The record of the file at `realPath` (host path `hostPath`) now; null when it is gone. A symlink
 * that resolves to nothing inside the root keeps its target and its own lstat facts.
 */
export function readRecord(realRoot: string, realPath: FsPath, hostPath: string, hashMaxBytes: number): FileRecord | null {
  let st: Stats;
  try {
    st = lstatSync(realPath);
  } catch {
    return null;
  }
  let target: string | undefined;
  let file: FsPath = realPath;
  if (st.isSymbolicLink()) {
    try {
      target = displayPath(fromBytes(readlinkSync(realPath, { encoding: 'buffer' })));
    } catch {
      return null;
    }
    const resolved = resolvePathInRoot(realRoot, hostPath);
    if (resolved) {
      try {
        st = lstatSync(resolved);
        file = resolved;
      } catch {
        // gone between the two calls: the link's own facts
      }
    }
  }
  return {
    dev: st.dev, ino: st.ino, size: st.size, mode: st.mode, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs,
    ...(target !== undefined ? { target } : {}),
    sha256: st.isFile() && st.size <= hashMaxBytes ? sha256Of(file) : null,
  };
}

function sha256Of(path: FsPath): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

/** The fields that differ between two records of one path. */
export function differences(before: FileRecord, now: FileRecord): RecordField[] {
  return RECORD_FIELDS.filter((f) => before[f] !== now[f]);
}

/**
 * The ECS action a set of differences is reported as: content (or the file's identity: another
 * inode, device or target) is a "modification"; mode or owner alone is "attributes_modified", as
 * a live change is (integrity.ts), with or without the ctime they move. Times alone (a touch, a chmod undone, an inode reused with the
 * same bytes) are a modification too: nothing but a write or a new file moves them together.
 */
export function actionOf(fields: readonly RecordField[]): 'modification' | 'attributes_modified' {
  if (fields.some((f) => CONTENT.has(f))) return 'modification';
  // A chmod or chown moves ctime too: with mode or owner changed, ctime is part of that change.
  const rest = fields.filter((f) => f !== 'ctimeMs');
  return rest.length > 0 && rest.every((f) => ATTRIBUTES.has(f)) ? 'attributes_modified' : 'modification';
}

/** A record as stored, checked field by field: null when any is missing or of the wrong type. */
export function parseRecord(v: unknown): FileRecord | null {
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  for (const k of ['dev', 'ino', 'size', 'mode', 'uid', 'gid', 'mtimeMs', 'ctimeMs'] as const) if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) return null;
  if (o.target !== undefined && typeof o.target !== 'string') return null;
  if (o.sha256 !== null && (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256))) return null;
  const r = o as unknown as FileRecord;
  return {
    dev: r.dev, ino: r.ino, size: r.size, mode: r.mode, uid: r.uid, gid: r.gid, mtimeMs: r.mtimeMs, ctimeMs: r.ctimeMs,
    ...(r.target !== undefined ? { target: r.target } : {}),
    sha256: r.sha256,
  };
}

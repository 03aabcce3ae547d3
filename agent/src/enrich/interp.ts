// The loaders in use: the paths the host's own binaries name as their program interpreter
// (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2 on x86-64. A write there replaces the loader every
// program on the host runs through, so max_signals never holds it back (shared/throttle.ts): an
// attacker who floods the rule with decoys first must not get the one write that matters recorded
// as a quiet record.
//
// Read once at start from a few binaries of the host root (under --root, inside that root: an
// absolute symlink is taken as relative to the root, and nothing outside it is read). Each
// interpreter is returned in every spelling an alert can give it: as named, with its folder's
// symlinks resolved (fanotify reports /lib64/x as /usr/lib64/x on merged /usr), and fully resolved
// (the file the name points at: writing that file replaces the loader too).
import { closeSync, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { resolveInRoot } from '../root-path.js';

/** Binaries every Linux root has; their interpreter is the one in use. */
export const INTERP_PROBES = ['/bin/sh', '/usr/bin/env', '/bin/ls', '/usr/bin/ls', '/sbin/init', '/usr/bin/bash'];

const PT_INTERP = 3;

/** The PT_INTERP path of an ELF file's bytes (its first 64 KiB are enough), or null. */
export function elfInterp(head: Buffer): string | null {
  if (head.length < 52 || head.readUInt32BE(0) !== 0x7f454c46) return null;
  const is64 = head[4] === 2;
  const le = head[5] === 1;
  const u16 = (o: number) => (le ? head.readUInt16LE(o) : head.readUInt16BE(o));
  const u32 = (o: number) => (le ? head.readUInt32LE(o) : head.readUInt32BE(o));
  const uN = (o: number) => (is64 ? Number(le ? head.readBigUInt64LE(o) : head.readBigUInt64BE(o)) : u32(o));
  if (is64 && head.length < 64) return null;
  const phoff = uN(is64 ? 32 : 28);
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + phentsize > head.length || phentsize < (is64 ? 56 : 32)) return null;
    if (u32(at) !== PT_INTERP) continue;
    const off = uN(at + (is64 ? 8 : 4));
    const size = uN(at + (is64 ? 32 : 16));
    if (off + size > head.length || size < 2) return null;
    const s = head.toString('latin1', off, off + size).replace(/\0.*$/s, '');
    return s.startsWith('/') ? s : null;
  }
  return null;
}

/** The interpreter of one binary inside the root (symlinks followed inside it), or null. */
function interpOf(root: string, hostPath: string): string | null {
  const real = posix.join(root, resolveInRoot(root, hostPath));
  let fd: number | undefined;
  try {
    fd = openSync(real, 'r');
    const head = Buffer.alloc(64 * 1024);
    const n = readSync(fd, head, 0, head.length, 0);
    return elfInterp(head.subarray(0, n));
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Every spelling of every interpreter the root's binaries name (see the top of this file); empty when none is found. */
export function loadersInUse(root: string, probes: readonly string[] = INTERP_PROBES): { paths: Set<string>; named: string[] } {
  const named = [...new Set(probes.map((p) => interpOf(root, p)).filter((p): p is string => p !== null))];
  const paths = new Set<string>();
  for (const p of named) {
    paths.add(posix.normalize(p));
    paths.add(resolveInRoot(root, p, true));
    paths.add(resolveInRoot(root, p));
  }
  return { paths, named };
}

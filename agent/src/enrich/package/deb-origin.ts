// Which repository offers the very .deb a verified dpkg installed a file from. A name and version
// are not enough: `dpkg-deb --build` makes a "libc6" at the repository's version with any loader in
// it, and dpkg records that package's own md5sums. So the file counts as offered only when one of
// the writer's .deb arguments (dpkg -i X.deb; apt runs dpkg --unpack /var/cache/apt/archives/X.deb)
// has the SHA256 a repository index gives for that package and version, and that .deb's own
// md5sums record the digest the file has. The index's SHA256 is what apt checked the download
// against, and the index is what the signed Release file vouches for.
// The .deb's md5sums are read with the host's dpkg-deb, verified first (host-tool.ts) and bounded
// by a timeout. Asked only after a verified dpkg's write settled; each .deb is hashed once per
// (device, inode, size, mtime).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { AptLists } from './apt-lists.js';
import { mergedUsrAliases } from './dpkg-db.js';
import { hostToolVerified } from './host-tool.js';

const DPKG_DEB = '/usr/bin/dpkg-deb';
const TIMEOUT_MS = 5_000;
const DEB_MAX_BYTES = 1024 * 1024 * 1024;
const CACHE_MAX = 256;

/** What the pipeline knows of the writer: its arguments and working directory, as it saw them. */
export interface WriterArgs {
  args: readonly string[];
  cwd?: string;
  /** The writer runs outside --root (its paths are the agent's), not inside it (paths under the root). */
  outsideRoot: boolean;
}

export class DebOrigin {
  private readonly sums = new Map<string, { sha256: string; md5sums: string | null }>();

  constructor(
    private readonly realRoot: string,
    private readonly apt: AptLists,
  ) {}

  /**
   * The index offering (name, version, arch) as one of the writer's .deb arguments, whose own
   * md5sums give `md5` for `listed` (a host path the package lists); null when there is none.
   */
  offeredBy(name: string, version: string, arch: string, listed: string, md5: string, writer: WriterArgs | undefined): string | null {
    if (!writer) return null;
    for (const arg of writer.args.slice(1)) {
      if (!arg.endsWith('.deb')) continue;
      const deb = this.place(arg, writer);
      if (!deb) continue;
      const facts = this.read(deb);
      if (!facts) continue;
      const index = this.apt.offeredBy(name, version, arch, facts.sha256);
      if (!index) continue;
      const sums = this.md5sums(deb, facts);
      if (sums && recorded(sums, listed) === md5) return index;
    }
    return null;
  }

  /** The .deb's path on the agent's filesystem. */
  private place(arg: string, w: WriterArgs): string | null {
    const abs = posix.isAbsolute(arg) ? arg : w.cwd ? posix.join(w.cwd, arg) : null;
    if (!abs) return null;
    return w.outsideRoot || this.realRoot === '/' ? abs : posix.join(this.realRoot, abs);
  }

  private read(deb: string): { sha256: string; md5sums: string | null; key: string } | null {
    let key: string;
    try {
      const st = statSync(deb);
      if (!st.isFile() || st.size > DEB_MAX_BYTES) return null;
      key = `${deb}:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return null;
    }
    const held = this.sums.get(key);
    if (held) return { ...held, key };
    let sha256: string;
    try {
      sha256 = createHash('sha256').update(readFileSync(deb)).digest('hex');
    } catch {
      return null;
    }
    if (this.sums.size >= CACHE_MAX) this.sums.clear();
    this.sums.set(key, { sha256, md5sums: null });
    return { sha256, md5sums: null, key };
  }

  private md5sums(deb: string, facts: { key: string; md5sums: string | null; sha256: string }): string | null {
    if (facts.md5sums !== null) return facts.md5sums;
    // A swapped dpkg-deb would print any md5sums.
    if (!hostToolVerified(DPKG_DEB)) return null;
    let out: string;
    try {
      out = execFileSync(DPKG_DEB, ['--info', deb, 'md5sums'], { encoding: 'utf8', timeout: TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return null; // no md5sums member (dpkg made them at install: not a repository's package), or the tool failed
    }
    this.sums.set(facts.key, { sha256: facts.sha256, md5sums: out });
    return out;
  }
}

/** The md5 an md5sums text records for a host path (any merged-/usr name); null when none. */
function recorded(md5sums: string, path: string): string | null {
  const names = new Set(mergedUsrAliases(path).map((p) => p.replace(/^\//, '')));
  for (const line of md5sums.split('\n')) {
    const m = /^([0-9a-f]{32}) +(.*)$/.exec(line);
    if (m && names.has(m[2]!)) return m[1]!;
  }
  return null;
}

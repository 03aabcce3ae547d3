// Which package versions a configured repository offers, from apt's downloaded indexes: every
// ROOT/var/lib/apt/lists/*_Packages (one per source, suite, component and architecture, written by
// `apt-get update` after it checked the Release file's signature). A version found there is one the
// distribution published; a package built on the host (`dpkg-deb --build`, then `dpkg -i`) is in
// none of them, whatever its name.
// Read on demand, never parsed whole: bookworm's main index is ~45 MB, and the question comes only
// when a verified package manager wrote a loader (an upgrade). Each answer is remembered until an
// index changes (the directory's stamp: each index's name, size and mtime).
// Not read (known gap): indexes apt keeps compressed (Acquire::GzipIndexes, `_Packages.lz4` on
// some container images): such a root has no plain index, and nothing counts as offered there.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ANSWERS_MAX = 1024;

export class AptLists {
  private stamp: string | null = null;
  private readonly answers = new Map<string, string | null>();

  /** listsDir: ROOT/var/lib/apt/lists. */
  constructor(readonly listsDir: string) {}

  /** The index files now, with a stamp that changes when any is added, removed or rewritten. */
  private indexes(): { files: string[]; stamp: string } {
    let names: string[];
    try {
      names = readdirSync(this.listsDir).filter((n) => n.endsWith('_Packages')).sort();
    } catch {
      return { files: [], stamp: 'none' };
    }
    const parts: string[] = [];
    const files: string[] = [];
    for (const n of names) {
      try {
        const st = statSync(join(this.listsDir, n));
        parts.push(`${n}:${st.size}:${st.mtimeMs}`);
        files.push(n);
      } catch {
        // removed while listed: apt is updating; the next question sees the new state
      }
    }
    return { files, stamp: parts.join('|') };
  }

  /**
   * The index (its file name) offering this package at this version, or null when none does.
   * arch: the installed package's ("amd64", "all"); an index paragraph of another architecture
   * does not count.
   */
  offeredBy(name: string, version: string, arch: string, sha256?: string): string | null {
    const { files, stamp } = this.indexes();
    if (stamp !== this.stamp) {
      this.stamp = stamp;
      this.answers.clear();
    }
    const key = `${name}\0${version}\0${arch}\0${sha256 ?? ''}`;
    const held = this.answers.get(key);
    if (held !== undefined) return held;
    let found: string | null = null;
    for (const f of files) {
      let buf: Buffer;
      try {
        buf = readFileSync(join(this.listsDir, f));
      } catch {
        continue;
      }
      if (offers(buf, name, version, arch, sha256)) {
        found = f;
        break;
      }
    }
    if (this.answers.size >= ANSWERS_MAX) this.answers.clear();
    this.answers.set(key, found);
    return found;
  }
}

/** Whether a Packages index (deb822 paragraphs) holds a paragraph for name at version and arch (and, given, that .deb's sha256). */
export function offers(index: Buffer, name: string, version: string, arch: string, sha256?: string): boolean {
  const needle = Buffer.from(`Package: ${name}\n`);
  for (let at = index.indexOf(needle); at !== -1; at = index.indexOf(needle, at + needle.length)) {
    if (at > 0 && index[at - 1] !== 0x0a) continue; // inside another line
    let end = index.indexOf('\n\n', at);
    if (end === -1) end = index.length;
    const para = index.subarray(at, end).toString('utf8');
    const field = (k: string) => new RegExp(`^${k}: *(.*)$`, 'm').exec(para)?.[1]?.trim();
    if (field('Version') === version && field('Architecture') === arch && (sha256 === undefined || field('SHA256') === sha256)) return true;
  }
  return false;
}

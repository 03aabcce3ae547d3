// dpkg's database read directly, never through dpkg-query: the verdict on a writer is taken on the
// hot path, and a child process there would cost more than the write it judges (and a tool can be
// swapped; the files it reads are root's). What is read, under an admindir (/var/lib/dpkg):
//   status              paragraphs; a package counts only with "Status: install ok installed"
//   info/<pkg>[:arch].list     one absolute path per line (what the package put on disk)
//   info/<pkg>[:arch].md5sums  "<md5>  <path without its leading />" per regular file
// Not read (known gaps): diversions (dpkg-divert moves a file to another name; the moved file is
// then listed under its original name) and statoverride (modes only, no bytes).
// Contract: a DpkgDb is a snapshot; stamp() changes when dpkg has written the database since (it
// rewrites status and the info files of what it installed), and the owner of that admindir then
// builds a new one (package/verify.ts does). Owner lookups read the .list files on demand and
// remember each answer for the snapshot's life, so memory grows with the executables asked about,
// not with the ~100k paths of a full system.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

export interface InstalledPackage {
  /** The package's name as the info files carry it: "libc6:amd64" for Multi-Arch: same, else "dpkg". */
  key: string;
  /** The name alone ("libc6"). */
  name: string;
}

/** The database's state as dpkg leaves it: status and info/ change on every install and removal. */
export function dpkgStamp(admindir: string): string | null {
  try {
    const s = statSync(join(admindir, 'status'));
    const i = statSync(join(admindir, 'info'));
    return `${s.ino}:${s.mtimeMs}:${s.size}:${i.mtimeMs}`;
  } catch {
    return null;
  }
}

export interface StatusEntry {
  arch: string;
  multiArchSame: boolean;
  /** As dpkg records it ("2.36-9+deb12u13"): what a repository's Packages index names too. */
  version: string;
}

/**
 * States in which a package's files are on disk as its .list and .md5sums say: dpkg writes those
 * info files when it unpacks, before configuring. A long `apt upgrade` keeps libc6 "unpacked" for
 * minutes while dpkg goes on; a file verdict taken then must still find it. "half-installed" (an
 * unpack under way or failed) is not among them.
 */
export const UNPACKED_STATES: ReadonlySet<string> = new Set(['unpacked', 'half-configured', 'triggers-awaited', 'triggers-pending', 'installed']);
const INSTALLED: ReadonlySet<string> = new Set(['installed']);

/** Names of installed packages ("install ok installed", or any of `states`) in a status file's text, with their arch. */
export function parseStatus(text: string, states: ReadonlySet<string> = INSTALLED): Map<string, StatusEntry> {
  const out = new Map<string, StatusEntry>();
  for (const para of text.split(/\n\n+/)) {
    const field = (k: string) => new RegExp(`^${k}: *(.*)$`, 'm').exec(para)?.[1]?.trim();
    const name = field('Package');
    const status = /^(?:install|hold) ok (\S+)$/.exec(field('Status') ?? '');
    if (!name || !status || !states.has(status[1]!)) continue;
    out.set(name, { arch: field('Architecture') ?? '', multiArchSame: field('Multi-Arch') === 'same', version: field('Version') ?? '' });
  }
  return out;
}

/**
 * The names one file has on a merged-/usr system, the given one first: /bin/cp and /usr/bin/cp
 * are one file, and dpkg lists it under whichever the package shipped (coreutils: /bin/cp; libc6:
 * /lib64/ld-linux-x86-64.so.2), while /proc/PID/exe gives the real path (/usr/bin/cp).
 */
export function mergedUsrAliases(path: string): string[] {
  const m = /^\/usr(\/(?:bin|sbin|lib|lib32|lib64|libx32)\/.*)$/.exec(path);
  if (m) return [path, m[1]!];
  return /^\/(?:bin|sbin|lib|lib32|lib64|libx32)\//.test(path) ? [path, `/usr${path}`] : [path];
}

export class DpkgDb {
  private readonly installed: Map<string, StatusEntry>;
  private readonly owners = new Map<string, InstalledPackage | null>();
  private listFiles: string[] | undefined;
  /** Every directory a listed path is in, once indexDirs() has read them; undefined until then. */
  private dirs: Set<string> | undefined;

  /** Throws when admindir/status cannot be read (no dpkg database there). states: see parseStatus. */
  constructor(
    readonly admindir: string,
    states?: ReadonlySet<string>,
  ) {
    this.installed = parseStatus(readFileSync(join(admindir, 'status'), 'utf8'), states);
  }

  /** How many packages are installed. */
  get size(): number {
    return this.installed.size;
  }

  /** The installed package's status entry (version, architecture); undefined when not installed. */
  status(name: string): StatusEntry | undefined {
    return this.installed.get(name);
  }

  /**
   * The md5 the package recorded for `path` under any of its merged-/usr names (a symlink's target
   * is read as /usr/lib/…, while libc6 lists /lib/…), with the name it is listed under.
   */
  md5Any(pkg: InstalledPackage, path: string): { md5: string; listed: string } | null {
    for (const alias of mergedUsrAliases(path)) {
      const md5 = this.md5(pkg, alias);
      if (md5) return { md5, listed: alias };
    }
    return null;
  }

  private infoKey(name: string): string {
    const p = this.installed.get(name);
    return p?.multiArchSame ? `${name}:${p.arch}` : name;
  }

  /**
   * The installed package that lists `path` (tried under each merged-/usr alias), with the alias
   * it is listed under; null when none does. Reads every .list file on a miss (~800 on a Debian
   * desktop): once per path per snapshot.
   */
  owner(path: string): { pkg: InstalledPackage; listed: string } | null {
    for (const alias of mergedUsrAliases(path)) {
      if (this.dirs && !this.dirs.has(posix.dirname(alias))) continue; // no package puts anything there
      let hit = this.owners.get(alias);
      if (hit === undefined) {
        hit = this.scan(alias);
        this.owners.set(alias, hit);
      }
      if (hit) return { pkg: hit, listed: alias };
    }
    return null;
  }

  /**
   * Reads every .list file in the background (each read and split between turns of the event loop)
   * to learn the directories packages put files in (11,375 here, from 126,782 paths): after it, an
   * owner lookup for a path in none of them (a copy of cp named dnf in /tmp) is answered without the
   * scan of every file that a miss costs (35 ms here, on the event loop). Never throws.
   */
  async indexDirs(): Promise<void> {
    try {
      const dirs = new Set<string>();
      const info = join(this.admindir, 'info');
      for (const f of await readdir(info)) {
        if (!f.endsWith('.list') || this.installedOfList(f) === undefined) continue;
        let text: string;
        try {
          text = await readFile(join(info, f), 'utf8');
        } catch {
          return; // a file gone meanwhile: dpkg is at work, and the next snapshot will index
        }
        for (const line of text.split('\n')) if (line.startsWith('/')) dirs.add(posix.dirname(line));
      }
      this.dirs = dirs;
    } catch {
      // no info directory: lookups scan, as before
    }
  }

  /** The installed package a .list file (name[:arch].list) belongs to; undefined for a leftover of a removed one. */
  private installedOfList(file: string): string | undefined {
    const name = file.slice(0, -'.list'.length).split(':')[0]!;
    return this.installed.has(name) ? name : undefined;
  }

  private scan(path: string): InstalledPackage | null {
    this.listFiles ??= readdirSync(join(this.admindir, 'info')).filter((f) => f.endsWith('.list'));
    // Searched as bytes: decoding each file to a string and searching a copy of it with a newline
    // put in front took three times as long (96 vs 32-48 ms over 842 files here), on the event loop.
    const inside = Buffer.from(`\n${path}\n`);
    const first = inside.subarray(1);
    for (const f of this.listFiles) {
      const name = this.installedOfList(f);
      if (name === undefined) continue;
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(this.admindir, 'info', f));
      } catch {
        continue;
      }
      if (bytes.indexOf(inside) >= 0 || bytes.subarray(0, first.length).equals(first)) return { key: this.infoKey(name), name };
    }
    return null;
  }

  /** The md5 (hex) the package recorded for a path it lists, or null when it recorded none. */
  md5(pkg: InstalledPackage, listed: string): string | null {
    let text: string;
    try {
      text = readFileSync(join(this.admindir, 'info', `${pkg.key}.md5sums`), 'utf8');
    } catch {
      return null;
    }
    const rel = listed.replace(/^\//, '');
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]{32}) +(.*)$/.exec(line);
      if (m && m[2] === rel) return m[1]!;
    }
    return null;
  }
}

// pacman's local database, read directly: ROOT/var/lib/pacman/local/NAME-VERSION/ holds each
// installed package's desc (%NAME%, %VERSION%, %ARCH%), files (%FILES%: paths without the leading
// "/") and mtree (gzip: one line per path with its sha256digest, as the package's .MTREE
// recorded it at build time and pacman copied it at install).
// Read on demand: an owner lookup reads every package's files list (~1,000 on an Arch server) on a
// miss, and its answers are kept until the database changes (the local directory's stamp: a
// transaction adds or removes package directories). Only after a writer that carries a package
// manager's name wrote, as with dpkg's .list files.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { mergedUsrAliases } from './dpkg-db.js';
import { unpacked } from './unpack.js';

const ANSWERS_MAX = 4096;

export interface PacmanOwner {
  name: string;
  /** VERSION as pacman names it: [EPOCH:]PKGVER-PKGREL. */
  version: string;
  arch: string;
  /** The path as the package lists it (one of the merged-/usr names). */
  listed: string;
  /** The package's directory in the local database. */
  dir: string;
}

/** The values of each %SECTION% of a pacman desc or files text. */
export function sections(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | null = null;
  for (const line of text.split('\n')) {
    const head = /^%([A-Z0-9]+)%$/.exec(line);
    if (head) out.set(head[1]!, (cur = []));
    else if (line === '') cur = null;
    else cur?.push(line);
  }
  return out;
}

/** The sha256 an mtree text records for `path` (relative, "./usr/…"); null when it lists none. Honours "/set" defaults only for the fields it reads. */
export function mtreeDigest(mtree: string, path: string): string | null {
  const want = `./${path.replace(/^\//, '')}`;
  for (const line of mtree.split('\n')) {
    if (line.startsWith('#') || line.startsWith('/')) continue;
    const sp = line.indexOf(' ');
    if ((sp === -1 ? line : line.slice(0, sp)) !== want) continue;
    return /\bsha256digest=([0-9a-f]{64})\b/.exec(line)?.[1] ?? null;
  }
  return null;
}

/** One per root, shared by every verdict of the process (its answers with it). */
const shared = new Map<string, PacmanDb>();

export class PacmanDb {
  readonly local: string;
  private stampHeld: string | null = null;
  private readonly answers = new Map<string, PacmanOwner | null>();

  /** The process's PacmanDb for the root (its real path). */
  static of(root: string): PacmanDb {
    let db = shared.get(root);
    if (!db) shared.set(root, (db = new PacmanDb(root)));
    return db;
  }

  /** root: the real path of the root whose database this is ("/" for the host's). */
  constructor(root: string) {
    this.local = join(root, 'var/lib/pacman/local');
  }

  /** The database's state (the local directory's size and mtime); null when there is none. */
  stamp(): string | null {
    try {
      const st = statSync(join(this.local, 'ALPM_DB_VERSION'));
      const dir = statSync(this.local);
      return `${dir.size}:${dir.mtimeMs}:${st.mtimeMs}`;
    } catch {
      return null;
    }
  }

  present(): boolean {
    return this.stamp() !== null;
  }

  /** The installed package listing `path` (under any merged-/usr name); null when none does. */
  owner(path: string): PacmanOwner | null {
    const stamp = this.stamp();
    if (stamp === null) return null;
    if (stamp !== this.stampHeld) {
      this.stampHeld = stamp;
      this.answers.clear();
    }
    const held = this.answers.get(path);
    if (held !== undefined) return held;
    const found = this.find(path);
    if (this.answers.size >= ANSWERS_MAX) this.answers.clear();
    this.answers.set(path, found);
    return found;
  }

  private find(path: string): PacmanOwner | null {
    const aliases = mergedUsrAliases(path).map((a) => a.replace(/^\//, ''));
    let dirs: string[];
    try {
      dirs = readdirSync(this.local, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      return null;
    }
    for (const d of dirs) {
      let files: string[];
      try {
        files = sections(readFileSync(join(this.local, d, 'files'), 'utf8')).get('FILES') ?? [];
      } catch {
        continue;
      }
      const listed = aliases.find((a) => files.includes(a));
      if (!listed) continue;
      try {
        const desc = sections(readFileSync(join(this.local, d, 'desc'), 'utf8'));
        return { name: desc.get('NAME')?.[0] ?? '', version: desc.get('VERSION')?.[0] ?? '', arch: desc.get('ARCH')?.[0] ?? '', listed: `/${listed}`, dir: join(this.local, d) };
      } catch {
        return null;
      }
    }
    return null;
  }

  /** The sha256 the package's mtree recorded for the path it lists; null when it records none. */
  digest(owner: PacmanOwner, path: string): { algo: string; hex: string } | null {
    const mtree = this.mtree(owner);
    if (mtree === null) return null;
    for (const alias of mergedUsrAliases(path)) {
      const hex = mtreeDigest(mtree, alias);
      if (hex) return { algo: 'sha256', hex };
    }
    return null;
  }

  /** The package's mtree as pacman stored it (gzip), raw; null when unreadable. */
  mtreeBytes(owner: PacmanOwner): Buffer | null {
    try {
      return readFileSync(join(owner.dir, 'mtree'));
    } catch {
      return null;
    }
  }

  private mtree(owner: PacmanOwner): string | null {
    const raw = this.mtreeBytes(owner);
    const text = raw && unpacked(raw);
    return text ? text.toString('utf8') : null;
  }
}

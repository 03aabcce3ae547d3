// Which configured pacman repository offers the very package pacman installed a file from. A name
// and version are not enough (makepkg builds any "glibc"), so the installed package counts as
// offered only when
//   - a repository of ROOT/etc/pacman.conf (any section but [options]) has a sync database
//     (ROOT/var/lib/pacman/sync/REPO.db, a tar of desc files, written by `pacman -Sy`) listing the
//     package's name, version and architecture, with its %FILENAME% and %SHA256SUM%;
//   - the package file pacman downloaded, still in its cache (CacheDir, /var/cache/pacman/pkg by
//     default; pacman keeps it), has that sha256;
//   - and that package file is the one installed: its .MTREE member has the bytes pacman copied to
//     the local database (local/NAME-VERSION/mtree), which the file's own verdict read its digest
//     from (pacman-db.ts).
// What remains: root who forges the sync database and the cached package together, as with apt's
// indexes. A cleaned cache (`pacman -Sc`) before the verdict leaves nothing to compare: the write
// then pages.
// Cost, only after a verified pacman's loader write settled: the sync databases read (each a few
// MB unpacked) and the cached package hashed and unpacked (glibc: ~10 MB, ~50 MB unpacked).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { sections, type PacmanOwner } from './pacman-db.js';
import { tarFiles } from './tar.js';
import { unpacked } from './unpack.js';

const PKG_MAX_BYTES = 1024 * 1024 * 1024;

/** The repositories (sections other than [options], in order) and cache directories of a pacman.conf text. */
export function parsePacmanConf(text: string): { repos: string[]; cacheDirs: string[] } {
  const repos: string[] = [];
  const cacheDirs: string[] = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const head = /^\[([^\]]+)\]$/.exec(line);
    if (head) {
      section = head[1]!;
      if (section !== 'options') repos.push(section);
      continue;
    }
    const kv = /^CacheDir\s*=\s*(.+)$/.exec(line);
    if (kv && section === 'options') cacheDirs.push(...kv[1]!.split(/\s+/));
  }
  return { repos, cacheDirs: cacheDirs.length ? cacheDirs : ['/var/cache/pacman/pkg/'] };
}

export class PacmanOrigin {
  /** realRoot: the agent's --root, real path. */
  constructor(private readonly realRoot: string) {}

  /** The repository offering the installed package (`mtree`: its local database mtree, raw); null when none does. */
  offeredBy(p: Pick<PacmanOwner, 'name' | 'version' | 'arch'>, mtree: Buffer): string | null {
    let conf: ReturnType<typeof parsePacmanConf>;
    try {
      conf = parsePacmanConf(readFileSync(join(this.realRoot, 'etc/pacman.conf'), 'utf8'));
    } catch {
      return null;
    }
    for (const repo of conf.repos) {
      const listed = this.listed(repo, p);
      if (!listed) continue;
      for (const dir of conf.cacheDirs) {
        const file = join(this.realRoot, posix.normalize(dir), posix.basename(listed.filename));
        if (this.isInstalled(file, listed.sha256, mtree)) return repo;
      }
    }
    return null;
  }

  /** The %FILENAME% and %SHA256SUM% the repository's sync database gives the package; null when it does not list it. */
  private listed(repo: string, p: Pick<PacmanOwner, 'name' | 'version' | 'arch'>): { filename: string; sha256: string } | null {
    let db: Buffer | null;
    try {
      db = unpacked(readFileSync(join(this.realRoot, 'var/lib/pacman/sync', `${repo}.db`)));
    } catch {
      return null;
    }
    if (!db) return null;
    for (const f of tarFiles(db)) {
      if (f.name !== `${p.name}-${p.version}/desc`) continue;
      const desc = sections(f.data.toString('utf8'));
      const filename = desc.get('FILENAME')?.[0];
      const sha256 = desc.get('SHA256SUM')?.[0];
      if (desc.get('NAME')?.[0] === p.name && desc.get('VERSION')?.[0] === p.version && desc.get('ARCH')?.[0] === p.arch && filename && sha256) return { filename, sha256 };
    }
    return null;
  }

  /** Whether the cached package file has the repository's sha256 and its .MTREE is the installed one. */
  private isInstalled(file: string, sha256: string, mtree: Buffer): boolean {
    let raw: Buffer;
    try {
      raw = readFileSync(file);
    } catch {
      return false;
    }
    if (raw.length > PKG_MAX_BYTES || createHash('sha256').update(raw).digest('hex') !== sha256) return false;
    const tar = unpacked(raw);
    if (!tar) return false;
    for (const f of tarFiles(tar)) if (f.name === '.MTREE') return f.data.equals(mtree);
    return false;
  }
}


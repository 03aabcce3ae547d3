// The rpm repositories a root is configured with, and what their downloaded metadata offers: the
// enabled sections of ROOT/etc/yum.repos.d/*.repo (and the other directories dnf reads), each
// repository's `gpgkey=` files, and the primary metadata dnf keeps in its cache
// (ROOT/var/cache/dnf/ID-HASH/repodata: repomd.xml names primary.xml.gz; libdnf5 and yum keep the
// same files under var/cache/libdnf5/ID-HASH and var/cache/yum/ARCH/VER/ID). dnf checked that
// metadata against the repository's checksums when it downloaded it.
// Read on demand, after a verified package manager wrote a loader, and never kept whole: the
// answers are remembered until a .repo file or a repository's repomd.xml changes. Fedora's primary
// is ~60 MB unpacked: one read per repository and question, ~0.3 s.
// Not read (known gaps): gpgkey URLs that are not file:// (their keys are unknown, so that
// repository vouches for nothing), metadata compressed with xz or bzip2 (gzip, zstd and plain are
// read), and yum's own sqlite caches.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { keyIds } from './openpgp.js';
import { unpacked } from './unpack.js';

const REPO_DIRS = ['etc/yum.repos.d', 'etc/yum/repos.d', 'etc/distro.repos.d'];
const ANSWERS_MAX = 1024;

export interface RpmRepo {
  id: string;
  /** The `gpgkey=` values as written. */
  gpgkeys: string[];
}

/** What an installed package is, as a repository's primary metadata names it. */
export interface RpmNevra {
  name: string;
  epoch: string;
  /** VERSION-RELEASE. */
  version: string;
  arch: string;
}

/** Sections of a yum .repo file (INI; a line starting with white space continues the value before it). */
export function parseRepoFile(text: string): RpmRepo[] {
  const repos: RpmRepo[] = [];
  let cur: { id: string; keys: Map<string, string> } | null = null;
  let last: string | null = null;
  const done = () => {
    if (!cur) return;
    const enabled = (cur.keys.get('enabled') ?? '1').trim().toLowerCase();
    if (!['0', 'false', 'no', 'off'].includes(enabled)) repos.push({ id: cur.id, gpgkeys: (cur.keys.get('gpgkey') ?? '').split(/[\s,]+/).filter(Boolean) });
  };
  for (const line of text.split('\n')) {
    if (/^\s*[#;]/.test(line) || line.trim() === '') continue;
    const section = /^\[([^\]]+)\]\s*$/.exec(line);
    if (section) {
      done();
      cur = section[1] === 'main' ? null : { id: section[1]!.trim(), keys: new Map() };
      last = null;
    } else if (cur && /^\s/.test(line) && last) {
      cur.keys.set(last, `${cur.keys.get(last)} ${line.trim()}`);
    } else if (cur) {
      const kv = /^([^=\s]+)\s*=\s*(.*)$/.exec(line);
      if (kv) cur.keys.set((last = kv[1]!.toLowerCase()), kv[2]!.trim());
    }
  }
  done();
  return repos;
}

/** Whether primary metadata (the XML) lists the package: a <package> with this name, arch, epoch, version and release. */
export function primaryOffers(xml: Buffer, p: RpmNevra): boolean {
  const dash = p.version.lastIndexOf('-');
  if (dash <= 0) return false;
  const [ver, rel] = [p.version.slice(0, dash), p.version.slice(dash + 1)];
  const needle = Buffer.from(`<name>${escapeXml(p.name)}</name>`);
  for (let at = xml.indexOf(needle); at !== -1; at = xml.indexOf(needle, at + needle.length)) {
    const start = xml.lastIndexOf('<package', at);
    let end = xml.indexOf('</package>', at);
    if (start === -1) continue;
    if (end === -1) end = xml.length;
    const block = xml.subarray(start, end).toString('utf8');
    const arch = /<arch>([^<]*)<\/arch>/.exec(block)?.[1];
    const version = /<version\s([^>]*?)\/?>/.exec(block)?.[1];
    if (arch !== p.arch || !version) continue;
    const attr = (k: string) => new RegExp(`\\b${k}="([^"]*)"`).exec(version)?.[1];
    if ((attr('epoch') ?? '0') === p.epoch && attr('ver') === ver && attr('rel') === rel) return true;
  }
  return false;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The bytes of a metadata file, unpacked (unpack.ts); null when unreadable or in a format not read. */
function unpack(file: string): Buffer | null {
  try {
    return unpacked(readFileSync(file));
  } catch {
    return null; // removed or unreadable: this repository answers nothing
  }
}

export class RpmRepos {
  private stamp: string | null = null;
  private readonly answers = new Map<string, string[]>();

  /** realRoot: the agent's --root, real path. */
  constructor(private readonly realRoot: string) {}

  /** The enabled repositories, in file name order. */
  repos(): RpmRepo[] {
    const out: RpmRepo[] = [];
    for (const file of this.repoFiles()) {
      try {
        out.push(...parseRepoFile(readFileSync(file, 'utf8')));
      } catch {
        // removed while listed
      }
    }
    return out;
  }

  /** The ids of the enabled repositories whose cached primary metadata lists the package. */
  offering(p: RpmNevra): string[] {
    const repos = this.repos();
    const caches = new Map(repos.map((r) => [r.id, this.primaries(r.id)]));
    const stamp = [...this.repoFiles(), ...[...caches.values()].flat()].map(stampOf).join('|');
    if (stamp !== this.stamp) {
      this.stamp = stamp;
      this.answers.clear();
    }
    const key = `${p.name}\0${p.epoch}\0${p.version}\0${p.arch}`;
    const held = this.answers.get(key);
    if (held) return held;
    const found = repos.filter((r) => caches.get(r.id)!.some((f) => {
      const xml = unpack(f);
      return xml !== null && primaryOffers(xml, p);
    })).map((r) => r.id);
    if (this.answers.size >= ANSWERS_MAX) this.answers.clear();
    this.answers.set(key, found);
    return found;
  }

  /** The key ids in the repository's file:// keys, read inside the root; `$var` in a key's file name matches any text. */
  keyIds(repo: RpmRepo): Set<string> {
    const ids = new Set<string>();
    for (const url of repo.gpgkeys) {
      if (!url.startsWith('file://')) continue;
      const path = posix.normalize(url.slice('file://'.length));
      const dir = posix.dirname(path);
      const pattern = new RegExp(`^${posix.basename(path).replace(/[.+?^()[\]{}|\\]/g, '\\$&').replace(/\$\{?\w+\}?/g, '.*')}$`);
      let names: string[];
      try {
        names = readdirSync(join(this.realRoot, dir)).filter((n) => pattern.test(n));
      } catch {
        continue;
      }
      for (const n of names) {
        try {
          for (const id of keyIds(readFileSync(join(this.realRoot, dir, n)))) ids.add(id);
        } catch {
          // unreadable key: vouches for nothing
        }
      }
    }
    return ids;
  }

  private repoFiles(): string[] {
    const files: string[] = [];
    for (const d of REPO_DIRS) {
      try {
        for (const n of readdirSync(join(this.realRoot, d)).filter((n) => n.endsWith('.repo')).sort()) files.push(join(this.realRoot, d, n));
      } catch {
        // no such directory
      }
    }
    return files;
  }

  /** The primary metadata files of repository `id` in dnf's, libdnf5's and yum's caches. */
  private primaries(id: string): string[] {
    const dirs: string[] = [];
    const cacheDir = new RegExp(`^${id.replace(/[.+?^$()[\]{}|\\*]/g, '\\$&')}-[0-9a-f]{16}$`);
    for (const base of ['var/cache/dnf', 'var/cache/libdnf5']) {
      try {
        for (const n of readdirSync(join(this.realRoot, base))) if (cacheDir.test(n)) dirs.push(join(this.realRoot, base, n));
      } catch {
        // no such cache
      }
    }
    try {
      for (const arch of readdirSync(join(this.realRoot, 'var/cache/yum'))) {
        for (const ver of readdirSync(join(this.realRoot, 'var/cache/yum', arch))) dirs.push(join(this.realRoot, 'var/cache/yum', arch, ver, id));
      }
    } catch {
      // no yum cache
    }
    const files: string[] = [];
    for (const d of dirs) {
      let repomd: string;
      try {
        repomd = readFileSync(join(d, 'repodata/repomd.xml'), 'utf8');
      } catch {
        continue;
      }
      const href = /<data\s+type="primary">[\s\S]*?<location\s+href="([^"]+)"/.exec(repomd)?.[1];
      // The href is relative to the repository; a "../" in it must not leave the cache.
      if (href && !href.split('/').includes('..')) files.push(join(d, href));
    }
    return files;
  }
}

function stampOf(file: string): string {
  try {
    const st = statSync(file);
    return `${file}:${st.size}:${st.mtimeMs}`;
  } catch {
    return `${file}:-`;
  }
}

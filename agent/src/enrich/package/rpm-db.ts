// rpm's database, asked through the host's own rpm, not parsed: it is a SQLite file of rpm header
// blobs (rpm 4.16+; Berkeley DB before), whose format only rpm reads reliably. The tool is trusted
// only once verified like a writer is: /usr/bin/rpm's bytes match the md5 its package recorded in
// the host's dpkg database (Debian's rpm; a host with no such record gets no rpm verdicts), and it
// runs with a timeout, on the watched root's database (`--root ROOT --dbpath /var/lib/rpm`: Debian's
// rpm otherwise reads ~/.rpmdb). Asked only after a verified package manager's write settled, off
// the common path; each query blocks the agent for its run (~20 ms here), bounded by RPM_TIMEOUT_MS.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { mergedUsrAliases } from './dpkg-db.js';
import { hostToolVerified } from './host-tool.js';
import { keyIds } from './openpgp.js';

const RPM = '/usr/bin/rpm';
const RPM_TIMEOUT_MS = 5_000;

export interface RpmOwner {
  name: string;
  /** VERSION-RELEASE, as repositories name it. */
  version: string;
  arch: string;
  /** EPOCH, "0" when the package has none. */
  epoch: string;
  /** The path as the package lists it (one of the merged-/usr names). */
  listed: string;
}

/** rpm's FILEDIGESTALGO numbers (PGP hash algorithm ids) that Node can compute. */
const ALGOS: Record<string, string> = { '1': 'md5', '2': 'sha1', '8': 'sha256', '9': 'sha384', '10': 'sha512' };

export class RpmDb {
  constructor(
    private readonly realRoot: string,
    private readonly hostAdmindir = '/var/lib/dpkg',
  ) {}

  /** The root has an rpm database. */
  present(): boolean {
    return existsSync(join(this.realRoot, 'var/lib/rpm/rpmdb.sqlite')) || existsSync(join(this.realRoot, 'var/lib/rpm/Packages'));
  }

  /** Whether the host's rpm is the one its package shipped (host-tool.ts). */
  toolVerified(): boolean {
    return hostToolVerified(RPM, this.hostAdmindir);
  }

  private run(args: string[]): string | null {
    try {
      return execFileSync(RPM, ['--root', this.realRoot, '--dbpath', '/var/lib/rpm', ...args], { encoding: 'utf8', timeout: RPM_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return null; // not owned (rpm exits 1), or the tool failed or timed out: no answer
    }
  }

  /** The installed package listing `path` (under any merged-/usr name); null when none does. */
  owner(path: string): RpmOwner | null {
    for (const alias of mergedUsrAliases(path)) {
      const out = this.run(['-qf', alias, '--qf', '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{EPOCHNUM}\\n']);
      const m = out ? /^([^\t\n]+)\t([^\t\n]+)\t([^\t\n]*)\t(\d+)$/m.exec(out) : null;
      if (m) return { name: m[1]!, version: m[2]!, arch: m[3]!, epoch: m[4]!, listed: alias };
    }
    return null;
  }

  /** The digest the package recorded for `path` (any merged-/usr name), with its algorithm as Node names it. */
  digest(pkg: string, path: string): { algo: string; hex: string } | null {
    const out = this.run(['-q', pkg, '--qf', '%{FILEDIGESTALGO}\\n[%{FILENAMES}\\t%{FILEDIGESTS}\\n]']);
    if (!out) return null;
    const [algoId, ...lines] = out.split('\n');
    const algo = ALGOS[algoId!.trim()] ?? (algoId!.trim() === '(none)' ? 'md5' : undefined); // old packages: md5, no tag
    if (!algo) return null;
    const names = new Set(mergedUsrAliases(path));
    for (const l of lines) {
      const [name, hex] = l.split('\t');
      if (name && names.has(name) && hex) return { algo, hex };
    }
    return null;
  }

  /**
   * The id of the key whose signature the installed header carries (16 hex digits), or null when
   * it carries none. rpm read the header only if that signature checked out against a key of its
   * keyring, or the keyring lacks the key (rpm-origin.ts asks that next).
   */
  signer(p: { name: string; version: string; arch: string }): string | null {
    const out = this.run(['-q', `${p.name}-${p.version}.${p.arch}`, '--qf', '%{RSAHEADER:pgpsig}\\n%{DSAHEADER:pgpsig}\\n']);
    return out ? (/Key ID ([0-9a-f]{16})\b/.exec(out)?.[1] ?? null) : null;
  }

  /** The ids of the keys in rpm's keyring (its gpg-pubkey packages, each holding its key armored). */
  keyring(): Set<string> {
    const out = this.run(['-q', 'gpg-pubkey', '--qf', '%{DESCRIPTION}\\n']);
    return new Set(out ? keyIds(Buffer.from(out)) : []);
  }
}

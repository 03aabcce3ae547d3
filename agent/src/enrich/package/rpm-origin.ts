// Which configured repository offers the very package rpm installed a file from. A name and version
// are not enough: rpmbuild makes a "glibc" at the repository's version with any loader in it, and
// rpm records that package's own digests. So the installed package counts as offered only when
//   - its header is signed, and the signing key (by its full 64-bit id) is in rpm's keyring: rpm
//     checks a header's signature against its keyring each time it reads the header from its
//     database and skips a header whose signature fails (measured, rpm 4.18: "rpmdbNextIterator:
//     skipping h# 2 Header V4 RSA/SHA512 Signature, key ID 0625be7c: BAD"), so the header the
//     verified rpm returns (rpm-db.ts) is one that key signed; without the key in the keyring rpm
//     checks nothing ("NOKEY") and nothing is offered;
//   - an enabled repository's `gpgkey=` holds that key: a key root imported for a package of its own
//     making vouches for no repository;
//   - that repository's downloaded primary metadata lists the package's name, epoch, version,
//     release and architecture (rpm-repos.ts).
// What remains: root who edits a repository's configuration and key file, imports its key and signs
// its own package (or forges the database and the metadata together).
// Cost: two rpm queries (~20 ms each) and the repositories' metadata reads (rpm-repos.ts keeps its
// answers), only after a verified package manager's loader write settled.
import type { RpmDb, RpmOwner } from './rpm-db.js';
import type { RpmRepos } from './rpm-repos.js';

export class RpmOrigin {
  constructor(
    private readonly rpm: RpmDb,
    private readonly repos: RpmRepos,
  ) {}

  /** The id of the repository offering the installed package `p`, signed by that repository's key; null when none does. */
  offeredBy(p: Pick<RpmOwner, 'name' | 'version' | 'arch' | 'epoch'>): string | null {
    const signer = this.rpm.signer(p);
    if (!signer || !this.rpm.keyring().has(signer)) return null;
    const offering = new Set(this.repos.offering(p));
    return this.repos.repos().find((r) => offering.has(r.id) && this.repos.keyIds(r).has(signer))?.id ?? null;
  }
}

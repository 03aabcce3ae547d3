// Which configured repository offers the very package rpm installed a file from. A name and version
// are not enough: rpmbuild makes a "glibc" at the repository's version with any loader in it, and
// rpm records that package's own digests. So the installed package counts as offered only when
//   - its header is signed, and that signature over the header checks out against a key of rpm's
//     keyring (rpm-db.ts checks it, as rpm does on each read: the signer passed in);
//   - an enabled repository's `gpgkey=` holds that key: a key root imported for a package of its own
//     making vouches for no repository;
//   - that repository's downloaded primary metadata lists the package's name, epoch, version,
//     release and architecture (rpm-repos.ts).
// What remains: root who edits a repository's configuration and key file, imports its key and signs
// its own package (or forges the database and the metadata together).
// Cost: the repositories' metadata reads (rpm-repos.ts keeps its answers), only after a verified
// package manager's loader write settled.
import type { RpmOwner } from './rpm-db.js';
import type { RpmRepos } from './rpm-repos.js';

export class RpmOrigin {
  constructor(private readonly repos: RpmRepos) {}

  /** The id of the repository offering the installed package `p`, whose header `signer` (a key id) signed; null when none does. */
  offeredBy(p: Pick<RpmOwner, 'name' | 'version' | 'arch' | 'epoch'>, signer: string): string | null {
    const offering = new Set(this.repos.offering(p));
    return this.repos.repos().find((r) => offering.has(r.id) && this.repos.keyIds(r).has(signer))?.id ?? null;
  }
}

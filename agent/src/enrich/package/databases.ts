// The package databases the verdicts read, as the host inside --root names them. The agent watches
// each that exists (forwarding every name, and writes in place: FAN_MODIFY on its files), so that
// a write by anything but a verified package manager is an alert (the package database rule) and
// makes every later file verdict inconclusive (FileVerifier.taint): whoever can rewrite dpkg's
// md5sums can make any loader look packaged. Only these directories, not their subdirectories:
// dpkg's triggers/ and alternatives/ are written by maintainer scripts and hold no digests.
// Not verified: the indexes' own signature chain (InRelease); root can rewrite both, as it can a
// package and its database.
import { posix } from 'node:path';

// rpm's (/var/lib/rpm) is watched since its writers can be judged: rpm itself, and dnf and yum,
// Python scripts whose writer is python3 judged with the script the kernel executed (verify.ts).
// What rpm writes there (measured, rpm 4.18 with `--root`): --initdb creates rpmdb.sqlite, -wal,
// -shm, a -journal it deletes again, and .rpm.lock; an install writes rpmdb.sqlite, -wal and -shm in
// place and opens .rpm.lock; even a query (`rpm -q`) writes -shm (SQLite's WAL index). All of them
// are rpm's, or dnf's through librpm in the python3 process. The agent reads a copy (rpm-db.ts):
// it writes nothing there.
// Writers are verified against dpkg's database, or rpm's in its sqlite format (verify.ts): on a host
// with neither (rpm < 4.16) no database is watched at all (agent.ts), or every transaction would page.
// pacman's: local/ holds a directory per installed package (desc, files, mtree) and sync/ the
// repositories' databases (what the default exception reads): watched at their top, so a package
// directory made, removed or renamed by anything but a verified pacman is seen; a file rewritten
// inside a package's directory is not (a subdirectory: known gap).
export const PACKAGE_DATABASE_DIRS: readonly string[] = [
  '/var/lib/dpkg', '/var/lib/dpkg/info', '/var/lib/dpkg/updates',
  '/var/lib/rpm',
  '/var/lib/pacman/local', '/var/lib/pacman/sync',
  // apt's indexes say which versions a repository offers (the default exception reads them): a
  // paragraph appended there would make a locally built package look published. apt-get and its
  // methods (package apt) write them; partial/, where downloads land first, is not watched.
  '/var/lib/apt/lists',
];

const DIRS = new Set(PACKAGE_DATABASE_DIRS);
/**
 * dpkg's scratch directory: dpkg-deb, then tar (its child, in no package manager's package) unpack a
 * package's control archive there before dpkg moves the files into info/ itself (measured: a real
 * libc6 install). What is written inside it is not watched (a subdirectory); dpkg's own move is.
 */
const SCRATCH = '/var/lib/dpkg/tmp.ci';

/** Whether a host path is a file directly inside one of the package database directories (dpkg's scratch directory aside). */
export function inPackageDatabase(hostPath: string): boolean {
  return hostPath !== SCRATCH && entryOfPackageDatabase(hostPath);
}

/** Whether a host path is directly inside one of the package database directories, whatever it is. */
export function entryOfPackageDatabase(hostPath: string): boolean {
  return DIRS.has(posix.dirname(hostPath));
}

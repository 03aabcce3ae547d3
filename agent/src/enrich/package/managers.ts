// Which packages are package managers': a writer is a verified package manager only when its
// executable is verified (package/verify.ts) AND belongs to one of these. Debian's names, and
// the names the same programs carry in the distributions whose databases come next (rpm,
// pacman): the list is of packages, never of process names, which anyone can take.
const PACKAGE_MANAGER_PACKAGES: ReadonlySet<string> = new Set([
  'dpkg', 'apt', 'rpm', 'dnf', 'dnf5', 'yum', 'microdnf', 'pacman', 'pamac', 'zypper', 'packagekit',
  'apk-tools', 'snapd', 'docker.io', 'docker-ce', 'moby-engine', 'podman', 'buildah', 'cri-o',
  'puppet', 'puppet-agent', 'chef',
]);

export function isPackageManagerPackage(name: string): boolean {
  return PACKAGE_MANAGER_PACKAGES.has(name);
}

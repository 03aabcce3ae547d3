// Which packages are package managers': a writer is a verified package manager only when its
// executable is verified (package/verify.ts) AND belongs to one of these. Debian's names (pacman is
// pacman-package-manager there), and the names the same programs carry in the distributions whose
// databases are read too (rpm, pacman): the list is of packages, never of process names, which
// anyone can take.
const PACKAGE_MANAGER_PACKAGES: ReadonlySet<string> = new Set([
  'dpkg', 'apt', 'rpm', 'dnf', 'dnf5', 'yum', 'microdnf', 'pacman', 'pacman-package-manager', 'pamac', 'zypper', 'packagekit',
  'apk-tools', 'snapd', 'docker.io', 'docker-ce', 'moby-engine', 'podman', 'buildah', 'cri-o',
  'puppet', 'puppet-agent', 'chef',
]);

export function isPackageManagerPackage(name: string): boolean {
  return PACKAGE_MANAGER_PACKAGES.has(name);
}

/**
 * The names package managers run under: both upstream revisions' exclusions, plus zypper and
 * packagekitd (the masquerade rule compares the same list with comm and with the executable's
 * basename; test/unit/masquerade-rule.test.ts keeps the two equal). A writer is judged against its
 * package database only when it carries one of them: a miss reads every .list file (45-90 ms here,
 * 828 packages), which any other writer would otherwise make the agent pay for each new executable,
 * and only a writer carrying such a name has a verdict that a rule reads.
 */
export const PACKAGE_MANAGER_NAMES: ReadonlySet<string> = new Set([
  'dockerd', 'yum', 'dnf', 'microdnf', 'pacman', 'dpkg', 'rpm', 'snapd', 'podman', 'dnf-automatic', 'dpkg-divert',
  'apk', 'apt', 'puppet', 'chef-client', 'autossl_check', 'pamac-daemon', 'platform-python', 'snap-update-ns', 'crio',
  'buildah', 'dnf5', 'pamac', 'zypper', 'packagekitd',
]);

/** True when the writer's comm or executable basename is a package manager's name. */
export function carriesManagerName(p: { comm: string | null; exe: string | null }): boolean {
  return (p.comm !== null && PACKAGE_MANAGER_NAMES.has(p.comm)) || (p.exe !== null && PACKAGE_MANAGER_NAMES.has(p.exe.slice(p.exe.lastIndexOf('/') + 1)));
}

// The systemd units, from their one template in systemd/: the checkout's files name install.sh's
// paths (/usr/local/bin/ldguard, /opt/ldguard); a package puts ldguard elsewhere.

export interface UnitPaths {
  /** The ldguard command the units run. */
  bin: string;
  /** Where the installed tree (README, code) lives. */
  prefix: string;
}

export const INSTALL_SH_PATHS: UnitPaths = { bin: '/usr/local/bin/ldguard', prefix: '/opt/ldguard' };

/** A unit file's text for other paths; throws if the template no longer names install.sh's. */
export function unitFor(template: string, to: UnitPaths): string {
  if (!template.includes(INSTALL_SH_PATHS.bin)) throw new Error(`unit template does not run ${INSTALL_SH_PATHS.bin}; update packaging/units.ts with it`);
  return template.replaceAll(INSTALL_SH_PATHS.bin, to.bin).replaceAll(`file://${INSTALL_SH_PATHS.prefix}/`, `file://${to.prefix}/`);
}

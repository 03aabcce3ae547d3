// The oldest host a release bundle runs on, and the check of an ELF file's needs against it.

export interface SymbolFloor {
  /** The oldest glibc (GLIBC_x.y symbol versions up to it). */
  glibc: string;
  /** The oldest GCC whose libstdc++ the bundle's C++ parts may need. */
  gcc: string;
  /** libstdc++'s symbol versions of that GCC (GLIBCXX_, CXXABI_). */
  glibcxx: string;
  cxxabi: string;
  arch: string;
}

/** glibc 2.34 (Debian 12, Ubuntu 22.04, RHEL 9 and newer); libstdc++ of GCC 11 (GLIBCXX_3.4.29, CXXABI_1.3.13). */
export const FLOOR: SymbolFloor = { glibc: '2.34', gcc: '11', glibcxx: '3.4.29', cxxabi: '1.3.13', arch: 'x86_64' };

/** Numeric comparison of dotted versions: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** Each symbol version `needs` holds that is newer than the floor, as "FILE needs GLIBC_2.38". */
export function floorProblems(file: string, needs: readonly string[], floor: SymbolFloor): string[] {
  const limit: Record<string, string> = { GLIBC: floor.glibc, GLIBCXX: floor.glibcxx, CXXABI: floor.cxxabi };
  return needs
    .filter((n) => {
      const [family, version] = n.split('_') as [string, string];
      return limit[family] !== undefined && compareVersions(version, limit[family]) > 0;
    })
    .map((n) => `${file} needs ${n}`);
}

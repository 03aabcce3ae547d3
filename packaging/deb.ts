// The Debian package, made by dpkg-deb from a staged release bundle: the bundle under
// /usr/lib/ldguard, /usr/bin/ldguard its launcher, the units (from systemd/'s template) in
// /lib/systemd/system, and the maintainer scripts of packaging/debian/. It depends on nothing but
// the bundle's floor (libc6, libstdc++6), so `apt install ./ldguard_<version>_amd64.deb` works on
// a Debian 12 with no Node.js and no compiler.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SymbolFloor } from './floor.js';
import { unitFor } from './units.js';

const PREFIX = '/usr/lib/ldguard';

function duKiB(dir: string): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) bytes += statSync(join(e.parentPath, e.name)).size;
  }
  return Math.ceil(bytes / 1024);
}

/** Builds ldguard_<version>_<arch>.deb in `outDir` from the staged bundle `bundle`; returns its path. */
export function buildDeb(opts: { repo: string; bundle: string; version: string; floor: SymbolFloor; outDir: string; work: string }): string {
  const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch as string] ?? process.arch;
  const root = join(opts.work, 'deb');
  cpSync(opts.bundle, join(root, PREFIX), { recursive: true });
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  symlinkSync(`${PREFIX}/bin/ldguard`, join(root, 'usr/bin/ldguard'));
  const units = join(root, 'lib/systemd/system');
  mkdirSync(units, { recursive: true });
  for (const u of ['ldguard-agent.service', 'ldguard-collector.service']) {
    writeFileSync(join(units, u), unitFor(readFileSync(join(opts.repo, 'systemd', u), 'utf8'), { bin: '/usr/bin/ldguard', prefix: PREFIX }), { mode: 0o644 });
  }
  mkdirSync(join(root, 'usr/share/doc/ldguard'), { recursive: true });
  copyFileSync(join(opts.repo, 'README.md'), join(root, 'usr/share/doc/ldguard/README.md'));
  const control = join(root, 'DEBIAN');
  mkdirSync(control);
  writeFileSync(
    join(control, 'control'),
    [
      'Package: ldguard',
      `Version: ${opts.version}`,
      `Architecture: ${arch}`,
      'Maintainer: ldguard developers <ldguard@localhost>',
      `Installed-Size: ${duKiB(root)}`,
      `Depends: libc6 (>= ${opts.floor.glibc}), libstdc++6 (>= ${opts.floor.gcc})`,
      'Section: admin',
      'Priority: optional',
      'Description: detects creation of the dynamic linker (ld.so) on Linux hosts',
      ' Runs Elastic\'s "Dynamic Linker (ld.so) Creation" rule on the host in real time (fanotify),',
      ' with an alert store, API and dashboard (the collector). Brings its own Node.js runtime.',
      '',
    ].join('\n'),
  );
  for (const s of ['postinst', 'prerm', 'postrm']) {
    copyFileSync(join(opts.repo, 'packaging/debian', s), join(control, s));
    chmodSync(join(control, s), 0o755);
  }
  mkdirSync(opts.outDir, { recursive: true });
  const deb = join(opts.outDir, `ldguard_${opts.version}_${arch}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, deb], { stdio: 'pipe' });
  return deb;
}

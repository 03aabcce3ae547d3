// `npm run package [-- --agent-only] [--out DIR]`: a self-contained release bundle,
// ldguard-<version>[-agent]-linux-<arch>.tar.gz, and SHA256SUMS beside it. Inside: the compiled
// code, the production dependencies as built here (native parts included, other platforms' left
// out), the Node.js runtime that built them (bin/node), and bin/ldguard, which checks the host
// against the bundle's floor before starting Node. A host needs nothing else: no Node, no
// compiler, no registry. The floor is checked here: any ELF file needing a newer glibc or
// libstdc++ symbol version than FLOOR fails the build.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, openSync, readSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { buildDeb } from './deb.js';
import { parseArgs } from 'node:util';
import { findRepoRoot } from '../shared/paths.js';
import { FLOOR, floorProblems, type SymbolFloor } from './floor.js';

/** Dependencies only the collector (and `ldguard up`, `token`) load: left out of an agent-only bundle (better-sqlite3 is not: the agent reads rpm's database with it). */
const COLLECTOR_ONLY = new Set(['pg', 'markdown-it']);

/** What of the checkout the product reads at run time (dist/ is added apart, without tests). */
const FILES = [
  'package.json',
  'README.md',
  'install.sh',
  'systemd',
  'shared/rules',
  'shared/rules-upstream',
  'agent/agent.example.toml',
  'agent/native/build/Release/ldguard_native.node',
];
const COLLECTOR_FILES = ['collector/collector.example.toml', 'collector/web/index.html', 'collector/web/style.css', 'collector/web/favicon.svg', 'collector/web/dist'];

interface LockEntry {
  dev?: boolean;
  optional?: boolean;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** Whether a package is meant for this platform (npm's os, cpu and libc fields). */
function forThisPlatform(e: LockEntry): boolean {
  if (e.os && !e.os.includes(process.platform)) return false;
  if (e.cpu && !e.cpu.includes(process.arch)) return false;
  if (e.libc && !e.libc.includes('glibc')) return false;
  return true;
}

/**
 * node_modules paths of the production closure of `roots`, resolved as Node does (a nested
 * node_modules first, then each parent's), for this platform only.
 */
export function productionClosure(lock: Record<string, LockEntry>, roots: readonly string[]): string[] {
  const out = new Set<string>();
  const visit = (from: string, name: string) => {
    for (let dir = from; ; dir = dir.replace(/\/?node_modules\/(@[^/]+\/)?[^/]+$/, '')) {
      const key = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      const e = lock[key];
      if (e) {
        if (out.has(key) || !forThisPlatform(e)) return;
        out.add(key);
        for (const dep of Object.keys({ ...e.dependencies, ...e.optionalDependencies })) visit(key, dep);
        return;
      }
      if (!dir) return; // an optional dependency npm did not install
    }
  };
  for (const r of roots) visit('', r);
  return [...out].sort();
}

/** Files that are ELF objects (executables, shared libraries, addons), under `dir`. */
function elfFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    const head = Buffer.alloc(4);
    const fd = openSync(p, 'r');
    try {
      readSync(fd, head, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
    if (head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) out.push(p);
  }
  return out;
}

/** The symbol versions (GLIBC_2.34, GLIBCXX_3.4.29 …) an ELF file needs, from readelf's version-needs section. */
function neededVersions(file: string): string[] {
  const text = execFileSync('readelf', ['-V', '-W', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return [...new Set([...text.matchAll(/Name: ((?:GLIBC|GLIBCXX|CXXABI)_[0-9.]+)/g)].map((m) => m[1]!))];
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** The launcher: names the floor on a host below it (Node itself would fail with a loader error). */
function launcher(floor: SymbolFloor): string {
  return `#!/bin/sh
# ldguard's launcher in a release bundle: the bundled Node.js runs the bundled code.
set -eu
here=$(dirname "$(readlink -f "$0")")
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')
if [ -z "$glibc" ]; then
  echo "ldguard: this bundle needs glibc >= ${floor.glibc} (${floor.arch}); this host has no glibc (musl?). Build from source: see README" >&2
  exit 1
fi
if [ "$(printf '%s\\n%s\\n' "${floor.glibc}" "$glibc" | sort -V | head -n 1)" != "${floor.glibc}" ]; then
  echo "ldguard: this bundle needs glibc >= ${floor.glibc} and libstdc++ of GCC ${floor.gcc} or newer (${floor.arch}); this host has glibc $glibc. Use a newer distribution, or build from source (see README)" >&2
  exit 1
fi
exec "$here/node" "$here/../dist/agent/src/cli.js" "$@"
`;
}

function main(): void {
  // --version: another version than package.json's (the system test's older package to upgrade from).
  const { values } = parseArgs({ options: { 'agent-only': { type: 'boolean' }, out: { type: 'string' }, version: { type: 'string' } } });
  const repo = findRepoRoot();
  const agentOnly = values['agent-only'] ?? false;
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
  if (values.version) pkg.version = values.version;
  const arch = { x64: 'x86_64', arm64: 'aarch64' }[process.arch as string] ?? process.arch;
  const name = `ldguard-${pkg.version}${agentOnly ? '-agent' : ''}-linux-${arch}`;
  const outDir = values.out ?? join(repo, 'release');
  const stage = join(mkdtemp(), name);
  const started = Date.now();

  for (const f of [...FILES, ...(agentOnly ? [] : COLLECTOR_FILES)]) {
    if (!existsSync(join(repo, f))) throw new Error(`package: ${f} is missing; run npm ci && npm run build first`);
    cpSync(join(repo, f), join(stage, f), { recursive: true });
  }
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify({ ...(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as object), version: pkg.version }, null, 2)}\n`);
  // The compiled code without the tests' (dist/test holds the test helpers and the bench).
  for (const top of ['agent', 'shared', ...(agentOnly ? [] : ['collector'])]) {
    cpSync(join(repo, 'dist', top), join(stage, 'dist', top), { recursive: true, filter: (src) => !src.endsWith('.map') });
  }
  const lock = (JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages;
  const roots = Object.keys(pkg.dependencies).filter((d) => !(agentOnly && COLLECTOR_ONLY.has(d)));
  for (const m of productionClosure(lock, roots)) {
    cpSync(join(repo, m), join(stage, m), {
      recursive: true,
      // Sources and build leftovers of the native parts: the built .node files are what runs.
      filter: (src) => !/\/(deps|src|obj\.target|\.deps)(\/|$)|\/build\/(Release|Debug)\/[^/]+\.(a|o|mk)$|\.(c|cc|cpp|h|hpp|gyp|gypi)$/.test(relative(repo, src).replace(/^node_modules\/(@[^/]+\/)?[^/]+/, '')),
    });
  }
  mkdirSync(join(stage, 'bin'));
  copyFileSync(process.execPath, join(stage, 'bin/node'));
  chmodSync(join(stage, 'bin/node'), 0o755);
  writeFileSync(join(stage, 'bin/ldguard'), launcher(FLOOR), { mode: 0o755 });
  writeFileSync(join(stage, 'BUNDLE'), `ldguard ${pkg.version}${agentOnly ? ' (agent only)' : ''}\nnode ${process.version}\nfloor glibc ${FLOOR.glibc}, libstdc++ of GCC ${FLOOR.gcc}, ${FLOOR.arch}\n`);

  // Nothing in it may need more than the floor.
  const problems = elfFiles(stage).flatMap((f) => floorProblems(relative(stage, f), neededVersions(f), FLOOR));
  if (problems.length > 0) {
    throw new Error(`package: the bundle would not run on its stated floor (glibc ${FLOOR.glibc}, GCC ${FLOOR.gcc}):\n  ${problems.join('\n  ')}\nBuild on an older distribution, or raise FLOOR in packaging/floor.ts and say so in the README`);
  }

  const files = readdirSync(stage, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => relative(stage, join(e.parentPath, e.name))).sort();
  writeFileSync(join(stage, 'SHA256SUMS'), files.map((f) => `${sha256(join(stage, f))}  ${f}\n`).join(''));
  mkdirSync(outDir, { recursive: true });
  // The full bundle also ships as a Debian package, made from the same staged files.
  const deb = agentOnly ? null : buildDeb({ repo, bundle: stage, version: pkg.version, floor: FLOOR, outDir, work: join(stage, '..') });
  const tarball = join(outDir, `${name}.tar.gz`);
  execFileSync('tar', ['-C', join(stage, '..'), '--owner=0', '--group=0', '-czf', tarball, name]);
  const sums = join(outDir, 'SHA256SUMS');
  const made = [`${name}.tar.gz`, ...(deb ? [basename(deb)] : [])];
  const kept = existsSync(sums) ? readFileSync(sums, 'utf8').split('\n').filter((l) => l && !made.some((m) => l.endsWith(`  ${m}`))) : [];
  writeFileSync(sums, [...kept, ...made.map((m) => `${sha256(join(outDir, m))}  ${m}`)].sort((a, b) => a.slice(66).localeCompare(b.slice(66))).join('\n') + '\n');
  rmSync(join(stage, '..'), { recursive: true, force: true });
  const mb = (statSync(tarball).size / 1e6).toFixed(1);
  process.stdout.write(`${tarball} (${mb} MB, ${files.length} files, node ${process.version}, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  if (deb) process.stdout.write(`${deb} (${(statSync(deb).size / 1e6).toFixed(1)} MB)\n`);
}

function mkdtemp(): string {
  const dir = join(tmpdir(), `ldg-package-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}

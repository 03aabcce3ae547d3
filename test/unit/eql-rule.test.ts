// The ld.so creation rule, as data: the seed (version 1) query and a later upstream revision, run
// unchanged against Elastic Defend-shaped events. Expected outcomes follow REFERENCE.md.

import { describe, expect, it } from 'vitest';
import { compileEql, fieldConstraint, parseEql } from '../../shared/eql/index.js';

const SEED_QUERY = `file where host.os.type == "linux" and event.type == "creation" and process.executable != null and
file.path like~ ("/lib/ld-linux*.so*", "/lib64/ld-linux*.so*", "/usr/lib/ld-linux*.so*", "/usr/lib64/ld-linux*.so*") and
not process.name in ("dockerd", "yum", "dnf", "microdnf", "pacman")
`;

// Fixture: the query of elastic/detection-rules rules/linux/defense_evasion_ld_so_creation.toml as
// updated 2025/12/18 (risk 47): exclusions moved to process.executable lists, with `like` patterns
// and a nested `not ( ... or ... )`. Kept byte for byte, including its duplicate entries.
const UPSTREAM_QUERY = `
file where host.os.type == "linux" and event.type == "creation" and process.executable != null and
file.path like~ ("/lib/ld-linux*.so*", "/lib64/ld-linux*.so*", "/usr/lib/ld-linux*.so*", "/usr/lib64/ld-linux*.so*") and
not (
  process.executable in (
    "/bin/dpkg", "/usr/bin/dpkg", "/bin/dockerd", "/usr/bin/dockerd", "/usr/sbin/dockerd", "/bin/microdnf",
    "/usr/bin/microdnf", "/bin/rpm", "/usr/bin/rpm", "/bin/snapd", "/usr/bin/snapd", "/bin/yum", "/usr/bin/yum",
    "/bin/dnf", "/usr/bin/dnf", "/bin/podman", "/usr/bin/podman", "/bin/dnf-automatic", "/usr/bin/dnf-automatic",
    "/bin/pacman", "/usr/bin/pacman", "/usr/bin/dpkg-divert", "/bin/dpkg-divert", "/sbin/apk", "/usr/sbin/apk",
    "/usr/local/sbin/apk", "/usr/bin/apt", "/usr/sbin/pacman", "/bin/podman", "/usr/bin/podman", "/usr/bin/puppet",
    "/bin/puppet", "/opt/puppetlabs/puppet/bin/puppet", "/usr/bin/chef-client", "/bin/chef-client",
    "/bin/autossl_check", "/usr/bin/autossl_check", "/proc/self/exe", "/dev/fd/*",  "/usr/bin/pamac-daemon",
    "/bin/pamac-daemon", "/usr/lib/snapd/snapd", "/usr/local/bin/dockerd", "/usr/libexec/platform-python",
    "/usr/lib/snapd/snap-update-ns", "./usr/bin/podman", "/usr/bin/crio", "/usr/bin/buildah", "/bin/dnf5",
    "/usr/bin/dnf5", "/usr/bin/pamac", "/dev/fd/3"
  ) or
  process.executable like (
    "/snap/docker/*/bin/dockerd", "/usr/bin/python*", "/nix/store/*/docker/dockerd", "/var/lib/docker/overlay2/*/dockerd",
    "/rpool/data/*usr/bin/dockerd"
  )
)
`;

// Fixture: the same revision with the parent-process exclusion style other Linux rules use
// (`?process.parent.executable`, which may be absent from the event).
const UPSTREAM_WITH_PARENT_QUERY = `${UPSTREAM_QUERY} and
not ?process.parent.executable like~ ("/var/lib/docker/overlay2/*", "/usr/bin/python*")`;

const LOADER_PATTERNS = ['/lib/ld-linux*.so*', '/lib64/ld-linux*.so*', '/usr/lib/ld-linux*.so*', '/usr/lib64/ld-linux*.so*'];

/** An Elastic Defend file creation event, with overrides applied as dotted paths. */
function event(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    '@timestamp': '2025-01-01T00:00:00.000Z',
    event: { kind: 'event', category: ['file'], type: ['creation'], action: 'creation', dataset: 'endpoint.events.file' },
    host: { name: 'web-1', os: { type: 'linux', family: 'debian', kernel: '6.18.0' } },
    file: { path: '/lib/ld-linux-x86-64.so.2', name: 'ld-linux-x86-64.so.2', extension: '2', directory: '/lib' },
    process: { pid: 4242, name: 'cp', executable: '/usr/bin/cp', parent: { pid: 1, executable: '/usr/bin/bash', name: 'bash' } },
    user: { id: '0', name: 'root' },
  };
  for (const [path, value] of Object.entries(overrides)) {
    const parts = path.split('.');
    let node = doc;
    for (const part of parts.slice(0, -1)) node = node[part] as Record<string, unknown>;
    const last = parts[parts.length - 1]!;
    if (value === undefined) delete node[last];
    else node[last] = value;
  }
  return doc;
}

describe('seed rule (version 1)', () => {
  const q = compileEql(SEED_QUERY);

  it('matches a loader written by an ordinary process', () => {
    expect(q.match(event())).toBe(true);
  });

  it('does not match the Debian/Ubuntu multiarch loader path', () => {
    expect(q.match(event({ 'file.path': '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' }))).toBe(false);
  });

  it('matches /lib/ld-linux-x/evil.so: * spans /', () => {
    expect(q.match(event({ 'file.path': '/lib/ld-linux-x/evil.so' }))).toBe(true);
  });

  it('matches upper-case paths (like~ is case-insensitive)', () => {
    expect(q.match(event({ 'file.path': '/LIB64/LD-LINUX-x86-64.SO.2' }))).toBe(true);
  });

  it('matches the temporary names of dpkg and rpm', () => {
    expect(q.match(event({ 'file.path': '/usr/lib64/ld-linux-x86-64.so.2.dpkg-new' }))).toBe(true);
    expect(q.match(event({ 'file.path': '/usr/lib64/ld-linux-x86-64.so.2;6798b2c1' }))).toBe(true);
  });

  it('excludes process.name "dnf" but not "DNF" (in is case-sensitive)', () => {
    expect(q.match(event({ 'process.name': 'dnf' }))).toBe(false);
    expect(q.match(event({ 'process.name': 'DNF' }))).toBe(true);
  });

  it('does not match when process.executable is missing', () => {
    expect(q.match(event({ 'process.executable': undefined }))).toBe(false);
    expect(q.match(event({ 'process.executable': null }))).toBe(false);
  });

  it('matches when process.name is missing: the exclusion cannot apply', () => {
    expect(q.match(event({ 'process.name': undefined }))).toBe(true);
  });

  it('reads event.type as an array or a string', () => {
    expect(q.match(event({ 'event.type': ['creation'] }))).toBe(true);
    expect(q.match(event({ 'event.type': 'creation' }))).toBe(true);
    expect(q.match(event({ 'event.type': ['change'] }))).toBe(false);
    expect(q.match(event({ 'event.type': ['info', 'creation'] }))).toBe(true);
  });

  it('requires event.category file and host.os.type linux', () => {
    expect(q.match(event({ 'event.category': ['process'] }))).toBe(false);
    expect(q.match(event({ 'event.category': 'file' }))).toBe(true);
    expect(q.match(event({ 'host.os.type': 'Linux' }))).toBe(false);
  });

  it('matches the same event written with flat dotted keys', () => {
    const flat = {
      'event.category': ['file'],
      'event.type': ['creation'],
      'host.os.type': 'linux',
      'file.path': '/lib64/ld-linux-x86-64.so.2',
      'process.executable': '/tmp/x',
      'process.name': 'x',
    };
    expect(q.match(flat)).toBe(true);
    expect(q.match({ ...flat, 'process.name': 'yum' })).toBe(false);
  });

  it('lists the fields it reads, event.category first', () => {
    expect(q.category).toBe('file');
    expect(q.source).toBe(SEED_QUERY);
    expect(q.fields).toEqual(['event.category', 'host.os.type', 'event.type', 'process.executable', 'file.path', 'process.name']);
  });

  it('derives the four loader patterns as the file.path pre-filter', () => {
    expect(fieldConstraint(parseEql(SEED_QUERY), 'file.path')).toEqual({ patterns: LOADER_PATTERNS, exact: [] });
  });

  it('derives no pre-filter for fields constrained only under not, or by != null', () => {
    expect(fieldConstraint(parseEql(SEED_QUERY), 'process.name')).toBeNull();
    expect(fieldConstraint(parseEql(SEED_QUERY), 'process.executable')).toBeNull();
  });
});

describe('upstream revision (process.executable exclusions)', () => {
  const q = compileEql(UPSTREAM_QUERY);

  it('matches an unknown writer', () => {
    expect(q.match(event({ 'process.executable': '/tmp/.x/dropper' }))).toBe(true);
  });

  it('excludes listed package managers by exact path', () => {
    expect(q.match(event({ 'process.executable': '/usr/bin/dpkg' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/usr/bin/dnf5' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/USR/BIN/DPKG' }))).toBe(true);
  });

  it('treats "/dev/fd/*" inside in (...) as a literal string', () => {
    expect(q.match(event({ 'process.executable': '/dev/fd/*' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/dev/fd/3' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/dev/fd/4' }))).toBe(true);
  });

  it('excludes like patterns: interpreters and docker overlay paths', () => {
    // A dnf script started by shebang runs as the interpreter: excluded through /usr/bin/python*.
    expect(q.match(event({ 'process.executable': '/usr/bin/python3.11', 'process.name': 'dnf' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/var/lib/docker/overlay2/abc/merged/usr/bin/dockerd' }))).toBe(false);
    expect(q.match(event({ 'process.executable': '/var/lib/docker/overlay2/abc/merged/usr/bin/sh' }))).toBe(true);
    expect(q.match(event({ 'process.executable': '/snap/docker/2915/bin/dockerd' }))).toBe(false);
    // like is case-sensitive
    expect(q.match(event({ 'process.executable': '/USR/BIN/PYTHON3' }))).toBe(true);
  });

  it('no longer excludes by process.name', () => {
    expect(q.match(event({ 'process.name': 'dnf' }))).toBe(true);
  });

  it('still requires process.executable', () => {
    expect(q.match(event({ 'process.executable': undefined }))).toBe(false);
  });

  it('derives the loader patterns for file.path and nothing for process.executable', () => {
    const ast = parseEql(UPSTREAM_QUERY);
    expect(fieldConstraint(ast, 'file.path')).toEqual({ patterns: LOADER_PATTERNS, exact: [] });
    expect(fieldConstraint(ast, 'process.executable')).toBeNull();
  });
});

describe('upstream revision with an optional parent field', () => {
  const q = compileEql(UPSTREAM_WITH_PARENT_QUERY);

  it('excludes by parent executable when present', () => {
    expect(q.match(event({ 'process.parent.executable': '/usr/bin/python3' }))).toBe(false);
    expect(q.match(event({ 'process.parent.executable': '/VAR/LIB/DOCKER/overlay2/x/dockerd' }))).toBe(false);
  });

  it('matches when the parent is unknown', () => {
    expect(q.match(event({ 'process.parent': undefined }))).toBe(true);
    expect(q.match(event({ 'process.parent.executable': '/usr/bin/bash' }))).toBe(true);
  });

  it('records the field once, without the ? marker', () => {
    expect(q.fields).toContain('process.parent.executable');
    expect(q.fields.filter((f) => f.includes('?'))).toEqual([]);
  });
});

describe('fieldConstraint', () => {
  it('is null when file.path sits under or next to another field', () => {
    const ast = parseEql('file where file.path like~ "/lib/ld-*" or process.name == "x"');
    expect(fieldConstraint(ast, 'file.path')).toBeNull();
  });

  it('unites both sides of an or that both constrain the field', () => {
    const ast = parseEql('file where file.path in ("/etc/ld.so.preload", "/a*b") or file.path : "/etc/ld.so.conf.d/*"');
    expect(fieldConstraint(ast, 'file.path')).toEqual({ patterns: ['/etc/ld.so.conf.d/*'], exact: ['/etc/ld.so.preload', '/a*b'] });
  });

  it('keeps the narrower side of an and', () => {
    const ast = parseEql('file where file.path like ("/lib/*", "/usr/lib/*") and file.path == "/lib/ld.so"');
    expect(fieldConstraint(ast, 'file.path')).toEqual({ patterns: [], exact: ['/lib/ld.so'] });
  });

  it('is null under not, for != and ranges, and for == null', () => {
    for (const q of [
      'file where not file.path like "/lib/*"',
      'file where file.path != "/lib/x"',
      'file where file.path > "/lib"',
      'file where file.path == null',
      'file where file.path in ("/a", 5)',
      'file where true',
    ]) {
      expect(fieldConstraint(parseEql(q), 'file.path')).toBeNull();
    }
  });

  it('returns an empty set for a query that cannot match', () => {
    expect(fieldConstraint(parseEql('file where false'), 'file.path')).toEqual({ patterns: [], exact: [] });
  });

  it('treats a backquoted dotted name as the same field', () => {
    expect(fieldConstraint(parseEql('file where `file.path` : "/x*"'), 'file.path')).toEqual({ patterns: ['/x*'], exact: [] });
  });
});

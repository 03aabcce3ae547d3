// pacman (#19 items 2, 3 and 7, "pacman where Debian's package allows it"): Debian's genuine pacman
// installs packages the genuine makepkg built, from a repository the genuine repo-add made (a
// file:// server, offline), into a scratch root's own database under the agent. The writer is
// verified (pacman, Debian's pacman-package-manager), the file against pacman's local database
// (its mtree's sha256), and offered when the package file in pacman's cache has the sync
// database's sha256 and is the one installed (pacman-origin.ts): no page. The same name and version
// as the repository offers, built here and installed with `pacman -U` while the genuine package sits
// in the cache, pages: the rule for the writers Elastic's spares by name.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { scratchRoot, startAgent } from '../helpers/agent.js';
import { buildLoaderPackage, hasPacman, pacmanArgs, pacmanRepository, pacmanRoot } from '../helpers/pacman.js';
import { removeWhenDone, whenDone } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const EXCEPTED = { list_id: 'ldguard-verified-package-install', item_id: 'verified-manager-offered-package' };
const PM_WRITE_ID = 'd4a6cd45-f603-43e0-b0d3-77ca8fb1bf2b';
const DB_RULE_ID = '5c2d8e41-7b9a-4f06-a3d1-9e4b6c0f2a87';
const LOADER = '/usr/lib64/ld-linux-ldgpac.so.1';
const LOADER2 = '/usr/lib64/ld-linux-ldgpac2.so.1';

const brief = (a: Record<string, any>) => `${a.rule.name}: ${a.event.action} ${a.file.path} by ${a.process?.executable} (${a.ldguard.package?.verdict} ${a.ldguard.package?.reason}; file ${a.ldguard.file_package?.verdict} ${a.ldguard.file_package?.reason} offered_by ${a.ldguard.file_package?.offered_by})${a.ldguard.excepted_by ? ' excepted' : ''}`;

describe.skipIf(!isRoot || !hasPacman)('pacman (skipped: needs root, pacman, makepkg and bsdtar: apt-get install pacman-package-manager makepkg libarchive-tools)', () => {
  it('a pacman install from a configured repository pages no one; the same name and version built here, installed with pacman -U, pages', async () => {
    const root = removeWhenDone(scratchRoot('ldg-pacman-'));
    const genuine = [buildLoaderPackage('ldg-pacld', LOADER), buildLoaderPackage('ldg-pacld2', LOADER2)];
    pacmanRoot(root, { ldgtest: pacmanRepository('ldgtest', genuine) });
    const agent = await startAgent({ root });
    whenDone(() => agent.stop('SIGKILL'));
    expect(agent.logs().find((l) => l.msg === 'package databases watched')?.dirs).toEqual(expect.arrayContaining(['/var/lib/pacman/local', '/var/lib/pacman/sync']));
    const ours = (pid: number | undefined) => (a: Record<string, any>) => a.process?.pid === pid && a.file.path.includes('ld-linux-ldgpac');

    // 1. From the repository: excepted records naming the repository.
    const sync = spawnSync('pacman', pacmanArgs(root, '-Sy', 'ldg-pacld'), { encoding: 'utf8' });
    expect(sync.status, sync.stderr).toBe(0);
    let alerts = await agent.waitForAlerts((all) => all.some(ours(sync.pid)), 30_000);
    const upgrade = alerts.filter(ours(sync.pid));
    expect(upgrade.length, alerts.map(brief).join('\n')).toBeGreaterThan(0);
    for (const a of upgrade) {
      expect(a.ldguard.excepted_by, brief(a)).toEqual(EXCEPTED);
      expect(a.ldguard.package).toMatchObject({ manager: 'dpkg', name: 'pacman-package-manager', role: 'package_manager', verdict: 'verified' });
      expect(a.ldguard.file_package).toMatchObject({ manager: 'pacman', name: 'ldg-pacld', version: '1.0-1', verdict: 'verified', reason: 'sha256_matches', offered_by: 'ldgtest' });
    }
    // pacman's own writes to its database paged no one.
    expect(alerts.filter((a) => a.rule.id === DB_RULE_ID).map(brief)).toEqual([]);

    // 2. A second package the repository offers, downloaded into pacman's cache (-Sw) as a real
    // upgrade would be, then the same name and version built here, installed from its file: the
    // cached file has the repository's sha256, but its .MTREE is not the installed one. Verified,
    // not offered: it pages.
    const fetched = spawnSync('pacman', pacmanArgs(root, '-Sw', 'ldg-pacld2'), { encoding: 'utf8' });
    expect(fetched.status, fetched.stderr).toBe(0);
    const local = buildLoaderPackage('ldg-pacld2', LOADER2);
    const add = spawnSync('pacman', pacmanArgs(root, '-U', local), { encoding: 'utf8' });
    expect(add.status, add.stderr).toBe(0);
    alerts = await agent.waitForAlerts((all) => all.some(ours(add.pid)), 30_000);
    const built = alerts.filter(ours(add.pid));
    expect(built.map((a) => a.rule.id), built.map(brief).join('\n')).toContain(PM_WRITE_ID);
    for (const a of built) {
      expect(a.ldguard.excepted_by, brief(a)).toBeUndefined();
      expect(a.ldguard.file_package).toMatchObject({ manager: 'pacman', name: 'ldg-pacld2', version: '1.0-1', verdict: 'verified' });
      expect(a.ldguard.file_package.offered_by).toBeUndefined();
    }
    expect(await agent.stop()).toBe(0);
  }, 120_000);
});

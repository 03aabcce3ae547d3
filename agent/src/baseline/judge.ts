// What happened while the agent was down, judged at start: every rule-matching file on disk
// against the baseline (known-files.ts), each difference against the package database.
//   - same inode, other facts (content, mode, owner, times, symlink target): "changed_while_down",
//     reported as a change (modification or attributes_modified) naming the fields. An inode
//     reused by `rm` + `cp` (ext4 hands the freed one out again) lands here: other ctime, size, hash.
//   - no entry, or another inode: "new_while_down", reported as a creation (the rescan's way).
//   - a baseline that cannot be trusted (baseline_state first_run, missing, corrupt, edited): no
//     file is trusted on first use; each is a creation unless the package database vouches for it.
//     A real first run on a root without a package database is the exception: nothing could vouch for
//     any file there, and an alert per loader at every installation teaches people to ignore them;
//     it is logged instead.
// A difference the package database confirms (package-check.ts: an upgrade while the agent was
// down) is kept on record as excepted (ldguard.excepted_by), paging no one; every other one,
// inconclusive included, pages. A database's digests vouch for bytes only, never for mode or owner: a
// difference in mode, owner or group is never confirmed, and neither is a file the database vouches
// for that is not root's, is writable by others than its owner, or is setuid/setgid (a genuine
// loader copied in with the setuid bit has the package's bytes). Pure but for the file reads: the
// agent turns the plan into alerts.
import type { BaselineFacts } from '../../../shared/ecs.js';
import type { FoundFile, KnownFiles } from '../known-files.js';
import { hasDatabase, type RootDatabases } from '../enrich/package/root-databases.js';
import { checkWithPackages, type PackageCheck } from './package-check.js';
import { actionOf, differences, readRecord, type FileRecord } from './record.js';

/** The excepted_by of a difference the package database confirms (no exception list holds it): the item names the database and digest, dpkg-md5-verified, rpm-sha256-verified … */
export function packageDbException(p: BaselineFacts['package']): { list_id: string; item_id: string } {
  return { list_id: 'ldguard-package-database', item_id: `${p.manager}-${p.reason.replace(/_matches$/, '')}-verified` };
}

export interface Judged {
  file: FoundFile;
  /** How it is reported: a change in place, or a creation (rescan). */
  as: 'modification' | 'attributes_modified' | 'creation';
  facts: BaselineFacts;
  /** True when the package database confirms it: recorded, excepted. */
  confirmed: boolean;
}

export interface Plan {
  judged: Judged[];
  /** Files the package database vouched for on an untrusted baseline (logged, recorded). */
  vouched: string[];
  /** A first run with no database: nothing checked (logged). */
  unchecked: boolean;
}

export function judgeAtStart(known: KnownFiles, found: readonly FoundFile[], o: { dbs: RootDatabases; realRoot: string; hashMaxBytes: number }): Plan {
  const plan: Plan = { judged: [], vouched: [], unchecked: false };
  const check = (f: FoundFile): BaselineFacts['package'] => pkg(checkWithPackages(o.dbs, o.realRoot, f.hostPath, o.hashMaxBytes));
  if (known.firstRun) {
    const state = known.opened.kind;
    if (state === 'first_run' && !hasDatabase(o.dbs)) {
      plan.unchecked = true;
      return plan;
    }
    for (const f of found) {
      const p = check(f);
      if (p.verdict === 'verified' && plain(readRecord(o.realRoot, f.realPath, f.hostPath, o.hashMaxBytes))) plan.vouched.push(f.hostPath);
      else plan.judged.push({ file: f, as: 'creation', confirmed: false, facts: { status: 'unverified', baseline_state: state, package: p } });
    }
    return plan;
  }
  const fresh = new Set(known.diff(found));
  for (const f of found) {
    const before = known.record(f.hostPath);
    if (fresh.has(f)) {
      const now = readRecord(o.realRoot, f.realPath, f.hostPath, o.hashMaxBytes);
      const p = check(f);
      plan.judged.push({
        file: f, as: 'creation', confirmed: p.verdict === 'verified' && plain(now),
        facts: { status: 'new_while_down', ...(before && now ? { changed: differences(before, now), before: flat(before) } : {}), package: p },
      });
      continue;
    }
    if (!before) continue; // the first format: the inode is all it can check, and it matches
    const now = readRecord(o.realRoot, f.realPath, f.hostPath, o.hashMaxBytes);
    if (!now) continue; // gone since the scan: nothing left to judge
    const changed = differences(before, now);
    if (changed.length === 0) continue;
    const p = check(f);
    const confirmed = p.verdict === 'verified' && plain(now) && !changed.some((x) => x === 'mode' || x === 'uid' || x === 'gid');
    plan.judged.push({ file: f, as: actionOf(changed), confirmed, facts: { status: 'changed_while_down', changed, before: flat(before), package: p } });
  }
  return plan;
}

/** Root's, not writable by group or others, neither setuid nor setgid: as a package ships a loader. */
function plain(r: FileRecord | null): boolean {
  return !!r && r.uid === 0 && (r.mode & 0o6022) === 0;
}

function pkg(c: PackageCheck): BaselineFacts['package'] {
  return { manager: c.manager, verdict: c.verdict, reason: c.reason, ...(c.name ? { name: c.name } : {}) };
}

function flat(r: FileRecord): Record<string, string | number | null> {
  return { ...r };
}

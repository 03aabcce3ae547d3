// A writer gone before its image was read (dpkg exits milliseconds after writing its status) is
// judged at the path its image ran from, only when the file there has not changed since the
// process started. Real files and the host's real dpkg database; the process facts are this test
// process's own (read from /proc by the same reader the inotify source uses).
import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PackageVerifier } from '../../agent/src/enrich/package/verify.js';
import { readProc } from '../../agent/src/source/procfs.js';
import { tempDir } from '../helpers/temp.js';

const debianDpkg = existsSync('/var/lib/dpkg/info/dpkg.list') && existsSync('/usr/bin/dpkg');

describe.skipIf(!debianDpkg)('a writer judged at its image\'s path (skipped: needs a Debian host whose dpkg database lists /usr/bin/dpkg)', () => {
  it('verifies an image unchanged since the writer started, and refuses one put there after', () => {
    const me = readProc(process.pid)!;
    const v = new PackageVerifier('/');
    // /usr/bin/dpkg was installed before this process started.
    expect(v.facts(process.pid, { ...me, exe: '/usr/bin/dpkg' }, 'exec_cache')).toEqual({ manager: 'dpkg', name: 'dpkg', role: 'package_manager', verdict: 'verified', reason: 'md5_matches_at_path' });
    // A copy made now: its ctime is after this process's start, whatever its bytes.
    const copy = join(tempDir('ldg-atpath-'), 'dpkg');
    copyFileSync('/usr/bin/dpkg', copy);
    chmodSync(copy, 0o755);
    expect(v.facts(process.pid, { ...me, exe: copy }, 'exec_cache')).toEqual({ manager: 'dpkg', verdict: 'inconclusive', reason: 'image_changed_since_start' });
    // Unknown attributions are not judged at all.
    expect(v.facts(process.pid, { ...me, exe: '/usr/bin/dpkg' }, 'unknown')).toEqual({ manager: 'dpkg', verdict: 'inconclusive', reason: 'writer_gone' });
  });
});

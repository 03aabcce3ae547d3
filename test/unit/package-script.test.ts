// A writer that is the interpreter of a "#!" script (dnf is python3 running /usr/bin/dnf-3) is
// judged as both: the script's package names it, and it is verified only when both match. The
// combination is pure (withScript); the verifier's reading of the script follows the rule of a
// gone writer's image (unchanged since the process started), checked on the host's real dpkg
// database with this test process's own facts.
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PackageVerifier, withScript, type ImageVerdict } from '../../agent/src/enrich/package/verify.js';
import type { ProcFacts } from '../../agent/src/source/source.js';
import { readProc } from '../../agent/src/source/procfs.js';
import { tempDir, whenDone } from '../helpers/temp.js';

const python: ImageVerdict = { name: 'python3.11-minimal', verdict: 'verified', reason: 'md5_matches' };
const dnf: ImageVerdict = { name: 'dnf', role: 'package_manager', verdict: 'verified', reason: 'md5_matches_at_path' };

describe('withScript', () => {
  it('is verified only when the interpreter and the script are, and names the script\'s package', () => {
    expect(withScript(python, dnf, '/usr/bin/dnf-3')).toEqual({
      name: 'dnf', role: 'package_manager', verdict: 'verified', reason: 'md5_matches_at_path',
      interpreter: python,
      script: { path: '/usr/bin/dnf-3', ...dnf },
    });
  });

  it('takes the interpreter\'s failure: dnf\'s script under a patched or traced python3 is not dnf', () => {
    const patched: ImageVerdict = { ...python, verdict: 'mismatch', reason: 'md5_differs' };
    expect(withScript(patched, dnf, '/usr/bin/dnf-3')).toMatchObject({ name: 'dnf', role: 'package_manager', verdict: 'mismatch', reason: 'md5_differs' });
    const traced: ImageVerdict = { ...python, verdict: 'inconclusive', reason: 'traced' };
    expect(withScript(traced, dnf, '/usr/bin/dnf-3')).toMatchObject({ verdict: 'inconclusive', reason: 'traced' });
  });

  it('takes the script\'s failure, and a mismatch before an inconclusive part', () => {
    const planted: ImageVerdict = { verdict: 'inconclusive', reason: 'not_in_any_package' };
    const out = withScript(python, planted, '/tmp/x/dnf');
    expect(out).toMatchObject({ verdict: 'inconclusive', reason: 'not_in_any_package', script: { path: '/tmp/x/dnf', verdict: 'inconclusive' } });
    expect(out.name).toBeUndefined();
    expect(out.role).toBeUndefined();
    const edited: ImageVerdict = { ...dnf, verdict: 'mismatch', reason: 'md5_differs' };
    const gone: ImageVerdict = { verdict: 'inconclusive', reason: 'writer_gone' };
    expect(withScript(gone, edited, '/usr/bin/dnf-3')).toMatchObject({ verdict: 'mismatch', reason: 'md5_differs', interpreter: { verdict: 'inconclusive', reason: 'writer_gone' } });
  });
});

const interpreter = existsSync('/usr/bin/python3') ? realpathSync('/usr/bin/python3') : '';
const hostDnf = existsSync('/var/lib/dpkg/info/dnf.md5sums') && existsSync('/usr/bin/dnf-3') && existsSync(`/var/lib/dpkg/info/${interpreter.slice(interpreter.lastIndexOf('/') + 1)}-minimal.list`);

describe.skipIf(!hostDnf)('the verifier with a script (skipped: needs Debian\'s dnf and python3 from dpkg: apt-get install dnf)', () => {
  it('verifies python3 with dnf\'s script as dnf, and refuses a script put at its path after the writer started', () => {
    const me = readProc(process.pid)!;
    const v = new PackageVerifier('/');
    const asDnf = v.facts(process.pid, { ...me, exe: interpreter, script: '/usr/bin/dnf-3' }, 'exec_cache');
    expect(asDnf).toMatchObject({ manager: 'dpkg', name: 'dnf', role: 'package_manager', verdict: 'verified', interpreter: { verdict: 'verified' }, script: { path: '/usr/bin/dnf-3', name: 'dnf', verdict: 'verified' } });
    // Without the script (python3 /usr/bin/dnf: argv only): python3's own package, no role.
    const argvOnly = v.facts(process.pid, { ...me, exe: interpreter }, 'exec_cache');
    expect(argvOnly).toMatchObject({ verdict: 'verified' });
    expect(argvOnly.role).toBeUndefined();
    expect(argvOnly.script).toBeUndefined();
    // dnf's bytes copied now: changed since this process started, not judged.
    const copy = join(tempDir('ldg-script-'), 'dnf-3');
    copyFileSync('/usr/bin/dnf-3', copy);
    chmodSync(copy, 0o755);
    expect(v.facts(process.pid, { ...me, exe: interpreter, script: copy }, 'exec_cache')).toMatchObject({ verdict: 'inconclusive', reason: 'image_changed_since_start', script: { path: copy } });
  });
});

/** A live python3 (sleeping) started with `env`, once /proc shows its image. */
async function livePython(env: NodeJS.ProcessEnv): Promise<ProcFacts> {
  const child = spawn('/usr/bin/python3', ['-c', 'import time; time.sleep(60)'], { env, stdio: 'ignore' });
  whenDone(() => child.kill('SIGKILL'));
  for (;;) {
    const p = readProc(child.pid!);
    if (p?.exe === interpreter) return p;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!hostDnf)('a live interpreter\'s environment (skipped: needs Debian\'s dnf and python3 from dpkg: apt-get install dnf)', () => {
  it('does not verify an interpreter started with PYTHONPATH (or PYTHONINSPECT, LD_PRELOAD …), whatever its script', async () => {
    const v = new PackageVerifier('/');
    const clean = { PATH: process.env.PATH };
    const plain = await livePython(clean);
    expect(v.facts(plain.pid, { ...plain, script: '/usr/bin/dnf-3' }, 'live_proc')).toMatchObject({ name: 'dnf', verdict: 'verified', interpreter: { verdict: 'verified', reason: 'md5_matches' } });
    for (const name of ['PYTHONPATH', 'PYTHONINSPECT', 'LD_PRELOAD']) {
      const p = await livePython({ ...clean, [name]: '/tmp/ldg-planted' });
      expect(v.facts(p.pid, { ...p, script: '/usr/bin/dnf-3' }, 'live_proc'), name).toMatchObject({ name: 'dnf', verdict: 'inconclusive', reason: 'interpreter_environment', script: { verdict: 'verified' } });
      // The same process as python3 alone (no script): its own verdict, which no rule reads as a package manager's.
      expect(v.facts(p.pid, p, 'live_proc').verdict).toBe('verified');
    }
  });
});

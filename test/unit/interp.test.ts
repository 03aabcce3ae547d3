// The loaders in use (agent/src/enrich/interp.ts): PT_INTERP read from the root's own binaries, and
// spelled every way an alert can give it, all inside the root.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { elfInterp, loadersInUse } from '../../agent/src/enrich/interp.js';
import { resolveInRoot } from '../../agent/src/root-path.js';
import { scratchRoot } from '../helpers/agent.js';
import { removeWhenDone } from '../helpers/temp.js';

/** What readelf says /usr/bin/env asks for, as the reference. */
function readelfInterp(path: string): string {
  const out = execFileSync('readelf', ['-l', path], { encoding: 'utf8' });
  return /Requesting program interpreter: (\S+)\]/.exec(out)![1]!;
}

describe('loaders in use', () => {
  it('reads PT_INTERP as readelf does, and nothing from a file that is not ELF', () => {
    expect(elfInterp(readFileSync('/usr/bin/env'))).toBe(readelfInterp('/usr/bin/env'));
    expect(elfInterp(Buffer.from('#!/bin/sh\necho hi\n'))).toBeNull();
    expect(elfInterp(readFileSync('/usr/bin/env').subarray(0, 40))).toBeNull();
  });

  it('finds the interpreter of the root\'s binaries and spells it as named, by real folder and fully resolved, inside the root', () => {
    const root = removeWhenDone(scratchRoot());
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    copyFileSync('/usr/bin/env', join(root, 'usr/bin/env'));
    // The loader of the scratch root: lib64/ld-linux-x86-64.so.2 -> an absolute target, taken inside the root.
    symlinkSync('/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(root, 'usr/lib64/ld-linux-x86-64.so.2'));
    const named = readelfInterp('/usr/bin/env');
    const { paths, named: found } = loadersInUse(root);
    expect(found).toEqual([named]);
    expect(named).toBe('/lib64/ld-linux-x86-64.so.2'); // x86-64: the rest of the test spells it out
    expect([...paths].sort()).toEqual(['/lib64/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', '/usr/lib64/ld-linux-x86-64.so.2']);
  });

  it('never leaves the root when resolving', () => {
    const root = removeWhenDone(scratchRoot());
    symlinkSync('../../../../../etc', join(root, 'usr/lib/up'));
    expect(resolveInRoot(root, '/lib/up/passwd')).toBe('/etc/passwd'); // the root's /etc, not the host's
    expect(loadersInUse(root).named).toEqual([]); // no binaries in the root: none found, none read outside
  });
});

// The ECS process builder on the facts a source gives for a writer whose names are bytes: each
// text field that is not UTF-8 escaped as agent/src/byte-path.ts escapes paths, field by field and
// argument by argument; every other field exactly as the source decoded it. Pure: no /proc.
import { describe, expect, it } from 'vitest';
import { ecsProcess, processEscaped } from '../../agent/src/enrich/proc.js';
import { NameTable } from '../../agent/src/enrich/users.js';
import type { ProcFacts } from '../../agent/src/source/source.js';

const names = { users: new NameTable([]), groups: new NameTable([]) };
const NO_ID = 4294967295;
const b = (...parts: Array<string | number[] | Buffer>) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

/** What a source reports: the lossy UTF-8 decoding of each field, and the raw bytes of those that need them. */
function facts(fields: { exe?: Buffer; comm?: Buffer; cmdline?: Buffer; cwd?: Buffer }): ProcFacts {
  const dec = (x: Buffer | undefined) => (x ? x.toString('utf8') : null);
  const raw = (x: Buffer | undefined) => x !== undefined && !x.equals(Buffer.from(x.toString('utf8')));
  return {
    pid: 42,
    ppid: 1,
    exe: dec(fields.exe),
    comm: dec(fields.comm),
    args: fields.cmdline ? fields.cmdline.toString('utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1) : [],
    cwd: dec(fields.cwd),
    uid: NO_ID,
    gid: NO_ID,
    euid: NO_ID,
    egid: NO_ID,
    loginuid: null,
    startTicks: 7,
    ...(raw(fields.exe) ? { rawExe: fields.exe } : {}),
    ...(raw(fields.comm) ? { rawComm: fields.comm } : {}),
    ...(raw(fields.cmdline) ? { rawArgs: fields.cmdline } : {}),
    ...(raw(fields.cwd) ? { rawCwd: fields.cwd } : {}),
  };
}

describe('process fields that are not UTF-8', () => {
  it('escapes each broken field and argument alone; backslashes only there', () => {
    const dir = b('/tmp/a', [0xff], '\\é');
    const p = facts({
      exe: b(dir, '/cp', [0xfe]),
      comm: b('cp', [0xfe]),
      cmdline: b(dir, '/cp', [0xfe], '\0', 'C:\\dir\0', dir, '/src\0/lib64/ld.so\0'),
      cwd: dir,
    });
    const e = ecsProcess(p, null, 'h', names);
    expect(e).toMatchObject({
      executable: '/tmp/a\\xff\\x5cé/cp\\xfe',
      name: 'cp\\xfe',
      working_directory: '/tmp/a\\xff\\x5cé',
      args: ['/tmp/a\\xff\\x5cé/cp\\xfe', 'C:\\dir', '/tmp/a\\xff\\x5cé/src', '/lib64/ld.so'],
      args_count: 4,
      command_line: `'/tmp/a\\xff\\x5cé/cp\\xfe' 'C:\\dir' '/tmp/a\\xff\\x5cé/src' /lib64/ld.so`,
    });
    expect(processEscaped(p, null)).toBe(true);
  });

  it('splits argv bytes as the addon does: a cut last argument is kept, an empty one too', () => {
    const p = facts({ cmdline: b('x\0\0', [0xc3]) }); // "x", "", then a sequence cut at 4 KiB
    expect(ecsProcess(p, null, 'h', names).args).toEqual(['x', '', '\\xc3']);
  });

  it('shows a comm the kernel cut inside a UTF-8 sequence with the lone byte escaped', () => {
    const comm = b('ааааааа', [0xd0]); // 15 bytes: seven Cyrillic letters and half of the eighth
    const p = facts({ comm });
    expect(ecsProcess(p, null, 'h', names).name).toBe('ааааааа\\xd0');
  });

  it('flags a parent alone, and shows its fields escaped', () => {
    const child = facts({ exe: b('/usr/bin/cp'), comm: b('cp'), cmdline: b('cp\0a\0b\0'), cwd: b('/') });
    const parent = facts({ exe: b('/opt/', [0x80], '/sh'), cmdline: b('/opt/', [0x80], '/sh\0') });
    expect(processEscaped(child, null)).toBe(false);
    expect(processEscaped(child, parent)).toBe(true);
    expect(ecsProcess(child, parent, 'h', names).parent).toMatchObject({ executable: '/opt/\\x80/sh', args: ['/opt/\\x80/sh'] });
  });

  it('leaves UTF-8 fields exactly as they were, a literal \\x5c and backslashes included', () => {
    const p = facts({ exe: b('/opt/ok\\é/x\\x5c'), comm: b('x\\x5c'), cmdline: b('/opt/ok\\é/x\\x5c\0'), cwd: b('/opt/ok\\é') });
    expect(ecsProcess(p, null, 'h', names)).toMatchObject({ executable: '/opt/ok\\é/x\\x5c', name: 'x\\x5c', args: ['/opt/ok\\é/x\\x5c'], working_directory: '/opt/ok\\é' });
    expect(processEscaped(p, null)).toBe(false);
  });
});

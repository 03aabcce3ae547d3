// Writers whose own names are bytes, not UTF-8: a program run as "/tmp/…/bad\xff\\é/cp\xfe" from
// that directory, with such arguments, must be named in the alert exactly, as
// agent/src/byte-path.ts escapes paths (each byte outside a UTF-8 sequence as \xNN, and in that
// field only each backslash as \x5c), and flagged by ldguard.process_escaped; a writer whose names
// are UTF-8, backslash included, must be reported as it always was. Real fanotify and inotify, real
// copies of cp and sh run from Buffer-named directories, a scratch host root.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

const bin = (name: string) => realpathSync(execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim());

/** A printf(1) format that prints exactly the bytes of b (Node cannot pass such bytes in argv). */
const octal = (b: Buffer) => [...b].map((x) => `\\${x.toString(8).padStart(3, '0')}`).join('');

/** The scratch programs: BASE/bad\xff\é/{cp\xfe,sh,src}, and BASE/ok\é/cp, whose name is UTF-8. */
interface Scratch {
  base: string;
  /** What the alert must show for the bad directory: \xff escaped, the backslash as \x5c, é kept. */
  shown: string;
  bad: Buffer;
  cpName: Buffer;
  ok: string;
}

function prepare(): Scratch {
  const base = realpathSync(tempDir('ldg-procbytes-'));
  const bad = Buffer.concat([Buffer.from(`${base}/bad`), Buffer.from([0xff]), Buffer.from('\\é')]);
  const cpName = Buffer.concat([Buffer.from('cp'), Buffer.from([0xfe])]);
  mkdirSync(bad);
  copyFileSync(bin('cp'), Buffer.concat([bad, Buffer.from('/'), cpName]));
  copyFileSync(bin('sh'), Buffer.concat([bad, Buffer.from('/sh')]));
  writeFileSync(Buffer.concat([bad, Buffer.from('/src')]), 'x\n');
  const ok = join(base, 'ok\\é');
  mkdirSync(ok);
  copyFileSync(bin('cp'), join(ok, 'cp'));
  return { base, shown: `${base}/bad\\xff\\x5cé`, bad, cpName, ok };
}

/**
 * From the bad directory, BAD/sh (the parent) runs BAD/cp\xfe BAD/src DEST in the background and
 * prints its pid; returns the pids of cp and of its parent.
 */
function badCp(s: Scratch, dest: string): Promise<{ pid: number; ppid: number }> {
  const script = 'd=$(printf "$1"); c=$(printf "$2"); cd "$d" || exit 1; exec "$d/sh" -c \'"$1" "$2" "$3" & echo $!; wait\' sh "$d/$c" "$d/src" "$3"';
  return new Promise((resolve, reject) => {
    const p = spawn('/bin/sh', ['-c', script, 'sh', octal(s.bad), octal(s.cpName), dest], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve({ pid: Number(out.trim()), ppid: p.pid! }) : reject(new Error(`writer exited ${code}`))));
  });
}

/** BAD/sh, run from the bad directory, holds DEST open for `ms`; returns its pid and a stop function. */
function badHolder(s: Scratch, dest: string): { pid: number; stop: () => void } {
  const script = 'd=$(printf "$1"); cd "$d" || exit 1; exec "$d/sh" -c \'exec 3>"$1"; sleep 3\' "$d/sh" "$2"';
  const p = spawn('/bin/sh', ['-c', script, 'sh', octal(s.bad), dest], { stdio: 'ignore' });
  return { pid: p.pid!, stop: () => p.kill() };
}

describe.skipIf(!isRoot).each(['fanotify', 'inotify'])('process fields that are not UTF-8, %s source (skipped: needs root for fanotify)', (source) => {
  let agent: RunningAgent;
  let s: Scratch;
  beforeAll(async () => {
    s = prepare();
    agent = await startAgent({ source });
  });
  afterAll(async () => {
    expect(await agent.stop()).toBe(0);
  });

  it('names a writer that holds the file open by its escaped executable, working directory and arguments', async () => {
    const dest = join(agent.root, 'lib64/ld-linux-x86-64.so.2.held-bytes');
    const w = badHolder(s, dest);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.held-bytes'));
    w.stop();
    const a = alerts.find((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.held-bytes');
    expect(a?.rule.id).toBe(SEED_ID);
    expect(a?.process).toMatchObject({
      pid: w.pid,
      executable: `${s.shown}/sh`,
      name: 'sh',
      working_directory: s.shown,
      args: [`${s.shown}/sh`, '-c', 'exec 3>"$1"; sleep 3', `${s.shown}/sh`, dest],
      command_line: `'${s.shown}/sh' -c 'exec 3>"$1"; sleep 3' '${s.shown}/sh' ${dest}`,
    });
    expect(a?.ldguard.process_escaped).toBe(true);
    expect(a?.ldguard.path_escaped).toBeUndefined();
  });
});

describe.skipIf(!isRoot)('short-lived writers named with bytes (skipped: needs root for fanotify)', () => {
  let agent: RunningAgent;
  let s: Scratch;
  beforeAll(async () => {
    s = prepare();
    agent = await startAgent({ source: 'fanotify' });
  });
  afterAll(async () => {
    expect(await agent.stop()).toBe(0);
  });

  it('names the writer and its parent field by field: escaped where the bytes are not UTF-8, as they are elsewhere', async () => {
    const dest = join(agent.root, 'lib64/ld-linux-x86-64.so.2.cp-bytes');
    const { pid, ppid } = await badCp(s, dest);
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.cp-bytes'));
    const a = alerts.find((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.cp-bytes');
    expect(a?.rule.id).toBe(SEED_ID);
    expect(a?.process).toMatchObject({
      pid,
      executable: `${s.shown}/cp\\xfe`,
      name: 'cp\\xfe',
      working_directory: s.shown,
      args: [`${s.shown}/cp\\xfe`, `${s.shown}/src`, dest],
      args_count: 3,
      command_line: `'${s.shown}/cp\\xfe' '${s.shown}/src' ${dest}`,
    });
    expect(a?.process.parent).toMatchObject({
      pid: ppid,
      executable: `${s.shown}/sh`,
      name: 'sh',
      args: [`${s.shown}/sh`, '-c', '"$1" "$2" "$3" & echo $!; wait', 'sh', `${s.shown}/cp\\xfe`, `${s.shown}/src`, dest],
    });
    expect(a?.ldguard.process_escaped).toBe(true);
  });

  it('reports a writer whose names are UTF-8 as before: a backslash stays a backslash, no flag', async () => {
    const dest = join(agent.root, 'lib64/ld-linux-x86-64.so.2.cp-utf8');
    const cp = join(s.ok, 'cp');
    const pid = await new Promise<number>((resolve, reject) => {
      const p = spawn(cp, ['/bin/true', dest], { cwd: s.ok, stdio: 'ignore' });
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve(p.pid!) : reject(new Error(`cp exited ${code}`))));
    });
    const alerts = await agent.waitForAlerts((a) => a.some((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.cp-utf8'));
    const a = alerts.find((x) => x.file.path === '/usr/lib64/ld-linux-x86-64.so.2.cp-utf8');
    expect(a?.process).toMatchObject({ pid, executable: cp, name: 'cp', working_directory: s.ok, args: [cp, '/bin/true', dest] });
    expect(cp).toContain('ok\\é/cp');
    expect(a?.ldguard.process_escaped).toBeUndefined();
  });
});

// Real writers of each kind the agent must attribute: each runs as a fresh short-lived process and
// the test learns its pid from spawn (or from the trigger's own report).
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findRepoRoot } from '../../shared/paths.js';

export interface Written {
  kind: string;
  pid: number;
  exe: string;
  comm: string;
}

const bin = (name: string) => realpathSync(execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim());

const python = () => realpathSync(execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim());

let tools: { dir: string; writer: string; dnf: string } | undefined;

/**
 * Compile the C trigger (static when the toolchain allows) and copy cp to a binary named dnf, once
 * per process, into a temporary folder that removeTools removes.
 */
export function prepareTools(): { dir: string; writer: string; dnf: string } {
  if (tools) return tools;
  const dir = mkdtempSync(join(tmpdir(), 'ldg-tools-'));
  const src = join(findRepoRoot(), 'test/fixtures/triggers/ldg_writer.c');
  const writer = join(dir, 'ldg_writer');
  try {
    execFileSync('cc', ['-O2', '-static', '-o', writer, src], { stdio: 'ignore' });
  } catch {
    execFileSync('cc', ['-O2', '-o', writer, src]);
  }
  const dnf = join(dir, 'dnf');
  copyFileSync(bin('cp'), dnf);
  return (tools = { dir, writer, dnf });
}

/** Removes what prepareTools made; the next prepareTools makes them again. */
export function removeTools(): void {
  if (tools) rmSync(tools.dir, { recursive: true, force: true });
  tools = undefined;
}

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(p.pid!) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

/** Each kind writes `path` (which must not exist); returns who the agent must name. */
export const WRITERS: Record<string, (path: string) => Promise<Written>> = {
  touch: async (p) => ({ kind: 'touch', pid: await run('touch', [p]), exe: bin('touch'), comm: 'touch' }),
  cp: async (p) => ({ kind: 'cp', pid: await run('cp', ['/bin/true', p]), exe: bin('cp'), comm: 'cp' }),
  install: async (p) => ({ kind: 'install', pid: await run('install', ['-m', '0755', '/bin/true', p]), exe: bin('install'), comm: 'install' }),
  'sh redirect': async (p) => ({ kind: 'sh redirect', pid: await run('/bin/sh', ['-c', 'echo x > "$1"', 'sh', p]), exe: bin('sh'), comm: 'sh' }),
  dd: async (p) => ({ kind: 'dd', pid: await run('dd', ['if=/dev/zero', `of=${p}`, 'bs=512', 'count=1', 'status=none']), exe: bin('dd'), comm: 'dd' }),
  ln: async (p) => ({ kind: 'ln', pid: await run('ln', [prepareTools().writer, p]), exe: bin('ln'), comm: 'ln' }),
  'ln -s': async (p) => ({ kind: 'ln -s', pid: await run('ln', ['-s', '/bin/true', p]), exe: bin('ln'), comm: 'ln' }),
  // python3 may be a wrapper that execs the interpreter (pyenv's shim): the writer is the interpreter.
  python3: async (p) => ({ kind: 'python3', pid: await run('python3', ['-c', 'import sys; open(sys.argv[1], "w").write("x")', p]), exe: python(), comm: 'python3' }),
  'static writer exits at once': async (p) => ({ kind: 'static writer', pid: await run(prepareTools().writer, [p]), exe: prepareTools().writer, comm: 'ldg_writer' }),
  'writer then exec': async (p) => ({ kind: 'writer then exec', pid: await run(prepareTools().writer, [p, '/bin/true']), exe: prepareTools().writer, comm: 'ldg_writer' }),
  'forked subshell without exec': async (p) => {
    // The subshell is a fork of sh that writes and exits; it never execs, so it is named by sh's image.
    const out = execFileSync('/bin/sh', ['-c', '(echo x > "$1") & echo $!; wait', 'sh', p], { encoding: 'utf8' });
    return { kind: 'forked subshell', pid: Number(out.trim()), exe: bin('sh'), comm: 'sh' };
  },
};

// What nested-directory exactness (agent/native/src/subtree.c) costs and what it leaves inexact, in
// figures, run once by hand (not part of `npm run bench`): `npm run build`, then as root
//   node dist/test/bench/nested-dirs.js [ROUNDS] [FILES] [TRIALS] [nested_dirs=false]
// 1. Cost to unrelated writers: the C churner makes FILES files in a folder outside the watched
//    ones but on the same filesystem, with no watcher, with the watcher without the filesystem
//    creation mark (nestedDirs: false) and with it, in turn, ROUNDS times; medians of the writer's
//    elapsed and CPU time, and of the watcher's own CPU (its reader thread runs in this process).
// 2. The race it cannot win: TRIALS files made by a child spinning on open(2) while its parent
//    makes their directory (c/mkdir-race.c), against the real agent: how many alerts name the
//    child exactly, how many say "created_before_dir_marked", how many files got none or two. With
//    `nested_dirs=false` the agent runs without the creation mark (the fallback's share).
// Prints figures only; nothing passes or fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNative } from '../../agent/src/native.js';
import { scratchRoot, startAgent } from '../helpers/agent.js';

const [rounds = 5, files = 100_000, trials = 200] = process.argv.slice(2, 5).map(Number);
const markOff = process.argv[5] === 'nested_dirs=false';
const src = join(import.meta.dirname, '../../../test/bench/c');
const bin = mkdtempSync(join(tmpdir(), 'ldg-nested-bin-'));
for (const name of ['churn', 'mkdir-race']) execFileSync('cc', ['-O2', '-Wall', '-o', join(bin, name), join(src, `${name}.c`)], { stdio: ['ignore', 'ignore', 'inherit'] });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cpuNs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};

type Mode = 'no watcher' | 'watcher, no creation mark' | 'watcher + creation mark';
const modes: Mode[] = ['no watcher', 'watcher, no creation mark', 'watcher + creation mark'];
const figures = new Map<Mode, { elapsed: number[]; cpu: number[]; agentCpu: number[]; read: number[]; overflows: number[] }>(modes.map((m) => [m, { elapsed: [], cpu: [], agentCpu: [], read: [], overflows: [] }]));

const root = scratchRoot('ldg-nested-cost-');
const elsewhere = mkdtempSync(join(tmpdir(), 'ldg-nested-elsewhere-'));
try {
  const { Watcher } = loadNative();
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const out = join(elsewhere, `${r}-${modes.indexOf(mode)}`);
      mkdirSync(out);
      const w = mode === 'no watcher' ? null : new Watcher({ dirs: [join(root, 'usr/lib'), join(root, 'usr/lib64')], prefixes: ['ld-linux'], execCache: true, nestedDirs: mode === 'watcher + creation mark' }, () => undefined);
      const before = cpuNs();
      const text = execFileSync(join(bin, 'churn'), [out, String(files), '0', 'f', '0'], { encoding: 'utf8' });
      await new Promise((res) => setTimeout(res, 300)); // the reader drains what is queued
      const agentCpu = cpuNs() - before;
      const stats = w?.stats();
      w?.close();
      const f = figures.get(mode)!;
      f.elapsed.push(Number(/elapsed_ns (\d+)/.exec(text)![1]) / 1e6);
      f.cpu.push(Number(/cpu_ns (\d+)/.exec(text)![1]) / 1e6);
      f.agentCpu.push(w ? agentCpu / 1e6 : 0);
      f.read.push(stats?.read ?? 0);
      f.overflows.push(stats?.overflows ?? 0);
      rmSync(out, { recursive: true, force: true });
    }
  }
  if (rounds > 0) console.log(`\n## Cost to a writer of ${files} unrelated files on the watched filesystem (medians of ${rounds} rounds)\n`);
  if (rounds > 0) console.log('| mode | writer elapsed ms | writer CPU ms | watcher CPU ms | events read | overflows |\n|---|---|---|---|---|---|');
  for (const m of rounds > 0 ? modes : []) {
    const f = figures.get(m)!;
    console.log(`| ${m} | ${median(f.elapsed).toFixed(1)} | ${median(f.cpu).toFixed(1)} | ${median(f.agentCpu).toFixed(1)} | ${median(f.read)} | ${median(f.overflows)} |`);
    console.log(`|   (all rounds) | ${f.elapsed.map((x) => x.toFixed(0)).join(' ')} | ${f.cpu.map((x) => x.toFixed(0)).join(' ')} | ${f.agentCpu.map((x) => x.toFixed(0)).join(' ')} | | |`);
  }

  // max_signals (100 per rule per window) would hold alerts back: at most 90 trials per agent.
  let exact = 0, early = 0, wrong = 0, none = 0, twice = 0;
  for (let done = 0, run = 0; done < trials; run++) {
    const n = Math.min(90, trials - done);
    done += n;
    const runRoot = scratchRoot('ldg-nested-race-');
    const config = join(bin, 'agent.toml');
    writeFileSync(config, `nested_dirs = ${!markOff}\n`);
    const agent = await startAgent({ root: runRoot, extra: ['--config', config] });
    try {
      const lines = execFileSync(join(bin, 'mkdir-race'), [join(runRoot, 'usr/lib'), String(n)], { encoding: 'utf8' }).trim().split('\n');
      const settle = `/usr/lib/ld-linux-race-settle${run}`;
      mkdirSync(join(runRoot, settle));
      const end = Date.now() + 30_000;
      while (!agent.logs().some((l) => l.msg === 'new directory checked' && (l.dirs as string[]).includes(settle)) && Date.now() < end) await new Promise((res) => setTimeout(res, 50));
      const alerts = agent.alerts();
      for (const line of lines) {
        const [i, pid] = line.split(' ').map(Number) as [number, number];
        // One alert per rule that fires: the creation rule for a named writer, the unidentified rule otherwise.
        const hits = alerts.filter((a) => a.file.path === `/usr/lib/ld-linux-race${i}/evil.so`);
        const ids = new Set(hits.map((a) => a.rule.id));
        if (hits.length === 0) none++;
        if (hits.length > ids.size) twice++;
        const h = hits[0];
        if (!h) continue;
        if (h.ldguard.attribution === 'unknown' && h.ldguard.attribution_reason === 'created_before_dir_marked') early++;
        else if (h.process?.pid === pid) exact++;
        else wrong++;
      }
    } finally {
      await agent.stop();
      rmSync(runRoot, { recursive: true, force: true });
    }
  }
  console.log(`\n## A child creating DIR/evil.so the instant its parent makes DIR (${trials} trials, nested_dirs = ${!markOff})\n`);
  console.log('| exact writer | unidentified, created_before_dir_marked | other writer | no alert | two alerts of one rule |');
  console.log('|---|---|---|---|---|');
  console.log(`| ${exact} | ${early} | ${wrong} | ${none} | ${twice} |`);
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(elsewhere, { recursive: true, force: true });
  rmSync(bin, { recursive: true, force: true });
}

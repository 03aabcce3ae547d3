// The whole path as it runs in production: a real writer, the real agent (fanotify, scratch root),
// the real collector (SQLite in a temp dir), read back through the API. Then the crashes: kill -9
// of the collector mid-stream, kill -9 of the agent with alerts still spooled, a torn spool record;
// every alert must be stored exactly once. And `ldguard tail` as an operator uses it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchRoot, startAgent, type RunningAgent } from '../helpers/agent.js';
import { CLI, initDb } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { removeWhenDone, tempDir } from '../helpers/temp.js';

const isRoot = process.getuid?.() === 0;
const SEED_ID = '06d555e4-c8ce-4d90-90e1-ec7f66df5a6a';

describe.skipIf(!isRoot)('agent to collector, end to end (skipped: the agent needs root for fanotify)', () => {
  const work = tempDir('ldg-e2e-');
  const db = join(work, 'collector.db');
  const tokenFile = join(work, 'agent.token');
  const stateDir = join(work, 'agent-state');
  const root = removeWhenDone(scratchRoot());
  let admin = '';
  let port = 0;
  let collector: Daemon;
  let agent: RunningAgent;
  const children = new Set<ChildProcess>();

  const token = (name: string, role: string) => initDb(db) ?? spawnSync(process.execPath, [CLI, 'token', 'create', '--db', db, '--name', name, '--role', role], { encoding: 'utf8' }).stdout.trim();
  const startCollector = async () => {
    collector = await startDaemon(['collector', '--listen', `127.0.0.1:${port}`, '--db', db]);
    port = collector.ready.port as number;
  };
  const startTheAgent = async () => {
    agent = await startAgent({ root, stateDir, extra: ['--collector', `ws://127.0.0.1:${port}`, '--token-file', tokenFile] });
  };
  const stored = async (): Promise<Array<Record<string, any>>> => {
    const r = await fetch(`http://127.0.0.1:${port}/api/alerts?limit=1000`, { headers: { authorization: `Bearer ${admin}` } });
    expect(r.status).toBe(200);
    return ((await r.json()) as { alerts: Array<Record<string, any>> }).alerts;
  };
  const waitStored = async (paths: string[], ms = 15_000) => {
    const end = Date.now() + ms;
    for (;;) {
      const all = await stored().catch(() => []);
      if (paths.every((p) => all.some((a) => a.file.path === p)) || Date.now() > end) return all;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const write = (name: string) => {
    spawnSync('cp', ['/bin/true', join(root, 'lib64', name)]);
    return `/usr/lib64/${name}`;
  };
  // Accepted means spooled: the alerts file is written without waiting for the spool's fsync, so
  // only the spool's own segments say an alert was accepted before a kill -9.
  const inSpool = async (paths: string[], ms = 15_000) => {
    const dir = join(stateDir, 'spool');
    const end = Date.now() + ms;
    for (;;) {
      const text = readdirSync(dir).filter((f) => f.endsWith('.seg')).map((f) => readFileSync(join(dir, f), 'latin1')).join('');
      if (paths.every((p) => text.includes(`"path":"${p}"`))) return;
      if (Date.now() > end) throw new Error(`not spooled within ${ms} ms: ${paths.join(', ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const exactlyOnce = (all: Array<Record<string, any>>, paths: string[]) => {
    for (const p of paths) expect(all.filter((a) => a.file.path === p && a.rule.id === SEED_ID), p).toHaveLength(1);
    expect(new Set(all.map((a) => a.kibana.alert.uuid)).size).toBe(all.length);
  };

  beforeAll(async () => {
    admin = token('admin', 'admin');
    writeFileSync(tokenFile, `${token('e2e-host', 'agent')}\n`, { mode: 0o600 });
    await startCollector();
    await startTheAgent();
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await agent?.stop('SIGKILL');
    await collector?.stop('SIGKILL');
  });

  it('a real writer\'s alert reaches the collector and reads back through the API', async () => {
    const path = write('ld-linux-x86-64.so.2.first');
    const all = await waitStored([path]);
    const hit = all.find((a) => a.file.path === path)!;
    expect(hit).toBeDefined();
    expect(hit.process.executable).toMatch(/\/cp$/);
    expect(hit.kibana.alert.rule.rule_id).toBe(SEED_ID);
    expect(hit.kibana.alert.workflow_status).toBe('open');
    const agents = (await (await fetch(`http://127.0.0.1:${port}/api/agents`, { headers: { authorization: `Bearer ${admin}` } })).json()) as { agents: Array<Record<string, any>> };
    expect(agents.agents.some((a) => JSON.stringify(a).includes('fanotify'))).toBe(true);
  });

  it('kill -9 of the collector mid-stream: alerts written meanwhile are stored exactly once after it returns', async () => {
    const before = ['a', 'b'].map((x) => write(`ld-linux.so.2.kc-${x}`));
    expect(await collector.stop('SIGKILL')).toBeNull();
    const during = ['c', 'd', 'e'].map((x) => write(`ld-linux.so.2.kc-${x}`));
    await new Promise((r) => setTimeout(r, 300));
    await startCollector();
    const paths = [...before, ...during];
    exactlyOnce(await waitStored(paths), paths);
  });

  it('kill -9 of the agent with alerts still spooled: the restarted agent delivers them exactly once', async () => {
    expect(await collector.stop('SIGTERM')).toBe(0);
    const spooled = ['a', 'b', 'c'].map((x) => write(`ld-linux.so.2.ka-${x}`));
    await inSpool(spooled);
    await agent.stop('SIGKILL');
    await startCollector();
    await startTheAgent();
    exactlyOnce(await waitStored(spooled), spooled);
  });

  it('a torn last spool record is skipped with a log line and the rest is delivered', async () => {
    expect(await collector.stop('SIGTERM')).toBe(0);
    const spooled = ['a', 'b'].map((x) => write(`ld-linux.so.2.torn-${x}`));
    await inSpool(spooled);
    await agent.stop('SIGKILL');
    const spoolDir = join(stateDir, 'spool');
    const last = readdirSync(spoolDir).filter((f) => f.endsWith('.seg')).sort().at(-1)!;
    appendFileSync(join(spoolDir, last), Buffer.from([0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])); // a frame cut short by power loss
    await startCollector();
    await startTheAgent();
    expect(agent.logs().some((l) => String(l.msg).startsWith('torn spool record skipped'))).toBe(true);
    exactlyOnce(await waitStored(spooled), spooled);
  });

  it('ldguard tail prints an alert that a real writer caused, as one readable line', async () => {
    const tail = spawn(process.execPath, [CLI, 'tail', '--socket', agent.socket], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(tail);
    let out = '';
    tail.stdout.on('data', (d) => (out += String(d)));
    // The stream starts with the connection: write only once the agent has the client.
    const clients = () => agent.logs().filter((l) => l.msg === 'tail client connected').length;
    const before = clients();
    for (const end = Date.now() + 10_000; clients() === before && Date.now() < end; ) await new Promise((r) => setTimeout(r, 25));
    const path = write('ld-linux.so.2.tail');
    const end = Date.now() + 10_000;
    while (!out.includes(path) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    tail.kill();
    const line = out.split('\n').find((l) => l.includes(path));
    expect(line).toBeDefined();
    expect(line).toContain('Dynamic Linker (ld.so) Creation');
    expect(line).toMatch(/\bcp\b/);
    expect(line).toMatch(/LOW|low/);
    expect(line).not.toContain('\u001b['); // not a TTY: no colour
  });

  it('ldguard tail says how to fix it when the agent is not running', () => {
    const r = spawnSync(process.execPath, [CLI, 'tail', '--socket', join(work, 'nobody.sock')], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/not running|LDG_ERR_AGENT_NOT_RUNNING/);
  });
});

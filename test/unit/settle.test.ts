// The wait before a package manager's file verdict (agent/src/enrich/package/settle.ts), on real
// processes: an event runs once its writer has exited (reaped or a zombie), or at the bound while
// the writer lives on; flush() runs what waits at once. No timing is asserted, only the order.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Settle } from '../../agent/src/enrich/package/settle.js';
import { startTicks } from '../../agent/src/enrich/package/verify.js';
import { whenDone } from '../helpers/temp.js';

const until = async (pred: () => boolean) => {
  while (!pred()) await new Promise((r) => setTimeout(r, 20));
};

describe('settle: waiting for the writer', () => {
  it('runs when the writer exits, not before; a writer that lives on is run at the bound', async () => {
    const writer = spawn('sleep', ['600'], { stdio: 'ignore' });
    whenDone(() => writer.kill('SIGKILL'));
    await once(writer, 'spawn');
    const ticks = startTicks(writer.pid!)!;
    const ran: string[] = [];
    const s = new Settle(60 * 60_000);
    s.add(writer.pid!, ticks, () => ran.push('writer'));
    // A pid now naming another process (another start time) counts as exited.
    s.add(process.pid, startTicks(process.pid)! + 1, () => ran.push('reused'));
    await until(() => ran.length > 0);
    expect(ran).toEqual(['reused']);
    expect(s.size).toBe(1);
    writer.kill('SIGKILL'); // a zombie until node reaps it: either way, gone
    await until(() => ran.length > 1);
    expect(ran).toEqual(['reused', 'writer']);

    const bounded = new Settle(0);
    bounded.add(process.pid, startTicks(process.pid)!, () => ran.push('bound')); // this process lives on
    await until(() => ran.length > 2);
    expect(ran.at(-1)).toBe('bound');
  });

  it('flush runs everything that waits, at once, in arrival order', () => {
    const s = new Settle();
    const ran: number[] = [];
    const ticks = startTicks(process.pid)!;
    for (const i of [1, 2, 3]) s.add(process.pid, ticks, () => ran.push(i));
    s.flush();
    expect(ran).toEqual([1, 2, 3]);
    expect(s.size).toBe(0);
  });
});

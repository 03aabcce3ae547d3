// The start-up rehearsal (Pipeline.rehearse) compiles the alert path and must leave no trace: an
// event that alerts when handled gives no alert, no count and no held-back summary when rehearsed.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostNameTables } from '../../agent/src/enrich/users.js';
import { Pipeline } from '../../agent/src/pipeline.js';
import { readProc } from '../../agent/src/source/procfs.js';
import type { RawFileEvent } from '../../agent/src/source/source.js';
import type { Alert } from '../../shared/ecs.js';
import { createLogger } from '../../shared/log.js';
import { bundledRulesDir } from '../../shared/paths.js';
import { loadRules } from '../../shared/rule.js';
import { tempDir } from '../helpers/temp.js';

describe('Pipeline.rehearse', () => {
  it('takes a matching creation through the alert path without emitting or counting it', async () => {
    const root = tempDir('ldg-rehearse-');
    mkdirSync(join(root, 'lib64'));
    writeFileSync(join(root, 'lib64/ld-linux-x86-64.so.2'), 'not really a linker');
    const emitted: Alert[] = [];
    const pipeline = new Pipeline(loadRules([bundledRulesDir()]), {
      realRoot: root,
      source: 'fanotify',
      agent: { id: 'test-agent', type: 'ldguard', version: '0', name: 'test' } as never,
      host: () => ({ name: 'test-host', id: 'test-host', os: { type: 'linux' } }) as never,
      names: hostNameTables('/'),
      hashMaxBytes: 1 << 20,
      writeWaitMs: 50,
      log: createLogger('test', 'silent'),
      emit: (a) => emitted.push(a),
      onDirectory: () => undefined,
    });
    const raw: RawFileEvent = {
      kind: 'create', dir: join(root, 'lib64'), name: 'ld-linux-x86-64.so.2', isDir: false, pid: process.pid,
      timeNs: BigInt(Date.now()) * 1_000_000n, attribution: 'live_proc', process: readProc(process.pid), parent: null,
    };

    pipeline.rehearse(raw);
    await pipeline.drain();
    expect(emitted).toEqual([]);
    expect(pipeline.counts).toEqual({ events: 0, matched: 0, alerts: 0, heldBack: 0, excepted: 0 });

    // The same event handled for real does alert: the rehearsal had something to hide.
    pipeline.handle([raw, { ...raw, kind: 'close_write' }]);
    await pipeline.drain();
    expect(emitted.map((a) => [a.file.path, a.rule.name, a.file.hash?.sha256?.length])).toEqual([
      ['/lib64/ld-linux-x86-64.so.2', 'Dynamic Linker (ld.so) Creation', 64],
    ]);
    expect(pipeline.counts.alerts).toBe(1);
  });
});

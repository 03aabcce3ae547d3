// Every error code the code can raise has a row in docs/errors.md (cause and fix), and the table
// names no code that no longer exists: the two are kept in step by this test.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findRepoRoot } from '../../shared/paths.js';

const root = findRepoRoot();

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === 'build' || e.name === 'node_modules' ? [] : sources(join(dir, e.name))) : /\.(ts|c|h)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

describe('docs/errors.md', () => {
  const files = ['agent/src', 'agent/native/src', 'collector/src', 'shared'].flatMap((d) => sources(join(root, d)));
  const used = new Set(files.flatMap((f) => readFileSync(f, 'utf8').match(/LDG_ERR_[A-Z_]*[A-Z]/g) ?? []));
  const documented = new Set(readFileSync(join(root, 'docs/errors.md'), 'utf8').match(/`LDG_ERR_[A-Z_]*[A-Z]`/g)?.map((c) => c.slice(1, -1)));

  it('documents every code the code raises', () => {
    expect([...used].filter((c) => !documented.has(c)).sort()).toEqual([]);
  });

  it('documents no code that is gone', () => {
    expect([...documented].filter((c) => !used.has(c)).sort()).toEqual([]);
  });
});

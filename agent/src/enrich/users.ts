// uid/gid → name from the host's passwd and group files (inside --root when they exist there, as
// the writers are the host's processes). Read once and again at most once a minute on a miss, so a
// user added after start is named without a reread on every event.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const REREAD_MS = 60_000;

export class NameTable {
  private names = new Map<number, string>();
  private readAt = -Infinity;

  constructor(private readonly files: readonly string[]) {}

  name(id: number): string | undefined {
    const hit = this.names.get(id);
    if (hit !== undefined) return hit;
    const now = Date.now();
    if (now - this.readAt < REREAD_MS) return undefined;
    this.readAt = now;
    this.names = new Map();
    for (const f of this.files) {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        const [name, , idText] = line.split(':');
        const n = Number(idText);
        if (name && idText && Number.isInteger(n) && !this.names.has(n)) this.names.set(n, name);
      }
      break; // the first file that exists is the host's
    }
    return this.names.get(id);
  }
}

export function hostNameTables(root: string): { users: NameTable; groups: NameTable } {
  return {
    users: new NameTable([join(root, 'etc/passwd'), '/etc/passwd']),
    groups: new NameTable([join(root, 'etc/group'), '/etc/group']),
  };
}

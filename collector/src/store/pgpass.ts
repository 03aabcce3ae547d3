// The password for a PostgreSQL connection, as libpq finds it: in the URL or PGPASSWORD, else in
// the password file (PGPASSFILE, else ~/.pgpass): lines `host:port:database:user:password`, `*`
// matching anything, `\:` and `\\` escaped, the first matching line winning, and the file ignored
// unless only its owner can read it. Under systemd the file comes as a credential (LoadCredential=,
// with PGPASSFILE=%d/pgpass): a DynamicUser cannot read root's files.
//
// Here rather than pg's own lookup, which is deprecated (pg 8 warns on every connection, pg 9
// drops it) and which pg now expects the caller to do through a password function.
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface PassFileTarget {
  host?: string;
  port?: number | string;
  database?: string;
  user?: string;
  password?: unknown;
}

/** Splits one line at unescaped colons, unescaping `\:` and `\\`. */
function fields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === '\\' && i + 1 < line.length) cur += line[++i];
    else if (ch === ':') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** The password for `t` from the file's text, or undefined. */
export function findPassword(text: string, t: PassFileTarget): string | undefined {
  // A socket directory is "localhost" to libpq's password file.
  const host = !t.host || t.host.startsWith('/') ? 'localhost' : t.host;
  const want = [host, String(t.port ?? 5432), t.database ?? '', t.user ?? ''];
  for (const raw of text.split(/\r?\n/)) {
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const f = fields(raw);
    if (f.length < 5) continue;
    if (want.every((w, i) => f[i] === '*' || f[i] === w)) return f.slice(4).join(':');
  }
  return undefined;
}

/** The password pg should send: the URL's or PGPASSWORD's when given, else the password file's. */
export async function connectionPassword(t: PassFileTarget, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (typeof t.password === 'string' && t.password !== '') return t.password;
  const file = env.PGPASSFILE || join(env.HOME || homedir(), '.pgpass');
  try {
    const st = await stat(file);
    // As libpq: a file others can read is not trusted with passwords.
    if (!st.isFile() || (st.mode & 0o077) !== 0) return undefined;
    return findPassword(await readFile(file, 'utf8'), t);
  } catch {
    return undefined;
  }
}

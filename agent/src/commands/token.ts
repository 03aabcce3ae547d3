// `ldguard token`: creates, lists and revokes the collector's tokens. A token is shown once, on
// stdout, when created; the database keeps only its SHA-256.
import Database from 'better-sqlite3';
import { LdgError } from '../../../shared/errors.js';
import { Auth } from '../../../collector/src/auth.js';
import { DEFAULTS } from '../../../collector/src/config.js';
import { Store, type Role } from '../../../collector/src/store/sqlite.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard token create --name NAME [--role agent|admin] [--db FILE]
       ldguard token list [--json] [--db FILE]
       ldguard token revoke --name NAME [--db FILE]
       ldguard token passwd --name NAME [--db FILE]

  create   prints a new token on stdout (the only time it is shown; store it in the agent's
           token_file, mode 0600). agent tokens connect agents; admin tokens call the API.
  list     name, role, created, revoked (never the token)
  revoke   the collector closes connections using it within a few seconds
  passwd   sets the dashboard password of an admin token's NAME: prompted twice on a terminal,
           else read from standard input (one line); stored as scrypt with its own salt. Ends
           that name's dashboard sessions. Revoking the token disables the password too.

  --db FILE   the collector's database (default ${DEFAULTS.db})
`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values } = parseOptions(`token ${sub}`, rest, {
    db: { type: 'string' },
    name: { type: 'string' },
    role: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const db = values.db ?? DEFAULTS.db;
  const need = (v: string | undefined, what: string): string => {
    if (!v) throw new LdgError('LDG_ERR_USAGE', `ldguard token ${sub} needs ${what}. Run 'ldguard token --help'`);
    return v;
  };
  const only = (allowed: string[]) => {
    for (const k of ['name', 'role', 'json'] as const) {
      if (values[k] !== undefined && !allowed.includes(k)) throw new LdgError('LDG_ERR_USAGE', `ldguard token ${sub} does not take --${k}. Run 'ldguard token --help'`);
    }
  };
  switch (sub) {
    case 'create': {
      only(['name', 'role']);
      const name = need(values.name, '--name NAME');
      const role = (values.role ?? 'agent') as Role;
      if (role !== 'agent' && role !== 'admin') throw new LdgError('LDG_ERR_USAGE', `--role must be agent or admin, not ${JSON.stringify(values.role)}`);
      const store = Store.open(db);
      try {
        const token = store.createToken(name, role);
        process.stdout.write(`${token}\n`);
        process.stderr.write(`created ${role} token "${name}" in ${db}; it is shown only this once\n`);
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'list': {
      only(['json']);
      const store = Store.open(db);
      try {
        const rows = store.listTokens().map((t) => ({
          name: t.name,
          role: t.role,
          created: new Date(t.created).toISOString(),
          revoked: t.revoked === null ? null : new Date(t.revoked).toISOString(),
        }));
        if (values.json) {
          for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
        } else {
          const table = [['NAME', 'ROLE', 'CREATED', 'REVOKED'], ...rows.map((r) => [r.name, r.role, r.created, r.revoked ?? '-'])];
          const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
          for (const row of table) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
        }
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'revoke': {
      only(['name']);
      const name = need(values.name, '--name NAME');
      const store = Store.open(db);
      try {
        if (!store.revokeToken(name)) {
          throw new LdgError('LDG_ERR_TOKEN_UNKNOWN', `no active token named ${name} in ${db}; see 'ldguard token list --db ${db}'`);
        }
        process.stderr.write(`revoked token "${name}"; a running collector closes its connections within seconds\n`);
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'passwd': {
      only(['name']);
      const name = need(values.name, '--name NAME');
      const store = Store.open(db);
      try {
        const conn = new Database(store.path);
        try {
          conn.pragma('busy_timeout = 5000');
          const auth = new Auth(conn);
          // Checked before asking, so nobody types a password twice for a name that will be refused.
          if (!auth.activeAdmin(name)) {
            throw new LdgError('LDG_ERR_PASSWD_NAME', `no active admin token named ${JSON.stringify(name)} in ${db}; create one first (ldguard token create --db ${db} --name ${name} --role admin)`);
          }
          const password = await readPassword();
          await auth.setPassword(name, password);
        } finally {
          conn.close();
        }
        process.stderr.write(`set the dashboard password of "${name}"; its open sessions were ended\n`);
      } finally {
        await store.close();
      }
      return 0;
    }
    default:
      throw new LdgError('LDG_ERR_USAGE', `unknown token command '${sub}'; use create, list, revoke or passwd`);
  }
}

/** The new password: prompted twice without echo on a terminal, else the first line of stdin. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
    const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
    if (!line) throw new LdgError('LDG_ERR_PASSWD_EMPTY', 'no password on standard input; pipe one line, e.g. `printf %s "$PW" | ldguard token passwd --name NAME`');
    return line;
  }
  const first = await promptHidden('New dashboard password: ');
  const second = await promptHidden('Repeat it: ');
  if (first !== second) throw new LdgError('LDG_ERR_PASSWD_MISMATCH', 'the two passwords differ; run the command again');
  return first;
}

function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    let text = '';
    const done = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new LdgError('LDG_ERR_PASSWD_ABORTED', 'interrupted; the password was not changed'));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on('data', onData);
  });
}

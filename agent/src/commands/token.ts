// `ldguard token`: creates, lists, rotates and revokes the collector's tokens, sets dashboard
// passwords, and lists the audit log of all that. A token is shown once, on stdout, when created
// or rotated; the database keeps only its SHA-256. Each change is appended to the audit log
// (collector/src/audit.ts) as the user who ran the command.
import Database from 'better-sqlite3';
import { userInfo } from 'node:os';
import { LdgError } from '../../../shared/errors.js';
import { Auth } from '../../../collector/src/auth.js';
import { PostgresCredentials } from '../../../collector/src/credentials/postgres.js';
import { SqliteCredentials } from '../../../collector/src/credentials/sqlite.js';
import { commandDb, INSTALLED_CONFIG } from '../../../collector/src/config.js';
import { isDbUrl, openStore, ownLikeTheDatabase } from '../../../collector/src/store/open.js';
import { PostgresStore } from '../../../collector/src/store/postgres.js';
import type { SqliteStore } from '../../../collector/src/store/sqlite.js';
import type { Role, Store } from '../../../collector/src/store/store.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard token create --name NAME [--role agent|admin] [--db FILE]
       ldguard token list [--json] [--db FILE]
       ldguard token rotate --name NAME [--db FILE]
       ldguard token revoke --name NAME [--db FILE]
       ldguard token passwd --name NAME [--db FILE]
       ldguard token audit [--json] [--db FILE]

  create   prints a new token on stdout (the only time it is shown; store it in the agent's
           token_file, mode 0600). agent tokens connect agents; admin tokens call the API.
  list     name, role, created, revoked (never the token)
  rotate   prints a new secret for the token NAME, shown once like create's; the old one stops
           working at once (a running collector closes its connections within a few seconds and
           ends its dashboard sessions). Name, role, created, the agent id an agent token is bound
           to, and an admin token's dashboard password stay.
  revoke   the collector closes connections using it within a few seconds; an admin token's
           dashboard password and sessions go with it
  passwd   sets the dashboard password of the active admin token NAME: prompted twice on a
           terminal, else read from standard input (one line); stored as scrypt with its own salt.
           Ends that token's dashboard sessions. The password belongs to that token: revoking it
           deletes the password, and a new token of the same name starts without one.
  audit    the audit log: token creations, rotations, revocations, password changes and
           dashboard logins, oldest first: when, who, what, which token (never a secret)

  --db FILE|URL   the collector's database, or postgres://USER@HOST:PORT/DB; default: the db of
                  --config FILE, or of ${INSTALLED_CONFIG} when it exists. A database that is not
                  there is an error, never created (the collector creates it at its first start;
                  ldguard db init makes it before).
  --config FILE   the collector's config, for its db
`;

/** Who ran the command, for the audit log: the user, and who called sudo when it did. */
function actor(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = `uid ${process.getuid?.() ?? '?'}`; // no passwd entry (a container's arbitrary uid)
  }
  const sudo = process.env.SUDO_USER;
  return sudo && sudo !== user ? `cli:${user} (sudo from ${sudo})` : `cli:${user}`;
}

/**
 * Runs `fn` with the store and the dashboard's Auth on a connection of its own. On SQLite, Auth is
 * set up first even for token commands: it migrates old password rows and installs the triggers
 * that take a token's password and sessions along when it is rotated or revoked. On PostgreSQL the
 * store's migrations made all that already.
 */
async function withStore<T>(db: string, fn: (store: Store, auth: Auth) => Promise<T> | T): Promise<T> {
  const store = await openStore(db, { mustExist: true });
  try {
    if (store instanceof PostgresStore) {
      const pool = store.newPool('ldguard-token', 1);
      try {
        return await fn(store, new Auth(new PostgresCredentials(pool)));
      } finally {
        await pool.end();
      }
    }
    const conn = new Database((store as SqliteStore).path);
    try {
      conn.pragma('busy_timeout = 5000');
      return await fn(store, new Auth(new SqliteCredentials(conn)));
    } finally {
      conn.close();
    }
  } finally {
    await store.close();
    if (!isDbUrl(db)) ownLikeTheDatabase(db);
  }
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub ? 0 : 2;
  }
  const { values } = parseOptions(`token ${sub}`, rest, {
    db: { type: 'string' },
    config: { type: 'string' },
    name: { type: 'string' },
    role: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const db = commandDb(values.db, values.config);
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
      await withStore(db, async (store, auth) => {
        const token = await store.createToken(name, role);
        // Shown before the audit row is written: should that fail, the token is not lost as well.
        process.stdout.write(`${token}\n`);
        process.stderr.write(`created ${role} token "${name}" in ${db}; it is shown only this once\n`);
        await auth.audit.append({ actor: actor(), action: 'create', tokenName: name, detail: `role ${role}` });
      });
      return 0;
    }
    case 'list': {
      only(['json']);
      const store = await openStore(db, { mustExist: true });
      try {
        const rows = (await store.listTokens()).map((t) => ({
          name: t.name,
          role: t.role,
          created: new Date(t.created).toISOString(),
          revoked: t.revoked === null ? null : new Date(t.revoked).toISOString(),
        }));
        if (values.json) {
          for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
        } else {
          printTable([['NAME', 'ROLE', 'CREATED', 'REVOKED'], ...rows.map((r) => [r.name, r.role, r.created, r.revoked ?? '-'])]);
        }
      } finally {
        await store.close();
        if (!isDbUrl(db)) ownLikeTheDatabase(db);
      }
      return 0;
    }
    case 'rotate': {
      only(['name']);
      const name = need(values.name, '--name NAME');
      await withStore(db, async (store, auth) => {
        const rotated = await store.rotateToken(name);
        if (!rotated) throw unknownToken(name, db);
        const { role, agentId } = rotated.info;
        const kept = role === 'agent' ? (agentId ? `bound to agent ${agentId}` : 'not yet bound to an agent') : 'dashboard password kept, sessions ended';
        // Shown first: the old secret is already dead, so losing the new one to a failed audit
        // write would leave the token unusable.
        process.stdout.write(`${rotated.token}\n`);
        process.stderr.write(`rotated ${role} token "${name}" (${kept}); the new one is shown only this once, the old one no longer works\n`);
        await auth.audit.append({ actor: actor(), action: 'rotate', tokenName: name, detail: `role ${role}; ${kept}` });
      });
      return 0;
    }
    case 'revoke': {
      only(['name']);
      const name = need(values.name, '--name NAME');
      await withStore(db, async (store, auth) => {
        const role = (await store.listTokens()).find((t) => t.name === name && t.revoked === null)?.role;
        // One autocommit statement: the revocation is on disk before this returns.
        if (!(await store.revokeToken(name))) throw unknownToken(name, db);
        await auth.audit.append({ actor: actor(), action: 'revoke', tokenName: name, detail: role === 'admin' ? 'role admin; dashboard password and sessions deleted' : `role ${role ?? 'unknown'}` });
        process.stderr.write(`revoked token "${name}"; a running collector closes its connections within seconds\n`);
      });
      return 0;
    }
    case 'passwd': {
      only(['name']);
      const name = need(values.name, '--name NAME');
      await withStore(db, async (_store, auth) => {
        // Checked before asking, so nobody types a password twice for a name that will be refused.
        if (!(await auth.activeAdmin(name))) {
          throw new LdgError('LDG_ERR_PASSWD_NAME', `no active admin token named ${JSON.stringify(name)} in ${db}; create one first (ldguard token create --db ${db} --name ${name} --role admin)`);
        }
        const password = await readPassword();
        await auth.setPassword(name, password, actor());
      });
      process.stderr.write(`set the dashboard password of "${name}"; its open sessions were ended\n`);
      return 0;
    }
    case 'audit': {
      only(['json']);
      const rows = await withStore(db, (_store, auth) => auth.audit.list());
      const view = rows.map((r) => ({ at: new Date(r.at).toISOString(), actor: r.actor, action: r.action, token_name: r.tokenName, detail: r.detail }));
      if (values.json) {
        for (const r of view) process.stdout.write(`${JSON.stringify(r)}\n`);
      } else {
        printTable([['AT', 'ACTOR', 'ACTION', 'TOKEN', 'DETAIL'], ...view.map((r) => [r.at, r.actor, r.action, r.token_name ?? '-', r.detail ?? ''])]);
      }
      return 0;
    }
    default:
      throw new LdgError('LDG_ERR_USAGE', `unknown token command '${sub}'; use create, list, rotate, revoke, passwd or audit`);
  }
}

/** Columns padded to their widest cell; the first row is the header. */
function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
}

function unknownToken(name: string, db: string): LdgError {
  return new LdgError('LDG_ERR_TOKEN_UNKNOWN', `no active token named ${name} in ${db}; see 'ldguard token list --db ${db}'`);
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

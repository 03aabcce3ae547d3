// `ldguard token`: creates, lists and revokes the collector's tokens. A token is shown once, on
// stdout, when created; the database keeps only its SHA-256.
import { LdgError } from '../../../shared/errors.js';
import { DEFAULTS } from '../../../collector/src/config.js';
import { Store, type Role } from '../../../collector/src/store/sqlite.js';
import { parseOptions } from '../args.js';

const HELP = `Usage: ldguard token create --name NAME [--role agent|admin] [--db FILE]
       ldguard token list [--json] [--db FILE]
       ldguard token revoke --name NAME [--db FILE]

  create   prints a new token on stdout (the only time it is shown; store it in the agent's
           token_file, mode 0600). agent tokens connect agents; admin tokens call the API.
  list     name, role, created, revoked (never the token)
  revoke   the collector closes connections using it within a few seconds

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
    default:
      throw new LdgError('LDG_ERR_USAGE', `unknown token command '${sub}'; use create, list or revoke`);
  }
}

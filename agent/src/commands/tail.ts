// `ldguard tail`: prints the agent's alerts as they happen, one readable line each, from the agent's
// local socket. With --since it first prints recent alerts from the alerts file (and its rotations).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { parseDuration } from '../../../shared/duration.js';
import { LdgError } from '../../../shared/errors.js';
import type { Alert } from '../../../shared/ecs.js';
import { visible } from '../../../shared/visible.js';
import { parseOptions } from '../args.js';
import { alertsFiles } from '../sink/alerts-file.js';
import { DEFAULT_SOCKET } from '../sink/local.js';
import { exitWhenStdoutCloses } from '../stdout-closed.js';

const DEFAULT_ALERTS_FILE = '/var/log/ldguard/alerts.ndjson';

const HELP = `Usage: ldguard tail [--socket PATH] [--json] [--held-back] [--since DURATION [--alerts-file FILE]]

Prints the agent's alerts as they happen, one line each: time, severity, rule, file, process
(name, executable, pid), user and how the writer was identified (attribution).

Past a rule's max_signals (100 alerts per 5 minutes and host by default) further matches are
recorded as held-back records, not alerts: a line says when holding back starts and ends, and each
summary is printed marked SUMMARY, naming the new groups (writer and file hash) it saw. The records
themselves are in the alerts file and at the collector (ldguard.held_back_by: the summary id).

  --socket PATH        the agent's socket (default ${DEFAULT_SOCKET})
  --json               print each alert as one JSON line (NDJSON) instead (records included)
  --held-back          print the held-back records too, each marked HELD
  --since DURATION     first print alerts from the last DURATION (30s, 15m, 2h, 7d) found in
                       the alerts file and its rotations
  --alerts-file FILE   the agent's alerts_file (default ${DEFAULT_ALERTS_FILE})
`;

/**
 * Strings in an alert come from the host (file names are chosen by whoever wrote the file): a
 * crafted name must not move the cursor, recolour or clear the terminal, nor read reordered or
 * hide characters (shared/visible.ts, the same escaping the dashboard shows).
 */
function clean(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  return visible(String(v));
}

const SEVERITY_COLOUR: Record<string, string> = { critical: '\x1b[1;35m', high: '\x1b[1;31m', medium: '\x1b[33m', low: '\x1b[36m' };
const DIM = '\x1b[2m';
const BOLD = '\x1b[1m';
const RESET = '\x1b[0m';

/**
 * One line for a person about a max_signals summary (shared/throttle.ts), marked SUMMARY: the count,
 * the groups, the new ones it names, and the id that finds its records. The first summary of a
 * window and the final one are preceded and followed by a line saying holding back starts and ends.
 */
export function formatSummary(a: Alert, colour: boolean): string {
  const s = a.ldguard.summary!;
  const c = (code: string, t: string) => (colour ? `${code}${t}${RESET}` : t);
  const rule = clean(a.rule?.name ?? a.kibana?.alert?.rule?.name);
  const fresh = (s.new_groups ?? []).map((g) => `${clean(g.first?.path)} (${(g.terms ?? []).map((t) => `${clean(t.field)}=${clean(t.value?.[0])}`).join(' ')}, ${clean(g.docs_count)})`);
  const line = [
    c(DIM, clean(a['@timestamp'])),
    c(BOLD, 'SUMMARY '),
    c(BOLD, rule),
    `${clean(s.held_back)} held back in ${clean(s.groups_total)} group(s)${s.final ? ', final' : ''}`,
    fresh.length > 0 ? `new: ${fresh.join('; ')}` : '',
    `${c(DIM, 'summary=')}${clean(s.id)} ${c(DIM, 'update=')}${clean(s.update)}`,
  ].filter(Boolean).join('  ');
  const host = clean(a.host?.name);
  if (s.update === 0) return `${c(BOLD, `-- max_signals reached: holding back further alerts of ${rule} on ${host} until ${clean(s.window?.end)}; records: ldguard.held_back_by:${clean(s.id)}`)}\n${line}`;
  if (s.final) return `${line}\n${c(BOLD, `-- holding back ended for ${rule} on ${host}: ${clean(s.held_back)} record(s) held back`)}`;
  return line;
}

/** One line for a person: time severity rule path process(exe) pid user attribution. */
export function formatAlert(a: Alert, colour: boolean): string {
  if (a.ldguard?.summary) return formatSummary(a, colour);
  const sev = String(a.kibana?.alert?.severity ?? '-');
  const p = a.process ?? {};
  const user = a.user?.name ?? p.user?.name ?? a.user?.id ?? p.user?.id;
  const fields: Array<[string, string]> = [
    ['process', clean(p.name)],
    ['exe', clean(p.executable)],
    ['pid', clean(p.pid)],
    ['user', clean(user)],
    ['attribution', clean(a.ldguard?.attribution)],
    ...(a.ldguard?.held_back_by !== undefined ? [['held_back_by', clean(a.ldguard.held_back_by)] as [string, string]] : []),
  ];
  // An excepted alert is on record, not a page: it must not read like one (no severity colour).
  const excepted = a.ldguard?.excepted_by;
  if (excepted) fields.push(['excepted_by', `${clean(excepted.list_id)}/${clean(excepted.item_id)}`]);
  const c = (code: string, s: string) => (colour ? `${code}${s}${RESET}` : s);
  const kv = fields.map(([k, v]) => `${c(DIM, `${k}=`)}${v}`).join(' ');
  const held = a.ldguard?.held_back_by !== undefined;
  return [
    c(DIM, clean(a['@timestamp'])),
    held ? c(DIM, 'HELD    ') : excepted ? c(DIM, 'EXCEPTED') : c(SEVERITY_COLOUR[sev] ?? '', clean(sev.toUpperCase()).padEnd(8)),
    c(BOLD, clean(a.rule?.name ?? a.kibana?.alert?.rule?.name)),
    clean(a.file?.path),
    kv,
  ].join('  ');
}

function notRunning(path: string, code: string | undefined): LdgError {
  if (code === 'EACCES' || code === 'EPERM') {
    return new LdgError('LDG_ERR_SOCKET_PERM', `${path} is readable by root only; run 'sudo ldguard tail'`);
  }
  return new LdgError('LDG_ERR_AGENT_NOT_RUNNING', `the agent is not running: nothing listens on ${path} (${code ?? 'no answer'}). Start it with 'systemctl start ldguard-agent' (or 'ldguard up'), or give the socket of a running agent with --socket PATH`);
}

async function* readBacklog(file: string, sinceMs: number): AsyncGenerator<{ line: string; alert: Alert }> {
  for (const path of alertsFiles(file)) {
    const st = await stat(path).catch(() => undefined);
    // Every line in a file last written before the cutoff is older than it.
    if (!st || st.mtimeMs < sinceMs) continue;
    const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line.trim()) continue;
      let alert: Alert;
      try {
        alert = JSON.parse(line) as Alert;
      } catch {
        continue; // a line cut by a crash mid-write
      }
      const t = Date.parse(alert['@timestamp']);
      if (!(t >= sinceMs)) continue;
      yield { line, alert };
    }
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseOptions('tail', argv, {
    socket: { type: 'string' },
    json: { type: 'boolean' },
    since: { type: 'string' },
    'alerts-file': { type: 'string' },
    'held-back': { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values['alerts-file'] && !values.since) {
    throw new LdgError('LDG_ERR_USAGE', '--alerts-file is only read with --since; add --since DURATION (e.g. --since 1h)');
  }
  const sinceMs = values.since ? Date.now() - parseDuration(values.since, '--since') : undefined;
  const socketPath = values.socket ?? DEFAULT_SOCKET;
  const json = values.json ?? false;
  const colour = !json && process.stdout.isTTY === true && !process.env.NO_COLOR;
  const out = process.stdout;
  exitWhenStdoutCloses('tail');
  const heldBack = values['held-back'] ?? false;
  const print = (line: string, alert: Alert | undefined) => {
    if (json) out.write(`${line}\n`);
    // A flood's records would bury the screen the summaries are there to keep readable.
    else if (alert && (heldBack || alert.ldguard?.held_back_by === undefined)) out.write(`${formatAlert(alert, colour)}\n`);
  };

  // Ctrl-C is the normal way to stop following: status 0 and nothing on stderr. Listened for
  // before connecting: the agent sees the connection before this side's 'connect' event, and a
  // Ctrl-C in between would otherwise kill the process by the signal.
  const stop = new Promise<number>((resolve) => {
    process.once('SIGINT', () => resolve(0));
    process.once('SIGTERM', () => resolve(0));
  });
  // Connect first and hold live alerts while the backlog prints, so none falls between the two.
  const sock = connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (err: NodeJS.ErrnoException) => reject(notRunning(socketPath, err.code)));
  });
  const held: string[] = [];
  let live = false;
  const seen = new Set<string>();
  const onLine = (line: string) => {
    if (!line.trim()) return;
    let alert: Alert | undefined;
    try {
      alert = JSON.parse(line) as Alert;
    } catch {
      process.stderr.write(`ldguard tail: skipped a line that is not JSON\n`);
      return;
    }
    const id = alert.kibana?.alert?.uuid;
    if (id && seen.has(id)) return; // already printed from the backlog
    print(line, alert);
  };
  // Set before this side closes the socket (Ctrl-C, SIGTERM): that close is not the agent's doing.
  let stopping = false;
  const ended = new Promise<number>((resolve) => {
    const rl = createInterface({ input: sock, crlfDelay: Infinity });
    rl.on('line', (line) => (live ? onLine(line) : held.push(line)));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      if (stopping) return;
      process.stderr.write('ldguard tail: the agent closed the stream (it stopped or restarted); run ldguard tail again once it is back\n');
      resolve(1);
    });
  });
  if (sinceMs !== undefined) {
    for await (const { line, alert } of readBacklog(values['alerts-file'] ?? DEFAULT_ALERTS_FILE, sinceMs)) {
      const id = alert.kibana?.alert?.uuid;
      if (id) seen.add(id);
      print(line, alert);
    }
  }
  live = true;
  for (const line of held.splice(0)) onLine(line);
  const code = await Promise.race([ended, stop]);
  stopping = true;
  sock.destroy();
  return code;
}

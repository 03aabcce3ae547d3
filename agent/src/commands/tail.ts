// `ldguard tail`: prints the agent's alerts as they happen, one readable line each, from the agent's
// local socket. With --since it first prints recent alerts from the alerts file (and its rotations).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseDuration } from '../../../shared/duration.js';
import { LdgError } from '../../../shared/errors.js';
import type { Alert } from '../../../shared/ecs.js';
import { visible } from '../../../shared/visible.js';
import { parseOptions } from '../args.js';
import { alertsFiles } from '../sink/alerts-file.js';
import { DEFAULT_SOCKET, STREAM_FOLLOWING } from '../sink/local.js';
import { exitWhenStdoutCloses } from '../stdout-closed.js';

const DEFAULT_ALERTS_FILE = '/var/log/ldguard/alerts.ndjson';

const HELP = `Usage: ldguard tail [--socket PATH] [--json] [--held-back] [--since DURATION [--alerts-file FILE]]

Prints the agent's alerts as they happen, one line each: time (UTC), severity, rule, file,
process (name, executable, pid), user, and how the writer was seen: writer=running (read from
/proc while it ran), writer=exited (named from its exec, it had exited), writer=had-it-open
(inotify: a process holding the file), writer=UNIDENTIFIED(reason) (nothing could name it: the
alert says so rather than guess). When the agent restarts, tail waits for it and goes on; with
--alerts-file (or the default socket) it first prints what was written meanwhile. Ctrl-C quits.

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

/** How the writer was named, in words: seen running, named after it exited, or not identified and why. */
const WRITER_SEEN: Record<string, string> = { live_proc: 'running', exec_cache: 'exited', fd_scan: 'had-it-open' };
function writerSeen(a: Alert): string {
  const how = a.ldguard?.attribution;
  if (how && WRITER_SEEN[how]) return WRITER_SEEN[how];
  const why = a.ldguard?.attribution_reason;
  return why ? `UNIDENTIFIED(${clean(why)})` : 'UNIDENTIFIED';
}

/** One line for a person: time severity rule path process(exe) pid user, and how the writer was seen. */
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
    ['writer', writerSeen(a)],
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

/** Ways a connection attempt ends: a socket, or the errno that refused it. */
function connectOnce(path: string): Promise<Socket | string> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => resolve(sock));
    sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'ECONNREFUSED'));
  });
}

/** Remembers the ids of alerts printed lately, so a backlog read after a live stream repeats none. */
class Printed {
  private readonly ids = new Set<string>();
  has(id: string | undefined): boolean {
    return id !== undefined && this.ids.has(id);
  }
  add(id: string | undefined): void {
    if (id === undefined) return;
    this.ids.add(id);
    // Bounded: the oldest ids go (a Set iterates in insertion order).
    if (this.ids.size > 10_000) this.ids.delete(this.ids.values().next().value!);
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
  const socketPath = values.socket ?? DEFAULT_SOCKET;
  const alertsFile = values['alerts-file'] ?? DEFAULT_ALERTS_FILE;
  // The alerts file fills in what the stream missed while the agent restarted, when it is the
  // same agent's: the default socket's, or the one named with --alerts-file.
  const catchUp = values.socket === undefined || values['alerts-file'] !== undefined;
  const json = values.json ?? false;
  const colour = !json && process.stdout.isTTY === true && !process.env.NO_COLOR;
  const out = process.stdout;
  exitWhenStdoutCloses('tail');
  const heldBack = values['held-back'] ?? false;
  const printed = new Printed();
  let lastAt = Date.now();
  const print = (line: string, alert: Alert) => {
    const id = alert.kibana?.alert?.uuid;
    if (printed.has(id)) return;
    printed.add(id);
    const t = Date.parse(alert['@timestamp']);
    if (t > lastAt) lastAt = t;
    if (json) out.write(`${line}\n`);
    // A flood's records would bury the screen the summaries are there to keep readable.
    else if (heldBack || alert.ldguard?.held_back_by === undefined) out.write(`${formatAlert(alert, colour)}\n`);
  };
  const backlog = async (sinceMs: number) => {
    try {
      for await (const { line, alert } of readBacklog(alertsFile, sinceMs)) print(line, alert);
    } catch {
      // The file is not readable here (another user, rotated away): the live stream goes on.
    }
  };

  // Ctrl-C stops following, quietly, with the shell's status for it (128 + SIGINT).
  const stop = new Promise<number>((resolve) => {
    process.once('SIGINT', () => resolve(130));
    process.once('SIGTERM', () => resolve(143));
  });
  // Not unref'd: while the agent is away, this timer is what keeps tail running.
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

  let delay = 250;
  for (let first = true; ; first = false) {
    const sock = await connectOnce(socketPath);
    if (typeof sock === 'string') {
      // Not there at all when asked: say how to start it. Gone after a restart: wait for it.
      if (first) throw notRunning(socketPath, sock);
      const code = await Promise.race([stop, sleep(delay).then(() => null)]);
      if (code !== null) return code;
      delay = Math.min(delay * 2, 5_000);
      continue;
    }
    delay = 250;
    if (!first) process.stderr.write('ldguard tail: the agent is back; following again\n');
    // Live lines are held while the backlog prints, so none falls between the two. The backlog is
    // read once the agent says it follows this client (STREAM_FOLLOWING): an alert written before
    // that is in the file, one after it comes live.
    const held: string[] = [];
    let live = false;
    let following!: () => void;
    const registered = new Promise<void>((r) => (following = r));
    const onLine = (line: string) => {
      if (!line.trim()) return;
      let alert: Alert;
      try {
        alert = JSON.parse(line) as Alert;
      } catch {
        process.stderr.write('ldguard tail: skipped a line that is not JSON\n');
        return;
      }
      print(line, alert);
    };
    const closed = new Promise<null>((resolve) => {
      const rl = createInterface({ input: sock, crlfDelay: Infinity });
      rl.on('line', (line) => {
        if (line === STREAM_FOLLOWING) following();
        else if (live) onLine(line);
        else held.push(line);
      });
      sock.on('error', () => undefined);
      sock.on('close', () => resolve(null));
    });
    const gone = await Promise.race([stop, closed, registered.then(() => undefined)]);
    if (gone !== undefined) {
      sock.destroy();
      if (gone !== null) return gone;
      // Closed before it followed us: the agent is stopping. Try again after a pause.
      const code = await Promise.race([stop, sleep(delay).then(() => null)]);
      if (code !== null) return code;
      continue;
    }
    if (first && values.since) await backlog(Date.now() - parseDuration(values.since, '--since'));
    // Back after a restart: what the agent wrote meanwhile (a second of overlap; repeats are skipped).
    else if (!first && catchUp) await backlog(lastAt - 1_000);
    live = true;
    for (const line of held.splice(0)) onLine(line);
    const code = await Promise.race([stop, closed]);
    sock.destroy();
    if (code !== null) return code;
    process.stderr.write('ldguard tail: the agent stopped or is restarting; waiting for it to come back (Ctrl-C to quit)\n');
  }
}

// One alert: what happened (file, process and its parents, host), why it matters (rule, MITRE
// ATT&CK, investigation guide), the workflow (open → acknowledged → closed, the assignee, notes:
// who and when), and every ECS field of the document. Notes are text: shown through lines(), never
// parsed as HTML or Markdown.
import { api, ApiError } from './api.js';
import { get, h, lines, replace, safeHref, str, type Child } from './dom.js';
import type { Guide } from './api-types.js';
import { bytes, fullTime } from './format.js';
import { markdown } from './markdown.js';
import { attributionBadge, card, errorBox, kv, severityBadge, statusPill } from './ui.js';

interface HistoryEntry {
  kind?: 'status' | 'note' | 'assignee';
  status: string;
  by: string | null;
  at: string;
  value?: string | null;
}

/** The collector's bound on a note (store/workflow.ts NOTE_MAX_CHARS): the box says so before the server must. */
const NOTE_MAX_CHARS = 4000;

/** What the workflow card can ask of the collector. */
interface WorkflowActions {
  status: (to: string) => void;
  assign: (name: string | null) => void;
  note: (text: string) => void;
}

interface Detail {
  alert: unknown;
  history: HistoryEntry[];
  guide: Guide;
}

const STATUS_VERB: Record<string, string> = { open: 'Reopened', acknowledged: 'Acknowledged', closed: 'Closed' };

/** Every leaf of the document as [dotted.path, value], in document order. */
export function flatten(v: unknown, prefix = '', out: Array<[string, string]> = []): Array<[string, string]> {
  if (v === null || typeof v !== 'object') {
    out.push([prefix, typeof v === 'string' ? v : JSON.stringify(v)]);
  } else if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== 'object')) out.push([prefix, v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(', ')]);
    else v.forEach((x, i) => flatten(x, `${prefix}.${i}`, out));
  } else {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

function link(url: string | undefined, text: string): Child {
  return url && safeHref(url) ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, text) : text;
}

function mitre(doc: unknown): HTMLElement {
  const threats = get(doc, 'threat');
  if (!Array.isArray(threats) || threats.length === 0) return h('p', { class: 'muted' }, 'This rule maps to no MITRE ATT&CK technique.');
  return h(
    'ul',
    { class: 'mitre' },
    threats.map((t) =>
      h(
        'li',
        null,
        h('div', { class: 'tactic' }, h('span', { class: 'badge tactic-id' }, str(t, 'tactic.id') ?? '?'), ' ', link(str(t, 'tactic.reference'), str(t, 'tactic.name') ?? 'tactic'), h('span', { class: 'muted small' }, ' tactic')),
        Array.isArray(get(t, 'technique'))
          ? h(
              'ul',
              null,
              (get(t, 'technique') as unknown[]).map((te) =>
                h(
                  'li',
                  null,
                  h('span', { class: 'mono small' }, str(te, 'id') ?? ''), ' ', link(str(te, 'reference'), str(te, 'name') ?? 'technique'),
                  Array.isArray(get(te, 'subtechnique'))
                    ? h('ul', null, (get(te, 'subtechnique') as unknown[]).map((st) => h('li', null, h('span', { class: 'mono small' }, str(st, 'id') ?? ''), ' ', link(str(st, 'reference'), str(st, 'name') ?? 'sub-technique'))))
                    : null,
                ),
              ),
            )
          : null,
      ),
    ),
  );
}

function argsList(v: unknown): Child {
  if (!Array.isArray(v) || v.length === 0) return undefined;
  return h('ol', { class: 'args mono' }, v.map((a) => h('li', null, typeof a === 'string' ? a : JSON.stringify(a))));
}

function historyStep(e: HistoryEntry): HTMLElement {
  const who = h('strong', { class: 'who' }, e.by ?? 'someone');
  const when = h('span', { class: 'muted' }, ` ${fullTime(e.at)}`);
  if (e.kind === 'note') return h('li', { class: 'step step-note' }, h('strong', null, 'Note'), ' by ', who, when, h('div', { class: 'note-text' }, lines(e.value ?? '')));
  if (e.kind === 'assignee') {
    return h('li', { class: 'step step-assignee' }, e.value ? ['Assigned to ', h('strong', { class: 'assignee' }, e.value)] : h('strong', null, 'Unassigned'), ' by ', who, when);
  }
  return h('li', { class: `step step-${e.status}` }, h('strong', null, STATUS_VERB[e.status] ?? e.status), ' by ', who, when);
}

function workflow(doc: unknown, history: HistoryEntry[], act: WorkflowActions): HTMLElement {
  const status = str(doc, 'kibana.alert.workflow_status') ?? 'open';
  const steps: HTMLElement[] = [
    h('li', { class: 'step step-open' }, h('strong', null, 'Opened'), h('span', { class: 'muted' }, ` ${fullTime(str(doc, '@timestamp'))}`), h('div', { class: 'small muted' }, `by rule "${str(doc, 'rule.name') ?? '?'}" on ${str(doc, 'host.name') ?? 'an unnamed host'}`)),
  ];
  const entries = history.length > 0 ? history : str(doc, 'kibana.alert.workflow_user') ? [{ status, by: str(doc, 'kibana.alert.workflow_user') ?? null, at: str(doc, 'kibana.alert.workflow_status_updated_at') ?? '' }] : [];
  for (const e of entries) steps.push(historyStep(e));
  const button = (to: string, label: string, cls: string) => h('button', { type: 'button', class: `btn ${cls}`, 'data-action': to, onclick: () => act.status(to) }, label);
  const assignee = str(doc, 'ldguard.assignee');
  const assigneeInput = h('input', { type: 'text', name: 'assignee', value: assignee ?? '', placeholder: 'Login name', 'aria-label': 'Assignee', maxlength: 128, autocomplete: 'off', spellcheck: 'false' });
  const noteBox = h('textarea', { name: 'note', rows: 3, maxlength: NOTE_MAX_CHARS, placeholder: 'What you found, what you did (text)', 'aria-label': 'Note' });
  return card(
    'Workflow',
    h('div', { class: 'workflow-now' }, 'Status ', statusPill(status), ' ', assignee ? h('span', { class: 'badge assignee', title: 'assignee' }, assignee) : h('span', { class: 'muted small' }, 'unassigned')),
    h(
      'form',
      { class: 'assign-form', onsubmit: (ev: Event) => {
        ev.preventDefault();
        act.assign(assigneeInput.value.trim() || null);
      } },
      assigneeInput,
      h('button', { type: 'submit', class: 'btn small', 'data-action': 'assign' }, 'Assign'),
      assignee ? h('button', { type: 'button', class: 'btn ghost small', 'data-action': 'unassign', onclick: () => act.assign(null) }, 'Unassign') : null,
    ),
    h(
      'div',
      { class: 'actions' },
      status === 'open' ? button('acknowledged', 'Acknowledge', 'primary') : null,
      status !== 'closed' ? button('closed', 'Close', '') : null,
      status !== 'open' ? button('open', 'Reopen', 'ghost') : null,
    ),
    h('ol', { class: 'timeline' }, steps),
    h(
      'form',
      { class: 'note-form', onsubmit: (ev: Event) => {
        ev.preventDefault();
        if (noteBox.value.trim()) act.note(noteBox.value);
      } },
      noteBox,
      h('button', { type: 'submit', class: 'btn small', 'data-action': 'note' }, 'Add note'),
    ),
  );
}

/** The groups a summary lists (shared/throttle.ts SummaryGroup): first path, writer, count. */
function groupList(v: unknown): Child {
  if (!Array.isArray(v) || v.length === 0) return undefined;
  return h('ol', { class: 'args mono' }, v.map((g) => {
    const terms = Array.isArray(get(g, 'terms')) ? (get(g, 'terms') as unknown[]).map((t) => `${str(t, 'field') ?? ''}=${String((get(t, 'value') as unknown[] | undefined)?.[0] ?? '')}`).join(' ') : '';
    return h('li', null, `${str(g, 'first.path') ?? ''} (${str(g, 'docs_count') ?? '?'}) ${terms}`);
  }));
}

/** The held-back records of a summary, newest first (the first 50), each a link to its detail. */
export async function heldBackRecords(id: string): Promise<Child> {
  const page = await api.get<{ alerts: unknown[]; next: string | null; indexLag: number }>(`/ui/api/alerts?q=${encodeURIComponent(id)}&limit=50`);
  const rows = page.alerts.filter((a) => str(a, 'ldguard.held_back_by') === id);
  if (rows.length === 0) return h('p', { class: 'muted small' }, page.indexLag > 0 ? 'No records found yet: the search index is catching up.' : 'No records stored for this summary.');
  return h('div', null,
    h('h3', null, `Records (${rows.length}${page.next ? '+' : ''})`),
    h('ol', { class: 'args mono' }, rows.map((a) => h('li', null, h('a', { href: `#/alerts/${encodeURIComponent(str(a, 'kibana.alert.uuid') ?? '')}` }, `${str(a, 'file.path') ?? ''} — ${str(a, 'process.executable') ?? '-'}`)))));
}

export function detailView(root: HTMLElement, uuid: string): () => void {
  let alive = true;
  replace(root, h('p', { class: 'muted' }, 'Loading…'));

  const render = (d: Detail, notice?: Child) => {
    const doc = d.alert;
    const sha = str(doc, 'file.hash.sha256');
    const size = get(doc, 'file.size');
    const path = `/ui/api/alerts/${encodeURIComponent(uuid)}`;
    const send = async (call: () => Promise<Detail>) => {
      for (const b of Array.from(root.querySelectorAll<HTMLButtonElement>('.card button'))) b.disabled = true;
      try {
        const next = await call();
        if (alive) render(next);
      } catch (err) {
        if (alive) render(d, errorBox(err));
      }
    };
    const act: WorkflowActions = {
      status: (to) => void send(() => api.patch<Detail>(path, { status: to })),
      assign: (name) => void send(() => api.patch<Detail>(path, { assignee: name })),
      note: (text) => void send(() => api.post<Detail>(`${path}/notes`, { text })),
    };
    const parentRows: Array<[string, Child, { mono?: boolean }?]> = [
      ['PID', str(doc, 'process.parent.pid')],
      ['Name', str(doc, 'process.parent.name')],
      ['Executable', str(doc, 'process.parent.executable'), { mono: true }],
      ['Command line', str(doc, 'process.parent.command_line'), { mono: true }],
      ['Entity ID', str(doc, 'process.parent.entity_id'), { mono: true }],
    ];
    const ancestry = get(doc, 'process.Ext.ancestry');
    // A summary's records: the alerts whose ldguard.held_back_by is its id (a search on that field).
    const summaryId = str(doc, 'ldguard.summary.id');
    const recordsBox = h('div', { class: 'held-back-records' }, summaryId ? h('p', { class: 'muted small' }, 'Loading the records…') : null);
    if (summaryId) void heldBackRecords(summaryId).then((rows) => alive && replace(recordsBox, rows), (err) => alive && replace(recordsBox, errorBox(err)));
    const fields = flatten(doc);
    replace(
      root,
      h('a', { class: 'back', href: '#/alerts' }, '← All alerts'),
      notice ?? null,
      h(
        'header',
        { class: 'detail-head' },
        h('div', { class: 'detail-title' }, severityBadge(str(doc, 'kibana.alert.severity')), h('h1', null, str(doc, 'rule.name') ?? str(doc, 'kibana.alert.rule.name') ?? 'Alert'), statusPill(str(doc, 'kibana.alert.workflow_status'))),
        h('p', { class: 'reason' }, str(doc, 'kibana.alert.reason') ?? ''),
        h(
          'p',
          { class: 'meta' },
          h('span', null, fullTime(str(doc, '@timestamp'))),
          h('span', null, 'host ', h('strong', null, str(doc, 'host.name') ?? '—')),
          h('span', null, 'risk score ', h('strong', null, str(doc, 'kibana.alert.risk_score') ?? '—')),
          h('span', { class: 'mono small' }, uuid),
        ),
        h('p', { class: 'path-big mono' }, str(doc, 'file.path') ?? ''),
      ),
      h(
        'div',
        { class: 'detail-grid' },
        h(
          'div',
          { class: 'col' },
          card('File', kv([
            ['Path', str(doc, 'file.path'), { mono: true }],
            ['SHA-256', sha, { mono: true }],
            ['Size', typeof size === 'number' ? bytes(size) : undefined],
            ['Mode', str(doc, 'file.mode'), { mono: true }],
            ['Owner', [str(doc, 'file.owner'), str(doc, 'file.uid') ? `(uid ${str(doc, 'file.uid')})` : ''].filter(Boolean).join(' ') || undefined],
            ['Group', [str(doc, 'file.group'), str(doc, 'file.gid') ? `(gid ${str(doc, 'file.gid')})` : ''].filter(Boolean).join(' ') || undefined],
            ['Inode', str(doc, 'file.inode'), { mono: true }],
            ['Type', str(doc, 'file.type')],
            ['Renamed from', str(doc, 'file.Ext.original.path'), { mono: true }],
          ])),
          card('Process', kv([
            ['Name', str(doc, 'process.name')],
            ['PID', str(doc, 'process.pid')],
            ['Executable', str(doc, 'process.executable'), { mono: true }],
            ['Command line', str(doc, 'process.command_line'), { mono: true }],
            ['Arguments', argsList(get(doc, 'process.args'))],
            ['Working directory', str(doc, 'process.working_directory'), { mono: true }],
            ['User', [str(doc, 'process.user.name') ?? str(doc, 'user.name'), str(doc, 'process.user.id') ? `(uid ${str(doc, 'process.user.id')})` : ''].filter(Boolean).join(' ') || undefined],
            ['Started', str(doc, 'process.start') ? fullTime(str(doc, 'process.start')) : undefined],
            ['Entity ID', str(doc, 'process.entity_id'), { mono: true }],
            ['Attribution', attributionBadge(str(doc, 'ldguard.attribution'))],
          ])),
          card('Parent process', kv(parentRows), Array.isArray(ancestry) && ancestry.length > 0 ? h('div', null, h('h3', null, 'Ancestry'), h('ol', { class: 'args mono' }, ancestry.map((a) => h('li', null, String(a))))) : null),
          card('Host', kv([
            ['Name', str(doc, 'host.name')],
            ['Host name', str(doc, 'host.hostname')],
            ['OS', [str(doc, 'host.os.name'), str(doc, 'host.os.version')].filter(Boolean).join(' ') || str(doc, 'host.os.type')],
            ['Kernel', str(doc, 'host.os.kernel'), { mono: true }],
            ['Architecture', str(doc, 'host.architecture')],
            ['Agent', [str(doc, 'agent.id'), str(doc, 'agent.version')].filter(Boolean).join(' · ') || undefined, { mono: true }],
            ['Event source', str(doc, 'ldguard.source')],
          ])),
        ),
        h(
          'div',
          { class: 'col' },
          workflow(doc, d.history, act),
          card('Rule', h('p', { class: 'description' }, lines(str(doc, 'rule.description') ?? '')), kv([
            ['Rule ID', str(doc, 'rule.id'), { mono: true }],
            ['Severity', severityBadge(str(doc, 'kibana.alert.severity'))],
            ['Risk score', str(doc, 'kibana.alert.risk_score')],
            ['Version', str(doc, 'rule.version')],
            ['Tags', Array.isArray(get(doc, 'kibana.alert.rule.tags')) ? h('div', { class: 'tags' }, (get(doc, 'kibana.alert.rule.tags') as unknown[]).map((t) => h('span', { class: 'tag' }, String(t)))) : undefined],
            ['Author', Array.isArray(get(doc, 'rule.author')) ? (get(doc, 'rule.author') as unknown[]).join(', ') : undefined],
            ['License', str(doc, 'rule.license')],
          ])),
          card('MITRE ATT&CK', mitre(doc)),
          card(
            'Investigation guide',
            // Rendered by the collector (older ones send only the text, shown as written).
            d.guide.noteMd ? h('div', { class: 'note md' }, markdown(d.guide.noteMd)) : d.guide.note ? h('pre', { class: 'note' }, lines(d.guide.note)) : null,
            h('ol', { class: 'guide md' }, d.guide.stepsMd ? d.guide.stepsMd.map((s) => h('li', null, markdown(s))) : d.guide.steps.map((s) => h('li', null, s))),
          ),
          get(doc, 'ldguard.summary') ? card('Held back by max_signals', kv([
            ['Records held back', str(doc, 'ldguard.summary.held_back')],
            ['Window', `${fullTime(str(doc, 'ldguard.summary.window.start'))} – ${fullTime(str(doc, 'ldguard.summary.window.end'))}`],
            ['Summary', `${str(doc, 'ldguard.summary.final') === 'true' ? 'final' : 'update'} ${str(doc, 'ldguard.summary.update') ?? ''} of ${str(doc, 'ldguard.summary.id') ?? ''}`, { mono: true }],
            ['Groups', groupList(get(doc, 'ldguard.summary.groups'))],
            ['New in this summary', groupList(get(doc, 'ldguard.summary.new_groups'))],
          ]), recordsBox) : null,
          str(doc, 'ldguard.held_back_by') ? card('Held-back record', kv([
            ['Summary', h('a', { href: `#/alerts/${encodeURIComponent(str(doc, 'ldguard.held_back_by')!)}`, class: 'mono' }, str(doc, 'ldguard.held_back_by')!)],
          ])) : null,
        ),
      ),
      h(
        'details',
        { class: 'card all-fields' },
        h('summary', null, h('h2', { class: 'card-title inline' }, `All fields (${fields.length})`), h('span', { class: 'muted small' }, ' every ECS field of the alert document, as stored')),
        h('table', { class: 'fields' }, h('tbody', null, fields.map(([k, v]) => h('tr', null, h('th', { class: 'mono', scope: 'row' }, k), h('td', { class: 'mono' }, lines(v)))))),
      ),
    );
  };

  api.get<Detail>(`/ui/api/alerts/${encodeURIComponent(uuid)}`).then(
    (d) => alive && render(d),
    (err) => alive && replace(root, h('a', { class: 'back', href: '#/alerts' }, '← All alerts'), errorBox(err instanceof ApiError && err.status === 404 ? new Error('No such alert.') : err)),
  );
  return () => {
    alive = false;
  };
}

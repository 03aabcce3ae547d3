// Undo steps that must run even when the bench is interrupted (Ctrl-C, SIGTERM): the audit rules
// and the auditd the bench added, the children it started. Each step is synchronous, so it can
// run from a signal handler before the process leaves; a step that completed normally unregisters.
const steps = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const s of [...steps].reverse()) {
    try {
      s();
    } catch {
      // best effort: the next step still runs
    }
  }
  steps.clear();
}

/** Registers a synchronous undo step; call the returned function once it is no longer needed. */
export function onInterrupt(step: () => void): () => void {
  if (!installed) {
    installed = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        process.stderr.write(`bench: ${sig}: undoing what the bench set up, then leaving\n`);
        runAll();
        process.exit(130);
      });
    }
  }
  steps.add(step);
  return () => steps.delete(step);
}

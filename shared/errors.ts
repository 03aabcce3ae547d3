// Every error a user can meet carries a stable code and a message that names the fix.
// The table of codes lives in docs/errors.md; keep the two in step.

export class LdgError extends Error {
  override readonly name = 'LdgError';
  constructor(
    readonly code: `LDG_ERR_${string}`,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}

/** The message of anything thrown, for logs and for replies to a peer. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// The one error type of the EQL engine. A rule author reads it in the agent's log or the
// collector's rule upload reply, so it names the place (line, column), what was found and what
// would have been accepted.
//
// Codes:
//   LDG_ERR_EQL_PARSE        the text is not valid EQL (or breaks a rule Elasticsearch enforces,
//                            such as `like` with a non-string pattern). Fix the query at the place given.
//   LDG_ERR_EQL_UNSUPPORTED  valid EQL that ldguard does not run (sequence, sample, join, pipes,
//                            functions, arithmetic, regex, field-to-field comparison). Rewrite the
//                            rule as a single-event query, or run it in Elasticsearch.

export type EqlErrorCode = 'LDG_ERR_EQL_PARSE' | 'LDG_ERR_EQL_UNSUPPORTED';

export class EqlError extends Error {
  override readonly name = 'EqlError';

  constructor(
    readonly code: EqlErrorCode,
    readonly line: number,
    readonly column: number,
    /** What went wrong, without position or code. */
    readonly detail: string,
    readonly expected?: string,
  ) {
    super(
      `${code}: line ${line}, column ${column}: ${detail}` +
        (expected === undefined ? '' : `; expected ${expected}`),
    );
  }
}

// Commands that print a stream (`ldguard tail`, `ldguard match`) are piped into head, grep -m1,
// less: when that reader exits, the next write fails with EPIPE (Node ignores SIGPIPE, so it is an
// 'error' on stdout, and unhandled it kills the process with a stack trace and status 1). A reader
// going away is a normal way to stop: exit at once with status 0 and nothing on stderr, as cat and
// grep do. Any other write error (a full disk behind a redirect) is reported and exits 1.

/** Installs the handler on process.stdout; `command` names the program in the one-line report. */
export function exitWhenStdoutCloses(command: string): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    process.stderr.write(`ldguard ${command}: cannot write to stdout: ${err.message}\n`);
    process.exit(1);
  });
}

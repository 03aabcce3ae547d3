/*
 * The bench's writer of unrelated files (and of a few stamped matching ones), in C so the writer
 * itself costs as little as possible and every tool is charged only for what it does.
 *
 * usage: churn DIRS COUNT DURATION_MS PREFIX MATCHES
 *   DIRS         directories separated by ':'; files go to them in turn
 *   COUNT        unrelated files to create (PREFIX<i>: open O_CREAT|O_EXCL, close: a name made twice is an error)
 *   DURATION_MS  0: as fast as possible; else spread COUNT evenly over this long (paced in chunks)
 *   MATCHES      matching files (ld-linux-x86-64.so.2.PREFIX<k> / ld-linux.so.2.PREFIX<k>) spread
 *                evenly among the unrelated ones; each is stamped with CLOCK_REALTIME just before
 *                its open(2), so latency is measured from the writer's own clock
 *
 * Prints, at the end (never during the run, so stdout costs nothing while timing):
 *   pid <pid>
 *   elapsed_ns <monotonic ns from the first to the last creation>
 *   cpu_ns <user + system CPU time of the whole run>
 *   m <realtime ns> <directory index> <file name>     (one per matching file)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

static long long ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: churn DIRS COUNT DURATION_MS PREFIX MATCHES\n");
    return 2;
  }
  char *dirs[64];
  int ndirs = 0;
  for (char *tok = strtok(argv[1], ":"); tok && ndirs < 64; tok = strtok(NULL, ":")) dirs[ndirs++] = tok;
  long count = strtol(argv[2], NULL, 10);
  long duration_ms = strtol(argv[3], NULL, 10);
  const char *prefix = argv[4];
  long matches = strtol(argv[5], NULL, 10);
  if (ndirs == 0 || count < 0 || matches < 0) return 2;

  long long *stamps = calloc(matches > 0 ? matches : 1, sizeof *stamps);
  int *stamp_dir = calloc(matches > 0 ? matches : 1, sizeof *stamp_dir);
  char path[4096];
  long next_match = 0;
  long long start = ns(CLOCK_MONOTONIC);
  long total = count + matches;
  for (long i = 0, m = 0, c = 0; i < total; i++) {
    /* The k-th matching file goes at position k * total / matches (spread evenly). */
    int is_match = m < matches && i >= next_match;
    if (is_match) {
      int d = (int)(m % ndirs);
      snprintf(path, sizeof path, "%s/%s%s%ld", dirs[d], (m % 2) == 0 ? "ld-linux-x86-64.so.2." : "ld-linux.so.2.", prefix, m);
      stamp_dir[m] = d;
      stamps[m] = ns(CLOCK_REALTIME);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
      if (fd < 0) { perror(path); return 3; }
      if (write(fd, "\177ELF", 4) != 4) { perror(path); return 3; }
      close(fd);
      m++;
      next_match = m * total / (matches > 0 ? matches : 1);
    } else {
      snprintf(path, sizeof path, "%s/%s%ld", dirs[c % ndirs], prefix, c);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) { perror(path); return 3; }
      close(fd);
      c++;
    }
    if (duration_ms > 0 && ((i % 32) == 31 || is_match)) {
      long long due = start + (long long)duration_ms * 1000000LL * (i + 1) / total;
      long long now = ns(CLOCK_MONOTONIC);
      if (due > now) {
        struct timespec t = { (time_t)((due - now) / 1000000000LL), (long)((due - now) % 1000000000LL) };
        while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
      }
    }
  }
  long long elapsed = ns(CLOCK_MONOTONIC) - start;
  /* CPU time too: unlike elapsed time it does not count waiting for a CPU that a neighbour holds,
   * but it also misses time spent asleep in the kernel (auditd's backlog wait). */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long long cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
  printf("pid %d\nelapsed_ns %lld\ncpu_ns %lld\n", (int)getpid(), elapsed, cpu);
  for (long m = 0; m < matches; m++) {
    printf("m %lld %d %s%s%ld\n", stamps[m], stamp_dir[m], (m % 2) == 0 ? "ld-linux-x86-64.so.2." : "ld-linux.so.2.", prefix, m);
  }
  return 0;
}

/*
 * The bench's clock on the kernel side, in C so that its own lateness is microseconds, not the
 * milliseconds a busy Node.js event loop would add. Two modes, both writing to OUT (a regular file:
 * a write there never blocks on a slow reader, so no timestamp waits for the bench to read):
 *
 *   observe dirs OUT NEEDLE DIR...
 *     the reference: an inotify watch (IN_CREATE | IN_MOVED_TO) on each DIR; for each event whose
 *     name contains NEEDLE prints "<realtime ns> <dir index> <name>"; "<ns> !overflow" on a queue
 *     overflow. This is when a creation became visible to the kernel's notification layer.
 *
 *   observe tail OUT FILE
 *     follows FILE (which must exist) by inotify IN_MODIFY; every complete line appended to it is
 *     printed as "<realtime ns> <line>", stamped at the read(2) that returned it (waking at most
 *     once a millisecond, see below).
 *
 * Both run at SCHED_FIFO priority 10 when allowed and stop on SIGTERM after flushing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int dirs_mode(FILE *out, const char *needle, int n, char **dirs) {
  int fd = inotify_init1(IN_CLOEXEC);
  if (fd < 0) { perror("inotify_init1"); return 1; }
  int wds[256];
  for (int i = 0; i < n && i < 256; i++) {
    wds[i] = inotify_add_watch(fd, dirs[i], IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
    if (wds[i] < 0) { perror(dirs[i]); return 1; }
  }
  fprintf(out, "%lld !ready\n", now_ns());
  fflush(out);
  char buf[256 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (!stop) {
    ssize_t len = read(fd, buf, sizeof buf);
    long long t = now_ns();
    if (len < 0) {
      if (errno == EINTR) continue;
      perror("read");
      return 1;
    }
    for (char *p = buf; p < buf + len;) {
      struct inotify_event *e = (struct inotify_event *)p;
      if (e->mask & IN_Q_OVERFLOW) fprintf(out, "%lld !overflow\n", t);
      else if (e->len > 0 && strstr(e->name, needle)) {
        int idx = -1;
        for (int i = 0; i < n; i++) if (wds[i] == e->wd) idx = i;
        fprintf(out, "%lld %d %s\n", t, idx, e->name);
      }
      p += sizeof *e + e->len;
    }
    fflush(out);
  }
  return 0;
}

static int tail_mode(FILE *out, const char *file) {
  int ifd = inotify_init1(IN_CLOEXEC);
  if (ifd < 0) { perror("inotify_init1"); return 1; }
  if (inotify_add_watch(ifd, file, IN_MODIFY) < 0) { perror(file); return 1; }
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror(file); return 1; }
  fprintf(out, "%lld !ready\n", now_ns());
  fflush(out);
  size_t cap = 1 << 20, used = 0;
  char *line = malloc(cap);
  char buf[256 * 1024];
  char ev[4096];
  long long last_wake = 0;
  for (;;) {
    /* Drain what is there, then wait for the next modification. */
    for (;;) {
      ssize_t len = read(fd, buf, sizeof buf);
      long long t = now_ns();
      if (len < 0 && errno == EINTR) continue;
      if (len <= 0) break;
      for (ssize_t i = 0; i < len; i++) {
        if (buf[i] == '\n') {
          fprintf(out, "%lld ", t);
          fwrite(line, 1, used, out);
          fputc('\n', out);
          used = 0;
        } else {
          if (used + 1 >= cap) line = realloc(line, cap *= 2);
          line[used++] = buf[i];
        }
      }
    }
    fflush(out);
    if (stop) break;
    ssize_t n = read(ifd, ev, sizeof ev);
    if (n < 0 && errno != EINTR) { perror("read inotify"); return 1; }
    /* At most one wake-up per millisecond: a tool that writes a line per event (auditd,
     * inotifywait) must not have this real-time reader preempt the writers thousands of times a
     * second. A line is then stamped at most 1 ms late, and only while lines come that fast. */
    long long since = now_ns() - last_wake;
    if (since < 1000000LL) {
      struct timespec t = {0, (long)(1000000LL - since)};
      nanosleep(&t, NULL);
    }
    last_wake = now_ns();
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: observe dirs OUT NEEDLE DIR... | observe tail OUT FILE\n");
    return 2;
  }
  /* The bench's clock must not queue behind the tools it measures: real-time priority where
   * allowed (root), which costs nothing while it sleeps in read(2). */
  struct sched_param sp = {.sched_priority = 10};
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) fprintf(stderr, "observe: SCHED_FIFO not allowed, stamps may lag\n");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; /* no SA_RESTART: the blocking read returns EINTR and we flush and leave */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  FILE *out = fopen(argv[2], "w");
  if (!out) { perror(argv[2]); return 1; }
  setvbuf(out, NULL, _IOFBF, 1 << 20);
  int rc;
  if (strcmp(argv[1], "dirs") == 0 && argc >= 5) rc = dirs_mode(out, argv[3], argc - 4, argv + 4);
  else if (strcmp(argv[1], "tail") == 0) rc = tail_mode(out, argv[3]);
  else { fprintf(stderr, "unknown mode %s\n", argv[1]); rc = 2; }
  fflush(out);
  fclose(out);
  return rc;
}

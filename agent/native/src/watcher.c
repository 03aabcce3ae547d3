/*
 * The reader thread: waits in poll(2) on fanotify, the process connector, mount changes and a
 * wake-up eventfd; drains fanotify into the exec cache; attributes the few forwarded events and
 * hands them over in batches. It never blocks on JavaScript: hand-over is non-blocking, so a
 * slow consumer costs memory, never kernel events.
 *
 * Attribution of a forwarded event from pid P, decided per batch:
 *   1. live: /proc/P read now, valid when P's pidfd says it is still alive (so the pid was not
 *      reused) and P has not exec'd since the event (no exec event for P processed after it,
 *      checked after one more read of both queues, made after the /proc reads);
 *   2. exec_cache: otherwise the image the cache held for P at the event's place in the queue;
 *   3. unknown.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define READER_NICE -10             /* nice value of the reader thread */
#define GUARD_READS 16               /* queue reads made after the /proc reads of a batch */

void ldg_err_set(struct ldg_err *e, const char *code, int err, const char *fmt, ...) {
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  const char *name = strerrorname_np(err);
#else
  const char *name = NULL;
#endif
  e->code = code;
  char num[24];
  if (!name) snprintf(num, sizeof num, "errno %d", err), name = num;
  snprintf(e->msg, sizeof e->msg, "%s: %s (%s)", what, name, strerror(err));
}

struct ldg_watcher *ldg_watcher_new(void) {
  struct ldg_watcher *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->fan_fd = w->nl_fd = w->wake_fd = w->mounts_fd = -1;
  pthread_mutex_init(&w->lock, NULL);
  const char *t = getenv("LDG_NATIVE_TRACE");
  w->trace = t && *t == '1';
  ldg_trace = w->trace;
  return w;
}

int ldg_watcher_set_prefixes(struct ldg_watcher *w, char **prefixes, size_t n) {
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->nprefixes; i++) free(w->prefixes[i]);
  free(w->prefixes);
  w->prefixes = prefixes;
  w->nprefixes = n;
  pthread_mutex_unlock(&w->lock);
  return 0;
}

void ldg_pending_push(struct ldg_watcher *w, struct ldg_event *e) {
  struct ldg_batch *b = w->pending;
  if (!b || b->len == b->cap) {
    size_t cap = b ? b->cap * 2 : LDG_BATCH_MAX;
    struct ldg_batch *n = realloc(b, sizeof *b + cap * sizeof b->ev[0]);
    if (!n) {                        /* out of memory: drop this event, keep the batch */
      free(e->dir);
      free(e->name);
      if (e->pidfd >= 0) close(e->pidfd);
      ldg_image_put(e->cap_img);
      return;
    }
    if (!b) n->len = 0;
    n->cap = cap;
    w->pending = b = n;
  }
  b->ev[b->len++] = *e;
}

void ldg_batch_free(struct ldg_batch *b) {
  if (!b) return;
  for (size_t i = 0; i < b->len; i++) {
    struct ldg_event *e = &b->ev[i];
    free(e->dir);
    free(e->name);
    ldg_proc_free(&e->proc);
    ldg_proc_free(&e->parent);
    ldg_proc_free(&e->live);
    ldg_image_put(e->cap_img);
    if (e->pidfd >= 0) close(e->pidfd);
  }
  free(b);
}

/* ---- attribution ----------------------------------------------------------------------- */

static void read_live(struct ldg_watcher *w, struct ldg_event *e) {
  char path[32];
  snprintf(path, sizeof path, "/proc/%d", (int)e->pid);
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  /* Checked after opening the directory: alive now means the directory names our process. */
  int alive = -1;
  if (e->pidfd >= 0) {
    struct pollfd p = {e->pidfd, POLLIN, 0};
    alive = poll(&p, 1, 0) == 0;
  } else if (w->pidfd && e->pidfd == FAN_NOPIDFD) {
    alive = 0;                       /* already reaped when the event was read */
  }
  ldg_proc_read(e->pid, dfd, LDG_READ_ALL, &e->live);
  close(dfd);
  struct ldg_entry *en = e->cap_entry ? ldg_cache_get(&w->cache, e->pid) : NULL;
  if (en && en->gen != e->cap_gen) en = NULL;
  if (alive == 1) {
    e->live_same = 1;
  } else if (en && en->has_start && e->live.has_start) {
    e->live_same = en->start_ticks == e->live.start_ticks;   /* a zombie not yet reaped */
  } else if (alive < 0) {
    e->live_same = e->live.exe != NULL;                       /* no pidfd: best effort */
  }
  e->live_alive = alive != 0 && e->live.exe != NULL;
}

static void from_image(struct ldg_procinfo *dst, const struct ldg_image *img, const struct ldg_entry *en, pid_t pid) {
  ldg_proc_copy(dst, &img->p);
  dst->pid = pid;
  dst->has_ppid = dst->has_start = 0;
  if (en && en->has_ppid) dst->ppid = en->ppid, dst->has_ppid = 1;
  if (en && en->has_start) dst->start_ticks = en->start_ticks, dst->has_start = 1;
}

static void resolve_parent(struct ldg_watcher *w, struct ldg_event *e, pid_t ppid) {
  if (ppid <= 0) return;
  struct ldg_entry *pe = w->exec_cache ? ldg_cache_get(&w->cache, ppid) : NULL;
  struct ldg_procinfo p = {0};
  ldg_proc_read(ppid, -1, LDG_READ_ALL, &p);
  if (p.exe && (!pe || !pe->has_start || !p.has_start || pe->start_ticks == p.start_ticks)) {
    e->parent = p;
    e->has_parent = 1;
    return;
  }
  ldg_proc_free(&p);
  if (pe) pe = ldg_cache_settle(&w->cache, ppid);
  if (pe && pe->img) {
    from_image(&e->parent, pe->img, pe, ppid);
    e->has_parent = 1;
  }
}

static void decide(struct ldg_watcher *w, struct ldg_event *e) {
  struct ldg_entry *en = e->cap_entry ? ldg_cache_get(&w->cache, e->pid) : NULL;
  int reused = e->cap_entry && (!en || en->gen != e->cap_gen);
  if (reused) en = NULL;
  /* An exec event for P processed after this event's: /proc now shows a later image. */
  int exec_after = reused || (en && en->exec_seq != e->cap_seq);
  struct ldg_image *ci = e->cap_img;
  if (e->live_same && e->live_alive && !exec_after) {
    e->attribution = LDG_ATTR_LIVE;
    e->proc = e->live;
    memset(&e->live, 0, sizeof e->live);
    e->has_proc = 1;
    /* The ordered image disagrees although P is alive and did not exec since: that exec event
     * was an execve that failed after opening the file (noexec mount, ENOEXEC). Heal. */
    if (en && en->img == ci && ci && ci->ordered && ci->p.exe && strcmp(ci->p.exe, e->proc.exe) != 0) {
      struct ldg_procinfo p;
      ldg_proc_copy(&p, &e->proc);
      struct ldg_image *img = calloc(1, sizeof *img);
      if (img) {
        img->refs = 1, img->p = p, img->comm_exact = p.has_comm;
        ldg_image_put(en->img);
        en->img = img;
      } else {
        ldg_proc_free(&p);
      }
    }
  } else if (ci && ci->p.exe) {
    e->attribution = LDG_ATTR_CACHE;
    from_image(&e->proc, ci, en, e->pid);
    e->has_proc = 1;
    if (e->live_same && !exec_after) {
      /* Same process, same image (a zombie, or exe unreadable): /proc still knows the rest. */
      struct ldg_procinfo *l = &e->live, *p = &e->proc;
      if (l->has_comm && !ci->comm_exact) memcpy(p->comm, l->comm, sizeof p->comm), p->has_comm = 1;
      if (l->has_ppid) p->ppid = l->ppid, p->has_ppid = 1;
      if (l->has_start) p->start_ticks = l->start_ticks, p->has_start = 1;
      if (l->has_ids && !p->has_ids) p->uid = l->uid, p->gid = l->gid, p->euid = l->euid, p->egid = l->egid, p->has_ids = 1;
      if (l->has_loginuid && !p->has_loginuid) p->loginuid = l->loginuid, p->has_loginuid = 1;
    }
  } else {
    e->attribution = LDG_ATTR_UNKNOWN;
  }
  pid_t ppid = e->has_proc && e->proc.has_ppid ? e->proc.ppid : (en && en->has_ppid ? en->ppid : 0);
  resolve_parent(w, e, ppid);
  unsigned n = (unsigned)__builtin_popcount(e->kinds);   /* counted per object, like forwarded */
  if (e->attribution == LDG_ATTR_LIVE) LDG_STAT_ADD(w, attr_live, n);
  else if (e->attribution == LDG_ATTR_CACHE) LDG_STAT_ADD(w, attr_cache, n);
  else LDG_STAT_ADD(w, attr_unknown, n);
}

static void flush(struct ldg_watcher *w) {
  struct ldg_batch *b = w->pending;
  w->pending = NULL;
  for (size_t i = 0; i < b->len; i++)
    if (!(b->ev[i].kinds & LDG_OVERFLOW) && b->ev[i].pid > 0) read_live(w, &b->ev[i]);
  /* Anything P exec'd after its event and before our /proc read is in the queues by now. */
  ldg_nl_drain(w);
  for (int i = 0; i < GUARD_READS; i++) {
    ssize_t n = ldg_fan_read(w);
    if (n <= 0) break;
    ldg_nl_drain(w);
    ldg_fan_process(w, (size_t)n);
  }
  uint64_t out = 0;
  for (size_t i = 0; i < b->len; i++) {
    struct ldg_event *e = &b->ev[i];
    if (!(e->kinds & LDG_OVERFLOW) && e->pid > 0) decide(w, e);
    ldg_proc_free(&e->live);
    ldg_image_put(e->cap_img);
    e->cap_img = NULL;
    if (e->pidfd >= 0) close(e->pidfd);
    e->pidfd = -1;
    out += (unsigned)__builtin_popcount(e->kinds);
  }
  LDG_STAT_ADD(w, forwarded, out);
  LDG_STAT_SET(w, cache_entries, w->cache.count);
  w->deliver(w->deliver_ctx, b);
}

/* Reads fanotify until it is empty, attributing and handing over as it goes. */
static void pump(struct ldg_watcher *w) {
  for (;;) {
    ssize_t n = ldg_fan_read(w);
    if (n <= 0) break;
    /* Every connector message sent before the events just read is in the socket now. */
    ldg_nl_drain(w);
    ldg_fan_process(w, (size_t)n);
    if (w->pending && w->pending->len >= LDG_BATCH_MAX) flush(w);
    if (w->stop) return;
  }
  while (w->pending && w->pending->len && !w->stop) flush(w);
}

static void *reader_main(void *arg) {
  struct ldg_watcher *w = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);   /* signals are Node's business */
  /* Like auditd's priority_boost: the reader must get to /proc while short-lived writers still
   * exist; it sleeps in poll(2) otherwise. Best effort (needs CAP_SYS_NICE). */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), READER_NICE) < 0 && w->trace) perror("ldg-native: setpriority");
  if (w->exec_cache) ldg_cache_scan(&w->cache);
  LDG_STAT_SET(w, cache_entries, w->cache.count);
  while (!w->stop) {
    struct pollfd fds[4] = {{w->wake_fd, POLLIN, 0}, {w->fan_fd, POLLIN, 0}, {w->nl_fd, POLLIN, 0},
                            {w->mounts_fd, POLLPRI, 0}};
    int timeout = w->exec_cache ? ldg_cache_evict(&w->cache) : -1;
    int n = poll(fds, 4, timeout);
    if (n < 0 && errno != EINTR) break;
    if (w->stop) break;
    if (fds[3].revents & (POLLPRI | POLLERR)) ldg_fan_mark_exec_filesystems(w);
    if (fds[2].revents & POLLIN) ldg_nl_drain(w);
    pump(w);
    LDG_STAT_SET(w, cache_entries, w->cache.count);
  }
  ldg_batch_free(w->pending);
  w->pending = NULL;
  ldg_exec_classify_reset();
  return NULL;
}

int ldg_watcher_start(struct ldg_watcher *w, struct ldg_err *err) {
  if (ldg_cache_init(&w->cache, w->grace_ns) < 0) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_UNAVAILABLE", ENOMEM, "exec cache");
    return -1;
  }
  w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->wake_fd < 0) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_UNAVAILABLE", errno, "eventfd(2) failed");
    return -1;
  }
  if (w->exec_cache) {
    struct ldg_err nlerr;
    w->netlink_ok = ldg_nl_open(w, &nlerr) == 0;
    if (!w->netlink_ok) w->netlink_error = strdup(nlerr.msg);
    ldg_fan_mark_exec_filesystems(w);
    w->mounts_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  }
  int rc = pthread_create(&w->thread, NULL, reader_main, w);
  if (rc != 0) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_UNAVAILABLE", rc, "pthread_create(3) failed");
    return -1;
  }
  w->thread_started = 1;
  /* Named so that top -H and /proc/PID/task show what the agent's CPU goes to. */
  pthread_setname_np(w->thread, "ldg-fanotify");
  return 0;
}

void ldg_watcher_stop(struct ldg_watcher *w) {
  if (w->thread_started) {
    w->stop = 1;
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n;
    pthread_join(w->thread, NULL);
    w->thread_started = 0;
  }
  ldg_fan_destroy(w);
  if (w->nl_fd >= 0) close(w->nl_fd);
  if (w->wake_fd >= 0) close(w->wake_fd);
  if (w->mounts_fd >= 0) close(w->mounts_fd);
  w->nl_fd = w->wake_fd = w->mounts_fd = -1;
  if (w->cache.buckets) ldg_cache_destroy(&w->cache);
}

void ldg_watcher_free(struct ldg_watcher *w) {
  if (!w) return;
  ldg_watcher_stop(w);
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->ndirs; i++) free(w->dirs[i].path);
  free(w->dirs);
  for (size_t i = 0; i < w->nprefixes; i++) free(w->prefixes[i]);
  free(w->prefixes);
  w->dirs = NULL;
  w->prefixes = NULL;
  w->ndirs = w->nprefixes = 0;
  pthread_mutex_unlock(&w->lock);
  pthread_mutex_destroy(&w->lock);
  free(w->netlink_error);
  free(w);
}

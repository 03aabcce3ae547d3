/*
 * The reader thread: waits in poll(2) on fanotify, the process connector, mount changes and a
 * wake-up eventfd; drains fanotify into the exec cache; attributes the few forwarded events and
 * hands them over in batches. It never blocks on JavaScript: hand-over is non-blocking, so a
 * slow consumer costs memory, never kernel events.
 *
 * Wake-ups are what a busy host costs (a context switch is dearer than a /proc read on some
 * virtual machines), so only what needs prompt handling wakes the reader: a creation (the
 * doorbell, fanotify.c), an EXEC (its /proc read, procconn.c), the wake-up eventfd and mount
 * changes, and while a new file's close-write is awaited, the main queue and the rechecks of
 * closewrite.c. Creations wake it at most once per FAN_REST_NS. Exec events in the main queue
 * are read at the EXEC wake-up that follows each; FORK, EXIT and COMM wait for the next wake-up,
 * or wake the reader at most once per LDG_LAZY_MS.
 * With nested directories (subtree.c) the doorbell rings for every creation on the watched
 * filesystems, whatever its directory: a host busy creating files wakes the reader up to once per
 * FAN_REST_NS (measured: ~3 us of reader CPU per unrelated creation on tmpfs).
 * An idle host costs nothing but the exec cache's timer (evictions, the minute's sweep).
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
/* After the doorbell rings, the main queue is polled for this long: the kernel queues the
 * doorbell's copy of an event microseconds before or after the main queue's. */
#define BELL_WINDOW_NS (10 * 1000000ull)
/* After a wake-up for creations, neither fanotify fd is polled for this long. While the reader
 * sleeps in poll(2) on a queue, every event queued there wakes it, in the writer's own time (a
 * wake-up, an IPI when the reader's CPU idles): in a burst of unrelated creations the reader woke
 * every 2-4 events, up to a tenth of the writer's time on an otherwise idle 2-core VM (little when
 * that CPU is busy anyway). Resting lets the next events pile up to be read in one go (and the
 * doorbell's merge into one). A creation waits at most this much longer, and only one that comes
 * right after another; an awaited close-write never waits (no rest then). */
#define FAN_REST_NS (1000 * 1000ull)

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
  w->fan_fd = w->bell_fd = w->nl_exec_fd = w->nl_lazy_fd = w->wake_fd = w->mounts_fd = -1;
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
      free(e->orig_dir);
      free(e->orig_name);
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

static void event_free(struct ldg_event *e) {
  free(e->dir);
  free(e->name);
  free(e->orig_dir);
  free(e->orig_name);
  ldg_proc_free(&e->proc);
  ldg_proc_free(&e->parent);
  ldg_proc_free(&e->live);
  ldg_image_put(e->cap_img);
  if (e->pidfd >= 0) close(e->pidfd);
}

void ldg_batch_free(struct ldg_batch *b) {
  if (!b) return;
  for (size_t i = 0; i < b->len; i++) event_free(&b->ev[i]);
  free(b);
}

static int same_object(const struct ldg_event *a, const struct ldg_event *b) {
  return a->dir && b->dir && a->name && b->name && strcmp(a->name, b->name) == 0 && strcmp(a->dir, b->dir) == 0;
}

/*
 * A file closed just after its creation was read and marked (closewrite.c) has its close-write
 * queued after the creation. When the guard reads of flush() find it, it travels with the
 * creation: one hand-over instead of two, and JavaScript can hash the file and finish the alert
 * at once instead of waiting for the next batch (~0.7 ms on an idle host). Only a lone
 * close-write that nothing else in `next` precedes for the same name is taken, so a name removed
 * and created again keeps its events in order. `next` is small (what arrived during one batch's
 * /proc reads); past ABSORB_SCAN events nothing is moved.
 */
#define ABSORB_SCAN 64
static void absorb_close_writes(struct ldg_batch *b, struct ldg_batch *next) {
  if (!next || next->len > ABSORB_SCAN) return;
  size_t kept = 0;
  for (size_t i = 0; i < next->len; i++) {
    struct ldg_event *p = &next->ev[i];
    struct ldg_event *into = NULL;
    if (p->kinds == LDG_CLOSE_WRITE) {
      int earlier = 0;
      for (size_t k = 0; k < kept && !earlier; k++) earlier = same_object(&next->ev[k], p);
      for (size_t j = 0; j < b->len && !earlier && !into; j++) {
        struct ldg_event *e = &b->ev[j];
        if ((e->kinds & (LDG_CREATE | LDG_MOVED_TO)) && !(e->kinds & LDG_CLOSE_WRITE) && same_object(e, p)) into = e;
      }
    }
    if (into) {
      into->kinds |= LDG_CLOSE_WRITE;
      event_free(p);
    } else {
      next->ev[kept++] = *p;
    }
  }
  next->len = kept;
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
  /* No LDG_READ_RECHECK: an exec between two of these reads is in the queues by the guard
   * reads of flush(), and decide() then does not use this read. Nor cmdline when the cache
   * has the argv of the image at the event (read at its exec): argv changes only with an
   * exec, and decide() takes it from there if no exec happened since. */
  unsigned what = LDG_READ_ALL;
  if (e->cap_img && e->cap_img->p.args) what &= ~(unsigned)LDG_READ_ARGS;
  if (ldg_pidfd_ids(e->pidfd, &e->live)) what &= ~(unsigned)LDG_READ_IDS;
  ldg_proc_read(e->pid, dfd, what, &e->live);
  close(dfd);
  struct ldg_entry *en = e->cap_entry ? ldg_cache_get(&w->cache, e->pid) : NULL;
  if (en && en->gen != e->cap_gen) en = NULL;
  if (alive == 1) {
    e->live_same = 1;
  } else if (en && en->has_start && e->live.has_start) {
    e->live_same = ldg_cache_same_start(en, e->live.start_ticks);   /* a zombie not yet reaped */
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

/* The parent is named in every alert, often a long-lived shell the cache knows well: its
 * cache entry is used when complete, after one read of /proc/<ppid>/stat shows (start time)
 * that the pid still names that process, and gives its comm now. Otherwise /proc, all of it;
 * otherwise the cache as it is (the parent is gone). */
static void resolve_parent(struct ldg_watcher *w, struct ldg_event *e, pid_t ppid) {
  if (ppid <= 0) return;
  struct ldg_entry *pe = w->exec_cache ? ldg_cache_settle(&w->cache, ppid) : NULL;
  struct ldg_image *img = pe && !pe->exited && pe->has_start ? pe->img : NULL;
  struct ldg_procinfo p = {0};
  if (img && img->p.exe && img->p.args) {
    ldg_proc_read(ppid, -1, LDG_READ_STAT | LDG_READ_NODIR, &p);
    if (p.has_start && ldg_cache_same_start(pe, p.start_ticks)) {
      from_image(&e->parent, img, pe, ppid);
      if (p.has_comm) memcpy(e->parent.comm, p.comm, sizeof p.comm), e->parent.has_comm = 1;
      if (p.has_ppid) e->parent.ppid = p.ppid, e->parent.has_ppid = 1;
      e->has_parent = 1;
      return;
    }
    memset(&p, 0, sizeof p);
  }
  ldg_proc_read(ppid, -1, LDG_READ_ALL | LDG_READ_RECHECK, &p);
  if (p.exe && (!pe || !pe->has_start || !p.has_start || ldg_cache_same_start(pe, p.start_ticks))) {
    e->parent = p;
    e->has_parent = 1;
    return;
  }
  ldg_proc_free(&p);
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
    struct ldg_procinfo *p = &e->proc;
    if (!p->args && ci && ci->p.args && ci->p.exe && p->exe && strcmp(ci->p.exe, p->exe) == 0) {
      if ((p->args = malloc(ci->p.args_len))) memcpy(p->args, ci->p.args, ci->p.args_len), p->args_len = ci->p.args_len;
    } else if (!p->args) {
      ldg_proc_read(e->pid, -1, LDG_READ_ARGS, p);   /* the image is not the cache's (see below) */
    }
    /* /proc cannot name the "#!" script an interpreter runs: the cache's image at the event can,
     * when it is the image /proc shows (no exec since: exec_after is false here). */
    if (ci && ci->p.script && ci->p.exe && p->exe && strcmp(ci->p.exe, p->exe) == 0) p->script = strdup(ci->p.script);
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
  } else if (ci && (ci->interp_only || (e->cap_pending_exec && (!en || en->pending_exec_ns == e->cap_pending_exec)))) {
    /* P had exec'd (the connector said so) and no fanotify exec event for it came, before the
     * event or since, or the only one was an ld.so that no binary's exec-open preceded (the
     * interpreter of such an image: interp_only): the exec was invisible to fanotify (fexecve of
     * a memfd, a filesystem we could not mark) and /proc was gone before the connector's read. The cache's image is the
     * one P ran BEFORE that exec; naming it would blame the previous program, and if that one
     * had called itself dnf, the rule's exclusion would drop the alert. So: unknown, and why. */
    e->attribution = LDG_ATTR_UNKNOWN;
    e->reason = "exec_unseen";
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
    e->reason = "writer_gone";   /* gone before any /proc read, and not in the cache */
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
  absorb_close_writes(b, w->pending);
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

/* Reads fanotify until it is empty, attributing and handing over as it goes. Returns whether
 * anything was read (the connector was then drained too). */
static int pump(struct ldg_watcher *w) {
  int got = 0;
  for (;;) {
    ssize_t n = ldg_fan_read(w);
    if (n <= 0) break;
    got = 1;
    /* Every connector message sent before the events just read is in the sockets now. */
    ldg_nl_drain(w);
    ldg_fan_process(w, (size_t)n);
    if (w->pending && w->pending->len >= LDG_BATCH_MAX) flush(w);
    if (w->stop) return got;
    /* Reads return every queued event that fits: a buffer not nearly full means the queue was
     * empty, and one more read would only say so. */
    if ((size_t)n < w->bufsize / 2) break;
  }
  while (w->pending && w->pending->len && !w->stop) flush(w);
  return got;
}

static int ms_until(uint64_t deadline_ns, uint64_t now_ns) {
  return deadline_ns > now_ns ? (int)((deadline_ns - now_ns) / 1000000) + 1 : 0;
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
  uint64_t lazy_quiet_until = 0;     /* the lazy connector socket is not polled before then */
  uint64_t fan_poll_until = 0;       /* with a doorbell, the main queue is polled until then */
  uint64_t fan_rest_until = 0;       /* neither fanotify fd is polled before then */
  while (!w->stop) {
    uint64_t now = ldg_now_ns(CLOCK_MONOTONIC);
    int timeout = w->exec_cache ? ldg_cache_evict(&w->cache) : -1;
    int cw_ms = ldg_cw_next_ms(w);
    if (cw_ms >= 0 && (timeout < 0 || cw_ms < timeout)) timeout = cw_ms;
    int rest = now < fan_rest_until && w->ncw == 0;
    /* The doorbell rings for creations only: an awaited close-write is read from the main queue. */
    int poll_fan = !rest && (w->bell_fd < 0 || !w->bell_ok || now < fan_poll_until || w->ncw > 0);
    int poll_lazy = now >= lazy_quiet_until;
    if (!poll_lazy && w->nl_lazy_fd >= 0 && (timeout < 0 || ms_until(lazy_quiet_until, now) < timeout))
      timeout = ms_until(lazy_quiet_until, now);
    /* poll(2) ignores negative fds: what is not polled now, or not open, is -1. */
    struct pollfd fds[6] = {{w->wake_fd, POLLIN, 0},
                            {poll_fan ? w->fan_fd : -1, POLLIN, 0},
                            {rest ? -1 : w->bell_fd, POLLIN, 0},
                            {w->nl_exec_fd, POLLIN, 0},
                            {poll_lazy ? w->nl_lazy_fd : -1, POLLIN, 0},
                            {w->mounts_fd, ldg_mnt_poll_events(w), 0}};
    uint64_t wait_ns = timeout < 0 ? UINT64_MAX : (uint64_t)timeout * 1000000ull;
    if (rest && fan_rest_until - now < wait_ns) wait_ns = fan_rest_until - now;
    struct timespec ts = {(time_t)(wait_ns / 1000000000ull), (long)(wait_ns % 1000000000ull)};
    int n = ppoll(fds, 6, wait_ns == UINT64_MAX ? NULL : &ts, NULL);
    if (n < 0 && errno != EINTR) break;
    if (w->stop) break;
    LDG_STAT_ADD(w, wakeups, 1);
    now = ldg_now_ns(CLOCK_MONOTONIC);
    /* Woken by FORK/EXIT/COMM alone: the next of them wait for another wake-up, or the timer. */
    if (fds[4].revents) lazy_quiet_until = now + LDG_LAZY_MS * 1000000ull;
    if (fds[2].revents && ldg_fan_read_bell(w)) fan_poll_until = now + BELL_WINDOW_NS;
    if (fds[5].revents & (POLLIN | POLLPRI | POLLERR)) ldg_mnt_changed(w);   /* mounts.c */
    /* pump() drains the connector after each read; with nothing to read, it is drained here. */
    int got = pump(w);
    if (fds[2].revents || (got && fds[1].revents && w->bell_fd < 0))
      fan_rest_until = ldg_now_ns(CLOCK_MONOTONIC) + FAN_REST_NS;
    if (!got && (n == 0 || fds[3].revents || fds[4].revents)) ldg_nl_drain(w);
    /* After pump(): a close-write already queued is read before a recheck could infer it. */
    if (w->ncw && ldg_cw_tick(w))
      while (w->pending && w->pending->len && !w->stop) flush(w);
    if (w->exec_cache) ldg_cache_forksnaps(&w->cache);   /* after the hand-over, see cache.c */
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
  }
  ldg_mnt_open(w);                   /* mounts.c: the host's mount table */
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
  ldg_nl_close(w);
  if (w->wake_fd >= 0) close(w->wake_fd);
  if (w->mounts_fd >= 0) close(w->mounts_fd);
  w->wake_fd = w->mounts_fd = -1;
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

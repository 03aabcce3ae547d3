/*
 * The exec cache: pid -> the image that pid runs, fed by two kernel sources.
 *
 * - fanotify FAN_OPEN_EXEC events (filesystem marks in the same group as the directory marks).
 *   They are ordered with the creations: every exec a pid made before a write is processed
 *   before that write. They give the exe path, nothing else. Images built from them are
 *   "ordered".
 * - the netlink process connector: FORK, EXEC, EXIT, COMM. Not ordered with fanotify, but a
 *   message sent before a write is always in the socket when that write is read (watcher.c
 *   drains the sockets after each fanotify read, before processing it). At EXEC we read /proc
 *   at once (exe, stat, cmdline, cwd, status, loginuid): the process has just committed its
 *   exec. That snapshot completes the ordered image with the same exe; it becomes the image
 *   itself only for execs fanotify cannot see (a filesystem we could not mark).
 *
 * What this costs per process on the host is the agent's idle CPU, so nothing else reads
 * /proc per process: FORK, EXIT and COMM cost no read in the common case (see each handler).
 *
 * Fork inheritance is lazy: a child forked without exec runs its parent's image *as of the
 * fork*. The FORK message can be processed before the parent's own exec event (the sources
 * are not ordered), so the child takes its parent's image when its first fanotify event is
 * processed (ldg_cache_settle), which is in order. If the parent's image changes first (its
 * exec event, which comes after the FORK message was drained; an exec fanotify cannot see; a
 * rename), the children it forked before that change, by the messages' times, take the image
 * they forked with just before (settle_children). A /proc read of the child ("forksnap") gives
 * its exact start time, and its exe when the parent was unknown. It is not made while the FORK
 * is processed (that drain may hold a creation waiting to be handed over, and most children
 * exec within a millisecond, which makes the read useless): settle makes it when it needs it,
 * and the reader makes the others once it has handed over what it read (ldg_cache_forksnaps).
 *
 * A "#!" script's exec is two exec events (the script, then its interpreter): the interpreter's
 * image is a "continuation" that keeps the script's path (p.script), the only record of which
 * script the kernel ran; /proc shows the interpreter, and argv names any file.
 *
 * Exited processes stay for grace_ns so that a creation read after the writer's exit still
 * resolves; entries are bounded by the number of live pids plus the exits within the grace.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXITED 65536               /* exited entries kept at most, whatever the grace */
#define SWEEP_NS (60ull * 1000000000)  /* look for processes whose EXIT message was lost */
#define EVICT_BATCH_NS 1000000000ull   /* exits expire together, one wake-up per second at most */

int ldg_trace;
#define TRACE(...) do { if (ldg_trace) fprintf(stderr, "ldg-cache: " __VA_ARGS__); } while (0)

static long clk_tck;
static __thread uint32_t generation;  /* tells a reused pid's entry from the old one */

struct ldg_image *ldg_image_get(struct ldg_image *img) {
  if (img) img->refs++;
  return img;
}

void ldg_image_put(struct ldg_image *img) {
  if (!img || --img->refs > 0) return;
  ldg_proc_free(&img->p);
  free(img);
}

static struct ldg_image *image_new(void) {
  struct ldg_image *img = calloc(1, sizeof *img);
  if (img) img->refs = 1;
  return img;
}

/* Takes ownership of p's strings. */
static struct ldg_image *image_from(struct ldg_procinfo *p, int ordered) {
  struct ldg_image *img = image_new();
  if (!img) {
    ldg_proc_free(p);
    return NULL;
  }
  img->p = *p;
  memset(p, 0, sizeof *p);
  img->ordered = ordered;
  img->comm_exact = img->p.has_comm;
  return img;
}

static struct ldg_image *image_dup(const struct ldg_image *src) {
  struct ldg_image *img = image_new();
  if (!img) return NULL;
  ldg_proc_copy(&img->p, &src->p);
  img->ordered = src->ordered;
  img->comm_exact = src->comm_exact;
  img->confirmed = src->confirmed;
  return img;
}

static void set_img(struct ldg_image **slot, struct ldg_image *img) {
  ldg_image_put(*slot);
  *slot = img;
}

/* Fills an ordered image, built from an exec event, with what /proc said right after the exec. */
static void image_fill(struct ldg_image *dst, const struct ldg_image *snap) {
  const struct ldg_procinfo *s = &snap->p;
  if (s->has_comm) {               /* the process may have gone between two reads */
    memcpy(dst->p.comm, s->comm, sizeof s->comm);
    dst->p.has_comm = dst->comm_exact = 1;
  }
  if (s->args && !dst->p.args && (dst->p.args = malloc(s->args_len))) {
    memcpy(dst->p.args, s->args, s->args_len);
    dst->p.args_len = s->args_len;
  }
  if (s->cwd) {                    /* fresher than the cwd carried over from the last image */
    free(dst->p.cwd);
    dst->p.cwd = strdup(s->cwd);
  }
  if (s->has_ids) {
    dst->p.uid = s->uid, dst->p.gid = s->gid, dst->p.euid = s->euid, dst->p.egid = s->egid;
    dst->p.has_ids = 1;
  }
  if (s->has_loginuid) dst->p.loginuid = s->loginuid, dst->p.has_loginuid = 1;
}

static size_t bucket(const struct ldg_cache *c, pid_t pid) {
  return ((uint32_t)pid * 2654435761u) & (c->nbuckets - 1);
}

int ldg_cache_init(struct ldg_cache *c, uint64_t grace_ns) {
  memset(c, 0, sizeof *c);
  c->nbuckets = 8192;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  c->grace_ns = grace_ns;
  c->last_sweep_ns = ldg_now_ns(CLOCK_MONOTONIC);
  if (!clk_tck) clk_tck = sysconf(_SC_CLK_TCK);
  return c->buckets ? 0 : -1;
}

static void entry_clear(struct ldg_entry *e) {
  struct ldg_entry *next = e->next;
  pid_t pid = e->pid;
  ldg_image_put(e->img);
  ldg_image_put(e->snap);
  ldg_image_put(e->forksnap);
  free(e->expect);
  free(e->kids);
  memset(e, 0, sizeof *e);
  e->next = next;
  e->pid = pid;
  e->gen = ++generation;
}

void ldg_cache_destroy(struct ldg_cache *c) {
  for (size_t i = 0; c->buckets && i < c->nbuckets; i++) {
    for (struct ldg_entry *e = c->buckets[i], *n; e; e = n) {
      n = e->next;
      entry_clear(e);
      free(e);
    }
  }
  free(c->buckets);
  free(c->exits);
  free(c->forks);
  memset(c, 0, sizeof *c);
}

struct ldg_entry *ldg_cache_get(struct ldg_cache *c, pid_t pid) {
  for (struct ldg_entry *e = c->buckets[bucket(c, pid)]; e; e = e->next)
    if (e->pid == pid) return e;
  return NULL;
}

static struct ldg_entry *get_or_add(struct ldg_cache *c, pid_t pid) {
  struct ldg_entry *e = ldg_cache_get(c, pid);
  if (e) return e;
  if (!(e = calloc(1, sizeof *e))) return NULL;
  e->pid = pid;
  e->gen = ++generation;
  size_t b = bucket(c, pid);
  e->next = c->buckets[b];
  c->buckets[b] = e;
  c->count++;
  return e;
}

static void settle_children(struct ldg_cache *c, struct ldg_entry *pe, uint64_t change_ns);

static void remove_entry(struct ldg_cache *c, pid_t pid) {
  for (struct ldg_entry **pp = &c->buckets[bucket(c, pid)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->pid != pid) continue;
    struct ldg_entry *e = *pp;
    settle_children(c, e, UINT64_MAX);   /* before the pid can name another process */
    *pp = e->next;
    entry_clear(e);
    free(e);
    c->count--;
    return;
  }
}

/* A child's start time from its FORK message, without reading /proc: the kernel stamps the
 * child (start_boottime) microseconds before it sends the message, so the message's tick is the
 * child's unless a tick boundary falls in between (1 fork in 5000, measured). Such a start is
 * "derived": within one tick of the truth, replaced by the first /proc read of the process. */
static uint64_t start_from_fork_ts(uint64_t ts_ns) {
  uint64_t boot_off = ldg_now_ns(CLOCK_BOOTTIME) - ldg_now_ns(CLOCK_MONOTONIC);
  return (ts_ns + boot_off) / (1000000000ull / (uint64_t)clk_tck);
}

static int within_a_tick(uint64_t a, uint64_t b) {
  return a + 1 >= b && b + 1 >= a;
}

int ldg_cache_same_start(struct ldg_entry *e, uint64_t ticks) {
  if (!e->has_start) return 0;
  if (!e->start_derived) return e->start_ticks == ticks;
  if (!within_a_tick(e->start_ticks, ticks)) return 0;
  e->start_ticks = ticks;            /* a pid is not reused within a tick: this is the process */
  e->start_derived = 0;
  return 1;
}

static void take_proc_facts(struct ldg_entry *e, const struct ldg_procinfo *p) {
  if (p->has_start && !e->has_start) e->start_ticks = p->start_ticks, e->has_start = 1, e->start_derived = 0;
  else if (p->has_start) ldg_cache_same_start(e, p->start_ticks);
  if (p->has_ppid && !e->has_ppid) e->ppid = p->ppid, e->has_ppid = 1;
}

/* The kernel keeps a dead process's comm until it is reaped: when a read finds the process
 * dead (no exe) but still ours (same start time), its comm is that of its last image. It is
 * applied once the connector's EXIT is processed (so nl_execs counts every exec) and fanotify
 * has processed as many execs, so that the cache's current image is that last one. Such a read
 * makes the drain take one more pass (c->dead_read): the EXIT was sent before the read, so it
 * is processed at once, before the children this process forked can settle on its image. */
static void apply_final_comm(struct ldg_entry *e) {
  struct ldg_image *img = e->img;
  if (!e->exited || !e->final_comm[0] || !img || img->comm_exact || e->fan_execs != e->nl_execs) return;
  memcpy(img->p.comm, e->final_comm, sizeof img->p.comm);
  img->p.has_comm = img->comm_exact = 1;
}

static void take_final_comm(struct ldg_cache *c, struct ldg_entry *e, const struct ldg_procinfo *p) {
  if (p->exe || !p->has_comm || !p->has_start || !ldg_cache_same_start(e, p->start_ticks)) return;
  memcpy(e->final_comm, p->comm, sizeof e->final_comm);
  if (!e->exited) c->dead_read = 1;
  apply_final_comm(e);
}

/* Reads a running process into a fresh unordered image (the startup scan, unknown parents). */
static void fill_from_proc(struct ldg_entry *e) {
  struct ldg_procinfo p = {0};
  ldg_proc_read(e->pid, -1, LDG_READ_ALL | LDG_READ_RECHECK, &p);
  take_proc_facts(e, &p);
  if (!p.exe) {
    ldg_proc_free(&p);
    return;
  }
  set_img(&e->img, image_from(&p, 0));
}

void ldg_cache_scan(struct ldg_cache *c) {
  DIR *d = opendir("/proc");
  if (!d) return;
  for (struct dirent *de; (de = readdir(d));) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    struct ldg_entry *e = get_or_add(c, (pid_t)pid);
    if (e && !e->img && !e->inherit_from) fill_from_proc(e);
  }
  closedir(d);
}

static void forksnap(struct ldg_cache *c, struct ldg_entry *e);

static void settle(struct ldg_cache *c, struct ldg_entry *e, int depth) {
  if (e->forksnap_due) forksnap(c, e);
  if (!e->inherit_from) return;
  struct ldg_entry *pe = depth < 16 ? ldg_cache_get(c, e->inherit_from) : NULL;
  e->inherit_from = 0;
  if (pe) settle(c, pe, depth + 1);
  struct ldg_image *r = pe ? pe->img : NULL, *s = e->forksnap, *img = NULL;
  /* The forksnap is the child's own image unless the child exec'd before it was read. */
  int s_ok = s && s->p.exe && (!e->first_exec_ns || e->first_exec_ns > e->forksnap_ns);
  if (s_ok && (!r || !r->p.exe || strcmp(r->p.exe, s->p.exe) != 0)) {
    img = ldg_image_get(s);      /* the parent exec'd after the fork, or was unknown */
    if (r) {                     /* a fork copies cwd and credentials */
      if (r->p.cwd && !s->p.cwd) s->p.cwd = strdup(r->p.cwd);
      if (r->p.has_ids && !s->p.has_ids)
        s->p.uid = r->p.uid, s->p.gid = r->p.gid, s->p.euid = r->p.euid, s->p.egid = r->p.egid, s->p.has_ids = 1;
      if (r->p.has_loginuid && !s->p.has_loginuid) s->p.loginuid = r->p.loginuid, s->p.has_loginuid = 1;
    }
  } else if (r && s_ok && !r->comm_exact && s->p.has_comm && (img = image_dup(r))) {
    memcpy(img->p.comm, s->p.comm, sizeof img->p.comm);
    img->p.has_comm = img->comm_exact = 1;
  } else {
    img = ldg_image_get(r);
  }
  if (e->pending_comm[0] && img) {
    /* The child renamed itself (prctl PR_SET_NAME) before its first event: its own copy. */
    if (img->refs > 1) {
      struct ldg_image *copy = image_dup(img);
      ldg_image_put(img);
      img = copy;
    }
    if (img) {
      memcpy(img->p.comm, e->pending_comm, sizeof img->p.comm);
      img->p.has_comm = img->comm_exact = 1;
    }
  }
  e->pending_comm[0] = 0;
  TRACE("settle pid=%d from=%d r=%s s=%s -> %s\n", e->pid, pe ? pe->pid : 0, r ? r->p.exe : "-", s ? s->p.exe : "-", img ? img->p.exe : "-");
  set_img(&e->img, img);
  set_img(&e->forksnap, NULL);
  apply_final_comm(e);
}

/* Before pe's image changes, at connector time `change_ns` (UINT64_MAX: pe goes, or its exec
 * is not committed yet, so every child known forked before it): each child forked before then
 * and still to inherit from pe takes pe's image now, the one it forked with. The others stay
 * listed, for the image they will find. */
static void settle_children(struct ldg_cache *c, struct ldg_entry *pe, uint64_t change_ns) {
  uint32_t kept = 0;
  for (uint32_t i = 0; i < pe->nkids; i++) {
    struct ldg_entry *k = ldg_cache_get(c, pe->kids[i]);
    if (!k || k == pe || k->inherit_from != pe->pid) continue;
    if (k->fork_ns < change_ns) settle(c, k, 0);
    else pe->kids[kept++] = pe->kids[i];
  }
  pe->nkids = kept;
}

static void add_kid(struct ldg_cache *c, struct ldg_entry *pe, pid_t child) {
  if (pe->nkids == pe->kids_cap) {
    uint32_t n = 0;              /* keep only those still to settle (exited ones too: their
                                    events may still be in the queue) */
    for (uint32_t i = 0; i < pe->nkids; i++) {
      struct ldg_entry *k = ldg_cache_get(c, pe->kids[i]);
      if (k && k->inherit_from == pe->pid) pe->kids[n++] = pe->kids[i];
    }
    pe->nkids = n;
  }
  if (pe->nkids == pe->kids_cap) {
    uint32_t cap = pe->kids_cap ? pe->kids_cap * 2 : 4;
    pid_t *k = realloc(pe->kids, cap * sizeof *k);
    if (!k) return;              /* that child settles lazily, as before this list existed */
    pe->kids = k;
    pe->kids_cap = cap;
  }
  pe->kids[pe->nkids++] = child;
}

struct ldg_entry *ldg_cache_settle(struct ldg_cache *c, pid_t pid) {
  struct ldg_entry *e = get_or_add(c, pid);
  if (e) settle(c, e, 0);
  return e;
}

static int looks_like_ldso(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  return strncmp(b, "ld-", 3) == 0 && strstr(b, ".so");
}

void ldg_cache_on_exec_open(struct ldg_cache *c, pid_t pid, const char *path) {
  struct ldg_entry *e = get_or_add(c, pid);
  if (e) {
    e->forksnap_due = 0;         /* an exec is under way: the image as of the fork is moot */
    settle(c, e, 0);             /* for what the exec carries over (cwd, ids) */
  }
  TRACE("exec_open pid=%d path=%s cur=%s expect=%d:%s\n", pid, path ? path : "?", e && e->img ? e->img->p.exe : "-", e ? e->expect_kind : -1, e && e->expect ? e->expect : "-");
  if (!e) return;
  int kind = e->expect_kind;
  e->expect_kind = LDG_EXEC_OTHER;
  if (!path) {
    /* An exec we could not name (its directory handle did not decode): the image is unknown
     * until the connector's /proc snapshot names it. */
    struct ldg_image *img = image_new();
    if (!img) return;
    img->ordered = 1;
    img->unnamed = 1;
    e->exec_seq++;
    e->fan_execs++;
    settle_children(c, e, e->pending_exec_ns ? e->pending_exec_ns : UINT64_MAX);
    img->confirmed = e->pending_exec_ns != 0;
    e->pending_exec_ns = 0;
    if (e->snap) {
      image_fill(img, e->snap);
      img->p.exe = e->snap->p.exe ? strdup(e->snap->p.exe) : NULL;
      set_img(&e->snap, NULL);
    }
    set_img(&e->img, img);
    return;
  }
  /* The ELF interpreter the kernel loads for the binary just opened: same execve, same image. */
  if ((kind == LDG_EXEC_ELF_INTERP && e->expect && strcmp(path, e->expect) == 0) ||
      (kind == LDG_EXEC_UNREADABLE && looks_like_ldso(path)))
    return;
  struct ldg_image *img = image_new();
  if (!img || !(img->p.exe = strdup(path))) {
    ldg_image_put(img);
    return;
  }
  img->ordered = 1;
  if (e->img) {
    /* execve keeps the cwd and login uid, and the uids unless the file is set-id: carried
     * over until /proc says otherwise. */
    struct ldg_procinfo *o = &e->img->p;
    if (o->cwd) img->p.cwd = strdup(o->cwd);
    if (o->has_ids) img->p.uid = o->uid, img->p.gid = o->gid, img->p.euid = o->euid, img->p.egid = o->egid, img->p.has_ids = 1;
    if (o->has_loginuid) img->p.loginuid = o->loginuid, img->p.has_loginuid = 1;
  }
  int continuation = kind == LDG_EXEC_SCRIPT && e->expect && strcmp(path, e->expect) == 0 && e->img;
  /* An ld.so opened after an EXEC whose /proc read found the process gone: either `ld.so PROG`
   * run directly, or the interpreter of an image fanotify could not see (fexecve of a memfd).
   * Which one cannot be told, so the exec stays pending and decide() (watcher.c) reports the
   * writer as unknown (exec_unseen) rather than as ld.so. */
  int unsure_ldso = !continuation && e->pending_exec_ns && !e->snap && looks_like_ldso(path);
  if (!continuation) e->fan_execs++;
  if (continuation) {
    /* binfmt_script: the interpreter becomes the image; comm stays the script's name. The
     * script is the image this exec replaces (its own exec event, just processed): kept, so that
     * the verdict can judge what ran (dnf is python3 running /usr/bin/dnf). A script named only
     * in argv (python3 /usr/bin/dnf) has no exec event of its own and never gets here. */
    img->p.script = e->img->p.exe ? strdup(e->img->p.exe) : NULL;
    memcpy(img->p.comm, e->img->p.comm, sizeof img->p.comm);
    img->p.has_comm = e->img->p.has_comm;
    img->comm_exact = e->img->comm_exact;
  } else {
    /* The kernel names the process after the file passed to execve; without /proc this is
     * the best guess (wrong when exec'd through a symlink of another name: sh -> dash). */
    const char *b = strrchr(path, '/');
    snprintf(img->p.comm, sizeof img->p.comm, "%s", b ? b + 1 : path);
    img->p.has_comm = 1;
  }
  e->exec_seq++;
  if (continuation) {
    img->confirmed = e->img->confirmed;
  } else {
    /* With its EXEC processed, the time of this exec is known; otherwise it is not committed
     * yet (or it failed), and every child listed forked before it. */
    settle_children(c, e, e->pending_exec_ns ? e->pending_exec_ns : UINT64_MAX);
    img->confirmed = e->pending_exec_ns != 0;
    if (!unsure_ldso) e->pending_exec_ns = 0;
  }
  int snapped = e->snap && e->snap->p.exe && strcmp(e->snap->p.exe, path) == 0;
  if (snapped) {
    image_fill(img, e->snap);
    set_img(&e->snap, NULL);
    /* The connector's EXEC came between the script's event and this one: /proc showed this
     * interpreter, not the script, so it left the exec pending. It was this exec; left pending,
     * every later event of the process, once it is gone, would be reported as exec_unseen (dnf's
     * last database write, read after its exit: measured). */
    if (continuation && e->pending_exec_ns) {
      img->confirmed = 1;
      e->pending_exec_ns = 0;
    }
  }
  /* An ld.so exec-open that is not the interpreter of a binary just opened: `ld.so PROG` run
   * directly, or the interpreter of an exec fanotify could not see (a memfd). Which one only
   * /proc can tell; unless it did (snapped), decide() (watcher.c) reports an unknown writer. This
   * holds whatever order the connector's EXEC and this event arrive in (the sockets are not
   * ordered): unsure_ldso above covers only the EXEC first. */
  img->interp_only = !continuation && !snapped && looks_like_ldso(path);
  set_img(&e->img, img);
  apply_final_comm(e);
  const char *interp;
  free(e->expect);
  e->expect = NULL;
  e->expect_kind = ldg_exec_classify(path, &interp);
  if (interp) e->expect = strdup(interp);
}

/* Whether fanotify reports execs of the image pid runs (path): its filesystem is marked. */
static int exec_visible(const struct ldg_cache *c, pid_t pid, const char *path) {
  if (ldg_exec_seen(path)) return 1;          /* the common case, without a stat(2) */
  char link[40];
  struct stat st;
  snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
  if (stat(link, &st) < 0) return 1;
  for (int i = 0; i < c->n_exec_devs; i++)
    if (c->exec_devs[i] == st.st_dev) return 1;
  return 0;
}

void ldg_cache_on_exec(struct ldg_cache *c, pid_t pid, uint64_t ts_ns) {
  struct ldg_entry *e = get_or_add(c, pid);
  TRACE("nl_exec pid=%d after %llu us\n", pid, (unsigned long long)(ldg_now_ns(CLOCK_MONOTONIC) - ts_ns) / 1000);
  if (!e) return;
  e->exec_seq++;
  e->nl_execs++;
  e->final_comm[0] = 0;          /* a read made before this EXEC was processed saw a later image */
  if (!e->first_exec_ns) e->first_exec_ns = ts_ns;
  struct ldg_procinfo p = {0};
  ldg_proc_read(pid, -1, LDG_READ_ALL | LDG_READ_RECHECK, &p);
  TRACE("nl_exec pid=%d snapshot exe=%s comm=%s\n", pid, p.exe ? p.exe : "-", p.has_comm ? p.comm : "-");
  if (p.has_start && e->has_start && !ldg_cache_same_start(e, p.start_ticks)) {
    /* Not the process we know under this pid: it exited and the pid was reused before this
     * read, or our entry is stale (lost messages). Either way the read does not describe
     * this exec; the message still does. */
    ldg_proc_free(&p);
    memset(&p, 0, sizeof p);
  }
  take_proc_facts(e, &p);
  /* Whether this exec's fanotify event was processed already: then fanotify counted it, and
   * the current image is its own, ordered and not yet confirmed, unless the read names another
   * file (that image came from an execve that failed). Otherwise the event is still to come,
   * and the time of the exec waits for it (see settle_children), whether or not /proc could
   * still be read. */
  struct ldg_image *cur = e->img;
  int seen = cur && cur->ordered && !cur->confirmed && e->fan_execs >= e->nl_execs &&
             (!p.exe || !cur->p.exe || strcmp(cur->p.exe, p.exe) == 0);
  if (seen) cur->confirmed = 1;
  else e->pending_exec_ns = ts_ns;
  if (!p.exe) {
    take_final_comm(c, e, &p);      /* already dead: its comm is all /proc has left */
    ldg_proc_free(&p);
    return;
  }
  struct ldg_image *s = image_from(&p, 0);
  if (!s) return;
  if (!c->fan_exec || !exec_visible(c, pid, s->p.exe)) {
    /* No exec event will come for this one: the snapshot is the image (not ordered). Its
     * ELF interpreter may still be opened from a marked filesystem (a dynamic program run
     * from a memfd opens /lib64/ld-linux…): that event is part of this exec, not an image. */
    e->inherit_from = 0;
    e->expect_kind = LDG_EXEC_UNREADABLE;
    e->pending_exec_ns = 0;
    settle_children(c, e, ts_ns);
    set_img(&e->img, s);
    return;
  }
  if (seen) {
    cur->interp_only = 0;   /* /proc names the same file: ld.so was run directly (see on_exec_open) */
    image_fill(cur, s);
    if (!cur->p.exe) cur->p.exe = s->p.exe, s->p.exe = NULL;   /* an exec event we could not name */
    ldg_image_put(s);
    return;
  }
  set_img(&e->snap, s);
}

/* The child's exact start, and its own exe for settle, unless it exec'd or exited meanwhile:
 * its EXEC read has both, or it is too late. */
static void forksnap(struct ldg_cache *c, struct ldg_entry *e) {
  e->forksnap_due = 0;
  if (e->first_exec_ns || e->exited) return;
  struct ldg_procinfo p = {0};
  ldg_proc_read(e->pid, -1, LDG_READ_EXE | LDG_READ_STAT | LDG_READ_NODIR, &p);
  /* Taken after the read: an exec that may be in it is later than first_exec_ns (see settle). */
  uint64_t read_ns = ldg_now_ns(CLOCK_MONOTONIC);
  TRACE("forksnap pid=%d exe=%s\n", e->pid, p.exe ? p.exe : "-");
  /* Gone, or the pid names another process by now (the start time tells, as NODIR reads rely on). */
  if (!p.has_start || !ldg_cache_same_start(e, p.start_ticks)) {
    ldg_proc_free(&p);
    return;
  }
  e->forksnap_ns = read_ns;
  if (!p.exe) take_final_comm(c, e, &p);   /* dead, not yet reaped: its comm is still there */
  if (p.exe && e->inherit_from) set_img(&e->forksnap, image_from(&p, 0));
  else ldg_proc_free(&p);
}

void ldg_cache_forksnaps(struct ldg_cache *c) {
  for (size_t i = 0; i < c->nforks; i++) {
    struct ldg_entry *e = ldg_cache_get(c, c->forks[i].pid);
    if (e && e->gen == c->forks[i].gen && e->forksnap_due) forksnap(c, e);
  }
  c->nforks = 0;
}

void ldg_cache_on_fork(struct ldg_cache *c, pid_t parent, pid_t child, uint64_t ts_ns) {
  uint64_t start = start_from_fork_ts(ts_ns);
  struct ldg_entry *e = ldg_cache_get(c, child);
  TRACE("nl_fork parent=%d child=%d existing=%d\n", parent, child, !!e);
  if (e && !e->exited && (!e->has_start || within_a_tick(e->start_ticks, start))) {
    /* This child's own events were processed before its FORK message (the two sockets are
     * merged by time, not strictly ordered): what they said is newer than the fork. */
    if (!e->has_ppid) e->ppid = parent, e->has_ppid = 1;
    if (!e->has_start) e->start_ticks = start, e->has_start = 1, e->start_derived = 1;
  } else {
    if (e) {                     /* the pid was reused: that process is gone */
      settle_children(c, e, UINT64_MAX);
      entry_clear(e);
    } else if (!(e = get_or_add(c, child))) {
      return;
    }
    e->ppid = parent;
    e->has_ppid = 1;
    e->inherit_from = parent;
    e->fork_ns = ts_ns;
    e->start_ticks = start;
    e->has_start = 1;
    e->start_derived = 1;
    e->forksnap_due = 1;
    if (c->nforks == c->forks_cap) {
      size_t cap = c->forks_cap ? c->forks_cap * 2 : 256;
      void *n = realloc(c->forks, cap * sizeof *c->forks);
      if (n) c->forks = n, c->forks_cap = cap;
    }
    if (c->nforks < c->forks_cap) {
      c->forks[c->nforks].pid = child;
      c->forks[c->nforks].gen = e->gen;
      c->nforks++;
    }
  }
  struct ldg_entry *pe = ldg_cache_get(c, parent);
  if (!pe && (pe = get_or_add(c, parent))) fill_from_proc(pe);
  if (pe && e->inherit_from == parent) add_kid(c, pe, child);
}

void ldg_cache_on_exit(struct ldg_cache *c, pid_t pid) {
  struct ldg_entry *e = ldg_cache_get(c, pid);
  if (!e || e->exited) return;
  e->exited = 1;
  if (!e->final_comm[0] && (e->inherit_from || (e->img && !e->img->comm_exact))) {
    /* The comm is still a guess: read it from the zombie while it is one. */
    struct ldg_procinfo p = {0};
    ldg_proc_read(pid, -1, LDG_READ_STAT | LDG_READ_NODIR, &p);
    take_final_comm(c, e, &p);
    ldg_proc_free(&p);
  }
  apply_final_comm(e);
  e->exit_ns = ldg_now_ns(CLOCK_MONOTONIC);
  if (c->exits_len == c->exits_cap) {
    size_t cap = c->exits_cap ? c->exits_cap * 2 : 1024;
    void *n = malloc(cap * sizeof *c->exits);
    if (!n) return;
    for (size_t i = 0; i < c->exits_len; i++)
      ((typeof(c->exits))n)[i] = c->exits[(c->exits_head + i) % c->exits_cap];
    free(c->exits);
    c->exits = n;
    c->exits_cap = cap;
    c->exits_head = 0;
  }
  size_t tail = (c->exits_head + c->exits_len) % c->exits_cap;
  c->exits[tail].pid = pid;
  c->exits[tail].ns = e->exit_ns;
  c->exits_len++;
}

void ldg_cache_on_comm(struct ldg_cache *c, pid_t pid, const char *comm, uint64_t ts_ns) {
  struct ldg_entry *e = ldg_cache_get(c, pid);
  if (!e) return;
  e->final_comm[0] = 0;
  if (e->inherit_from) {
    snprintf(e->pending_comm, sizeof e->pending_comm, "%s", comm);
    return;
  }
  if (!e->img) return;
  settle_children(c, e, ts_ns);  /* those forked before kept the old name */
  if (e->img->refs > 1) {
    struct ldg_image *copy = image_dup(e->img);
    if (!copy) return;
    set_img(&e->img, copy);
  }
  snprintf(e->img->p.comm, sizeof e->img->p.comm, "%s", comm);
  e->img->p.has_comm = e->img->comm_exact = 1;
}

/* Marks entries whose process is gone as exited (their EXIT message was lost, or the
 * connector is unavailable), so that they age out like the others. */
static void sweep(struct ldg_cache *c) {
  for (size_t i = 0; i < c->nbuckets; i++)
    for (struct ldg_entry *e = c->buckets[i]; e; e = e->next)
      if (!e->exited && kill(e->pid, 0) < 0 && errno == ESRCH) ldg_cache_on_exit(c, e->pid);
}

int ldg_cache_evict(struct ldg_cache *c) {
  uint64_t now = ldg_now_ns(CLOCK_MONOTONIC);
  if (now - c->last_sweep_ns >= SWEEP_NS) {
    c->last_sweep_ns = now;
    sweep(c);
  }
  while (c->exits_len) {
    pid_t pid = c->exits[c->exits_head].pid;
    uint64_t ns = c->exits[c->exits_head].ns;
    if (now - ns < c->grace_ns && c->exits_len <= MAX_EXITED) break;
    c->exits_head = (c->exits_head + 1) % c->exits_cap;
    c->exits_len--;
    struct ldg_entry *e = ldg_cache_get(c, pid);
    if (e && e->exited && e->exit_ns == ns) remove_entry(c, pid);
  }
  uint64_t next = c->last_sweep_ns + SWEEP_NS - now;
  if (c->exits_len) {
    uint64_t due = c->exits[c->exits_head].ns + c->grace_ns + EVICT_BATCH_NS - now;
    if (due < next) next = due;
  }
  return (int)(next / 1000000) + 1;
}

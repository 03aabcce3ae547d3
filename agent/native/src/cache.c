/*
 * The exec cache: pid -> the image that pid runs, fed by two kernel sources.
 *
 * - fanotify FAN_OPEN_EXEC events (filesystem marks in the same group as the directory marks).
 *   They are ordered with the creations: every exec a pid made before a write is processed
 *   before that write. They give the exe path, nothing else. Images built from them are
 *   "ordered".
 * - the netlink process connector: FORK, EXEC, EXIT, COMM. Not ordered with fanotify, but a
 *   message sent before a write is always in the socket when that write is read (watcher.c
 *   drains the socket after each fanotify read, before processing it). At EXEC we read /proc
 *   at once (exe, comm, args, ids): the process has just committed its exec. That snapshot
 *   completes the ordered image with the same exe; it becomes the image itself only for
 *   execs fanotify cannot see (a filesystem we could not mark).
 *
 * Fork inheritance is lazy: a child forked without exec runs its parent's image *as of the
 * fork*. The FORK message can be processed before the parent's own exec event (the sources
 * are not ordered), so the child takes its parent's image when its first fanotify event is
 * processed (ldg_cache_settle), which is in order. A /proc read made at FORK ("forksnap")
 * settles the case where the parent exec'd after forking.
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
  if (s->cwd && !dst->p.cwd) dst->p.cwd = strdup(s->cwd);
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

static void remove_entry(struct ldg_cache *c, pid_t pid) {
  for (struct ldg_entry **pp = &c->buckets[bucket(c, pid)]; *pp; pp = &(*pp)->next) {
    if ((*pp)->pid != pid) continue;
    struct ldg_entry *e = *pp;
    *pp = e->next;
    entry_clear(e);
    free(e);
    c->count--;
    return;
  }
}

static void take_proc_facts(struct ldg_entry *e, const struct ldg_procinfo *p) {
  if (p->has_start && !e->has_start) e->start_ticks = p->start_ticks, e->has_start = 1;
  if (p->has_ppid && !e->has_ppid) e->ppid = p->ppid, e->has_ppid = 1;
}

/* The kernel keeps a dead process's comm until it is reaped: when a read finds the process
 * dead (no exe) but still ours (same start time), its comm is that of its last image. It is
 * applied once the connector's EXIT is processed (so nl_execs counts every exec) and fanotify
 * has processed as many execs, so that the cache's current image is that last one. */
static void apply_final_comm(struct ldg_entry *e) {
  struct ldg_image *img = e->img;
  if (!e->exited || !e->final_comm[0] || !img || img->comm_exact || e->fan_execs != e->nl_execs) return;
  memcpy(img->p.comm, e->final_comm, sizeof img->p.comm);
  img->p.has_comm = img->comm_exact = 1;
}

static void take_final_comm(struct ldg_entry *e, const struct ldg_procinfo *p) {
  if (p->exe || !p->has_comm || !p->has_start || !e->has_start || p->start_ticks != e->start_ticks) return;
  memcpy(e->final_comm, p->comm, sizeof e->final_comm);
  apply_final_comm(e);
}

/* Reads a running process into a fresh unordered image (the startup scan, unknown parents). */
static void fill_from_proc(struct ldg_entry *e) {
  struct ldg_procinfo p = {0};
  ldg_proc_read(e->pid, -1, LDG_READ_ALL, &p);
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

static void settle(struct ldg_cache *c, struct ldg_entry *e, int depth) {
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
  struct ldg_entry *e = ldg_cache_settle(c, pid);
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
  if (!continuation) e->fan_execs++;
  if (continuation) {
    /* binfmt_script: the interpreter becomes the image; comm stays the script's name. */
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
  if (e->snap && e->snap->p.exe && strcmp(e->snap->p.exe, path) == 0) {
    image_fill(img, e->snap);
    set_img(&e->snap, NULL);
  }
  set_img(&e->img, img);
  apply_final_comm(e);
  const char *interp;
  free(e->expect);
  e->expect = NULL;
  e->expect_kind = ldg_exec_classify(path, &interp);
  if (interp) e->expect = strdup(interp);
}

/* Whether fanotify reports execs of the file /proc/<pid>/exe points to. */
static int exec_visible(const struct ldg_cache *c, pid_t pid) {
  char path[40];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
  if (stat(path, &st) < 0) return 1;
  for (int i = 0; i < c->n_exec_devs; i++)
    if (c->exec_devs[i] == st.st_dev) return 1;
  return 0;
}

void ldg_cache_on_exec(struct ldg_cache *c, pid_t pid, uint64_t ts_ns) {
  struct ldg_entry *e = get_or_add(c, pid);
  TRACE("nl_exec pid=%d\n", pid);
  if (!e) return;
  e->exec_seq++;
  e->nl_execs++;
  if (!e->first_exec_ns) e->first_exec_ns = ts_ns;
  struct ldg_procinfo p = {0};
  ldg_proc_read(pid, -1, LDG_READ_ALL, &p);
  take_proc_facts(e, &p);
  TRACE("nl_exec pid=%d snapshot exe=%s comm=%s\n", pid, p.exe ? p.exe : "-", p.has_comm ? p.comm : "-");
  if (!p.exe) {
    take_final_comm(e, &p);      /* already dead: its comm is all /proc has left */
    ldg_proc_free(&p);
    return;
  }
  struct ldg_image *s = image_from(&p, 0);
  if (!s) return;
  if (!c->fan_exec || !exec_visible(c, pid)) {
    /* No exec event will come for this one: the snapshot is the image (not ordered). */
    e->inherit_from = 0;
    e->expect_kind = LDG_EXEC_OTHER;
    set_img(&e->img, s);
    return;
  }
  struct ldg_image *cur = e->img;
  if (cur && cur->unnamed && !cur->p.exe) {
    image_fill(cur, s);
    cur->p.exe = s->p.exe;
    s->p.exe = NULL;
    ldg_image_put(s);
    return;
  }
  if (cur && cur->ordered && !cur->comm_exact && cur->p.exe && strcmp(cur->p.exe, s->p.exe) == 0) {
    image_fill(cur, s);
    ldg_image_put(s);
    return;
  }
  set_img(&e->snap, s);
}

void ldg_cache_on_fork(struct ldg_cache *c, pid_t parent, pid_t child, uint64_t ts_ns) {
  struct ldg_procinfo p = {0};
  ldg_proc_read(child, -1, LDG_READ_EXE | LDG_READ_COMM | LDG_READ_STAT, &p);
  uint64_t read_ns = ldg_now_ns(CLOCK_MONOTONIC);
  uint64_t start = p.start_ticks;
  if (!p.has_start) {
    /* Gone already: derive the start from the message's time (monotonic -> boottime). */
    uint64_t boot_off = ldg_now_ns(CLOCK_BOOTTIME) - ldg_now_ns(CLOCK_MONOTONIC);
    start = (ts_ns + boot_off) / (1000000000ull / (uint64_t)clk_tck);
  }
  struct ldg_entry *e = ldg_cache_get(c, child);
  TRACE("nl_fork parent=%d child=%d existing=%d\n", parent, child, !!e);
  if (e && !e->exited && (!e->has_start || e->start_ticks == start)) {
    /* This child's own events were processed before its FORK message (a drain cut short):
     * what they said is newer than the fork. */
    if (!e->has_ppid) e->ppid = parent, e->has_ppid = 1;
    if (!e->has_start) e->start_ticks = start, e->has_start = 1;
    ldg_proc_free(&p);
  } else {
    if (e) entry_clear(e);       /* the pid was reused: that process is gone */
    else if (!(e = get_or_add(c, child))) {
      ldg_proc_free(&p);
      return;
    }
    e->ppid = parent;
    e->has_ppid = 1;
    e->inherit_from = parent;
    e->forksnap_ns = read_ns;
    e->start_ticks = start;
    e->has_start = 1;
    if (p.exe) set_img(&e->forksnap, image_from(&p, 0));
    else ldg_proc_free(&p);
  }
  struct ldg_entry *pe = ldg_cache_get(c, parent);
  if (!pe && (pe = get_or_add(c, parent))) fill_from_proc(pe);
}

void ldg_cache_on_exit(struct ldg_cache *c, pid_t pid) {
  struct ldg_entry *e = ldg_cache_get(c, pid);
  if (!e || e->exited) return;
  e->exited = 1;
  if (!e->final_comm[0] && (e->inherit_from || (e->img && !e->img->comm_exact))) {
    /* The comm is still a guess: read it from the zombie while it is one. */
    struct ldg_procinfo p = {0};
    ldg_proc_read(pid, -1, LDG_READ_COMM | LDG_READ_STAT, &p);
    take_final_comm(e, &p);
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

void ldg_cache_on_comm(struct ldg_cache *c, pid_t pid, const char *comm) {
  struct ldg_entry *e = ldg_cache_get(c, pid);
  if (!e) return;
  if (e->inherit_from) {
    snprintf(e->pending_comm, sizeof e->pending_comm, "%s", comm);
    return;
  }
  if (!e->img) return;
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
    uint64_t due = c->exits[c->exits_head].ns + c->grace_ns - now;
    if (due < next) next = due;
  }
  return (int)(next / 1000000) + 1;
}

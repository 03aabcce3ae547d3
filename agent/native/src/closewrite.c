/*
 * Completed writes of new files. A matching new regular file waits in JavaScript for its first
 * close-write, so that the alert carries the hash of what was written (pipeline.ts). Directory
 * marks could report every close-write (FAN_CLOSE_WRITE with FAN_EVENT_ON_CHILD), but then every
 * process closing any file it wrote in a watched directory pays for an event nobody reads: about a
 * fifth of a file-churning writer's time (issue #3). So the directory marks ask for creations
 * only, and the close-write is asked of the one file that needs it: an inode mark for
 * FAN_CLOSE_WRITE on that file, in the main group (one queue: its close-write is read after its
 * creation), added when the creation is read and removed when its close-write is read.
 *
 * The mark comes after the creation, so a fast writer has often closed the file before the mark
 * exists, and its close-write never comes. After marking, we therefore ask whether a close-write
 * can still come, that is whether any open file description still has the file open for writing:
 *
 * - The kernel sends FS_CLOSE_WRITE from __fput(), at the *last* release of a description opened
 *   for writing: the last close of the fds that fork() or SCM_RIGHTS shared, a munmap() of a
 *   shared mapping that outlived its fd, the exit of the last holder. __fput() drops the inode's
 *   write count (put_file_access()) only after fsnotify_close().
 * - A read lease reads that count: F_SETLEASE F_RDLCK fails with EAGAIN while some description
 *   has write access (i_writecount > 0), whoever holds it.
 * So, with our mark in place: a lease granted means every write description has passed its
 * fsnotify_close(): the write is complete now, and a close-write our mark saw is already queued
 * (it is dropped, see below). EAGAIN means some description still has write access, and our mark
 * will see its release. The one gap is a release that passed fsnotify_close() before our mark
 * and had not reached put_file_access() when we looked: microseconds, closed by looking again
 * (CW_RECHECK_MS, doubling) until the wait ends.
 *
 * Why not /proc: the creator's fd table (/proc/<pid>/fd and fdinfo flags) misses a description a
 * child inherited (a shell opens `cmd > file` in the fork that runs cmd; a parent may close and
 * leave the writing to a child), fds in flight in an SCM_RIGHTS message, shared mappings and
 * io_uring's fixed files; a writer that exited or whose pid was reused tells nothing. Scanning all
 * of /proc would still miss fds in flight. The write count counts them all.
 *
 * What the lease costs others: it is held for two fcntl(2)s. A process opening the file for
 * writing meanwhile waits until it is released (microseconds), or gets EWOULDBLOCK with
 * O_NONBLOCK. A lease break signals the holder, SIGIO by default, which would terminate Node:
 * F_SETSIG makes it SIGURG, which is ignored by default. Where leases cannot be taken (sysctl
 * fs.leases-enable = 0, a filesystem without leases, a file of another owner without CAP_LEASE),
 * we cannot tell: the file waits for its close-write, and if the writer had closed before the
 * mark, JavaScript's writeWaitMs ends the wait (with the write complete by then).
 *
 * The files awaited are a small table (reader thread only) keyed by directory and name. A
 * close-write for a name in the table ends its wait and is forwarded; any other close-write
 * (the write was found complete already, a file renamed since, an entry that expired) is
 * dropped: JavaScript gets at most one close_write per creation. Every close-write read removes
 * the mark of the file it names, awaited or not, so marks do not accumulate; marks on deleted
 * files go with their inodes, all of them with the group. An entry also ends when a recheck finds
 * the write complete (a close_write with pid 0 is forwarded), when its name is gone or names
 * another file (the newcomer has a creation of its own), or after CW_WAIT_MS. While entries
 * exist the reader polls the main queue (watcher.c): the doorbell does not ring for close-writes.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long a close-write is awaited. JavaScript waits writeWaitMs (200 ms by default) and hashes
 * the file then; a close-write after that would change nothing, so this only needs to cover
 * longer configured waits. */
#define CW_WAIT_MS 5000
#define CW_RECHECK_MS 5              /* first recheck after marking; then doubling ... */
#define CW_RECHECK_MAX_MS 1000       /* ... up to this */
#define CW_MAX 1024                  /* entries; past that the oldest is given up */
#define MS 1000000ull

static int join_path(char *out, size_t n, const char *dir, const char *name) {
  int r = snprintf(out, n, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
  return r > 0 && (size_t)r < n;
}

/* fanotify_mark(2) on the file an O_PATH fd holds: through its /proc/self/fd link, which leads
 * to that very inode whatever happened to its name (fanotify_mark takes no O_PATH fd itself). */
static int mark_fd(struct ldg_watcher *w, int pathfd, unsigned flags) {
  char self[40];
  snprintf(self, sizeof self, "/proc/self/fd/%d", pathfd);
  return fanotify_mark(w->fan_fd, flags, FAN_CLOSE_WRITE, AT_FDCWD, self);
}

/* 1: some open file description has the file open for writing; 0: none; -1: cannot tell.
 * See the top of this file for why a read lease answers that. */
static int open_for_write(int pathfd) {
  char self[40];
  snprintf(self, sizeof self, "/proc/self/fd/%d", pathfd);
  /* O_NONBLOCK: never wait on someone else's lease. O_NOATIME: reading the lease is no access. */
  int fd = open(self, O_RDONLY | O_NOATIME | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0 && errno == EPERM) fd = open(self, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fcntl(fd, F_SETSIG, SIGURG) == 0 ? fcntl(fd, F_SETLEASE, F_RDLCK) : -1;
  int e = errno;
  if (r == 0) fcntl(fd, F_SETLEASE, F_UNLCK);
  close(fd);
  return r == 0 ? 0 : e == EAGAIN ? 1 : -1;
}

/* Opens dir/name without following a symlink; fills *st. -1 when it is gone. */
static int open_name(const char *dir, const char *name, struct stat *st) {
  char path[PATH_MAX];
  if (!dir || !name || !join_path(path, sizeof path, dir, name)) return -1;
  int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0 && fstat(fd, st) < 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

/* Removes our mark from the file dir/name names now, if that is (dev, ino), or any regular file
 * when ino is 0. A file renamed since keeps its mark until its next close-write or deletion. */
static void unmark_name(struct ldg_watcher *w, const char *dir, const char *name, dev_t dev, ino_t ino) {
  struct stat st;
  int fd = open_name(dir, name, &st);
  if (fd < 0) return;
  /* A file watched whole (integrity.c) keeps its mark: its close-writes are wanted. */
  if (S_ISREG(st.st_mode) && (ino == 0 || (st.st_dev == dev && st.st_ino == ino)) && !ldg_int_has(w, st.st_dev, st.st_ino))
    mark_fd(w, fd, FAN_MARK_REMOVE);
  close(fd);
}

static void drop(struct ldg_watcher *w, size_t i) {
  free(w->cw[i].dir);
  free(w->cw[i].name);
  w->cw[i] = w->cw[--w->ncw];
  LDG_STAT_SET(w, cw_waiting, w->ncw);
}

static size_t find(struct ldg_watcher *w, const char *dir, const char *name) {
  size_t i = 0;
  while (i < w->ncw && (strcmp(w->cw[i].name, name) != 0 || strcmp(w->cw[i].dir, dir) != 0)) i++;
  return i;
}

static int add(struct ldg_watcher *w, const char *dir, const char *name, const struct stat *st, int marked) {
  if (w->ncw == CW_MAX) {            /* give up the oldest */
    size_t old = 0;
    for (size_t i = 1; i < w->ncw; i++)
      if (w->cw[i].added_ns < w->cw[old].added_ns) old = i;
    unmark_name(w, w->cw[old].dir, w->cw[old].name, w->cw[old].dev, w->cw[old].ino);
    drop(w, old);
  }
  if (w->ncw == w->cw_cap) {
    size_t cap = w->cw_cap ? w->cw_cap * 2 : 16;
    struct ldg_cw *n = realloc(w->cw, cap * sizeof *n);
    if (!n) return 0;
    w->cw = n;
    w->cw_cap = cap;
  }
  char *d = strdup(dir), *nm = strdup(name);
  if (!d || !nm) {
    free(d);
    free(nm);
    return 0;
  }
  uint64_t now = ldg_now_ns(CLOCK_MONOTONIC);
  w->cw[w->ncw++] = (struct ldg_cw){.dir = d, .name = nm, .dev = st->st_dev, .ino = st->st_ino, .added_ns = now,
                                    .check_ns = now + CW_RECHECK_MS * MS, .backoff_ms = CW_RECHECK_MS, .marked = marked};
  LDG_STAT_SET(w, cw_waiting, w->ncw);
  return 1;
}

int ldg_cw_watch(struct ldg_watcher *w, const char *dir, const char *name) {
  size_t i = find(w, dir, name);
  if (i < w->ncw) drop(w, i);        /* a file of that name gone since: this is another */
  struct stat st;
  int fd = open_name(dir, name, &st);
  if (fd < 0) return LDG_CW_NONE;    /* gone already: JavaScript finds nothing to wait for */
  /* A symlink, a hard link to an existing file (nlink > 1), a fifo or a device: no write to
   * wait for; JavaScript sees the same with lstat. */
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
    close(fd);
    return LDG_CW_NONE;
  }
  int marked = mark_fd(w, fd, FAN_MARK_ADD) == 0;
  if (marked) LDG_STAT_ADD(w, cw_marks, 1);
  int busy = open_for_write(fd);     /* after the mark: see the top of this file */
  int r;
  if (busy == 0) {
    LDG_STAT_ADD(w, cw_inferred, 1);
    r = LDG_CW_DONE;
  } else if ((busy > 0 || marked) && add(w, dir, name, &st, marked)) {
    r = LDG_CW_WAIT;
  } else {
    r = LDG_CW_NONE;                 /* nothing would tell us: JavaScript's writeWaitMs decides */
  }
  if (r != LDG_CW_WAIT && marked) mark_fd(w, fd, FAN_MARK_REMOVE);
  close(fd);
  return r;
}

int ldg_cw_closed(struct ldg_watcher *w, const char *dir, const char *name) {
  if (!dir) return 0;                /* a directory we cannot name: the mark stays (see above) */
  size_t i = find(w, dir, name);
  if (i == w->ncw) {
    unmark_name(w, dir, name, 0, 0);
    return 0;
  }
  unmark_name(w, dir, name, w->cw[i].dev, w->cw[i].ino);
  drop(w, i);
  return 1;
}

int ldg_cw_tick(struct ldg_watcher *w) {
  int pushed = 0;
  uint64_t now = ldg_now_ns(CLOCK_MONOTONIC);
  for (size_t i = 0; i < w->ncw;) {
    struct ldg_cw *c = &w->cw[i];
    if (now >= c->added_ns + CW_WAIT_MS * MS) {
      unmark_name(w, c->dir, c->name, c->dev, c->ino);
      drop(w, i);
      continue;
    }
    if (now < c->check_ns) {
      i++;
      continue;
    }
    struct stat st;
    int fd = open_name(c->dir, c->name, &st);
    if (fd < 0 || st.st_dev != c->dev || st.st_ino != c->ino) {
      if (fd >= 0) close(fd);        /* gone, renamed or replaced: nothing more to say about it */
      drop(w, i);
      continue;
    }
    if (open_for_write(fd) != 0) {
      close(fd);
      c->backoff_ms = c->backoff_ms * 2 > CW_RECHECK_MAX_MS ? CW_RECHECK_MAX_MS : c->backoff_ms * 2;
      c->check_ns = now + c->backoff_ms * MS;
      i++;
      continue;
    }
    /* Complete, and its close-write was not read: it came before our mark, or is still queued
     * and will be dropped. Tell JavaScript now. */
    if (c->marked) mark_fd(w, fd, FAN_MARK_REMOVE);
    close(fd);
    struct ldg_event ev = {.kinds = LDG_CLOSE_WRITE, .dir = c->dir, .name = c->name,
                           .time_ns = (int64_t)ldg_now_ns(CLOCK_REALTIME), .pidfd = -1};
    c->dir = c->name = NULL;         /* the event owns them now */
    ldg_pending_push(w, &ev);
    LDG_STAT_ADD(w, cw_inferred, 1);
    pushed = 1;
    drop(w, i);
  }
  return pushed;
}

int ldg_cw_next_ms(struct ldg_watcher *w) {
  if (!w->ncw) return -1;
  uint64_t now = ldg_now_ns(CLOCK_MONOTONIC), next = UINT64_MAX;
  for (size_t i = 0; i < w->ncw; i++) {
    uint64_t due = w->cw[i].check_ns < w->cw[i].added_ns + CW_WAIT_MS * MS ? w->cw[i].check_ns : w->cw[i].added_ns + CW_WAIT_MS * MS;
    if (due < next) next = due;
  }
  return next > now ? (int)((next - now + MS - 1) / MS) : 0;
}

void ldg_cw_check_soon(struct ldg_watcher *w) {
  for (size_t i = 0; i < w->ncw; i++) w->cw[i].check_ns = 0;
}

void ldg_cw_clear(struct ldg_watcher *w) {
  while (w->ncw) drop(w, w->ncw - 1);
  free(w->cw);
  w->cw = NULL;
  w->cw_cap = 0;
}

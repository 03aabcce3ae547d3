/*
 * Nested directories, exact (issue #17, item 3). The rule's `*` crosses '/', so a loader planted
 * as ROOT/lib/ld-linux-q/a/b/evil.so matches, and its directories are made an instant before it
 * (`mkdir -p`). A directory mark placed when the agent reads a directory's creation comes too late
 * for what mkdir and cp do next: at best the rescan finds the file, writer unknown.
 *
 * So the order of the one queue does the work instead of a race:
 *   - Each watched directory's filesystem carries a creation mark in the main group
 *     (FAN_MARK_FILESYSTEM, FAN_CREATE | FAN_RENAME | FAN_ONDIR): every creation and rename on it
 *     is queued, in order with the execs. The reader drops those whose directory is not in the
 *     table of watched directories (fanotify.c's watched()), as it drops names that fail the filter.
 *   - A directory created (or renamed) in a watched directory, whose name passes that directory's
 *     filter, joins the table (forward_all) when its event is processed, by the handle the event
 *     carries (FAN_REPORT_TARGET_FID), before the next event is looked at. Whatever is created in it
 *     was created after it, so its event comes later in the queue and finds it in the table: the
 *     file is reported with its exact writer, at any depth, and no mark races the writer.
 *   - A directory renamed in brings a tree nobody saw made: the directories under it join the table
 *     at once, walked by file descriptor (never by path, which can be swapped meanwhile). A
 *     directory is keyed by its handle, so a bind mount of a directory inside its own subtree meets
 *     a handle already in the table and the walk ends there (cycle-safe); the walk is bounded too.
 *   - The doorbell group gets the same filesystem mark: a creation anywhere may be one in a
 *     directory just adopted, and it must not wait for the next exec to be read.
 *
 * What stays inexact: a file made inside a new directory by another process between the
 * directory's appearance and the kernel queueing its creation (fsnotify runs after the dentry is
 * visible). Its event precedes the directory's and is dropped; the agent's rescan after the new
 * directory (agent.ts) reports it as unidentified, "created before its directory was marked".
 *
 * Cost: every creation and rename on those filesystems is queued twice (main and doorbell) and
 * read by the reader, whatever its directory; the creating process pays the queueing. Measured in
 * the closing note of issue #17 (100k creations elsewhere on the same filesystem).
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#ifndef AT_HANDLE_FID
#define AT_HANDLE_FID 0x200
#endif

#define FS_MASK (FAN_CREATE | FAN_RENAME | FAN_ONDIR)
#define BELL_FS_MASK (FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR)
/* Every event on a marked filesystem is looked up in the table, and directories are deleted
 * without an event the table hears of: when it has grown to twice what it held after the last
 * prune (at least PRUNE_MIN), the nested directories that no longer exist leave it. */
#define PRUNE_MIN 1024
/* A tree renamed in is walked this far: deeper, or beyond this many directories, the agent's
 * rescan (which also follows the tree, cycle-safe) marks the rest, late. */
#define WALK_MAX_DIRS 4096
#define WALK_MAX_DEPTH 512

void ldg_sub_mark_fs(struct ldg_watcher *w, const char *path) {
  if (!w->subtree || !w->target_fid) return;
  struct statfs sfs;
  if (statfs(path, &sfs) < 0) return;
  uint8_t fsid[8];
  memcpy(fsid, &sfs.f_fsid, 8);
  for (size_t i = 0; i < w->nsub_fsids; i++)
    if (memcmp(w->sub_fsids[i], fsid, 8) == 0) return;
  unsigned mask = w->no_rename ? (FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR) : FS_MASK;
  if (fanotify_mark(w->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path) < 0) {
    if (w->trace) perror("ldg-native: fanotify_mark(FAN_MARK_FILESYSTEM) for creations");
    return;                          /* nested directories are then marked from JavaScript, late */
  }
  if (w->bell_ok && fanotify_mark(w->bell_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, BELL_FS_MASK, AT_FDCWD, path) < 0)
    w->bell_ok = 0;                  /* the reader polls the main queue from now on */
  uint8_t (*n)[8] = realloc(w->sub_fsids, (w->nsub_fsids + 1) * sizeof *n);
  if (!n) return;
  w->sub_fsids = n;
  memcpy(n[w->nsub_fsids++], fsid, 8);
  LDG_STAT_SET(w, sub_fs_marks, w->nsub_fsids);
}

/* The handle of an open directory, as fanotify reports it. */
static int fd_handle(int fd, struct ldg_hkey *k) {
  struct {
    struct file_handle fh;
    unsigned char bytes[MAX_HANDLE_SZ];
  } h;
  int mount_id;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH | AT_HANDLE_FID) < 0) {
    if (errno != EINVAL) return -1;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH) < 0) return -1;
  }
  struct statfs sfs;
  if (fstatfs(fd, &sfs) < 0) return -1;
  memcpy(k->fsid, &sfs.f_fsid, 8);
  k->type = h.fh.handle_type;
  k->len = h.fh.handle_bytes;
  memcpy(k->bytes, h.fh.f_handle, k->len);
  return 0;
}

static int same_key(const struct ldg_hkey *a, const struct ldg_hkey *b) {
  return a->len == b->len && a->type == b->type && memcmp(a->fsid, b->fsid, 8) == 0 && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static char *join(const char *dir, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0) return NULL;
  return p;
}

/* The directories under the open directory fd (path: its name in the table) join the table.
 * Owns fd. *budget counts down the directories this walk may still add. */
static void walk(struct ldg_watcher *w, int fd, const char *path, int depth, int *budget) {
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) && *budget > 0) {
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;
    struct ldg_hkey k;
    char *p = fd_handle(sub, &k) == 0 ? join(path, e->d_name) : NULL;
    if (!p) {
      close(sub);
      continue;
    }
    char *again = depth + 1 < WALK_MAX_DEPTH ? strdup(p) : NULL;
    /* Added only if its handle is new: one already there (a bind mount looping back) ends here. */
    if (ldg_fan_put_dir(w, p, 1, &k, 0)) {
      (*budget)--;
      LDG_STAT_ADD(w, sub_dirs, 1);
      ldg_fan_bell_mark_fd(w, sub);
      if (again) {
        walk(w, sub, again, depth + 1, budget);
        sub = -1;
      }
    }
    free(again);
    if (sub >= 0) close(sub);
  }
  closedir(d);
}

/* Drops the nested directories (forward_all) whose handle no longer opens, or opens unlinked:
 * deleted. A directory on a filesystem without an exec mark (no mount to open handles from) is
 * kept. Reader thread. */
static void prune(struct ldg_watcher *w) {
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->ndirs;) {
    struct ldg_dir *d = &w->dirs[i];
    const char *mnt = NULL;
    for (size_t f = 0; f < w->nfss && !mnt; f++)
      if (memcmp(w->fss[f].fsid, d->fsid, 8) == 0) mnt = w->fss[f].mnt;
    int gone = 0;
    int mfd = d->forward_all && mnt ? open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (mfd >= 0) {
      struct {
        struct file_handle fh;
        unsigned char bytes[MAX_HANDLE_SZ];
      } h;
      h.fh.handle_bytes = d->hlen;
      h.fh.handle_type = d->htype;
      memcpy(h.fh.f_handle, d->handle, d->hlen);
      int fd = open_by_handle_at(mfd, &h.fh, O_PATH | O_CLOEXEC);
      /* A directory removed an instant ago can still open by handle: the kernel frees its inode
       * (held by the doorbell's mark) a moment after rmdir. Unlinked is gone all the same. */
      struct stat st;
      gone = fd < 0 ? errno == ESTALE : fstat(fd, &st) == 0 && st.st_nlink == 0;
      if (fd >= 0) close(fd);
      close(mfd);
    }
    if (gone) {
      free(d->path);
      w->dirs[i] = w->dirs[--w->ndirs];
    } else {
      i++;
    }
  }
  w->sub_prune_at = w->ndirs * 2 > PRUNE_MIN ? w->ndirs * 2 : PRUNE_MIN;
  pthread_mutex_unlock(&w->lock);
}

void ldg_sub_adopt(struct ldg_watcher *w, const char *dir, const char *name, const struct ldg_hkey *k, int moved) {
  if (w->ndirs >= (w->sub_prune_at ? w->sub_prune_at : PRUNE_MIN)) prune(w);
  char *path = join(dir, name);
  if (!path) return;
  /* Opened by name to mark it in the doorbell and walk it; trusted only if it is still the
   * directory the event names (its handle): else it was replaced, and only the handle joins. */
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct ldg_hkey now;
  if (fd >= 0 && (fd_handle(fd, &now) < 0 || !same_key(&now, k))) {
    close(fd);
    fd = -1;
  }
  char *again = moved && fd >= 0 ? strdup(path) : NULL;
  /* Renamed: the handle may be in the table already, under the name it had before. */
  if (ldg_fan_put_dir(w, path, 1, k, moved)) {
    LDG_STAT_ADD(w, sub_dirs, 1);
    if (fd >= 0) ldg_fan_bell_mark_fd(w, fd);
    if (again) {
      int budget = WALK_MAX_DIRS;
      walk(w, fd, again, 0, &budget);
      fd = -1;
    }
  }
  free(again);
  if (fd >= 0) close(fd);
}

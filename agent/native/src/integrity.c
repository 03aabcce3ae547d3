/*
 * Existing files watched whole: the loaders the baseline knows (agent/src/integrity.ts), whose
 * content or attributes may change in place (`cat evil > ld-linux-x86-64.so.2`, truncate, a
 * write through a shared mapping, chmod, chown), which no creation or rename reports.
 *
 * Each gets an inode mark for FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB in the main group, so
 * that its events are ordered with the execs that name its writer, and the same mark in the
 * doorbell group, which wakes the reader for them (the main queue is not polled otherwise, see
 * fanotify.c). FAN_ATTRIB needs a group reporting file ids: both do (DFID_NAME, DIR_FID). The
 * directory marks stay creations and renames only: writers of other files in /usr/lib pay
 * nothing. The events name the file by parent handle and name, like the creations.
 *
 * FAN_MODIFY comes with each write(2) (and a truncate); the kernel merges those of one writer
 * while they are unread. A write through a shared mapping makes none: it is seen at the last
 * release of the mapping's file (its close-write), and TypeScript re-hashes these files
 * periodically for a mapping that is never released.
 *
 * closewrite.c removes its mark from a file whose close-write nobody awaits; it leaves alone the
 * inodes listed here (ldg_int_has), whose close-write is forwarded instead (fanotify.c).
 *
 * The table is small (a few loaders and their symlink targets), searched linearly, and shared
 * with the JS thread under w->lock. A deleted file's mark goes with its inode; its entry stays
 * until TypeScript removes it (a new inode with the same number is then watched too: harmless).
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MASK (FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB)

int ldg_int_mark(struct ldg_watcher *w, const char *path, int on, struct ldg_err *err) {
  /* O_NOFOLLOW: TypeScript resolves a symlink inside --root and marks its target itself; the
   * kernel would resolve an absolute target on the agent's own filesystem. */
  int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    if (!on && e == ENOENT) return 0;
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", e, "open(2) failed for %s", path);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    if (!on) return 0;
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", EINVAL, "%s is not a regular file", path);
    return -1;
  }
  char self[40];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  unsigned flags = on ? FAN_MARK_ADD : FAN_MARK_REMOVE;
  if (fanotify_mark(w->fan_fd, flags, FILE_MASK, AT_FDCWD, self) < 0 && (on || errno != ENOENT)) {
    int e = errno;
    close(fd);
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", e, "fanotify_mark(2) on the file %s failed", path);
    return -1;
  }
  /* Without the doorbell's mark the events still arrive, at the reader's next wake-up. */
  if (w->bell_fd >= 0) fanotify_mark(w->bell_fd, flags, FILE_MASK, AT_FDCWD, self);
  close(fd);
  pthread_mutex_lock(&w->lock);
  size_t i = 0;
  while (i < w->nino && (w->ino[i].dev != st.st_dev || w->ino[i].ino != st.st_ino)) i++;
  if (on && i == w->nino) {
    if (w->nino == w->ino_cap) {
      size_t cap = w->ino_cap ? w->ino_cap * 2 : 8;
      struct ldg_ino *n = realloc(w->ino, cap * sizeof *n);
      if (n) w->ino = n, w->ino_cap = cap;
    }
    if (w->nino < w->ino_cap) w->ino[w->nino++] = (struct ldg_ino){st.st_dev, st.st_ino};
  } else if (!on && i < w->nino) {
    w->ino[i] = w->ino[--w->nino];
  }
  pthread_mutex_unlock(&w->lock);
  return 0;
}

int ldg_int_has(struct ldg_watcher *w, dev_t dev, ino_t ino) {
  int found = 0;
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->nino && !found; i++) found = w->ino[i].dev == dev && w->ino[i].ino == ino;
  pthread_mutex_unlock(&w->lock);
  return found;
}

int ldg_int_name(struct ldg_watcher *w, const char *dir, const char *name) {
  if (!dir || !name || w->nino == 0) return 0;
  char path[PATH_MAX];
  int r = snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
  struct stat st;
  if (r <= 0 || (size_t)r >= sizeof path || lstat(path, &st) < 0) return 0;
  return ldg_int_has(w, st.st_dev, st.st_ino);
}

void ldg_int_clear(struct ldg_watcher *w) {
  pthread_mutex_lock(&w->lock);
  free(w->ino);
  w->ino = NULL;
  w->nino = w->ino_cap = 0;
  pthread_mutex_unlock(&w->lock);
}

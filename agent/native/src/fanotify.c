/*
 * The fanotify group: inode marks on the watched directories (creations and renames into them),
 * inode marks for FAN_CLOSE_WRITE on the new files whose write is awaited (closewrite.c), inode
 * marks for the writes and attribute changes of the loaders watched whole (integrity.c) and, for
 * the exec cache, FAN_OPEN_EXEC filesystem marks on every real filesystem, all in one group so
 * that one queue orders a pid's execs before its writes, and a file's creation before its
 * close-write.
 *
 * With nested directories on (subtree.c), each watched directory's filesystem also carries a
 * creation mark in this group and in the doorbell, the group reports the handle of what a
 * creation made (FAN_REPORT_TARGET_FID), and directories made inside watched ones join the table
 * as their creation is processed.
 *
 * Events carry a directory file handle and a name (FAN_REPORT_DFID_NAME). Watched directories
 * are matched by handle; other directories (where exec'd files live) are decoded with
 * open_by_handle_at and cached. We never hold an fd on a mount, so unmounting is not blocked.
 *
 * The directory marks ask for nothing but creations and renames: every event they ask for is
 * paid by every process creating any file in a watched directory, in its own time (issue #3).
 *
 * With the exec cache, nearly all events in that queue are exec events, which need no prompt
 * handling: the connector's EXEC message that follows each of them wakes the reader anyway
 * (procconn.c). So the reader does not poll this queue, except while a close-write is awaited
 * (closewrite.c) and for a moment after a creation: a second group, the doorbell, holds only
 * the directory marks and wakes it for creations. Its events are read and dropped: the creation
 * itself is read from the main queue, in order with the execs. Both groups' directory marks
 * are alike; if the doorbell cannot be marked (bell_ok = 0), the reader polls the main queue.
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
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#ifndef AT_HANDLE_FID
#define AT_HANDLE_FID 0x200          /* the handle fanotify reports (Linux 6.5) */
#endif

#define DIR_MASK (FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR | FAN_EVENT_ON_CHILD)
/* The main group asks for FAN_RENAME instead of FAN_MOVED_TO (Linux 5.17): one event per rename
 * that names both the old and the new directory and name, so a rename into place carries its
 * source (file.Ext.original.*). It fires when either directory is marked: watched() keeps only
 * renames whose new directory is watched. The doorbell reports no names, which FAN_RENAME
 * needs, so it keeps FAN_MOVED_TO. */
#define MAIN_MASK(w) ((w)->no_rename ? DIR_MASK : (FAN_CREATE | FAN_RENAME | FAN_ONDIR | FAN_EVENT_ON_CHILD))
#define BUF_SIZE (256 * 1024)
#define HSLOTS 1024

struct hslot {               /* decoded directory handle -> path */
  uint32_t hash;
  struct ldg_hkey *key;
  char *path;
};

struct hcache {
  struct hslot slots[HSLOTS];
  size_t used;
};

int ldg_fan_init(struct ldg_watcher *w, int unlimited_queue, struct ldg_err *err) {
  unsigned flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME;
  if (unlimited_queue) flags |= FAN_UNLIMITED_QUEUE;
  /* The handle of what a creation or rename made (Linux 5.17): a new directory enters the table
   * by its own handle (subtree.c). Without it, nested directories are marked from JavaScript. */
  int fd = -1;
  if (w->subtree) {
    fd = fanotify_init(flags | FAN_REPORT_FID | FAN_REPORT_TARGET_FID | FAN_REPORT_PIDFD, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    w->target_fid = fd >= 0;
  }
  if (fd < 0) fd = fanotify_init(flags | FAN_REPORT_PIDFD, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  w->pidfd = fd >= 0;
  if (fd < 0 && errno == EINVAL) fd = fanotify_init(flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    ldg_err_set(err, e == EPERM ? "LDG_ERR_FANOTIFY_EPERM" : "LDG_ERR_FANOTIFY_UNAVAILABLE", e,
                "fanotify_init(2) failed");
    return -1;
  }
  w->fan_fd = fd;
  if (w->exec_cache) {
    w->bell_fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DIR_FID, O_RDONLY | O_CLOEXEC);
    w->bell_ok = w->bell_fd >= 0;
  }
  w->bufsize = BUF_SIZE;
  w->buf = malloc(BUF_SIZE);
  w->hcache = calloc(1, sizeof(struct hcache));
  if (!w->buf || !w->hcache) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_UNAVAILABLE", ENOMEM, "fanotify buffers");
    return -1;
  }
  return 0;
}

static int path_handle(const char *path, struct ldg_hkey *k) {
  struct {
    struct file_handle fh;
    unsigned char bytes[MAX_HANDLE_SZ];
  } h;
  int mount_id;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, AT_HANDLE_FID) < 0) {
    if (errno != EINVAL) return -1;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0) return -1;
  }
  struct statfs sfs;
  if (statfs(path, &sfs) < 0) return -1;
  memcpy(k->fsid, &sfs.f_fsid, 8);
  k->type = h.fh.handle_type;
  k->len = h.fh.handle_bytes;
  memcpy(k->bytes, h.fh.f_handle, k->len);
  return 0;
}

int ldg_fan_add_dir(struct ldg_watcher *w, const char *path, int forward_all, int content, struct ldg_err *err) {
  char *real = realpath(path, NULL);
  if (!real) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", errno, "realpath(3) failed for %s", path);
    return -1;
  }
  struct ldg_hkey k;
  if (path_handle(real, &k) < 0) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", errno, "name_to_handle_at(2) failed for %s", real);
    free(real);
    return -1;
  }
  uint64_t more = content ? FAN_MODIFY : 0;
  int rc = fanotify_mark(w->fan_fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR, MAIN_MASK(w) | more, AT_FDCWD, real);
  if (rc < 0 && errno == EINVAL && !w->no_rename) {
    w->no_rename = 1;                /* an older kernel: renames come without their source */
    rc = fanotify_mark(w->fan_fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR, MAIN_MASK(w) | more, AT_FDCWD, real);
  }
  if (rc < 0) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", errno, "fanotify_mark(2) failed for %s", real);
    free(real);
    return -1;
  }
  if (w->bell_ok && fanotify_mark(w->bell_fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR, DIR_MASK, AT_FDCWD, real) < 0)
    w->bell_ok = 0;                  /* the reader polls the main queue from now on */
  ldg_sub_mark_fs(w, real);
  /* A content directory (a package database) forwards every name but is no rule's directory: its
   * new subdirectories (dpkg's tmp.ci, written by its tar) are not adopted as nested ones. */
  ldg_fan_put_dir(w, real, forward_all ? (content ? LDG_FORWARD_FLAT : 1) : 0, &k, 1);
  return 0;
}

int ldg_fan_put_dir(struct ldg_watcher *w, char *path, int forward_all, const struct ldg_hkey *k, int by_path) {
  int added = 0;
  pthread_mutex_lock(&w->lock);
  struct ldg_dir *d = NULL;
  for (size_t i = 0; i < w->ndirs && !d; i++)
    if ((by_path && strcmp(w->dirs[i].path, path) == 0) ||
        (w->dirs[i].hlen == k->len && memcmp(w->dirs[i].fsid, k->fsid, 8) == 0 &&
         memcmp(w->dirs[i].handle, k->bytes, k->len) == 0))
      d = &w->dirs[i];
  if (d && !by_path) {               /* known by its handle: the table keeps what it has */
    free(path);
    pthread_mutex_unlock(&w->lock);
    return 0;
  }
  if (!d) {
    struct ldg_dir *n = realloc(w->dirs, (w->ndirs + 1) * sizeof *n);
    if (n) {
      w->dirs = n;
      d = &w->dirs[w->ndirs++];
      memset(d, 0, sizeof *d);
      added = 1;
    }
  }
  if (d) {
    free(d->path);
    d->path = path;
    d->forward_all = forward_all;
    memcpy(d->fsid, k->fsid, 8);
    d->htype = k->type;
    d->hlen = k->len;
    memcpy(d->handle, k->bytes, k->len);
  } else {
    free(path);
  }
  pthread_mutex_unlock(&w->lock);
  return added;
}

int ldg_fan_bell_mark_fd(struct ldg_watcher *w, int fd) {
  if (!w->bell_ok) return 0;
  if (fanotify_mark(w->bell_fd, FAN_MARK_ADD | FAN_MARK_ONLYDIR, DIR_MASK, fd, NULL) < 0) {
    w->bell_ok = 0;                  /* the reader polls the main queue from now on */
    return -1;
  }
  return 0;
}

int ldg_fan_remove_dir(struct ldg_watcher *w, const char *path, struct ldg_err *err) {
  char *real = realpath(path, NULL);
  /* A deleted directory lost its mark with its inode: only the table needs updating. So does one
   * whose path leads elsewhere now (renamed away, swapped for a symlink): the mark stays on the
   * old inode, whose events no longer match the table, rather than being taken off whatever
   * directory the path leads to now (mounts.ts re-marks that one). */
  if (real && strcmp(real, path) != 0) {
    free(real);
    real = NULL;
  }
  if (real && fanotify_mark(w->fan_fd, FAN_MARK_REMOVE | FAN_MARK_ONLYDIR, MAIN_MASK(w), AT_FDCWD, real) < 0 &&
      errno != ENOENT) {
    ldg_err_set(err, "LDG_ERR_FANOTIFY_MARK", errno, "fanotify_mark(2) FAN_MARK_REMOVE failed for %s", real);
    free(real);
    return -1;
  }
  if (real && w->bell_fd >= 0) fanotify_mark(w->bell_fd, FAN_MARK_REMOVE | FAN_MARK_ONLYDIR, DIR_MASK, AT_FDCWD, real);
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->ndirs; i++) {
    if (strcmp(w->dirs[i].path, path) != 0) continue;   /* the table holds real paths */
    free(w->dirs[i].path);
    w->dirs[i] = w->dirs[--w->ndirs];
    break;
  }
  pthread_mutex_unlock(&w->lock);
  free(real);
  return 0;
}

/* ---- exec marks on filesystems --------------------------------------------------------- */

static int pseudo_fs(const char *type) {
  static const char *const skip[] = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue",
                                     "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs",
                                     "configfs", "fusectl", "binfmt_misc", "nsfs", "efivarfs",
                                     "rpc_pipefs", "selinuxfs", "hugetlbfs", NULL};
  for (int i = 0; skip[i]; i++)
    if (strcmp(type, skip[i]) == 0) return 1;
  return 0;
}

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      *o++ = *s;
    }
  }
  *o = 0;
}

/* Marks every real filesystem mounted now for FAN_OPEN_EXEC (again after mounts change):
 * a writer exec'd from /tmp or /dev/shm must resolve as surely as one from /usr/bin.
 * Filesystems that cannot report file handles are skipped: their execs reach the cache through
 * the process connector only. Returns how many filesystems are marked. */
static void mark_from(struct ldg_watcher *w, const char *mountinfo, const char *prefix);

int ldg_fan_mark_exec_filesystems(struct ldg_watcher *w) {
  /* The agent's own mounts, then the host's (PID 1's, through its root: the unit's private mount
   * namespace may not see a filesystem mounted on the host since). Known filesystems are skipped
   * by fsid, so the second pass costs a stat(2) per mount. */
  mark_from(w, "/proc/self/mountinfo", "");
  struct stat own, host;
  if (stat("/proc/self/ns/mnt", &own) == 0 && stat("/proc/1/ns/mnt", &host) == 0 && own.st_ino != host.st_ino)
    mark_from(w, "/proc/1/mountinfo", "/proc/1/root");
  w->cache.fan_exec = w->nfss > 0;
  LDG_STAT_SET(w, exec_marks, w->nfss);
  return (int)w->nfss;
}

static void mark_from(struct ldg_watcher *w, const char *mountinfo, const char *prefix) {
  FILE *f = fopen(mountinfo, "re");
  if (!f) return;
  char *line = NULL;
  size_t cap = 0;
  size_t plen = strlen(prefix);
  while (getline(&line, &cap, f) > 0) {
    char mnt[PATH_MAX], type[64];
    char *sep = strstr(line, " - ");
    memcpy(mnt, prefix, plen);
    if (!sep || sscanf(line, "%*s %*s %*s %*s %4000s", mnt + plen) != 1 || sscanf(sep + 3, "%63s", type) != 1)
      continue;
    if (pseudo_fs(type)) continue;
    unescape(mnt + plen);
    struct statfs sfs;
    struct stat st;
    if (statfs(mnt, &sfs) < 0 || stat(mnt, &st) < 0) continue;
    uint8_t fsid[8];
    memcpy(fsid, &sfs.f_fsid, 8);
    static const uint8_t zero[8];
    if (memcmp(fsid, zero, 8) == 0) continue;
    size_t i;
    for (i = 0; i < w->nfss; i++)
      if (memcmp(w->fss[i].fsid, fsid, 8) == 0) break;
    if (i < w->nfss) {               /* known: keep a mount point that still exists */
      if (w->fss[i].dev == st.st_dev && strcmp(w->fss[i].mnt, mnt) != 0 && access(w->fss[i].mnt, F_OK) < 0) {
        free(w->fss[i].mnt);
        w->fss[i].mnt = strdup(mnt);
      }
      continue;
    }
    if (fanotify_mark(w->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC, AT_FDCWD, mnt) < 0) continue;
    struct ldg_fs *n = realloc(w->fss, (w->nfss + 1) * sizeof *n);
    if (!n) continue;
    w->fss = n;
    memcpy(n[w->nfss].fsid, fsid, 8);
    n[w->nfss].dev = st.st_dev;
    n[w->nfss].mnt = strdup(mnt);
    w->nfss++;
    if (w->cache.n_exec_devs < (int)(sizeof w->cache.exec_devs / sizeof w->cache.exec_devs[0]))
      w->cache.exec_devs[w->cache.n_exec_devs++] = st.st_dev;
  }
  free(line);
  fclose(f);
}

/* ---- decoding directory handles -------------------------------------------------------- */

static uint32_t hkey_hash(const struct ldg_hkey *k) {
  uint32_t h = 2166136261u;
  const unsigned char *p = (const unsigned char *)k;
  size_t n = offsetof(struct ldg_hkey, bytes) + k->len;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static int hkey_eq(const struct ldg_hkey *a, const struct ldg_hkey *b) {
  return a->len == b->len && a->type == b->type && memcmp(a->fsid, b->fsid, 8) == 0 &&
         memcmp(a->bytes, b->bytes, a->len) == 0;
}

static void hcache_clear(struct hcache *hc) {
  for (size_t i = 0; i < HSLOTS; i++) {
    free(hc->slots[i].key);
    free(hc->slots[i].path);
  }
  memset(hc, 0, sizeof *hc);
}

static char *decode_dir(struct ldg_watcher *w, const struct ldg_hkey *k) {
  const char *mnt = NULL;
  for (size_t i = 0; i < w->nfss && !mnt; i++)
    if (memcmp(w->fss[i].fsid, k->fsid, 8) == 0) mnt = w->fss[i].mnt;
  if (!mnt) return NULL;
  int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);   /* O_PATH gives EBADF here */
  if (mfd < 0) return NULL;
  struct {
    struct file_handle fh;
    unsigned char bytes[MAX_HANDLE_SZ];
  } h;
  h.fh.handle_bytes = k->len;
  h.fh.handle_type = k->type;
  memcpy(h.fh.f_handle, k->bytes, k->len);
  int fd = open_by_handle_at(mfd, &h.fh, O_PATH | O_CLOEXEC);
  close(mfd);
  if (fd < 0) return NULL;
  char link[32], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  close(fd);
  if (n <= 0) return NULL;
  path[n] = 0;
  return strdup(path);
}

static const char *dir_path(struct ldg_watcher *w, const struct ldg_hkey *k) {
  struct hcache *hc = w->hcache;
  uint32_t h = hkey_hash(k);
  size_t i = h % HSLOTS;
  for (; hc->slots[i].key; i = (i + 1) % HSLOTS)
    if (hc->slots[i].hash == h && hkey_eq(hc->slots[i].key, k)) return hc->slots[i].path;
  char *path = decode_dir(w, k);
  if (!path) return NULL;
  if (hc->used >= HSLOTS * 3 / 4) {
    hcache_clear(hc);
    i = h % HSLOTS;
  }
  struct ldg_hkey *key = malloc(sizeof *key);
  if (!key) {
    free(path);
    return NULL;
  }
  *key = *k;
  hc->slots[i] = (struct hslot){h, key, path};
  hc->used++;
  return path;
}

/* ---- reading and processing events ----------------------------------------------------- */

ssize_t ldg_fan_read(struct ldg_watcher *w) {
  for (;;) {
    ssize_t n = read(w->fan_fd, w->buf, w->bufsize);
    if (n > 0) w->read_ns = (int64_t)ldg_now_ns(CLOCK_REALTIME);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return 0;                        /* EAGAIN: the queue is empty */
  }
}

int ldg_fan_read_bell(struct ldg_watcher *w) {
  char buf[4096] __attribute__((aligned(8)));
  int rang = 0;
  for (;;) {
    ssize_t n = read(w->bell_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return rang;
    rang = 1;
    /* Reads return whole events: a buffer not nearly full means the queue was emptied. */
    if ((size_t)n < sizeof buf / 2) return rang;
  }
}

static int name_passes(struct ldg_watcher *w, const char *name) {
  for (size_t i = 0; i < w->nprefixes; i++) {
    const char *p = w->prefixes[i];
    size_t j = 0;
    while (p[j]) {
      unsigned char c = (unsigned char)name[j];
      if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
      if (c != (unsigned char)p[j]) break;
      j++;
    }
    if (!p[j]) return 1;
  }
  return 0;
}

/* If the handle is a watched directory: *passes says whether the name passes its filter, and
 * its path is copied when it does, or when `always`. */
static char *watched(struct ldg_watcher *w, const struct ldg_hkey *k, const char *name, int always, int *passes) {
  char *path = NULL;
  *passes = 0;
  pthread_mutex_lock(&w->lock);
  for (size_t i = 0; i < w->ndirs; i++) {
    struct ldg_dir *d = &w->dirs[i];
    if (d->hlen != k->len || memcmp(d->fsid, k->fsid, 8) != 0 || memcmp(d->handle, k->bytes, k->len) != 0)
      continue;
    *passes = d->forward_all ? d->forward_all : name_passes(w, name);
    if (*passes || always) path = strdup(d->path);
    break;
  }
  pthread_mutex_unlock(&w->lock);
  return path;
}

/* The handle and name of a DFID_NAME-like info record; 0 when the handle is too big. */
static int fid_key(const struct fanotify_event_info_header *h, struct ldg_hkey *k, const char **name) {
  const struct fanotify_event_info_fid *fid = (const void *)h;
  const struct file_handle *fh = (const struct file_handle *)fid->handle;
  if (fh->handle_bytes > MAX_HANDLE_SZ) return 0;
  memcpy(k->fsid, &fid->fsid, 8);
  k->type = fh->handle_type;
  k->len = fh->handle_bytes;
  memcpy(k->bytes, fh->f_handle, k->len);
  if (h->info_type != FAN_EVENT_INFO_TYPE_DFID && h->info_type != FAN_EVENT_INFO_TYPE_FID) *name = (const char *)fh->f_handle + fh->handle_bytes;
  return 1;
}

/* A rename's source directory, malloc'ed: a watched directory's path, or the handle decoded now
 * (not from the cache of exec directories, which may name where the directory used to be: a
 * rename is rare enough to pay one open_by_handle_at). NULL when it cannot be told: the kernel
 * resolves a deleted directory to "PATH (deleted)", which is not a path. */
static char *source_dir(struct ldg_watcher *w, const struct ldg_hkey *k) {
  int passes;
  char *path = watched(w, k, "", 1, &passes);
  if (path) return path;
  path = decode_dir(w, k);
  size_t n = path ? strlen(path) : 0;
  if (path && n >= 10 && strcmp(path + n - 10, " (deleted)") == 0) {
    free(path);
    path = NULL;
  }
  return path;
}

static void trace(struct ldg_watcher *w, const struct fanotify_event_metadata *m, const char *dir,
                  const char *name) {
  if (w->trace)
    fprintf(stderr, "ldg-native: mask=%#llx pid=%d dir=%s name=%s\n", (unsigned long long)m->mask, m->pid,
            dir ? dir : "?", name ? name : "");
}

void ldg_fan_process(struct ldg_watcher *w, size_t len) {
  struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)w->buf;
  int64_t now = w->read_ns;          /* the time of the read, not of this processing */
  for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
    LDG_STAT_ADD(w, read, 1);
    int pidfd = -1;
    struct ldg_hkey k;
    const char *name = NULL;
    int have_fid = 0;
    struct ldg_hkey old_k;               /* FAN_RENAME: where the file came from */
    const char *old_name = NULL;
    int have_old = 0;
    struct ldg_hkey child_k;         /* FAN_REPORT_TARGET_FID: what the creation or rename made */
    int have_child = 0;
    for (size_t off = m->metadata_len; off + sizeof(struct fanotify_event_info_header) <= m->event_len;) {
      struct fanotify_event_info_header *h = (void *)((char *)m + off);
      if (h->len == 0 || off + h->len > m->event_len) break;
      if (h->info_type == FAN_EVENT_INFO_TYPE_PIDFD) {
        pidfd = ((struct fanotify_event_info_pidfd *)h)->pidfd;
      } else if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || h->info_type == FAN_EVENT_INFO_TYPE_DFID ||
                 h->info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME) {
        if (fid_key(h, &k, &name)) have_fid = 1;
      } else if (h->info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME) {
        if (fid_key(h, &old_k, &old_name)) have_old = 1;
      } else if (h->info_type == FAN_EVENT_INFO_TYPE_FID) {
        const char *none = NULL;
        if (fid_key(h, &child_k, &none)) have_child = 1;
      }
      off += h->len;
    }
    if (m->fd >= 0) close(m->fd);

    if (m->mask & FAN_Q_OVERFLOW) {
      LDG_STAT_ADD(w, overflows, 1);
      trace(w, m, NULL, NULL);
      ldg_cw_check_soon(w);          /* a close-write may be among what was lost */
      struct ldg_event ev = {.kinds = LDG_OVERFLOW, .time_ns = now, .pidfd = -1};
      ev.dir = strdup("");
      ev.name = strdup("");
      ldg_pending_push(w, &ev);
    }
    if ((m->mask & FAN_OPEN_EXEC) && have_fid && name && m->pid > 0) {
      LDG_STAT_ADD(w, exec_events, 1);
      const char *dir = dir_path(w, &k);
      trace(w, m, dir, name);
      char path[PATH_MAX];
      if (dir) snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
      ldg_cache_on_exec_open(&w->cache, m->pid, dir ? path : NULL);
    }
    unsigned kinds = ((m->mask & FAN_CREATE) ? LDG_CREATE : 0) | ((m->mask & (FAN_MOVED_TO | FAN_RENAME)) ? LDG_MOVED_TO : 0);
    int closed = (m->mask & FAN_CLOSE_WRITE) && have_fid && name;
    /* Only the marks of files watched whole ask for these (integrity.c): always forwarded. */
    unsigned whole = have_fid && name ? ((m->mask & FAN_MODIFY) ? LDG_MODIFY : 0) | ((m->mask & FAN_ATTRIB) ? LDG_ATTRIB : 0) : 0;
    int passes = 0;
    char *dir = (kinds || closed || whole) && have_fid && name ? watched(w, &k, name, closed || whole, &passes) : NULL;
    if (!passes) kinds = 0;
    /* A symlink's target may live in a directory nobody marked: decode its handle. */
    if (!dir && (closed || whole)) {
      const char *d = dir_path(w, &k);
      dir = d ? strdup(d) : NULL;
    }
    /* Only our marks on single files ask for close-writes: forwarded when awaited, and always
     * the end of that file's mark, unless the file is watched whole: then it is forwarded. */
    if (closed && (ldg_cw_closed(w, dir, name) || ldg_int_name(w, dir, name))) kinds |= LDG_CLOSE_WRITE;
    if (dir) kinds |= whole;
    if (dir && !kinds) {
      free(dir);
      dir = NULL;
    }
    if (dir) {
      trace(w, m, dir, name);
      struct ldg_event ev = {.kinds = kinds, .is_dir = !!(m->mask & FAN_ONDIR), .dir = dir,
                             .name = strdup(name), .pid = m->pid, .time_ns = now, .pidfd = pidfd};
      pidfd = -1;                    /* the pending event owns it now */
      if ((kinds & LDG_MOVED_TO) && have_old && old_name && (ev.orig_dir = source_dir(w, &old_k)))
        ev.orig_name = strdup(old_name);
      /* Before the next event is processed: what is created inside it is queued after this. */
      if (ev.is_dir && (kinds & (LDG_CREATE | LDG_MOVED_TO)) && have_child && passes != LDG_FORWARD_FLAT)
        ldg_sub_adopt(w, dir, name, &child_k, !!(kinds & LDG_MOVED_TO));
      /* A new regular file: ask for its close-write, or learn that its write is complete (then
       * it goes on as if its close-write had arrived with it). A close-write merged into this
       * event belonged to the file this name had before. */
      if ((kinds & LDG_CREATE) && !ev.is_dir)
        ev.kinds = (ev.kinds & ~(unsigned)LDG_CLOSE_WRITE) | (ldg_cw_watch(w, dir, name) == LDG_CW_DONE ? LDG_CLOSE_WRITE : 0);
      if (w->exec_cache && m->pid > 0) {
        struct ldg_entry *e = ldg_cache_settle(&w->cache, m->pid);
        if (e) {
          ev.cap_img = ldg_image_get(e->img);
          ev.cap_seq = e->exec_seq;
          ev.cap_gen = e->gen;
          ev.cap_entry = 1;
          ev.cap_pending_exec = e->pending_exec_ns;
        }
      }
      ldg_pending_push(w, &ev);
    }
    if (pidfd >= 0) close(pidfd);
  }
}

void ldg_fan_destroy(struct ldg_watcher *w) {
  if (w->fan_fd >= 0) close(w->fan_fd);
  if (w->bell_fd >= 0) close(w->bell_fd);
  w->fan_fd = w->bell_fd = -1;
  ldg_cw_clear(w);                   /* the group's marks went with it */
  ldg_int_clear(w);
  w->bell_ok = 0;
  free(w->buf);
  w->buf = NULL;
  if (w->hcache) hcache_clear(w->hcache);
  free(w->hcache);
  w->hcache = NULL;
  for (size_t i = 0; i < w->nfss; i++) free(w->fss[i].mnt);
  free(w->fss);
  w->fss = NULL;
  w->nfss = 0;
  free(w->sub_fsids);                /* the creation marks went with the group */
  w->sub_fsids = NULL;
  w->nsub_fsids = 0;
}

/*
 * Reading one process from /proc. Reads go through one directory fd opened on /proc/<pid>: once
 * that fd is open it keeps naming the same process, so if the pid is reused mid-way the reads
 * fail instead of mixing two processes. (LDG_READ_NODIR reads of one or two files skip it; their
 * callers compare the start time with what they know.)
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* PIDFD_GET_INFO's first layout (PIDFD_INFO_SIZE_VER0); later kernels accept it as it is. */
struct pidfd_info_v0 {
  uint64_t mask, cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid, spare0;
};
#define PIDFD_GET_INFO_V0 _IOWR(0xFF, 11, struct pidfd_info_v0)
#define PIDFD_INFO_CREDS (1ull << 1)

uint64_t ldg_now_ns(int clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads up to cap bytes of dirfd/name; returns the length or -1. */
static ssize_t read_at(int dirfd, const char *name, char *buf, size_t cap) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = 0;
  while (len < cap) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      close(fd);
      return len ? (ssize_t)len : -1;
    }
    if (n == 0) break;
    len += (size_t)n;
    /* These files are generated whole at the first read: a short read is the end, and asking
     * again would cost a syscall to learn it. */
    if (len < cap) break;
  }
  close(fd);
  return (ssize_t)len;
}

/* readlink of exe or cwd; drops the " (deleted)" the kernel appends for unlinked files, so the
 * path matches the one the exec event reported. A memfd ("/memfd:NAME (deleted)") keeps it: it
 * has no exec event to match, never had a path, and the suffix is how Elastic Defend and the
 * analyst know the image lived in memory only. */
static char *link_at(int dirfd, const char *name) {
  char buf[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name, buf, sizeof buf - 1);
  if (n <= 0) return NULL;
  buf[n] = 0;
  static const char deleted[] = " (deleted)";
  size_t dl = sizeof deleted - 1;
  if ((size_t)n > dl && memcmp(buf + n - dl, deleted, dl) == 0 && strncmp(buf, "/memfd:", 7) != 0) buf[n - dl] = 0;
  return strdup(buf);
}

/* /proc/<pid>/stat: "pid (comm) state ppid ... starttime(22)". comm may hold spaces and ')', so
 * it ends at the last ')'; it is the same unescaped comm that /proc/<pid>/comm shows. */
static void parse_stat(const char *s, struct ldg_procinfo *p) {
  const char *l = strchr(s, '('), *r = strrchr(s, ')');
  if (!l || !r || r < l) return;
  size_t n = (size_t)(r - l - 1);
  if (n > LDG_COMM_LEN - 1) n = LDG_COMM_LEN - 1;
  memcpy(p->comm, l + 1, n);
  p->comm[n] = 0;
  p->has_comm = 1;
  r++;
  int field = 2;
  while (*r && field < 22) {
    while (*r == ' ') r++;
    field++;
    if (field == 4) {
      p->ppid = (pid_t)strtol(r, NULL, 10);
      p->has_ppid = 1;
    } else if (field == 22) {
      p->start_ticks = strtoull(r, NULL, 10);
      p->has_start = 1;
    }
    while (*r && *r != ' ') r++;
  }
}

static void parse_ids(const char *s, struct ldg_procinfo *p) {
  const char *u = strstr(s, "\nUid:");
  const char *g = strstr(s, "\nGid:");
  unsigned long ru, eu, rg, eg;
  if (!u || !g) return;
  if (sscanf(u + 5, "%lu %lu", &ru, &eu) != 2 || sscanf(g + 5, "%lu %lu", &rg, &eg) != 2) return;
  p->uid = (uint32_t)ru;
  p->euid = (uint32_t)eu;
  p->gid = (uint32_t)rg;
  p->egid = (uint32_t)eg;
  p->has_ids = 1;
}

/* The name of a file of the process: "exe" relative to an open /proc/<pid>, or "/proc/<pid>/exe"
 * when prefix is that directory (LDG_READ_NODIR). */
struct names {
  char path[48];
  size_t plen;
};

static const char *name_of(struct names *n, const char *leaf) {
  snprintf(n->path + n->plen, sizeof n->path - n->plen, "%s", leaf);
  return n->path;
}

static void read_fields(int dirfd, const char *prefix, unsigned what, struct ldg_procinfo *p) {
  struct names nm;
  nm.plen = (size_t)snprintf(nm.path, sizeof nm.path, "%s", prefix);
#define NAME(leaf) name_of(&nm, leaf)
  char buf[LDG_ARGS_MAX > 2048 ? LDG_ARGS_MAX : 2048];
  if ((what & LDG_READ_EXE) && !p->exe) p->exe = link_at(dirfd, NAME("exe"));
  if (what & LDG_READ_STAT) {
    ssize_t n = read_at(dirfd, NAME("stat"), buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      parse_stat(buf, p);
    }
  }
  if ((what & LDG_READ_ARGS) && !p->args) {
    ssize_t n = read_at(dirfd, NAME("cmdline"), buf, LDG_ARGS_MAX);
    if (n > 0 && (p->args = malloc((size_t)n))) {
      memcpy(p->args, buf, (size_t)n);
      p->args_len = (size_t)n;
    }
  }
  if ((what & LDG_READ_CWD) && !p->cwd) p->cwd = link_at(dirfd, NAME("cwd"));
  if (what & LDG_READ_IDS) {
    ssize_t n = read_at(dirfd, NAME("status"), buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      parse_ids(buf, p);
    }
  }
  if (what & LDG_READ_LOGINUID) {
    ssize_t n = read_at(dirfd, NAME("loginuid"), buf, 15);
    if (n > 0) {
      buf[n] = 0;
      p->loginuid = (uint32_t)strtoul(buf, NULL, 10);
      p->has_loginuid = 1;
    }
  }
#undef NAME
}

void ldg_proc_read(pid_t pid, int dirfd, unsigned what, struct ldg_procinfo *p) {
  char prefix[32] = "";
  int own = 0;
  p->pid = pid;
  if (what & LDG_READ_NODIR) {
    snprintf(prefix, sizeof prefix, "/proc/%d/", (int)pid);
    dirfd = AT_FDCWD;
  } else if (dirfd < 0) {
    snprintf(prefix, sizeof prefix, "/proc/%d", (int)pid);
    dirfd = open(prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return;
    prefix[0] = 0;
    own = 1;
  }
  /* The reads are not atomic: an exec between them would mix two images (exe of one, comm
   * and args of the next). With RECHECK exe is read again last; if it changed, everything is
   * read again once, then what may be mixed is given up. */
  for (int attempt = 0; attempt < 2; attempt++) {
    read_fields(dirfd, prefix, what, p);
    if (!(what & LDG_READ_RECHECK) || !(what & LDG_READ_EXE) || !p->exe) break;
    struct names nm;
    nm.plen = (size_t)snprintf(nm.path, sizeof nm.path, "%s", prefix);
    char *again = link_at(dirfd, name_of(&nm, "exe"));
    int same = !again || strcmp(again, p->exe) == 0;   /* gone is not an exec */
    free(again);
    if (same) break;
    ldg_proc_free(p);
    p->has_comm = p->has_start = p->has_ppid = p->has_ids = p->has_loginuid = 0;
  }
  if (own) close(dirfd);
}

int ldg_pidfd_ids(int pidfd, struct ldg_procinfo *p) {
  struct pidfd_info_v0 info = {.mask = PIDFD_INFO_CREDS};
  if (pidfd < 0 || ioctl(pidfd, PIDFD_GET_INFO_V0, &info) < 0 || !(info.mask & PIDFD_INFO_CREDS)) return 0;
  p->uid = info.ruid, p->gid = info.rgid, p->euid = info.euid, p->egid = info.egid;
  p->has_ids = 1;
  return 1;
}

void ldg_proc_free(struct ldg_procinfo *p) {
  free(p->exe);
  free(p->args);
  free(p->cwd);
  free(p->script);
  p->exe = p->args = p->cwd = p->script = NULL;
  p->args_len = 0;
}

void ldg_proc_copy(struct ldg_procinfo *dst, const struct ldg_procinfo *src) {
  *dst = *src;
  dst->exe = src->exe ? strdup(src->exe) : NULL;
  dst->cwd = src->cwd ? strdup(src->cwd) : NULL;
  dst->script = src->script ? strdup(src->script) : NULL;
  dst->args = NULL;
  dst->args_len = 0;
  if (src->args && (dst->args = malloc(src->args_len))) {
    memcpy(dst->args, src->args, src->args_len);
    dst->args_len = src->args_len;
  }
}

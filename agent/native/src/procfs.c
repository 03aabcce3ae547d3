/*
 * Reading one process from /proc. Every read goes through one directory fd opened on
 * /proc/<pid>: once that fd is open it keeps naming the same process, so if the pid is reused
 * mid-way the reads fail instead of mixing two processes.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  }
  close(fd);
  return (ssize_t)len;
}

/* readlink of exe or cwd; drops the " (deleted)" the kernel appends for unlinked files, so the
 * path matches the one the exec event reported. */
static char *link_at(int dirfd, const char *name) {
  char buf[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name, buf, sizeof buf - 1);
  if (n <= 0) return NULL;
  buf[n] = 0;
  static const char deleted[] = " (deleted)";
  size_t dl = sizeof deleted - 1;
  if ((size_t)n > dl && memcmp(buf + n - dl, deleted, dl) == 0) buf[n - dl] = 0;
  return strdup(buf);
}

/* /proc/<pid>/stat: "pid (comm) state ppid ... starttime(22)"; comm may hold spaces and ')'. */
static int parse_stat(const char *s, struct ldg_procinfo *p) {
  const char *r = strrchr(s, ')');
  if (!r) return 0;
  r++;
  int field = 2;
  long long ppid = -1;
  unsigned long long start = 0;
  int have_start = 0;
  while (*r && field < 22) {
    while (*r == ' ') r++;
    field++;
    if (field == 4) ppid = strtoll(r, NULL, 10);
    if (field == 22) {
      start = strtoull(r, NULL, 10);
      have_start = 1;
    }
    while (*r && *r != ' ') r++;
  }
  if (ppid >= 0) {
    p->ppid = (pid_t)ppid;
    p->has_ppid = 1;
  }
  if (have_start) {
    p->start_ticks = start;
    p->has_start = 1;
  }
  return have_start;
}

static int parse_ids(const char *s, struct ldg_procinfo *p) {
  const char *u = strstr(s, "\nUid:");
  const char *g = strstr(s, "\nGid:");
  unsigned long ru, eu, rg, eg;
  if (!u || !g) return 0;
  if (sscanf(u + 5, "%lu %lu", &ru, &eu) != 2 || sscanf(g + 5, "%lu %lu", &rg, &eg) != 2) return 0;
  p->uid = (uint32_t)ru;
  p->euid = (uint32_t)eu;
  p->gid = (uint32_t)rg;
  p->egid = (uint32_t)eg;
  p->has_ids = 1;
  return 1;
}

static int read_fields(int dirfd, unsigned what, struct ldg_procinfo *p) {
  int got = 0;
  char buf[LDG_ARGS_MAX > 2048 ? LDG_ARGS_MAX : 2048];
  if ((what & LDG_READ_EXE) && !p->exe && (p->exe = link_at(dirfd, "exe"))) got++;
  if (what & LDG_READ_COMM) {
    ssize_t n = read_at(dirfd, "comm", buf, LDG_COMM_LEN);
    if (n > 0) {
      if (buf[n - 1] == '\n') n--;
      if (n > LDG_COMM_LEN - 1) n = LDG_COMM_LEN - 1;
      memcpy(p->comm, buf, (size_t)n);
      p->comm[n] = 0;
      p->has_comm = 1;
      got++;
    }
  }
  if ((what & LDG_READ_ARGS) && !p->args) {
    ssize_t n = read_at(dirfd, "cmdline", buf, LDG_ARGS_MAX);
    if (n > 0 && (p->args = malloc((size_t)n))) {
      memcpy(p->args, buf, (size_t)n);
      p->args_len = (size_t)n;
      got++;
    }
  }
  if ((what & LDG_READ_CWD) && !p->cwd && (p->cwd = link_at(dirfd, "cwd"))) got++;
  if (what & LDG_READ_STAT) {
    ssize_t n = read_at(dirfd, "stat", buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      got += parse_stat(buf, p);
    }
  }
  if (what & LDG_READ_IDS) {
    ssize_t n = read_at(dirfd, "status", buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      got += parse_ids(buf, p);
    }
    n = read_at(dirfd, "loginuid", buf, 15);
    if (n > 0) {
      buf[n] = 0;
      p->loginuid = (uint32_t)strtoul(buf, NULL, 10);
      p->has_loginuid = 1;
    }
  }
  return got;
}

int ldg_proc_read(pid_t pid, int dirfd, unsigned what, struct ldg_procinfo *p) {
  int own = 0, got = 0;
  if (dirfd < 0) {
    char path[32];
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return 0;
    own = 1;
  }
  p->pid = pid;
  /* The reads are not atomic: an exec between them would mix two images (exe of one, comm
   * and args of the next). exe is read again last; if it changed, read everything again once,
   * then give up on what may be mixed. */
  for (int attempt = 0; attempt < 2; attempt++) {
    got = read_fields(dirfd, what, p);
    if (!(what & LDG_READ_EXE) || !p->exe) break;
    char *again = link_at(dirfd, "exe");
    int same = !again || strcmp(again, p->exe) == 0;   /* gone is not an exec */
    free(again);
    if (same) break;
    ldg_proc_free(p);
    p->has_comm = p->has_start = p->has_ppid = p->has_ids = p->has_loginuid = 0;
    if (attempt == 1) got = 0;
  }
  if (own) close(dirfd);
  return got;
}

void ldg_proc_free(struct ldg_procinfo *p) {
  free(p->exe);
  free(p->args);
  free(p->cwd);
  p->exe = p->args = p->cwd = NULL;
  p->args_len = 0;
}

void ldg_proc_copy(struct ldg_procinfo *dst, const struct ldg_procinfo *src) {
  *dst = *src;
  dst->exe = src->exe ? strdup(src->exe) : NULL;
  dst->cwd = src->cwd ? strdup(src->cwd) : NULL;
  dst->args = NULL;
  dst->args_len = 0;
  if (src->args && (dst->args = malloc(src->args_len))) {
    memcpy(dst->args, src->args, src->args_len);
    dst->args_len = src->args_len;
  }
}

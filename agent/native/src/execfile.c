/*
 * What the kernel will exec-open next. One execve(2) can produce several FAN_OPEN_EXEC events
 * from the same pid, and only some of them change the image /proc/<pid>/exe will show:
 *
 *   dynamic ELF      open(binary) then open(its PT_INTERP, ld.so)   image = binary
 *   "#!" script      open(script) then open(interpreter) [+ ld.so]  image = interpreter
 *   static ELF       open(binary)                                   image = binary
 *
 * So after each exec event we look at the file (ELF program headers or the "#!" line) to know
 * whether the next event from that pid is part of the same execve and what it must be. The
 * answer is cached per path and checked against the file's inode and mtime.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 256

struct slot {
  char *path;
  dev_t dev;
  ino_t ino;
  struct timespec mtime;
  enum ldg_exec_kind kind;
  char *interp;
};

/* Per thread: each watcher's reader thread has its own. */
static __thread struct slot *slots;

static uint32_t hash(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

/* The interpreter as the kernel will open it: symlinks resolved, like the path fanotify reports. */
static char *real_or_copy(const char *p) {
  char *r = realpath(p, NULL);
  return r ? r : strdup(p);
}

static char *elf_interp(int fd, const unsigned char *h, size_t hlen) {
  uint64_t phoff;
  unsigned phentsize, phnum;
  int is64 = h[EI_CLASS] == ELFCLASS64;
  if (h[EI_DATA] != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB)) return NULL;
  if (is64 && hlen >= sizeof(Elf64_Ehdr)) {
    const Elf64_Ehdr *e = (const Elf64_Ehdr *)h;
    phoff = e->e_phoff, phentsize = e->e_phentsize, phnum = e->e_phnum;
  } else if (!is64 && hlen >= sizeof(Elf32_Ehdr)) {
    const Elf32_Ehdr *e = (const Elf32_Ehdr *)h;
    phoff = e->e_phoff, phentsize = e->e_phentsize, phnum = e->e_phnum;
  } else {
    return NULL;
  }
  if (phentsize < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)) || phnum > 256) return NULL;
  for (unsigned i = 0; i < phnum; i++) {
    unsigned char ph[sizeof(Elf64_Phdr)];
    if (pread(fd, ph, phentsize < sizeof ph ? phentsize : sizeof ph, (off_t)(phoff + (uint64_t)i * phentsize)) <
        (ssize_t)(is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)))
      return NULL;
    uint64_t type, off, size;
    if (is64) {
      const Elf64_Phdr *p = (const Elf64_Phdr *)ph;
      type = p->p_type, off = p->p_offset, size = p->p_filesz;
    } else {
      const Elf32_Phdr *p = (const Elf32_Phdr *)ph;
      type = p->p_type, off = p->p_offset, size = p->p_filesz;
    }
    if (type != PT_INTERP) continue;
    char path[PATH_MAX];
    if (size == 0 || size >= sizeof path) return NULL;
    if (pread(fd, path, size, (off_t)off) != (ssize_t)size) return NULL;
    path[size] = 0;
    return real_or_copy(path);
  }
  return NULL;
}

/* binfmt_script: "#!", optional blanks, the interpreter up to a blank or end of line. */
static char *script_interp(const unsigned char *h, size_t len) {
  size_t i = 2;
  while (i < len && (h[i] == ' ' || h[i] == '\t')) i++;
  size_t start = i;
  while (i < len && h[i] != ' ' && h[i] != '\t' && h[i] != '\n' && h[i] != 0) i++;
  if (i == start) return NULL;
  char path[256];
  memcpy(path, h + start, i - start);
  path[i - start] = 0;
  return real_or_copy(path);
}

static enum ldg_exec_kind classify_fd(int fd, char **interp) {
  unsigned char h[256];
  ssize_t n = pread(fd, h, sizeof h, 0);
  if (n >= 2 && h[0] == '#' && h[1] == '!') {
    *interp = script_interp(h, (size_t)n);
    return *interp ? LDG_EXEC_SCRIPT : LDG_EXEC_OTHER;
  }
  if (n >= (ssize_t)EI_NIDENT && memcmp(h, ELFMAG, SELFMAG) == 0) {
    *interp = elf_interp(fd, h, (size_t)n);
    return *interp ? LDG_EXEC_ELF_INTERP : LDG_EXEC_OTHER;
  }
  return n < 0 ? LDG_EXEC_UNREADABLE : LDG_EXEC_OTHER;
}

enum ldg_exec_kind ldg_exec_classify(const char *path, const char **interp) {
  *interp = NULL;
  if (!slots && !(slots = calloc(SLOTS, sizeof *slots))) return LDG_EXEC_UNREADABLE;
  /* Every exec on the host comes here and nearly all are hits: one stat(2) checks the slot, the
   * file is opened only when it is new or changed. */
  struct stat st;
  if (stat(path, &st) < 0) return LDG_EXEC_UNREADABLE;
  struct slot *s = &slots[hash(path) % SLOTS];
  if (s->path && strcmp(s->path, path) == 0 && s->dev == st.st_dev && s->ino == st.st_ino &&
      s->mtime.tv_sec == st.st_mtim.tv_sec && s->mtime.tv_nsec == st.st_mtim.tv_nsec) {
    *interp = s->interp;
    return s->kind;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  /* What was read must be the file that was checked: fstat the open file. */
  if (fd < 0 || fstat(fd, &st) < 0) {
    if (fd >= 0) close(fd);
    return LDG_EXEC_UNREADABLE;
  }
  char *ip = NULL;
  enum ldg_exec_kind kind = classify_fd(fd, &ip);
  close(fd);
  free(s->path);
  free(s->interp);
  s->path = strdup(path);
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->mtime = st.st_mtim;
  s->kind = kind;
  s->interp = ip;
  *interp = ip;
  return kind;
}

int ldg_exec_seen(const char *path) {
  const struct slot *s = slots ? &slots[hash(path) % SLOTS] : NULL;
  return s && s->path && strcmp(s->path, path) == 0;
}

void ldg_exec_classify_reset(void) {
  if (!slots) return;
  for (int i = 0; i < SLOTS; i++) {
    free(slots[i].path);
    free(slots[i].interp);
  }
  free(slots);
  slots = NULL;
}

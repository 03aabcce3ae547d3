/*
 * The race that nested-directory exactness cannot win (agent/native/src/subtree.c): a file made
 * inside a new directory by another process before the kernel has queued the directory's own
 * creation. For each trial a child spins on open(DIR/evil.so, O_CREAT|O_EXCL) while its parent
 * makes DIR, so the file appears at the first instant DIR can hold it.
 *
 * usage: mkdir-race PARENT N
 *   makes PARENT/ld-linux-race<i>/evil.so for i < N
 * Prints one line per trial: <i> <pid of the child that created the file>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: mkdir-race PARENT N\n");
    return 2;
  }
  int n = atoi(argv[2]);
  for (int i = 0; i < n; i++) {
    char dir[4096], file[4200];
    snprintf(dir, sizeof dir, "%s/ld-linux-race%d", argv[1], i);
    snprintf(file, sizeof file, "%s/evil.so", dir);
    int p[2];
    if (pipe(p) < 0) return 1;
    pid_t child = fork();
    if (child == 0) {
      close(p[0]);
      char go = 1;
      if (write(p[1], &go, 1) != 1) _exit(1);   /* spinning from now on */
      for (;;) {
        int fd = open(file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0) {
          close(fd);
          _exit(0);
        }
        if (errno != ENOENT) _exit(1);
      }
    }
    close(p[1]);
    char go;
    if (read(p[0], &go, 1) != 1) return 1;
    close(p[0]);
    if (mkdir(dir, 0755) < 0) return 1;
    int st;
    waitpid(child, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    printf("%d %d\n", i, (int)child);
  }
  return 0;
}

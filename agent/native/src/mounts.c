/*
 * Mount changes in the host's mount namespace (issue #17, item 1). A mount over a watched
 * directory, over one of its ancestors or over a loader file hides what the directory marks see:
 * the kernel reports nothing for it in the main group. So the reader also waits on one of:
 *
 *   1. a second fanotify group with FAN_REPORT_MNT and a FAN_MARK_MNTNS mark on the host's mount
 *      namespace (Linux 6.15): one event per mount attached or detached, naming the mount id and
 *      the process that did it. It cannot share the main group: FAN_REPORT_MNT excludes every
 *      FID reporting flag.
 *   2. otherwise poll(2) POLLPRI on the host's mountinfo, which the kernel raises on any change of
 *      that namespace's mount table, and names nobody.
 *
 * "The host's" is PID 1's: the installed unit gives the agent a mount namespace of its own
 * (ProtectSystem, PrivateTmp), whose table is not the one an attacker changes. /proc/1 needs
 * CAP_SYS_PTRACE unless the agent holds all of PID 1's capabilities; where it cannot be opened the
 * agent's own namespace is used, which is the host's when the two are one (then nothing is lost),
 * and stats().mounts says which.
 *
 * Each notification re-marks the filesystems for FAN_OPEN_EXEC (a writer exec'd from a tmpfs
 * mounted a moment ago must resolve like any other) and is handed to JavaScript as one `mount`
 * event, in order with the file events of the same hand-over. Deciding what the change covered is
 * policy: JavaScript re-resolves every watched path and compares (st_dev, st_ino).
 * Reader thread only, except mnt_how (set before the thread starts).
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

/* Linux 6.15 uapi; Debian 12's headers lack them. */
#ifndef FAN_MNT_ATTACH
#define FAN_MNT_ATTACH 0x01000000
#endif
#ifndef FAN_MNT_DETACH
#define FAN_MNT_DETACH 0x02000000
#endif
#ifndef FAN_REPORT_MNT
#define FAN_REPORT_MNT 0x00004000
#endif
#ifndef FAN_MARK_MNTNS
#define FAN_MARK_MNTNS 0x00000110
#endif
#ifndef FAN_EVENT_INFO_TYPE_MNT
#define FAN_EVENT_INFO_TYPE_MNT 7
#endif

static const char *const NS[] = {"/proc/1/ns/mnt", "/proc/self/ns/mnt"};
static const char *const MOUNTINFO[] = {"/proc/1/mountinfo", "/proc/self/mountinfo"};

int ldg_mnt_open(struct ldg_watcher *w) {
  w->mounts_fd = -1;
  w->mounts_fan = 0;
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_MNT, O_RDONLY | O_CLOEXEC);
  for (int i = 0; fd >= 0 && i < 2; i++) {
    if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MNTNS, FAN_MNT_ATTACH | FAN_MNT_DETACH, AT_FDCWD, NS[i]) == 0) {
      w->mounts_fd = fd;
      w->mounts_fan = 1;
      snprintf(w->mnt_how, sizeof w->mnt_how, "fanotify %s%s", NS[i], i ? " (/proc/1 not readable)" : "");
      return 0;
    }
    if (w->trace) fprintf(stderr, "ldg-native: FAN_MARK_MNTNS on %s: %s\n", NS[i], strerror(errno));
  }
  int why = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
  for (int i = 0; i < 2; i++) {
    w->mounts_fd = open(MOUNTINFO[i], O_RDONLY | O_CLOEXEC);
    if (w->mounts_fd >= 0) {
      snprintf(w->mnt_how, sizeof w->mnt_how, "poll %s%s%s%s", MOUNTINFO[i], i ? " (/proc/1 not readable)" : "",
               why ? "; fanotify FAN_REPORT_MNT: " : "", why ? strerror(why) : "");
      return 0;
    }
  }
  snprintf(w->mnt_how, sizeof w->mnt_how, "none: %s", strerror(errno));
  return -1;
}

short ldg_mnt_poll_events(const struct ldg_watcher *w) { return w->mounts_fan ? POLLIN : POLLPRI; }

/* One `mount` event for JavaScript: which way, the mount id, and who (pid 0: the kernel did not
 * say, as with the mountinfo fallback). */
static void push(struct ldg_watcher *w, const char *action, uint64_t mnt_id, pid_t pid) {
  char id[24];
  snprintf(id, sizeof id, "%llu", (unsigned long long)mnt_id);
  struct ldg_event ev = {.kinds = LDG_MOUNT, .pid = pid, .time_ns = (int64_t)ldg_now_ns(CLOCK_REALTIME), .pidfd = -1};
  ev.dir = strdup(action);
  ev.name = strdup(mnt_id ? id : "");
  if (w->exec_cache && pid > 0) {
    struct ldg_entry *e = ldg_cache_settle(&w->cache, pid);
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

void ldg_mnt_changed(struct ldg_watcher *w) {
  /* First the exec marks: the new filesystem is marked before JavaScript hears of it. */
  if (w->exec_cache) ldg_fan_mark_exec_filesystems(w);
  ldg_exec_classify_reset();         /* what ldg_exec_seen knew may be on another mount now */
  if (!w->mounts_fan) {
    push(w, "change", 0, 0);
    return;
  }
  char buf[4096] __attribute__((aligned(8)));
  for (;;) {
    ssize_t n = read(w->mounts_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    /* The mounter's exec of mount(8) is in the main queue, not in this one: read it into the cache
     * before the mount events are attributed, or they would name the image mount(8) was forked
     * from (the shell, node). Its FAN_OPEN_EXEC was queued before the mount happened, so it is
     * there now; anything read with it goes on as pump() would take it. */
    for (int i = 0; i < 16; i++) {
      ssize_t got = ldg_fan_read(w);
      if (got <= 0) break;
      ldg_nl_drain(w);
      ldg_fan_process(w, (size_t)got);
    }
    ldg_nl_drain(w);
    struct fanotify_event_metadata *m = (void *)buf;
    for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      uint64_t id = 0;
      for (size_t off = m->metadata_len; off + sizeof(struct fanotify_event_info_header) <= m->event_len;) {
        struct fanotify_event_info_header *h = (void *)((char *)m + off);
        if (h->len == 0 || off + h->len > m->event_len) break;
        if (h->info_type == FAN_EVENT_INFO_TYPE_MNT && h->len >= sizeof *h + sizeof id) memcpy(&id, (char *)h + sizeof *h, sizeof id);
        off += h->len;
      }
      if (m->fd >= 0) close(m->fd);
      if (m->mask & FAN_Q_OVERFLOW) push(w, "change", 0, 0);
      else push(w, (m->mask & FAN_MNT_DETACH) ? "detach" : "attach", id, m->pid);
      if (w->trace) fprintf(stderr, "ldg-native: mount mask=%#llx pid=%d id=%llu\n", (unsigned long long)m->mask, m->pid, (unsigned long long)id);
    }
    if ((size_t)n < sizeof buf / 2) return;
  }
}

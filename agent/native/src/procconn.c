/*
 * The netlink process connector: fork, exec, exit and comm messages for every process on the
 * host. They feed the exec cache (cache.c); they are not ordered with fanotify, so watcher.c
 * drains them after each fanotify read, before processing what was read.
 *
 * Cost per host process is the point of this file. Two sockets, because only EXEC is urgent:
 * after it cache.c reads /proc while the new image still runs (a writer may exit a millisecond
 * later), so the exec socket wakes the reader at once. FORK, EXIT and COMM only have to be
 * applied before the fanotify events that follow them, which the drain after each read
 * guarantees: watcher.c lets the lazy socket wake the reader at most once per LDG_LAZY_MS.
 * A classic BPF filter on each socket drops in the kernel what the cache ignores (forks and
 * exits of threads, uid/gid/sid/ptrace/coredump events): a multi-threaded host costs nothing.
 *
 * The two sockets are merged by the messages' timestamps. The lazy socket is drained first, so
 * every lazy message older than the exec messages drained is there; what a drain can still
 * reorder is a lazy message sent during the few microseconds between the two reads, which the
 * cache tolerates (a FORK processed after the child's EXEC, see ldg_cache_on_fork).
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64                     /* datagrams per recvmmsg(2) */
#define PASS_MAX 256                 /* messages per socket merged in one pass */
#define DRAIN_MAX 4096               /* messages per drain, so fanotify is never starved */
#define MSG_BUF 256                  /* one connector datagram is under 100 bytes */

struct listen_msg {
  struct nlmsghdr nl;
  struct cn_msg cn;
  uint32_t op;
} __attribute__((packed));

/* One connector message, as the cache needs it. */
struct nl_ev {
  uint64_t ts;
  uint32_t what;
  pid_t pid, tgid, parent_tgid;      /* FORK: child pid/tgid and parent tgid */
  char comm[LDG_COMM_LEN];
};

/* ---- kernel-side filters --------------------------------------------------------------- */

/* Offsets in the datagram: netlink header, connector header, then struct proc_event. BPF loads
 * words in network byte order, hence htonl on constants; pid comparisons are load against load. */
#define EV (NLMSG_LENGTH(0) + sizeof(struct cn_msg))
#define OFF(field) (EV + offsetof(struct proc_event, field))
#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define JEQ(k, jt, jf) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl(k), (jt), (jf))
#define ACCEPT BPF_STMT(BPF_RET | BPF_K, 0xffffffff)
#define DROP BPF_STMT(BPF_RET | BPF_K, 0)

_Static_assert(offsetof(struct proc_event, event_data.comm.process_pid) ==
                   offsetof(struct proc_event, event_data.exit.process_pid) &&
               offsetof(struct proc_event, event_data.comm.process_tgid) ==
                   offsetof(struct proc_event, event_data.exit.process_tgid),
               "the lazy filter reads exit and comm messages alike");

/* ---- receiving ------------------------------------------------------------------------- */

static void handle(struct ldg_watcher *w, const struct nl_ev *ev) {
  struct ldg_cache *c = &w->cache;
  /* The filters already dropped threads; checked again for a socket without its filter. */
  switch (ev->what) {
  case PROC_EVENT_FORK:
    if (ev->pid == ev->tgid) ldg_cache_on_fork(c, ev->parent_tgid, ev->tgid, ev->ts);
    break;
  case PROC_EVENT_EXEC:
    ldg_cache_on_exec(c, ev->tgid, ev->ts);
    break;
  case PROC_EVENT_EXIT:
    if (ev->pid == ev->tgid) ldg_cache_on_exit(c, ev->tgid);
    break;
  case PROC_EVENT_COMM:
    if (ev->pid == ev->tgid) ldg_cache_on_comm(c, ev->tgid, ev->comm, ev->ts);
    break;
  default:
    break;
  }
}

/* Parses one datagram. Returns 1 for a process event, 2 for an ack (*ack set), 0 otherwise. */
static int parse(const char *buf, size_t len, struct nl_ev *out, int *ack) {
  const struct nlmsghdr *nh = (const struct nlmsghdr *)buf;
  if (!NLMSG_OK(nh, len) || nh->nlmsg_type == NLMSG_NOOP || nh->nlmsg_type == NLMSG_ERROR) return 0;
  const struct cn_msg *cn = NLMSG_DATA(nh);
  if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC || cn->len < offsetof(struct proc_event, event_data) + 8)
    return 0;
  const struct proc_event *ev = (const struct proc_event *)cn->data;
  if (ev->what == PROC_EVENT_NONE) {
    *ack = (int)ev->event_data.ack.err;
    return 2;
  }
  memset(out, 0, sizeof *out);
  out->what = ev->what;
  out->ts = ev->timestamp_ns;
  switch (ev->what) {
  case PROC_EVENT_FORK:
    if (cn->len < offsetof(struct proc_event, event_data) + sizeof ev->event_data.fork) return 0;
    out->pid = ev->event_data.fork.child_pid;
    out->tgid = ev->event_data.fork.child_tgid;
    out->parent_tgid = ev->event_data.fork.parent_tgid;
    break;
  case PROC_EVENT_EXEC:
    out->pid = ev->event_data.exec.process_pid;
    out->tgid = ev->event_data.exec.process_tgid;
    break;
  case PROC_EVENT_EXIT:
    out->pid = ev->event_data.exit.process_pid;
    out->tgid = ev->event_data.exit.process_tgid;
    break;
  case PROC_EVENT_COMM:
    if (cn->len < offsetof(struct proc_event, event_data.comm.comm) + sizeof ev->event_data.comm.comm) return 0;
    out->pid = ev->event_data.comm.process_pid;
    out->tgid = ev->event_data.comm.process_tgid;
    memcpy(out->comm, ev->event_data.comm.comm, sizeof out->comm - 1);
    break;
  default:
    return 0;
  }
  return 1;
}

/* Reads up to cap process events from fd (non-blocking). Returns how many; *more is set when
 * the socket may hold more. */
static size_t receive(struct ldg_watcher *w, int fd, struct nl_ev *out, size_t cap, int *more) {
  static __thread char bufs[BATCH][MSG_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
  struct mmsghdr mm[BATCH];
  struct iovec iov[BATCH];
  size_t n = 0;
  *more = 0;
  while (n < cap) {
    unsigned want = (unsigned)(cap - n < BATCH ? cap - n : BATCH);
    for (unsigned i = 0; i < want; i++) {
      iov[i] = (struct iovec){bufs[i], MSG_BUF};
      mm[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int got = recvmmsg(fd, mm, want, MSG_DONTWAIT, NULL);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {        /* the socket overran: messages were lost */
        LDG_STAT_ADD(w, lost, 1);
        continue;
      }
      return n;                      /* EAGAIN: empty */
    }
    for (int i = 0; i < got; i++) {
      int ack;
      if (!(mm[i].msg_hdr.msg_flags & MSG_TRUNC) && parse(bufs[i], mm[i].msg_len, &out[n], &ack) == 1) n++;
    }
    if ((unsigned)got < want) return n;
  }
  *more = 1;
  return n;
}

void ldg_nl_drain(struct ldg_watcher *w) {
  if (w->nl_exec_fd < 0) return;
  struct nl_ev lazy[PASS_MAX], exec[PASS_MAX];
  size_t total = 0, ne = 0;
  int more_lazy = 1, more_exec = 1;
  while ((more_lazy || more_exec || ne) && total < DRAIN_MAX) {
    size_t nl = more_lazy ? receive(w, w->nl_lazy_fd, lazy, PASS_MAX, &more_lazy) : 0;
    if (more_exec) ne += receive(w, w->nl_exec_fd, exec + ne, PASS_MAX - ne, &more_exec);
    /* With more lazy messages left in the socket, exec messages newer than the last one read
     * wait for the next pass, so that the two stay in time order. */
    size_t i = 0, j = 0;
    while (i < nl || (j < ne && (!more_lazy || (nl && exec[j].ts <= lazy[nl - 1].ts)))) {
      if (j == ne || (i < nl && lazy[i].ts <= exec[j].ts)) handle(w, &lazy[i++]);
      else handle(w, &exec[j++]);
    }
    memmove(exec, exec + j, (ne - j) * sizeof *exec);
    ne -= j;
    total += nl + j;
    if (w->cache.dead_read) {        /* its EXIT is in the sockets by now (see cache.c) */
      w->cache.dead_read = 0;
      more_lazy = more_exec = 1;
    }
  }
  for (size_t j = 0; j < ne; j++) handle(w, &exec[j]);   /* DRAIN_MAX reached: not lost, only early */
}

/* ---- subscribing ----------------------------------------------------------------------- */

/* Waits for the kernel's ack of the subscription on fd: 0, an errno, or -1 when none came. */
static int wait_ack(int fd) {
  char buf[MSG_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
  uint64_t deadline = ldg_now_ns(CLOCK_MONOTONIC) + 500000000ull;
  while (ldg_now_ns(CLOCK_MONOTONIC) < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      struct nl_ev ev;
      int ack = -1;
      if (parse(buf, (size_t)n, &ev, &ack) == 2) return ack;
    }
  }
  return -1;
}

static int open_socket(struct sock_filter *filter, unsigned short len, struct ldg_err *err) {
  int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (fd < 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", errno, "socket(2) NETLINK_CONNECTOR failed");
    return -1;
  }
  /* Without its filter the socket still works (handle() checks threads again), only dearer. */
  struct sock_fprog prog = {len, filter};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0 && ldg_trace)
    perror("ldg-native: SO_ATTACH_FILTER on the process connector");
  /* A burst of forks must not overrun the socket before the reader drains it. */
  int size = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", errno, "bind(2) to the process connector failed");
    close(fd);
    return -1;
  }
  struct listen_msg msg;
  memset(&msg, 0, sizeof msg);
  msg.nl.nlmsg_len = sizeof msg;
  msg.nl.nlmsg_type = NLMSG_DONE;
  msg.cn.id.idx = CN_IDX_PROC;
  msg.cn.id.val = CN_VAL_PROC;
  msg.cn.len = sizeof msg.op;
  msg.op = PROC_CN_MCAST_LISTEN;
  if (send(fd, &msg, sizeof msg, 0) < 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", errno, "send(2) PROC_CN_MCAST_LISTEN failed");
    close(fd);
    return -1;
  }
  /* The kernel acks the subscription (EPERM without CAP_NET_ADMIN in the initial namespace).
   * Messages before the ack are dropped: the cache's /proc scan starts after this. */
  int ack = wait_ack(fd);
  if (ack > 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", ack, "PROC_CN_MCAST_LISTEN refused by the kernel");
    close(fd);
    return -1;
  }
  return fd;
}

int ldg_nl_open(struct ldg_watcher *w, struct ldg_err *err) {
  /* FORK of a process (child pid == tgid), EXIT and COMM of a thread-group leader, acks. */
  struct sock_filter lazy_filter[] = {
    /* 0 */ LD(OFF(what)),
    /* 1 */ JEQ(PROC_EVENT_NONE, 11, 0),                    /* -> 13 accept */
    /* 2 */ JEQ(PROC_EVENT_FORK, 2, 0),                     /* -> 5 */
    /* 3 */ JEQ(PROC_EVENT_EXIT, 5, 0),                     /* -> 9 */
    /* 4 */ JEQ(PROC_EVENT_COMM, 4, 9),                     /* -> 9, else 14 drop */
    /* 5 */ LD(OFF(event_data.fork.child_tgid)),
    /* 6 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 7 */ LD(OFF(event_data.fork.child_pid)),
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 4, 5),  /* -> 13 accept, 14 drop */
    /* 9 */ LD(OFF(event_data.exit.process_tgid)),         /* exit and comm share the layout */
    /* 10 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 11 */ LD(OFF(event_data.exit.process_pid)),
    /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1), /* -> 13 accept, 14 drop */
    /* 13 */ ACCEPT,
    /* 14 */ DROP,
  };
  /* EXEC and acks. */
  struct sock_filter exec_filter[] = {
    /* 0 */ LD(OFF(what)),
    /* 1 */ JEQ(PROC_EVENT_EXEC, 1, 0),                     /* -> 3 accept */
    /* 2 */ JEQ(PROC_EVENT_NONE, 0, 1),                     /* -> 3 accept, 4 drop */
    /* 3 */ ACCEPT,
    /* 4 */ DROP,
  };
  w->nl_lazy_fd = open_socket(lazy_filter, sizeof lazy_filter / sizeof lazy_filter[0], err);
  if (w->nl_lazy_fd < 0) return -1;
  w->nl_exec_fd = open_socket(exec_filter, sizeof exec_filter / sizeof exec_filter[0], err);
  if (w->nl_exec_fd < 0) {
    close(w->nl_lazy_fd);
    w->nl_lazy_fd = -1;
    return -1;
  }
  return 0;
}

void ldg_nl_close(struct ldg_watcher *w) {
  if (w->nl_lazy_fd >= 0) close(w->nl_lazy_fd);
  if (w->nl_exec_fd >= 0) close(w->nl_exec_fd);
  w->nl_lazy_fd = w->nl_exec_fd = -1;
}

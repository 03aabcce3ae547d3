/*
 * The netlink process connector: fork, exec, exit and comm messages for every process on the
 * host. They feed the exec cache (cache.c); the socket is not ordered with fanotify, so
 * watcher.c drains it after each fanotify read, before processing what was read.
 */
#define _GNU_SOURCE
#include "ldg.h"

#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MAX 4096               /* messages per drain, so fanotify is never starved */

struct listen_msg {
  struct nlmsghdr nl;
  struct cn_msg cn;
  uint32_t op;
} __attribute__((packed));

static void handle(struct ldg_watcher *w, const struct proc_event *ev) {
  struct ldg_cache *c = &w->cache;
  switch (ev->what) {
  case PROC_EVENT_FORK:
    /* Threads are not processes: the cache is keyed by thread group. */
    if (ev->event_data.fork.child_pid == ev->event_data.fork.child_tgid)
      ldg_cache_on_fork(c, ev->event_data.fork.parent_tgid, ev->event_data.fork.child_tgid, ev->timestamp_ns);
    break;
  case PROC_EVENT_EXEC:
    ldg_cache_on_exec(c, ev->event_data.exec.process_tgid, ev->timestamp_ns);
    break;
  case PROC_EVENT_EXIT:
    if (ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid)
      ldg_cache_on_exit(c, ev->event_data.exit.process_tgid);
    break;
  case PROC_EVENT_COMM:
    if (ev->event_data.comm.process_pid == ev->event_data.comm.process_tgid) {
      char comm[LDG_COMM_LEN];
      memcpy(comm, ev->event_data.comm.comm, sizeof comm - 1);
      comm[sizeof comm - 1] = 0;
      ldg_cache_on_comm(c, ev->event_data.comm.process_tgid, comm);
    }
    break;
  default:
    break;
  }
}

/* Receives what is queued; with `ack_wanted`, returns the subscription's ack: 0, an errno, or
 * -1 when none came. */
static int receive(struct ldg_watcher *w, int ack_wanted) {
  char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
  int ack = -1;
  for (int count = 0; count < DRAIN_MAX;) {
    ssize_t n = recv(w->nl_fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {        /* the socket overran: messages were lost */
        LDG_STAT_ADD(w, lost, 1);
        continue;
      }
      break;
    }
    if (n == 0) break;
    size_t len = (size_t)n;
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type == NLMSG_NOOP || nh->nlmsg_type == NLMSG_ERROR) continue;
      struct cn_msg *cn = NLMSG_DATA(nh);
      if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC || cn->len < offsetof(struct proc_event, event_data) + 8)
        continue;
      const struct proc_event *ev = (const struct proc_event *)cn->data;
      count++;
      if (ev->what == PROC_EVENT_NONE) {
        ack = (int)ev->event_data.ack.err;
        continue;
      }
      if (!ack_wanted) handle(w, ev);
    }
    if (ack_wanted && ack >= 0) break;
  }
  return ack;
}

int ldg_nl_open(struct ldg_watcher *w, struct ldg_err *err) {
  int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (fd < 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", errno, "socket(2) NETLINK_CONNECTOR failed");
    return -1;
  }
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
  w->nl_fd = fd;
  int ack = -1;
  uint64_t deadline = ldg_now_ns(CLOCK_MONOTONIC) + 500000000ull;
  while (ack < 0 && ldg_now_ns(CLOCK_MONOTONIC) < deadline) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) ack = receive(w, 1);
  }
  if (ack > 0) {
    ldg_err_set(err, "LDG_ERR_NETLINK", ack, "PROC_CN_MCAST_LISTEN refused by the kernel");
    close(fd);
    w->nl_fd = -1;
    return -1;
  }
  return 0;
}

void ldg_nl_drain(struct ldg_watcher *w) {
  if (w->nl_fd >= 0) receive(w, 0);
}

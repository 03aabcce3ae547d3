/*
 * ldguard native core: one fanotify group and the netlink process connector, read by one C
 * thread that keeps an exec cache and hands the few interesting events to JavaScript.
 *
 * Threading contract: everything below is owned by the reader thread, except the parts of
 * struct ldg_watcher marked "shared", which the JS thread touches under `lock` (the watched
 * directories and prefixes) or with atomics (the counters). Node-API lives in addon.c only.
 */
#ifndef LDG_H
#define LDG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LDG_COMM_LEN 16      /* TASK_COMM_LEN: comm is cut at 15 bytes */
#define LDG_ARGS_MAX 4096    /* bytes of /proc/<pid>/cmdline kept */
#define LDG_BATCH_MAX 256    /* forwarded events per hand-over to JavaScript */

/* ---- what we know about a process (procfs.c) ------------------------------------------- */

/* A process as /proc or the cache describe it. Strings are malloc'ed and owned. */
struct ldg_procinfo {
  pid_t pid, ppid;
  char *exe, *cwd;
  /* The "#!" script the kernel ran this image for (binfmt_script: exe is its interpreter), from
   * the script's own exec event (cache.c); never from /proc or argv, which name any file. */
  char *script;
  char *args;                /* argv joined by NULs, args_len bytes; NULL when unknown */
  size_t args_len;
  char comm[LDG_COMM_LEN];
  uint32_t uid, gid, euid, egid, loginuid;
  uint64_t start_ticks;      /* /proc/<pid>/stat field 22 */
  unsigned has_comm : 1, has_ids : 1, has_loginuid : 1, has_start : 1, has_ppid : 1;
};

/* What ldg_proc_read reads. Each item costs a file of /proc/<pid> (IDS two): the reader pays
 * them for every exec on the host (cache.c) and before each hand-over (watcher.c), so callers
 * ask for what they use. */
enum {
  LDG_READ_EXE = 1,          /* readlink exe */
  LDG_READ_STAT = 2,         /* stat: comm, ppid and start time in one read */
  LDG_READ_ARGS = 4,         /* cmdline */
  LDG_READ_CWD = 8,          /* readlink cwd */
  LDG_READ_IDS = 16,         /* status: uids, gids */
  LDG_READ_LOGINUID = 32,    /* loginuid */
  LDG_READ_ALL = 63,
  /* Modifiers. RECHECK: read exe again last and start over once if it changed, for reads that
   * nothing else protects from an exec between two files. NODIR: absolute paths instead of an
   * open /proc/<pid> (cheaper for one or two files; the caller checks the start time instead). */
  LDG_READ_RECHECK = 64,
  LDG_READ_NODIR = 128,
};

/* Reads the fields in `what` from /proc/<pid> (or from `dirfd`, an open /proc/<pid>, if >= 0).
 * Each missing field is left unset. */
void ldg_proc_read(pid_t pid, int dirfd, unsigned what, struct ldg_procinfo *out);
/* The ids of the process a pidfd refers to, by PIDFD_GET_INFO (Linux 6.13): one ioctl instead
 * of generating and reading /proc/<pid>/status. Returns 0 when the kernel cannot. */
int ldg_pidfd_ids(int pidfd, struct ldg_procinfo *out);
void ldg_proc_free(struct ldg_procinfo *p);
void ldg_proc_copy(struct ldg_procinfo *dst, const struct ldg_procinfo *src);
uint64_t ldg_now_ns(int clock);

/* ---- what an exec'd file is (execfile.c) ----------------------------------------------- */

enum ldg_exec_kind {
  LDG_EXEC_OTHER = 0,        /* static ELF or unknown format: nothing more is exec-opened */
  LDG_EXEC_ELF_INTERP,       /* dynamic ELF: the kernel next exec-opens its PT_INTERP (ld.so) */
  LDG_EXEC_SCRIPT,           /* "#!" script: the kernel next exec-opens the interpreter */
  LDG_EXEC_UNREADABLE,       /* could not read it: guess from the next file's name */
};
/* Classifies `path`; *interp receives the real path of the interpreter (borrowed from a
 * small cache, valid until the next call) for ELF_INTERP and SCRIPT. */
enum ldg_exec_kind ldg_exec_classify(const char *path, const char **interp);
/* Whether an exec of `path` was classified since the last reset: fanotify reported it, so the
 * filesystem holding it is marked (reset when mounts change). */
int ldg_exec_seen(const char *path);
void ldg_exec_classify_reset(void);

/* ---- the exec cache (cache.c) ---------------------------------------------------------- */

/* A process image: what the process looked like after an exec. Shared by reference between a
 * process and the children it forks without exec (copy on write when one changes its comm). */
struct ldg_image {
  int refs;
  unsigned ordered : 1;      /* exe comes from a fanotify exec event, ordered with creations */
  unsigned comm_exact : 1;   /* comm was read from /proc (else: basename of the exec'd file) */
  unsigned unnamed : 1;      /* from an exec event whose path could not be decoded */
  unsigned confirmed : 1;    /* ordered, and the connector's EXEC of that exec was processed */
  unsigned interp_only : 1;  /* an ld.so exec-open that no binary's preceded: ld.so run directly, or the
                                interpreter of an image fanotify could not see (see cache.c) */
  struct ldg_procinfo p;     /* pid, ppid and start ticks unused here: they live in the entry */
};

struct ldg_entry {
  struct ldg_entry *next;    /* hash chain */
  pid_t pid, ppid;
  uint64_t start_ticks;
  /* start_derived: from the FORK message's time, within a tick of the truth (cache.c); compare
   * with ldg_cache_same_start, which makes it exact. */
  unsigned has_start : 1, start_derived : 1, has_ppid : 1, exited : 1, forksnap_due : 1;
  struct ldg_image *img;     /* image as of the last fanotify event processed; NULL = unknown */
  struct ldg_image *snap;    /* /proc read at a netlink EXEC, not yet matched to an exec event */
  struct ldg_image *forksnap;/* /proc read of a forked child that did not exec (see cache.c) */
  pid_t inherit_from;        /* fork seen, image not yet taken from the parent (see cache.c) */
  pid_t *kids;               /* children whose inherit_from may still be this entry */
  uint32_t nkids, kids_cap;
  uint64_t forksnap_ns, first_exec_ns;
  /* Connector times (CLOCK_MONOTONIC): an EXEC processed before its exec event (0: none),
   * and the FORK of this process. */
  uint64_t pending_exec_ns, fork_ns;
  char *expect;              /* interpreter the next exec event is expected to open */
  int expect_kind;           /* enum ldg_exec_kind of the file exec'd last */
  char pending_comm[LDG_COMM_LEN];
  char final_comm[LDG_COMM_LEN];  /* comm of the dead process (zombie), for its last image */
  uint32_t nl_execs, fan_execs;   /* execs seen by each source: equal when fanotify caught up */
  uint32_t exec_seq;         /* bumped by every exec seen for this pid, from either source */
  uint32_t gen;              /* changes when the pid is reused */
  uint64_t exit_ns;
};

struct ldg_cache {
  struct ldg_entry **buckets;
  size_t nbuckets, count;
  uint64_t grace_ns;
  struct { pid_t pid; uint64_t ns; } *exits;   /* FIFO of exits, oldest first */
  size_t exits_head, exits_len, exits_cap;
  struct { pid_t pid; uint32_t gen; } *forks;  /* forked since the last ldg_cache_forksnaps */
  size_t nforks, forks_cap;
  int fan_exec;              /* fanotify exec events are flowing */
  int dead_read;             /* a read found a process dead: drain the connector once more */
  dev_t exec_devs[256];      /* filesystems whose execs fanotify reports */
  int n_exec_devs;
  uint64_t last_sweep_ns;
};

extern int ldg_trace;        /* LDG_NATIVE_TRACE=1: cache decisions on stderr */
int ldg_cache_init(struct ldg_cache *c, uint64_t grace_ns);
void ldg_cache_destroy(struct ldg_cache *c);
struct ldg_entry *ldg_cache_get(struct ldg_cache *c, pid_t pid);
/* The entry for pid with its lazy fork inheritance settled: call it in fanotify order. */
struct ldg_entry *ldg_cache_settle(struct ldg_cache *c, pid_t pid);
void ldg_cache_scan(struct ldg_cache *c);
void ldg_cache_on_exec_open(struct ldg_cache *c, pid_t pid, const char *path);
void ldg_cache_on_fork(struct ldg_cache *c, pid_t parent, pid_t child, uint64_t ts_ns);
void ldg_cache_on_exec(struct ldg_cache *c, pid_t pid, uint64_t ts_ns);
void ldg_cache_on_exit(struct ldg_cache *c, pid_t pid);
void ldg_cache_on_comm(struct ldg_cache *c, pid_t pid, const char *comm, uint64_t ts_ns);
/* The /proc reads FORK left for later (see cache.c): call when nothing waits to be handed over. */
void ldg_cache_forksnaps(struct ldg_cache *c);
/* Whether `ticks` (from /proc/<pid>/stat) is the start time of the process e describes. */
int ldg_cache_same_start(struct ldg_entry *e, uint64_t ticks);
/* Evicts entries exited more than grace ago; returns ms until the next eviction or -1. */
int ldg_cache_evict(struct ldg_cache *c);
void ldg_image_put(struct ldg_image *img);
struct ldg_image *ldg_image_get(struct ldg_image *img);

/* ---- events handed to JavaScript ------------------------------------------------------- */

enum ldg_kind { LDG_CREATE = 1, LDG_MOVED_TO = 2, LDG_CLOSE_WRITE = 4, LDG_OVERFLOW = 8,
                LDG_MODIFY = 16, LDG_ATTRIB = 32 /* of a file watched whole (integrity.c) */,
                LDG_MOUNT = 64 /* the host's mount table changed (mounts.c): dir is the action, name the mount id */ };
enum ldg_attr { LDG_ATTR_UNKNOWN = 0, LDG_ATTR_LIVE, LDG_ATTR_CACHE };

/* One kernel event that passed the filter. `kinds` is a set, JavaScript gets one object per
 * kind: a creation carries LDG_CLOSE_WRITE when its write was complete when the file was marked
 * (closewrite.c), or when its close-write arrived during the same hand-over (watcher.c). */
struct ldg_event {
  unsigned kinds, is_dir;
  char *dir, *name;
  /* A rename's source (FAN_RENAME): its directory as this host resolves it now and its old name;
   * both NULL when the kernel did not report it (before Linux 5.17) or the directory could not
   * be resolved (deleted, on a filesystem we cannot decode handles of). Never guessed. */
  char *orig_dir, *orig_name;
  pid_t pid;
  int64_t time_ns;           /* CLOCK_REALTIME when read */
  int attribution;
  int has_proc, has_parent;
  struct ldg_procinfo proc, parent;
  /* resolution state, reader thread only */
  int pidfd;
  struct ldg_image *cap_img; /* the cache's image for pid at the event's place in the queue */
  uint32_t cap_seq, cap_gen;
  int cap_entry;
  uint64_t cap_pending_exec; /* the entry's pending_exec_ns at the event: an EXEC without its
                                fanotify event yet (see decide() in watcher.c) */
  const char *reason;        /* why attribution is unknown, when known (static string) */
  struct ldg_procinfo live;
  int live_same;             /* live read describes the process that made the event */
  int live_alive;
};

struct ldg_batch {
  size_t len, cap;
  struct ldg_event ev[];
};
void ldg_batch_free(struct ldg_batch *b);

/* ---- the watcher (watcher.c, fanotify.c, procconn.c) ----------------------------------- */

/* A file handle as fanotify reports it (MAX_HANDLE_SZ bytes at most), with its filesystem. */
struct ldg_hkey {
  uint8_t fsid[8];
  int type;
  unsigned len;
  unsigned char bytes[128];
};

/* ldg_dir.forward_all: 0 names the rules' prefixes pass, 1 every name (a rule-matching directory:
 * its new subdirectories join the table), LDG_FORWARD_FLAT every name, subdirectories not. */
#define LDG_FORWARD_FLAT 2

struct ldg_dir {
  char *path;
  int forward_all;
  uint8_t fsid[8];
  int htype;
  unsigned hlen;
  unsigned char handle[128];
};

struct ldg_fs {              /* a filesystem marked for FAN_OPEN_EXEC */
  uint8_t fsid[8];
  dev_t dev;
  char *mnt;                 /* a mount point, opened only to decode handles (never held) */
};

struct ldg_stats {
  uint64_t read, forwarded, overflows, exec_events, lost, cache_entries;
  uint64_t attr_live, attr_cache, attr_unknown, exec_marks, wakeups;
  uint64_t cw_marks, cw_inferred, cw_waiting;   /* closewrite.c */
  uint64_t sub_fs_marks, sub_dirs;              /* subtree.c */
};

typedef void (*ldg_deliver_fn)(void *ctx, struct ldg_batch *b);

struct ldg_cw {              /* a new file whose close-write is awaited (closewrite.c) */
  char *dir, *name;
  dev_t dev;
  ino_t ino;
  uint64_t added_ns, check_ns;   /* CLOCK_MONOTONIC: when marked, when to look again */
  uint32_t backoff_ms;
  int marked;                /* our inode mark is on it (else only rechecks can end the wait) */
};

/* How often queues that need no prompt handling may wake the reader (watcher.c). */
#define LDG_LAZY_MS 200

struct ldg_watcher {
  int fan_fd, wake_fd, mounts_fd;
  int mounts_fan;            /* mounts_fd is a FAN_REPORT_MNT group (else mountinfo, POLLPRI) */
  char mnt_how[160];         /* what mounts_fd is, for stats() (mounts.c) */
  int bell_fd;               /* doorbell group: the directory marks alone (fanotify.c); -1 = none */
  int nl_exec_fd, nl_lazy_fd;/* process connector: EXEC, and FORK/EXIT/COMM (procconn.c) */
  int pidfd;                 /* FAN_REPORT_PIDFD accepted */
  int no_rename;             /* the kernel refused FAN_RENAME: FAN_MOVED_TO, without the source */
  int subtree;               /* asked for: filesystem creation marks for nested directories (subtree.c) */
  int target_fid;            /* FAN_REPORT_TARGET_FID accepted: creations carry the new object's handle */
  uint8_t (*sub_fsids)[8];   /* filesystems with the creation mark; JS thread (add_dir) only */
  size_t nsub_fsids;
  size_t sub_prune_at;       /* table size at which subtree.c drops directories that are gone */
  volatile int bell_ok;      /* every watched directory is also marked in the doorbell group */
  int exec_cache;
  uint64_t grace_ns;
  pthread_t thread;
  int thread_started;
  volatile int stop;         /* set by the JS thread, then wake_fd is written */

  /* shared: the JS thread adds and removes directories and prefixes under lock */
  pthread_mutex_t lock;
  struct ldg_dir *dirs;
  size_t ndirs;
  char **prefixes;
  size_t nprefixes;

  struct ldg_stats stats;    /* shared: written by the reader with atomics */
  int netlink_ok;
  char *netlink_error;       /* why the connector is unavailable (set before the thread starts) */

  /* reader thread only */
  struct ldg_cache cache;
  struct ldg_fs *fss;
  size_t nfss;
  struct ldg_batch *pending;
  unsigned char *buf;
  size_t bufsize;
  int64_t read_ns;           /* CLOCK_REALTIME of the last fanotify read */
  void *hcache;              /* fanotify.c: directory handle -> path */
  struct ldg_cw *cw;         /* closewrite.c: files whose close-write is awaited */
  /* integrity.c: inodes watched whole (content and attributes); shared, under `lock` */
  struct ldg_ino { dev_t dev; ino_t ino; } *ino;
  size_t nino, ino_cap;
  size_t ncw, cw_cap;

  ldg_deliver_fn deliver;
  void *deliver_ctx;
  int trace;                 /* LDG_NATIVE_TRACE=1: raw events on stderr */
};

#define LDG_STAT_ADD(w, f, n) __atomic_add_fetch(&(w)->stats.f, (n), __ATOMIC_RELAXED)
#define LDG_STAT_SET(w, f, n) __atomic_store_n(&(w)->stats.f, (n), __ATOMIC_RELAXED)
#define LDG_STAT_GET(w, f) __atomic_load_n(&(w)->stats.f, __ATOMIC_RELAXED)

/* A failure to report to JavaScript: the syscall, errno and the error code to throw. */
struct ldg_err {
  const char *code;
  char msg[512];
};
void ldg_err_set(struct ldg_err *e, const char *code, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* fanotify.c */
int ldg_fan_init(struct ldg_watcher *w, int unlimited_queue, struct ldg_err *err);
/* content: the directory's files' writes too (FAN_MODIFY on children), for directories whose files
 * are rewritten in place and matter (package databases); forwarded as modify events. */
int ldg_fan_add_dir(struct ldg_watcher *w, const char *path, int forward_all, int content, struct ldg_err *err);
int ldg_fan_remove_dir(struct ldg_watcher *w, const char *path, struct ldg_err *err);
/* Puts a directory in the table (takes `path`): matched by its handle, or by path too when
 * `by_path` (then an entry found is updated; otherwise it is kept). Returns 1 when added. */
int ldg_fan_put_dir(struct ldg_watcher *w, char *path, int forward_all, const struct ldg_hkey *k, int by_path);
/* Marks the open directory fd in the doorbell group, as ldg_fan_add_dir does by path. */
int ldg_fan_bell_mark_fd(struct ldg_watcher *w, int fd);
int ldg_fan_mark_exec_filesystems(struct ldg_watcher *w);
/* Reads the fanotify queue once (non-blocking); returns bytes read, 0 when empty. */
ssize_t ldg_fan_read(struct ldg_watcher *w);
/* Empties the doorbell group; returns whether it rang. */
int ldg_fan_read_bell(struct ldg_watcher *w);
/* Processes what ldg_fan_read left in w->buf: exec events feed the cache, forwarded events are
 * appended to w->pending. */
void ldg_fan_process(struct ldg_watcher *w, size_t len);
void ldg_fan_destroy(struct ldg_watcher *w);

/* closewrite.c: the close-write of a new file, asked of that file alone (see there) */
enum { LDG_CW_NONE = 0, LDG_CW_DONE, LDG_CW_WAIT };
/* After the creation dir/name was read: LDG_CW_NONE when no write is to be waited for (not a
 * regular file with one link, or gone), LDG_CW_DONE when the write is complete already,
 * LDG_CW_WAIT when its close-write is awaited. */
int ldg_cw_watch(struct ldg_watcher *w, const char *dir, const char *name);
/* A close-write was read for dir/name (dir NULL: unknown): removes the file's mark; returns
 * whether it was awaited (then it is forwarded). */
int ldg_cw_closed(struct ldg_watcher *w, const char *dir, const char *name);
/* Looks again at the entries due: pushes a close_write (pid 0) to w->pending for each write
 * found complete, ends expired waits. Returns whether it pushed anything. */
int ldg_cw_tick(struct ldg_watcher *w);
/* Milliseconds until ldg_cw_tick has something to do; -1 when nothing is awaited. */
int ldg_cw_next_ms(struct ldg_watcher *w);
/* After a queue overflow (close-writes may be lost): look again at every entry now. */
void ldg_cw_check_soon(struct ldg_watcher *w);
void ldg_cw_clear(struct ldg_watcher *w);

/* integrity.c: existing files watched whole (see there) */
/* Adds (on) or removes (!on) the inode mark of the regular file at path (not followed if a
 * symlink); -1 with err set (LDG_ERR_FANOTIFY_MARK) when it cannot. JS thread. */
int ldg_int_mark(struct ldg_watcher *w, const char *path, int on, struct ldg_err *err);
/* Whether (dev, ino) is watched whole. Any thread. */
int ldg_int_has(struct ldg_watcher *w, dev_t dev, ino_t ino);
/* Whether dir/name names a file watched whole now (dir NULL: no). */
int ldg_int_name(struct ldg_watcher *w, const char *dir, const char *name);
void ldg_int_clear(struct ldg_watcher *w);

/* subtree.c: nested directories, exact (see there) */
/* Adds the creation mark of the filesystem holding path, once per filesystem. */
void ldg_sub_mark_fs(struct ldg_watcher *w, const char *path);
/* A directory was created (or renamed, `moved`) as dir/name, with handle k: it joins the table
 * with forward_all, and when moved, every directory under it. Reader thread. */
void ldg_sub_adopt(struct ldg_watcher *w, const char *dir, const char *name, const struct ldg_hkey *k, int moved);
/* mounts.c: the host's mount table (see there) */
int ldg_mnt_open(struct ldg_watcher *w);
short ldg_mnt_poll_events(const struct ldg_watcher *w);
/* mounts_fd is ready: re-marks the exec filesystems and pushes `mount` events to w->pending. */
void ldg_mnt_changed(struct ldg_watcher *w);

/* procconn.c */
int ldg_nl_open(struct ldg_watcher *w, struct ldg_err *err);
/* Processes what both sockets hold, in time order. */
void ldg_nl_drain(struct ldg_watcher *w);
void ldg_nl_close(struct ldg_watcher *w);

/* watcher.c */
struct ldg_watcher *ldg_watcher_new(void);
int ldg_watcher_start(struct ldg_watcher *w, struct ldg_err *err);
void ldg_watcher_stop(struct ldg_watcher *w);
void ldg_watcher_free(struct ldg_watcher *w);
int ldg_watcher_set_prefixes(struct ldg_watcher *w, char **prefixes, size_t n);
void ldg_pending_push(struct ldg_watcher *w, struct ldg_event *e);

#endif

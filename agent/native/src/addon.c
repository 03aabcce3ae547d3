/*
 * Node-API binding: class Watcher (see ../index.d.ts for the contract).
 *
 * Lifetime: a started watcher holds a strong reference to itself and a referenced
 * threadsafe function, so it keeps the event loop alive (unref() lets the process exit anyway).
 * close() stops and joins the reader thread, then aborts the threadsafe function: no callback
 * runs after it. The struct is freed when its three owners are gone: the JS object (GC), the
 * threadsafe function (its finalizer) and the environment cleanup hook (close() or exit).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include "ldg.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct addon {
  struct ldg_watcher *w;
  napi_env env;
  napi_threadsafe_function tsfn;
  napi_ref self;
  int closed, owners, hooked;
};

/* ---- errors: the NODE_API_CALL pattern of Node's own test helpers ---------------------- */

static napi_value throw_napi(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s failed: %s", what, info && info->error_message ? info->error_message : "unknown");
    napi_throw_error(env, "LDG_ERR_NATIVE", msg);
  }
  return NULL;
}

#define NAPI_CALL(env, call)                                                                    \
  do {                                                                                          \
    if ((call) != napi_ok) return throw_napi((env), #call);                                     \
  } while (0)

/* Same, for helpers returning int: -1 with the exception pending. */
#define NAPI_CALL_INT(env, call)                                                                \
  do {                                                                                          \
    if ((call) != napi_ok) {                                                                    \
      throw_napi((env), #call);                                                                 \
      return -1;                                                                                \
    }                                                                                           \
  } while (0)

static int type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return -1;
}

/* ---- arguments ------------------------------------------------------------------------- */

static int get_string(napi_env env, napi_value v, char **out, const char *what);

/* A directory given as a Buffer holds the exact bytes of its path (a name that is not UTF-8:
 * see index.d.ts); a NUL inside is refused, as the kernel would. */
static int get_path(napi_env env, napi_value v, char **out, const char *what) {
  bool is_buf = false;
  NAPI_CALL_INT(env, napi_is_buffer(env, v, &is_buf));
  if (!is_buf) return get_string(env, v, out, what);
  void *data;
  size_t len;
  NAPI_CALL_INT(env, napi_get_buffer_info(env, v, &data, &len));
  if (memchr(data, 0, len)) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s must not contain a NUL byte", what);
    return type_error(env, msg);
  }
  if (!(*out = malloc(len + 1))) return type_error(env, "out of memory");
  memcpy(*out, data, len);
  (*out)[len] = 0;
  return 0;
}

static int get_string(napi_env env, napi_value v, char **out, const char *what) {
  napi_valuetype t;
  NAPI_CALL_INT(env, napi_typeof(env, v, &t));
  if (t != napi_string) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    return type_error(env, msg);
  }
  size_t len;
  NAPI_CALL_INT(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
  if (!(*out = malloc(len + 1))) return type_error(env, "out of memory");
  NAPI_CALL_INT(env, napi_get_value_string_utf8(env, v, *out, len + 1, &len));
  return 0;
}

static void free_strings(char **s, size_t n) {
  for (size_t i = 0; s && i < n; i++) free(s[i]);
  free(s);
}

static int get_string_array(napi_env env, napi_value obj, const char *key, char ***out, size_t *n) {
  napi_value v;
  bool is_array = false;
  char msg[200];
  *out = NULL;
  *n = 0;
  NAPI_CALL_INT(env, napi_get_named_property(env, obj, key, &v));
  NAPI_CALL_INT(env, napi_is_array(env, v, &is_array));
  if (!is_array) {
    snprintf(msg, sizeof msg, "options.%s must be an array of strings", key);
    return type_error(env, msg);
  }
  uint32_t len;
  NAPI_CALL_INT(env, napi_get_array_length(env, v, &len));
  char **s = calloc(len ? len : 1, sizeof *s);
  if (!s) return type_error(env, "out of memory");
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    snprintf(msg, sizeof msg, "options.%s[%u]", key, i);
    if (napi_get_element(env, v, i, &e) != napi_ok || get_string(env, e, &s[i], msg) < 0) {
      free_strings(s, i);
      return -1;
    }
  }
  *out = s;
  *n = len;
  return 0;
}

/* An optional property: 1 when present (value in *out), 0 when undefined, -1 on a wrong type. */
static int get_opt(napi_env env, napi_value obj, const char *key, napi_valuetype want, napi_value *out) {
  bool has = false;
  napi_valuetype t = napi_undefined;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 0;
  NAPI_CALL_INT(env, napi_get_named_property(env, obj, key, out));
  NAPI_CALL_INT(env, napi_typeof(env, *out, &t));
  if (t == napi_undefined) return 0;
  if (t != want) {
    char msg[200];
    snprintf(msg, sizeof msg, "options.%s must be a %s", key, want == napi_boolean ? "boolean" : "number");
    return type_error(env, msg);
  }
  return 1;
}

static struct addon *this_addon(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &data) != napi_ok) {
    throw_napi(env, "napi_unwrap(this)");
    return NULL;
  }
  return data;
}

/* ---- events to JavaScript -------------------------------------------------------------- */

static napi_value str_or_null(napi_env env, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  return v;
}

static void set(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

static napi_value u32_or_null(napi_env env, int has, uint32_t n) {
  napi_value v;
  if (has) napi_create_uint32(env, n, &v);
  else napi_get_null(env, &v);
  return v;
}

/* Whether the len bytes at s are well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), i.e. whether napi_create_string_utf8 keeps every byte instead of
 * writing U+FFFD. NUL is ASCII, so a NUL-separated cmdline is checked in one pass (a sequence
 * cannot span a NUL). Nearly every name is ASCII: eight bytes are tested at a time until the
 * first byte with the high bit set. */
static int utf8_valid_n(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  for (;;) {
    while (end - p >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      if (w & 0x8080808080808080ull) break;
      p += 8;
    }
    if (p == end) return 1;
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    int n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0 || end - p <= n) return 0;
    /* The second byte's range excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
    unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i <= n; i++)
      if ((p[i] & 0xc0) != 0x80) return 0;
    p += n + 1;
  }
}

/* Sets key to a Buffer of the len bytes at s when they are not UTF-8: the string beside it then
 * has U+FFFD where the bytes were, and names no file. Valid names (nearly all) cost one scan. */
static void set_raw_n(napi_env env, napi_value obj, const char *key, const char *s, size_t len) {
  if (!s || utf8_valid_n(s, len)) return;
  napi_value v;
  if (napi_create_buffer_copy(env, len, s, NULL, &v) == napi_ok) set(env, obj, key, v);
}

static void set_raw_if_needed(napi_env env, napi_value obj, const char *key, const char *s) {
  if (s) set_raw_n(env, obj, key, s, strlen(s));
}

static napi_value proc_object(napi_env env, const struct ldg_procinfo *p) {
  napi_value o, v, args;
  napi_create_object(env, &o);
  napi_create_int32(env, p->pid, &v), set(env, o, "pid", v);
  napi_create_int32(env, p->has_ppid ? p->ppid : 0, &v), set(env, o, "ppid", v);
  set(env, o, "exe", str_or_null(env, p->exe));
  set(env, o, "comm", str_or_null(env, p->has_comm ? p->comm : NULL));
  napi_create_array(env, &args);
  uint32_t n = 0;
  for (size_t i = 0; p->args && i < p->args_len;) {
    size_t len = strnlen(p->args + i, p->args_len - i);
    napi_create_string_utf8(env, p->args + i, len, &v);
    napi_set_element(env, args, n++, v);
    i += len + 1;
  }
  set(env, o, "args", args);
  set(env, o, "cwd", str_or_null(env, p->cwd));
  if (p->script) set(env, o, "script", str_or_null(env, p->script));   /* absent, not null: only scripts have one */
  /* The exact bytes of each text field that is not UTF-8 (typed by ProcInfo in
   * agent/src/native.ts): escaping them for alerts is policy, done in TypeScript (byte-path.ts's
   * convention, in enrich/proc.ts) for this source and the inotify one alike. */
  set_raw_if_needed(env, o, "rawExe", p->exe);
  set_raw_if_needed(env, o, "rawComm", p->has_comm ? p->comm : NULL);
  set_raw_n(env, o, "rawArgs", p->args, p->args_len);
  set_raw_if_needed(env, o, "rawCwd", p->cwd);
  /* Unknown ids are reported as (uid_t)-1, the kernel's "no id" (rare: see index.d.ts). */
  uint32_t none = 4294967295u;
  napi_create_uint32(env, p->has_ids ? p->uid : none, &v), set(env, o, "uid", v);
  napi_create_uint32(env, p->has_ids ? p->gid : none, &v), set(env, o, "gid", v);
  napi_create_uint32(env, p->has_ids ? p->euid : none, &v), set(env, o, "euid", v);
  napi_create_uint32(env, p->has_ids ? p->egid : none, &v), set(env, o, "egid", v);
  set(env, o, "loginuid", u32_or_null(env, p->has_loginuid && p->loginuid != 4294967295u, p->loginuid));
  if (p->has_start) napi_create_double(env, (double)p->start_ticks, &v);
  else napi_get_null(env, &v);
  set(env, o, "startTicks", v);
  return o;
}

static napi_value event_object(napi_env env, const struct ldg_event *e, unsigned kind) {
  static const char *const attr[] = {"unknown", "live_proc", "exec_cache"};
  const char *k = kind == LDG_CREATE ? "create" : kind == LDG_MOVED_TO ? "moved_to"
                : kind == LDG_CLOSE_WRITE ? "close_write" : kind == LDG_MODIFY ? "modify"
                : kind == LDG_ATTRIB ? "attrib" : kind == LDG_MOUNT ? "mount" : "overflow";
  napi_value o, v;
  napi_create_object(env, &o);
  set(env, o, "kind", str_or_null(env, k));
  set(env, o, "dir", str_or_null(env, e->dir ? e->dir : ""));
  set(env, o, "name", str_or_null(env, e->name ? e->name : ""));
  set_raw_if_needed(env, o, "rawDir", e->dir);
  set_raw_if_needed(env, o, "rawName", e->name);
  if (kind == LDG_MOVED_TO && e->orig_dir && e->orig_name) {
    set(env, o, "originalDir", str_or_null(env, e->orig_dir));
    set(env, o, "originalName", str_or_null(env, e->orig_name));
    set_raw_if_needed(env, o, "rawOriginalDir", e->orig_dir);
    set_raw_if_needed(env, o, "rawOriginalName", e->orig_name);
  }
  napi_get_boolean(env, e->is_dir, &v), set(env, o, "isDir", v);
  napi_create_int32(env, e->pid, &v), set(env, o, "pid", v);
  napi_create_bigint_int64(env, e->time_ns, &v), set(env, o, "timeNs", v);
  set(env, o, "attribution", str_or_null(env, attr[e->attribution]));
  if (e->reason) set(env, o, "attributionReason", str_or_null(env, e->reason));
  if (e->has_proc) v = proc_object(env, &e->proc);
  else napi_get_null(env, &v);
  set(env, o, "process", v);
  if (e->has_parent) v = proc_object(env, &e->parent);
  else napi_get_null(env, &v);
  set(env, o, "parent", v);
  return o;
}

static void call_js(napi_env env, napi_value cb, void *ctx, void *data) {
  struct addon *a = ctx;
  struct ldg_batch *b = data;
  if (!env || a->closed) {           /* torn down, or closed with batches still queued */
    ldg_batch_free(b);
    return;
  }
  napi_value arr, undefined;
  napi_create_array(env, &arr);
  uint32_t n = 0;
  /* A write's modify before its close-write: the close-write ends what the modify began. */
  static const unsigned order[] = {LDG_OVERFLOW, LDG_MOUNT, LDG_CREATE, LDG_MOVED_TO, LDG_ATTRIB, LDG_MODIFY, LDG_CLOSE_WRITE};
  for (size_t i = 0; i < b->len; i++)
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
      if (b->ev[i].kinds & order[k]) napi_set_element(env, arr, n++, event_object(env, &b->ev[i], order[k]));
  ldg_batch_free(b);
  napi_get_undefined(env, &undefined);
  /* An exception thrown by onEvents propagates as an uncaught exception, as for any callback. */
  napi_call_function(env, undefined, cb, 1, &arr, NULL);
}

/* Reader thread: never blocks; after close() the function is aborted and the batch dropped. */
static void deliver(void *ctx, struct ldg_batch *b) {
  struct addon *a = ctx;
  if (napi_call_threadsafe_function(a->tsfn, b, napi_tsfn_nonblocking) != napi_ok) ldg_batch_free(b);
}

/* ---- lifetime -------------------------------------------------------------------------- */

static void release_owner(struct addon *a) {
  if (--a->owners > 0) return;
  ldg_watcher_free(a->w);
  free(a);
}

static void stop(struct addon *a) {
  if (a->closed) return;
  a->closed = 1;
  ldg_watcher_stop(a->w);
}

static void cleanup_hook(void *arg) {
  struct addon *a = arg;
  stop(a);                           /* the environment releases the threadsafe function */
  if (a->self) napi_delete_reference(a->env, a->self);
  a->self = NULL;
  a->hooked = 0;
  release_owner(a);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  release_owner(data);
}

static void wrap_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct addon *a = data;
  stop(a);
  release_owner(a);
}

static napi_value do_close(napi_env env, struct addon *a) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  if (a->closed) return undefined;
  stop(a);
  napi_release_threadsafe_function(a->tsfn, napi_tsfn_abort);
  if (a->self) napi_delete_reference(env, a->self);
  a->self = NULL;
  if (a->hooked) {
    napi_remove_env_cleanup_hook(env, cleanup_hook, a);
    a->hooked = 0;
    release_owner(a);                /* never the last owner: the JS object is alive */
  }
  return undefined;
}

/* ---- class Watcher --------------------------------------------------------------------- */

static napi_value watcher_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target, v;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (!target) return type_error(env, "Class constructor Watcher cannot be invoked without 'new'"), NULL;
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 2) {
    NAPI_CALL(env, napi_typeof(env, argv[0], &t0));
    NAPI_CALL(env, napi_typeof(env, argv[1], &t1));
  }
  if (t0 != napi_object || t1 != napi_function)
    return type_error(env, "new Watcher(options, onEvents): options must be an object and onEvents a function"), NULL;

  char **dirs = NULL, **prefixes = NULL;
  size_t ndirs = 0, nprefixes = 0;
  bool exec_cache = true, unlimited = false;
  double grace_ms = 30000;
  int r;
  if (get_string_array(env, argv[0], "dirs", &dirs, &ndirs) < 0) return NULL;
  if (get_string_array(env, argv[0], "prefixes", &prefixes, &nprefixes) < 0) goto bad_args;
  if ((r = get_opt(env, argv[0], "execCache", napi_boolean, &v)) < 0) goto bad_args;
  if (r) napi_get_value_bool(env, v, &exec_cache);
  if ((r = get_opt(env, argv[0], "unlimitedQueue", napi_boolean, &v)) < 0) goto bad_args;
  if (r) napi_get_value_bool(env, v, &unlimited);
  bool subtree = true;
  if ((r = get_opt(env, argv[0], "nestedDirs", napi_boolean, &v)) < 0) goto bad_args;
  if (r) napi_get_value_bool(env, v, &subtree);
  if ((r = get_opt(env, argv[0], "graceMs", napi_number, &v)) < 0) goto bad_args;
  if (r) napi_get_value_double(env, v, &grace_ms);
  if (!(grace_ms >= 0 && grace_ms <= 86400000)) {
    type_error(env, "options.graceMs must be between 0 and 86400000");
    goto bad_args;
  }

  struct addon *a = calloc(1, sizeof *a);
  struct ldg_watcher *w = a ? ldg_watcher_new() : NULL;
  struct ldg_err err = {"LDG_ERR_FANOTIFY_UNAVAILABLE", "out of memory"};
  if (!w) {
    free(a);
    goto fail_args;
  }
  a->w = w;
  a->env = env;
  w->exec_cache = exec_cache;
  w->subtree = subtree;
  w->grace_ns = (uint64_t)(grace_ms * 1e6);
  ldg_watcher_set_prefixes(w, prefixes, nprefixes);
  prefixes = NULL;
  if (ldg_fan_init(w, unlimited, &err) < 0) goto fail;
  for (size_t i = 0; i < ndirs; i++)
    if (ldg_fan_add_dir(w, dirs[i], 0, 0, &err) < 0) goto fail;
  free_strings(dirs, ndirs);
  dirs = NULL;

  napi_value name;
  NAPI_CALL(env, napi_create_string_utf8(env, "ldguard.Watcher", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, a, tsfn_finalize, a, call_js, &a->tsfn) !=
      napi_ok) {
    ldg_watcher_free(w);
    free(a);
    return throw_napi(env, "napi_create_threadsafe_function");
  }
  a->owners = 1;                     /* the threadsafe function */
  w->deliver = deliver;
  w->deliver_ctx = a;
  if (ldg_watcher_start(w, &err) < 0) {
    a->closed = 1;
    ldg_watcher_stop(w);
    napi_release_threadsafe_function(a->tsfn, napi_tsfn_abort);   /* its finalizer frees a */
    napi_throw_error(env, err.code, err.msg);
    return NULL;
  }
  if (napi_wrap(env, self, a, wrap_finalize, NULL, NULL) != napi_ok) {
    do_close(env, a);
    return throw_napi(env, "napi_wrap");
  }
  a->owners++;
  napi_create_reference(env, self, 1, &a->self);
  if (napi_add_env_cleanup_hook(env, cleanup_hook, a) == napi_ok) {
    a->hooked = 1;
    a->owners++;
  }
  return self;

fail:
  napi_throw_error(env, err.code, err.msg);
  ldg_watcher_free(w);
  free(a);
  free_strings(dirs, ndirs);
  return NULL;
fail_args:
  napi_throw_error(env, err.code, err.msg);
bad_args:
  free_strings(dirs, ndirs);
  free_strings(prefixes, nprefixes);
  return NULL;
}

static napi_value watcher_add_dir(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], v;
  struct addon *a = this_addon(env, info, &argc, argv);
  if (!a) return NULL;
  if (a->closed) return napi_throw_error(env, "LDG_ERR_WATCHER_CLOSED", "addDir() after close()"), NULL;
  char *dir;
  bool forward_all = false, content = false;
  if (argc < 1 || get_path(env, argv[0], &dir, "dir") < 0) return argc < 1 ? type_error(env, "dir must be a string"), NULL : NULL;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_object && get_opt(env, argv[1], "forwardAll", napi_boolean, &v) == 1)
      napi_get_value_bool(env, v, &forward_all);
    if (t == napi_object && get_opt(env, argv[1], "content", napi_boolean, &v) == 1)
      napi_get_value_bool(env, v, &content);
  }
  struct ldg_err err;
  int rc = ldg_fan_add_dir(a->w, dir, forward_all, content, &err);
  free(dir);
  if (rc < 0) napi_throw_error(env, err.code, err.msg);
  return NULL;
}

static napi_value watcher_remove_dir(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct addon *a = this_addon(env, info, &argc, argv);
  if (!a) return NULL;
  if (a->closed) return NULL;
  char *dir;
  if (argc < 1) return type_error(env, "dir must be a string"), NULL;
  if (get_path(env, argv[0], &dir, "dir") < 0) return NULL;
  struct ldg_err err;
  int rc = ldg_fan_remove_dir(a->w, dir, &err);
  free(dir);
  if (rc < 0) napi_throw_error(env, err.code, err.msg);
  return NULL;
}

static napi_value watcher_watch_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct addon *a = this_addon(env, info, &argc, argv);
  if (!a) return NULL;
  if (a->closed) return napi_throw_error(env, "LDG_ERR_WATCHER_CLOSED", "watchFile() after close()"), NULL;
  char *file;
  bool on = true;
  if (argc < 1) return type_error(env, "file must be a string"), NULL;
  if (get_path(env, argv[0], &file, "file") < 0) return NULL;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &on);
  struct ldg_err err;
  int rc = ldg_int_mark(a->w, file, on, &err);
  free(file);
  if (rc < 0) napi_throw_error(env, err.code, err.msg);
  return NULL;
}

static napi_value watcher_set_prefixes(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], holder;
  struct addon *a = this_addon(env, info, &argc, argv);
  if (!a) return NULL;
  if (argc < 1) return type_error(env, "prefixes must be an array of strings"), NULL;
  char **p;
  size_t n;
  NAPI_CALL(env, napi_create_object(env, &holder));
  NAPI_CALL(env, napi_set_named_property(env, holder, "prefixes", argv[0]));
  if (get_string_array(env, holder, "prefixes", &p, &n) < 0) return NULL;
  if (a->closed) free_strings(p, n);
  else ldg_watcher_set_prefixes(a->w, p, n);
  return NULL;
}

static napi_value watcher_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct addon *a = this_addon(env, info, &argc, NULL);
  if (!a) return NULL;
  struct ldg_watcher *w = a->w;
  napi_value o, v;
  NAPI_CALL(env, napi_create_object(env, &o));
#define NUM(key, field) (napi_create_double(env, (double)LDG_STAT_GET(w, field), &v), set(env, o, key, v))
  NUM("read", read);
  NUM("forwarded", forwarded);
  NUM("overflows", overflows);
  NUM("execEvents", exec_events);
  NUM("cacheEntries", cache_entries);
  NUM("procConnectorLost", lost);
  NUM("execMarks", exec_marks);
  NUM("attributedLive", attr_live);
  NUM("attributedCache", attr_cache);
  NUM("attributedUnknown", attr_unknown);
  NUM("wakeups", wakeups);
  NUM("fileMarks", cw_marks);
  NUM("writesInferred", cw_inferred);
  NUM("closeWritesAwaited", cw_waiting);
  NUM("creationMarks", sub_fs_marks);
  NUM("nestedDirs", sub_dirs);
  pthread_mutex_lock(&w->lock);
  napi_create_double(env, (double)w->ndirs, &v), set(env, o, "dirs", v);
  pthread_mutex_unlock(&w->lock);
#undef NUM
  set(env, o, "netlink", str_or_null(env, w->netlink_ok ? "ok" : "unavailable"));
  set(env, o, "netlinkError", str_or_null(env, w->netlink_error ? w->netlink_error : ""));
  set(env, o, "mounts", str_or_null(env, w->mnt_how));
  napi_get_boolean(env, w->pidfd, &v), set(env, o, "pidfd", v);
  napi_get_boolean(env, a->closed, &v), set(env, o, "closed", v);
  return o;
}

static napi_value watcher_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct addon *a = this_addon(env, info, &argc, NULL);
  return a ? do_close(env, a) : NULL;
}

static napi_value watcher_ref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct addon *a = this_addon(env, info, &argc, NULL);
  if (a && !a->closed) NAPI_CALL(env, napi_ref_threadsafe_function(env, a->tsfn));
  return NULL;
}

static napi_value watcher_unref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct addon *a = this_addon(env, info, &argc, NULL);
  if (a && !a->closed) NAPI_CALL(env, napi_unref_threadsafe_function(env, a->tsfn));
  return NULL;
}

/* sdNotify(socket, state): sd_notify(3) without libsystemd (Node has no AF_UNIX datagrams).
 * A socket starting with '@' is in the abstract namespace. */
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return type_error(env, "sdNotify(socket, state): two strings expected"), NULL;
  char *path = NULL, *state = NULL;
  if (get_string(env, argv[0], &path, "socket") < 0) return NULL;
  if (get_string(env, argv[1], &state, "state") < 0) return free(path), NULL;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  struct ldg_err err = {NULL, ""};
  if (len == 0 || len >= sizeof sa.sun_path) {
    ldg_err_set(&err, "LDG_ERR_SD_NOTIFY", ENAMETOOLONG, "NOTIFY_SOCKET %s is not a usable socket path", path);
  } else {
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') sa.sun_path[0] = 0;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) ldg_err_set(&err, "LDG_ERR_SD_NOTIFY", errno, "socket(2) AF_UNIX failed");
    else if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
      ldg_err_set(&err, "LDG_ERR_SD_NOTIFY", errno, "sendto(2) to %s failed", path);
    if (fd >= 0) close(fd);
  }
  free(path);
  free(state);
  if (err.code) napi_throw_error(env, err.code, err.msg);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"addDir", NULL, watcher_add_dir, NULL, NULL, NULL, napi_default_method, NULL},
      {"removeDir", NULL, watcher_remove_dir, NULL, NULL, NULL, napi_default_method, NULL},
      {"watchFile", NULL, watcher_watch_file, NULL, NULL, NULL, napi_default_method, NULL},
      {"setPrefixes", NULL, watcher_set_prefixes, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, watcher_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, watcher_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, watcher_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, watcher_unref, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  NAPI_CALL(env, napi_define_class(env, "Watcher", NAPI_AUTO_LENGTH, watcher_new, NULL,
                                   sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "Watcher", cls));
  napi_value fn;
  NAPI_CALL(env, napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, sd_notify, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "sdNotify", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

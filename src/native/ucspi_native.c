/* ucspi_native: the few system calls the spawn path needs that Node does not offer.
 *
 * - listen + an accept loop on a uv_poll, so tcpserver can stop accepting at its -c limit and
 *   leave connections in the kernel backlog (djb behaviour), and hand raw fds to JavaScript
 *   without building a net.Socket for connections that go straight to a spawned program;
 * - posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)), whose cost does not grow with the
 *   parent's memory as libuv's fork-like spawn does (DESIGN.md section 3), with exact control
 *   of the child's fds, signal mask and dispositions;
 * - a pidfd on a uv_poll to learn of each child's exit with its raw wait status, without
 *   disturbing libuv's own SIGCHLD handling (libuv only waits for its own pids).
 *
 * Written against Node-API only, so one build serves every Node version.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"
#include "glibc-signals.h"

napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_value msg, code, error, errnum, sc;
  const char *name = NULL;
  switch (err) {
#define E(x)                                                                                       \
  case x:                                                                                          \
    name = #x;                                                                                     \
    break;
    E(ENOENT) E(EACCES) E(EPERM) E(EADDRINUSE) E(EADDRNOTAVAIL) E(EAFNOSUPPORT) E(EINVAL)
    E(EMFILE) E(ENFILE) E(ENOMEM) E(ENOEXEC) E(ENOTDIR) E(ELOOP) E(ENAMETOOLONG) E(E2BIG)
    E(ETXTBSY) E(EBADF) E(ENOSYS) E(EAGAIN) E(EISDIR) E(ENOBUFS) E(EPIPE) E(ECANCELED)
    E(ECONNREFUSED) E(ETIMEDOUT) E(ENETUNREACH) E(EHOSTUNREACH) E(ENOPROTOOPT) E(ECONNRESET)
    E(ECONNABORTED) E(ENOTCONN) E(ENOTSOCK)
#undef E
  default:
    name = "EUNKNOWN";
  }
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
  return NULL;
}

int get_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

int get_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  bool is = false;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return -1;
  return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

int number_arg(napi_env env, napi_value v, int32_t *out) {
  if (get_int(env, v, out) == 0) return 0;
  napi_throw_type_error(env, NULL, "a number was expected");
  return -1;
}

int int_args(napi_env env, napi_callback_info info, size_t n, int32_t *out) {
  size_t argc = n;
  napi_value args[4];
  if (n > 4 || napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok) return -1;
  for (size_t i = 0; i < n; i++)
    if (number_arg(env, args[i], &out[i])) return -1;
  return 0;
}

char *get_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

/* A byte string (one JavaScript character per byte, as latin1 codes it): environment entries. */
char *get_bytes(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_latin1(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_latin1(env, v, s, len + 1, &len);
  return s;
}

/* A word of argv or a file name as the bytes it stands for: UTF-8, but a lone surrogate
 * U+DC80..U+DCFF is the byte it escapes (src/ucspi/os-string.ts); any other lone surrogate is
 * U+FFFD, as Node writes it. */
char *get_os_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf16(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char16_t *u = malloc((len + 1) * sizeof(char16_t));
  char *s = malloc(len * 3 + 1); /* at most 3 bytes per unit (4 for a pair of 2) */
  if (!u || !s) {
    free(u);
    free(s);
    return NULL;
  }
  napi_get_value_string_utf16(env, v, u, len + 1, &len);
  char *o = s;
  for (size_t i = 0; i < len; i++) {
    uint32_t c = u[i];
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < len && u[i + 1] >= 0xdc00 && u[i + 1] <= 0xdfff)
      c = 0x10000 + ((c - 0xd800) << 10) + (u[++i] - 0xdc00);
    else if (c >= 0xdc80 && c <= 0xdcff) {
      *o++ = (char)(c - 0xdc00);
      continue;
    } else if (c >= 0xd800 && c <= 0xdfff)
      c = 0xfffd;
    if (c < 0x80) *o++ = (char)c;
    else if (c < 0x800) {
      *o++ = (char)(0xc0 | c >> 6);
      *o++ = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      *o++ = (char)(0xe0 | c >> 12);
      *o++ = (char)(0x80 | (c >> 6 & 0x3f));
      *o++ = (char)(0x80 | (c & 0x3f));
    } else {
      *o++ = (char)(0xf0 | c >> 18);
      *o++ = (char)(0x80 | (c >> 12 & 0x3f));
      *o++ = (char)(0x80 | (c >> 6 & 0x3f));
      *o++ = (char)(0x80 | (c & 0x3f));
    }
  }
  *o = '\0';
  free(u);
  return s;
}

/* A NULL-terminated char* array from a JS array of strings. */
char **get_string_array(napi_env env, napi_value arr, char *(*get)(napi_env, napi_value)) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok) return NULL;
  char **out = calloc(n + 1, sizeof(char *));
  if (!out) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    napi_get_element(env, arr, i, &el);
    out[i] = get(env, el);
    if (!out[i]) {
      for (uint32_t j = 0; j < i; j++) free(out[j]);
      free(out);
      return NULL;
    }
  }
  return out;
}

/* The error throw_errno would throw, as a value (for a callback). */
napi_value errno_value(napi_env env, int err, const char *syscall) {
  napi_value error;
  throw_errno(env, err, syscall);
  napi_get_and_clear_last_exception(env, &error);
  return error;
}

void free_string_array(char **a) {
  if (!a) return;
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

/* ---------------------------------------------------------------- callbacks into JavaScript */

void js_callback_init(js_callback_t *cb, napi_env env, napi_value fn, const char *name) {
  napi_value resource_name;
  cb->env = env;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &cb->context);
  napi_create_reference(env, fn, 1, &cb->fn);
}

/* Calls it from a libuv callback; argv must have been made inside the caller's handle scope.
 * napi_make_callback wants an object as receiver: undefined fails with object_expected. A
 * throw is Node's uncaught exception, as an event handler's: left pending in Node-API, it made
 * every later call of ours into JavaScript fail, and the process went deaf (no accept, no exit
 * of a child told) while it ran on. */
void js_callback_call(js_callback_t *cb, size_t argc, napi_value *argv) {
  napi_value fn, recv, result;
  napi_get_reference_value(cb->env, cb->fn, &fn);
  napi_get_global(cb->env, &recv);
  napi_make_callback(cb->env, cb->context, recv, fn, argc, argv, &result);
  js_uncaught_if_thrown(cb->env);
}

/* What a call into JavaScript threw, made Node's uncaught exception (see js_callback_call). */
void js_uncaught_if_thrown(napi_env env) {
  bool pending = false;
  napi_value error;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &error) == napi_ok)
    napi_fatal_exception(env, error);
}

/* Calls it with numbers, in a handle scope of its own. */
void js_callback_call_ints(js_callback_t *cb, size_t argc, const int32_t *values) {
  napi_handle_scope scope;
  napi_open_handle_scope(cb->env, &scope);
  napi_value argv[4];
  for (size_t i = 0; i < argc && i < 4; i++) napi_create_int32(cb->env, values[i], &argv[i]);
  js_callback_call(cb, argc < 4 ? argc : 4, argv);
  napi_close_handle_scope(cb->env, scope);
}

void js_callback_free(js_callback_t *cb) {
  napi_delete_reference(cb->env, cb->fn);
  napi_async_destroy(cb->env, cb->context);
}

/* ---------------------------------------------------------------- children */

typedef struct {
  uv_poll_t poll;
  js_callback_t on_exit;
  pid_t pid;
  int pidfd;
} child_t;

static void child_closed(uv_handle_t *h) { free(h->data); }

static void child_ready(uv_poll_t *poll, int status, int events) {
  child_t *c = poll->data;
  int32_t wstatus = 0;
  pid_t r;
  (void)status;
  (void)events;
  do r = waitpid(c->pid, &wstatus, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return; /* not yet: a spurious wake-up */
  if (r < 0) wstatus = 111 << 8;
  uv_poll_stop(&c->poll);
  close(c->pidfd);
  js_callback_call_ints(&c->on_exit, 1, &wstatus);
  js_callback_free(&c->on_exit);
  uv_close((uv_handle_t *)&c->poll, child_closed);
}

/* What one posix_spawn call needs, made from the JavaScript arguments on the loop thread. */
typedef struct {
  char *file;
  char **argv;
  char **envp;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
} spawn_args_t;

static void spawn_args_free(spawn_args_t *s) {
  posix_spawn_file_actions_destroy(&s->fa);
  posix_spawnattr_destroy(&s->attr);
  free(s->file);
  free_string_array(s->argv);
  free_string_array(s->envp);
}

/* Reads (file, argv, envp, fdPairs, closeFrom) from args; 0, or an errno (nothing to free). */
static int spawn_args_init(napi_env env, napi_value *args, spawn_args_t *s) {
  s->file = get_os_string(env, args[0]);
  s->argv = get_string_array(env, args[1], get_os_string);
  s->envp = get_string_array(env, args[2], get_bytes);
  uint32_t npairs = 0;
  napi_get_array_length(env, args[3], &npairs);
  int32_t close_from = -1;
  get_int(env, args[4], &close_from);
  if (!s->file || !s->argv || !s->envp) {
    free(s->file);
    free_string_array(s->argv);
    free_string_array(s->envp);
    return ENOMEM;
  }

  posix_spawn_file_actions_t *fa = &s->fa;
  posix_spawnattr_t *attr = &s->attr;
  posix_spawn_file_actions_init(fa);
  posix_spawnattr_init(attr);
  int highest_target = -1;
  int targets[64];
  int ntargets = 0;
  int32_t last_from = -1;
  for (uint32_t i = 0; i + 1 < npairs && ntargets < 64; i += 2) {
    napi_value a, b;
    int32_t from, to;
    napi_get_element(env, args[3], i, &a);
    napi_get_element(env, args[3], i + 1, &b);
    get_int(env, a, &from);
    get_int(env, b, &to);
    /* A socket on both 0 and 1 is one open file: made blocking once. */
    if (from != last_from) make_blocking(from);
    last_from = from;
    posix_spawn_file_actions_adddup2(fa, from, to);
    targets[ntargets++] = to;
    if (to > highest_target) highest_target = to;
  }
  inherit_stdio(fa, targets, ntargets);
  if (close_from >= 0) {
    for (int fd = close_from; fd <= highest_target; fd++) {
      int kept = 0;
      for (int k = 0; k < ntargets; k++) kept |= targets[k] == fd;
      if (!kept) posix_spawn_file_actions_addclose(fa, fd);
    }
    int from = highest_target + 1 > close_from ? highest_target + 1 : close_from;
    posix_spawn_file_actions_addclosefrom_np(fa, from);
  }
  reset_signals(attr);
  return 0;
}

void inherit_stdio(posix_spawn_file_actions_t *fa, const int *targets, int ntargets) {
  /* Node marks fds 0-2 close-on-exec; a dup2 onto itself clears the flag in the child, so the
   * program inherits them as UCSPI says (and as execve without Node would). */
  for (int fd = 0; fd <= 2; fd++) {
    int kept = 0;
    for (int k = 0; k < ntargets; k++) kept |= targets[k] == fd;
    if (!kept && fcntl(fd, F_GETFD) >= 0) posix_spawn_file_actions_adddup2(fa, fd, fd);
  }
}

void reset_signals(posix_spawnattr_t *attr) {
  /* The child starts with an empty signal mask and every signal at its default action. Caught
   * signals are reset by execve itself; only ignored ones (Node ignores SIGPIPE) would survive
   * it, so only those are reset, which spares the child a sigaction call per signal. */
  sigset_t none, ignored;
  sigemptyset(&none);
  sigemptyset(&ignored);
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
      sigaddset(&ignored, sig);
  }
  add_glibc_signals(&ignored);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &ignored);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

void make_blocking(int fd) {
  /* UCSPI programs expect blocking fds; Node made this one non-blocking. The flag lives in
   * the open file description, which the child shares, so it is cleared here. */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Starts the exit watch of a child just spawned: 0, or an errno (the child is then killed and
 * reaped). Takes on_exit over either way (freed on failure). */
static int watch_child(napi_env env, pid_t pid, js_callback_t *on_exit) {
  child_t *c = calloc(1, sizeof(child_t));
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  uv_loop_t *loop;
  if (!c || pidfd < 0 || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    /* Cannot watch it: reap it in a blocking wait rather than leave a zombie behind. */
    int e = pidfd < 0 ? errno : ENOMEM;
    if (pidfd >= 0) close(pidfd);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    free(c);
    js_callback_free(on_exit);
    return e;
  }
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  c->pid = pid;
  c->pidfd = pidfd;
  c->on_exit = *on_exit;
  uv_poll_init(loop, &c->poll, pidfd);
  c->poll.data = c;
  uv_poll_start(&c->poll, UV_READABLE, child_ready);
  return 0;
}

/* spawn(file, argv, envp, fdPairs, closeFrom, onExit) -> pid
 * fdPairs is a flat list [from, to, from, to, ...] applied with dup2 in order; when closeFrom
 * is >= 0 every fd from there up that no pair targets is closed in the child. */
static napi_value spawn(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "spawn: six arguments expected");
    return NULL;
  }
  spawn_args_t s;
  int err = spawn_args_init(env, args, &s);
  if (err) return throw_errno(env, err, "spawn");
  pid_t pid;
  err = posix_spawn(&pid, s.file, &s.fa, &s.attr, s.argv, s.envp);
  spawn_args_free(&s);
  if (err) return throw_errno(env, err, "posix_spawn");

  js_callback_t on_exit;
  js_callback_init(&on_exit, env, args[5], "ucspi.child");
  err = watch_child(env, pid, &on_exit);
  if (err) return throw_errno(env, err, "pidfd_open");

  napi_value result;
  napi_create_int32(env, pid, &result);
  return result;
}

/* spawnAsync(file, argv, envp, fdPairs, closeFrom, onSpawned, onExit): as spawn, but
 * posix_spawn runs in libuv's threadpool. With many fds open, the vfork-like clone copies the
 * whole fd table and the child closes it all before exec, all while the calling thread is
 * suspended: measured 0.67 -> 0.98 ms per spawn with 8,000 fds open, time the event loop would
 * otherwise spend on other connections. onSpawned(error, pid) is called on the loop thread once
 * posix_spawn returned; the caller must keep the fds of fdPairs open until then. */
typedef struct {
  uv_work_t work;
  napi_env env;
  spawn_args_t s;
  js_callback_t on_spawned;
  js_callback_t on_exit;
  pid_t pid;
  int err;
} spawn_req_t;

static void spawn_work(uv_work_t *work) {
  spawn_req_t *r = work->data;
  r->err = posix_spawn(&r->pid, r->s.file, &r->s.fa, &r->s.attr, r->s.argv, r->s.envp);
}

static void spawn_after(uv_work_t *work, int status) {
  spawn_req_t *r = work->data;
  napi_env env = r->env;
  spawn_args_free(&r->s);
  const char *syscall_name = "posix_spawn";
  int err = r->err;
  if (status == UV_ECANCELED && !err) err = ECANCELED;
  if (!err) {
    err = watch_child(env, r->pid, &r->on_exit);
    if (err) syscall_name = "pidfd_open";
  } else {
    js_callback_free(&r->on_exit);
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[2];
  if (err) {
    argv[0] = errno_value(env, err, syscall_name);
    napi_get_undefined(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, r->pid, &argv[1]);
  }
  js_callback_call(&r->on_spawned, 2, argv);
  js_callback_free(&r->on_spawned);
  napi_close_handle_scope(env, scope);
  free(r);
}

static napi_value spawn_async(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "spawnAsync: seven arguments expected");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  spawn_req_t *r = calloc(1, sizeof(spawn_req_t));
  if (!r) return throw_errno(env, ENOMEM, "spawn");
  int err = spawn_args_init(env, args, &r->s);
  if (err) {
    free(r);
    return throw_errno(env, err, "spawn");
  }
  r->env = env;
  r->work.data = r;
  js_callback_init(&r->on_spawned, env, args[5], "ucspi.spawn");
  js_callback_init(&r->on_exit, env, args[6], "ucspi.child");
  err = uv_queue_work(loop, &r->work, spawn_work, spawn_after);
  if (err) {
    spawn_args_free(&r->s);
    js_callback_free(&r->on_spawned);
    js_callback_free(&r->on_exit);
    free(r);
    return throw_errno(env, -err, "uv_queue_work");
  }
  return NULL;
}

/* ---------------------------------------------------------------- sockets */

static int format_address(const struct sockaddr_storage *sa, char *ip, size_t iplen, int *port) {
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s->sin_addr, ip, iplen);
    *port = ntohs(s->sin_port);
    return 4;
  }
  const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
  inet_ntop(AF_INET6, &s->sin6_addr, ip, iplen);
  *port = ntohs(s->sin6_port);
  return 6;
}

/* An IPv6 zone (`eth0`, or an interface's number) → its scope id; 0 when there is none such. */
static uint32_t zone_scope(const char *zone) {
  char *end;
  unsigned long n = strtoul(zone, &end, 10);
  if (*zone && !*end) return n <= UINT32_MAX ? (uint32_t)n : 0;
  return if_nametoindex(zone);
}

/* An address literal (IPv6 may have a `%zone`: a link-local address means nothing without its
 * interface) and a port → a sockaddr; the family (AF_INET, AF_INET6), or 0 when the text is no
 * address, or its zone no interface here. */
static int parse_address(const char *text, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (text && inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    return AF_INET;
  }
  const char *zone = text ? strchr(text, '%') : NULL;
  char ip[INET6_ADDRSTRLEN];
  if (zone && (size_t)(zone - text) >= sizeof ip) return 0;
  if (zone) {
    memcpy(ip, text, (size_t)(zone - text));
    ip[zone - text] = 0;
    s6->sin6_scope_id = zone_scope(zone + 1);
    if (!s6->sin6_scope_id) return 0;
  }
  if (text && inet_pton(AF_INET6, zone ? ip : text, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    return AF_INET6;
  }
  return 0;
}

/* The interface of a scoped (link-local) IPv6 address, in `name` (IF_NAMESIZE at least): its
 * name, else its number; "" for an address with no scope. */
static void scope_name(const struct sockaddr_storage *sa, char *name) {
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
  name[0] = 0;
  if (sa->ss_family != AF_INET6 || !s6->sin6_scope_id) return;
  if (!if_indextoname(s6->sin6_scope_id, name))
    snprintf(name, IF_NAMESIZE, "%u", (unsigned)s6->sin6_scope_id);
}

/* IP_TRANSPARENT (or IPV6_TRANSPARENT): a listener accepts connections TPROXY diverted to it,
 * whatever address they were for; an outgoing socket may bind to an address not of this host.
 * Needs CAP_NET_ADMIN or CAP_NET_RAW. */
static int set_transparent(int fd, int family) {
  int one = 1;
  return family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one)
                            : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
}

/* A socket call on fd failed: fd is closed, the error thrown (errno kept across close). */
static napi_value close_and_throw(napi_env env, int fd, const char *syscall) {
  int e = errno;
  close(fd);
  return throw_errno(env, e, syscall);
}

/* listen(address, port, backlog, reusePort, transparent) -> fd. The address is a literal; an
 * IPv6 wildcard listens for IPv4 too (dual stack), as Debian's ucspi-tcp-ipv6 does. */
static napi_value listen_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  char *address = get_string(env, args[0]);
  int32_t port = 0, backlog = 20;
  bool reuse_port = false, transparent = false;
  get_int(env, args[1], &port);
  get_int(env, args[2], &backlog);
  napi_get_value_bool(env, args[3], &reuse_port);
  if (argc >= 5) napi_get_value_bool(env, args[4], &transparent);
  struct sockaddr_storage ss;
  socklen_t sslen;
  int family = parse_address(address, port, &ss, &sslen);
  free(address);
  if (!family) return throw_errno(env, EINVAL, "inet_pton");
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (transparent && set_transparent(fd, family) < 0)
    return close_and_throw(env, fd, "setsockopt IP_TRANSPARENT");
  if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) return close_and_throw(env, fd, "bind");
  if (listen(fd, backlog) < 0) return close_and_throw(env, fd, "listen");
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/* localAddress(fd) -> [ip, port, family] */
static napi_value local_address(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return throw_errno(env, errno, "getsockname");
  char ip[INET6_ADDRSTRLEN];
  int port;
  int fam = format_address(&ss, ip, sizeof ip, &port);
  napi_value arr, v;
  napi_create_array_with_length(env, 3, &arr);
  napi_create_string_utf8(env, ip, NAPI_AUTO_LENGTH, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_int32(env, port, &v);
  napi_set_element(env, arr, 1, v);
  napi_create_int32(env, fam, &v);
  napi_set_element(env, arr, 2, v);
  return arr;
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  js_callback_t on_connection;
  int fd;
  int flags; /* 1: TCP_NODELAY, 2: drop IP options, 4: NAT's original destination */
  int paused;
  int closed;
} acceptor_t;

static void acceptor_closed(uv_handle_t *h) {
  acceptor_t *a = h->data;
  js_callback_free(&a->on_connection);
  free(a);
}

/* A connection REDIRECT (NAT) sent here was for the address conntrack kept: SO_ORIGINAL_DST
 * (IP6T_SO_ORIGINAL_DST for IPv6, the same number at SOL_IPV6). Without NAT (TPROXY, or a
 * direct connection) getsockname's address stays: conntrack then has no entry, or the same.
 * An IPv4 client of a dual-stack listener (::ffff:a.b.c.d) went through IPv4's NAT: its entry
 * is asked for at SOL_IP, and its IPv4 answer put back in the mapped form. */
static void original_destination(int fd, struct sockaddr_storage *local) {
  struct sockaddr_storage dst;
  socklen_t len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  struct sockaddr_in6 *local6 = (struct sockaddr_in6 *)local;
  int mapped = local->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&local6->sin6_addr);
  int level = local->ss_family == AF_INET6 && !mapped ? SOL_IPV6 : SOL_IP;
  if (getsockopt(fd, level, 80 /* SO_ORIGINAL_DST */, &dst, &len) != 0) return;
  if (mapped && dst.ss_family == AF_INET) {
    const struct sockaddr_in *dst4 = (const struct sockaddr_in *)&dst;
    memcpy(&local6->sin6_addr.s6_addr[12], &dst4->sin_addr, 4);
    local6->sin6_port = dst4->sin_port;
  } else if (dst.ss_family == local->ss_family) {
    *local = dst;
  }
}

static void acceptor_ready(uv_poll_t *poll, int status, int events) {
  acceptor_t *a = poll->data;
  (void)status;
  (void)events;
  /* A bounded batch per wake-up keeps one busy listener from starving the rest of the loop. */
  for (int i = 0; i < 64 && !a->paused && !a->closed; i++) {
    struct sockaddr_storage remote, local;
    socklen_t rlen = sizeof remote, llen = sizeof local;
    int fd = accept4(a->fd, (struct sockaddr *)&remote, &rlen, SOCK_CLOEXEC);
    napi_handle_scope scope;
    napi_open_handle_scope(a->env, &scope);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) {
        napi_close_handle_scope(a->env, scope);
        if (e == EAGAIN || e == EWOULDBLOCK) break;
        continue;
      }
      /* EMFILE and friends: tell JavaScript, which pauses and retries later. */
      napi_value argv[1];
      napi_create_int32(a->env, -e, &argv[0]);
      js_callback_call(&a->on_connection, 1, argv);
      napi_close_handle_scope(a->env, scope);
      break;
    }
    getsockname(fd, (struct sockaddr *)&local, &llen);
    if (a->flags & 4) original_destination(fd, &local);
    if (a->flags & 1) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if ((a->flags & 2) && local.ss_family == AF_INET) setsockopt(fd, IPPROTO_IP, IP_OPTIONS, NULL, 0);
    char lip[INET6_ADDRSTRLEN], rip[INET6_ADDRSTRLEN];
    int lport, rport;
    format_address(&local, lip, sizeof lip, &lport);
    format_address(&remote, rip, sizeof rip, &rport);
    /* A link-local peer: the interface is part of its address (TCP6INTERFACE). */
    char ifname[IF_NAMESIZE];
    scope_name(&remote, ifname);
    if (!ifname[0]) scope_name(&local, ifname);
    napi_value argv[6];
    napi_create_int32(a->env, fd, &argv[0]);
    napi_create_string_utf8(a->env, lip, NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_int32(a->env, lport, &argv[2]);
    napi_create_string_utf8(a->env, rip, NAPI_AUTO_LENGTH, &argv[3]);
    napi_create_int32(a->env, rport, &argv[4]);
    napi_create_string_utf8(a->env, ifname, NAPI_AUTO_LENGTH, &argv[5]);
    js_callback_call(&a->on_connection, 6, argv);
    napi_close_handle_scope(a->env, scope);
  }
}

static acceptor_t *unwrap_acceptor(napi_env env, napi_callback_info info) {
  napi_value self;
  void *data;
  if (napi_get_cb_info(env, info, NULL, NULL, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &data) != napi_ok) return NULL;
  return data;
}

static napi_value acceptor_pause(napi_env env, napi_callback_info info) {
  acceptor_t *a = unwrap_acceptor(env, info);
  if (a && !a->closed && !a->paused) {
    a->paused = 1;
    uv_poll_stop(&a->poll);
  }
  return NULL;
}

static napi_value acceptor_resume(napi_env env, napi_callback_info info) {
  acceptor_t *a = unwrap_acceptor(env, info);
  if (a && !a->closed && a->paused) {
    a->paused = 0;
    uv_poll_start(&a->poll, UV_READABLE, acceptor_ready);
  }
  return NULL;
}

static napi_value acceptor_close(napi_env env, napi_callback_info info) {
  napi_value self;
  void *data;
  if (napi_get_cb_info(env, info, NULL, NULL, &self, NULL) != napi_ok) return NULL;
  if (napi_remove_wrap(env, self, &data) != napi_ok || !data) return NULL;
  acceptor_t *a = data;
  a->closed = 1;
  uv_poll_stop(&a->poll);
  close(a->fd);
  uv_close((uv_handle_t *)&a->poll, acceptor_closed);
  return NULL;
}

/* accept(listenFd, flags, onConnection) -> { pause(), resume(), close() }
 * onConnection(fd, localIp, localPort, remoteIp, remotePort), or onConnection(-errno). */
static napi_value accept_loop(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t fd, flags;
  if (number_arg(env, args[0], &fd) || number_arg(env, args[1], &flags)) return NULL;
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return throw_errno(env, errno, "fcntl");
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  acceptor_t *a = calloc(1, sizeof(acceptor_t));
  if (!a) return throw_errno(env, ENOMEM, "accept");
  a->env = env;
  a->fd = fd;
  a->flags = flags;
  napi_value obj, fn;
  napi_create_object(env, &obj);
  napi_create_function(env, "pause", NAPI_AUTO_LENGTH, acceptor_pause, NULL, &fn);
  napi_set_named_property(env, obj, "pause", fn);
  napi_create_function(env, "resume", NAPI_AUTO_LENGTH, acceptor_resume, NULL, &fn);
  napi_set_named_property(env, obj, "resume", fn);
  napi_create_function(env, "close", NAPI_AUTO_LENGTH, acceptor_close, NULL, &fn);
  napi_set_named_property(env, obj, "close", fn);
  napi_wrap(env, obj, a, NULL, NULL, NULL);
  js_callback_init(&a->on_connection, env, args[2], "ucspi.accept");
  uv_poll_init(loop, &a->poll, fd);
  a->poll.data = a;
  uv_poll_start(&a->poll, UV_READABLE, acceptor_ready);
  return obj;
}

/* ---------------------------------------------------------------- plain fd calls */

static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  close(fd);
  return NULL;
}

/* trimMemory(): give the C heap's free pages back to the kernel (glibc keeps what OpenSSL and
 * the runtime freed after a burst of connections; malloc_trim releases it in every arena). */
static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  malloc_trim(0);
  return NULL;
}

/* unblockSigusr1(): SIGUSR1 reaches this process again. Node started with --disable-sigusr1
 * (the launcher's flag: no inspector) leaves it blocked in the main thread as it was while its
 * own threads started, so it would wait there forever; unblocked, it has its default action
 * (death), or the handler a program installs. */
static napi_value unblock_sigusr1(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  return NULL;
}

/* devNull(fd): reopen fd on /dev/null, so that a closed stdio fd is never reused by a socket. */
static napi_value dev_null(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  int n = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (n < 0) return throw_errno(env, errno, "open");
  if (n != fd) {
    if (dup2(n, fd) < 0) {
      int e = errno;
      close(n);
      return throw_errno(env, e, "dup2");
    }
    close(n);
  }
  return NULL;
}

/* shutdownWrite(fd): half-close a socket. */
static napi_value shutdown_write(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  shutdown(fd, SHUT_WR);
  return NULL;
}

/* kill(pid, signo): for a child of ours whose exit has not been reported yet (it is not
 * reaped before that, so the pid cannot have been reused). */
static napi_value kill_child(napi_env env, napi_callback_info info) {
  int32_t v[2];
  if (int_args(env, info, 2, v)) return NULL;
  int32_t pid = v[0], signo = v[1];
  if (pid <= 0) return throw_errno(env, EINVAL, "kill");
  if (spawner_kill(pid, signo)) return NULL;
  if (kill(pid, signo) < 0 && errno != ESRCH) return throw_errno(env, errno, "kill");
  return NULL;
}

/* rcvLowat(fd, bytes): the socket reads as readable (poll) only once `bytes` are buffered, or at
 * EOF. tls-sniff waits for the rest of a ClientHello this way while every byte stays in the
 * socket (peeked, not read): without it, the bytes already there would wake it at once, again
 * and again. */
static napi_value rcv_lowat(napi_env env, napi_callback_info info) {
  int32_t v[2];
  if (int_args(env, info, 2, v)) return NULL;
  int32_t fd = v[0], bytes = v[1];
  if (bytes < 1) return throw_errno(env, EINVAL, "setsockopt");
  if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes) < 0)
    return throw_errno(env, errno, "setsockopt");
  return NULL;
}

/* recvPeek(fd, max, consume) -> Buffer | undefined (nothing there yet) | null (EOF).
 * Reads without blocking; with consume false the bytes stay in the socket (MSG_PEEK), so a
 * PROXY header can be parsed and then removed without touching the application's bytes. */
static napi_value recv_peek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t fd, max;
  bool consume = false;
  if (number_arg(env, args[0], &fd) || number_arg(env, args[1], &max)) return NULL;
  napi_get_value_bool(env, args[2], &consume);
  if (max <= 0 || max > 1 << 20) return throw_errno(env, EINVAL, "recv");
  void *data;
  napi_value buffer, result;
  char *tmp = malloc((size_t)max);
  if (!tmp) return throw_errno(env, ENOMEM, "recv");
  ssize_t n;
  do n = recv(fd, tmp, (size_t)max, MSG_DONTWAIT | (consume ? 0 : MSG_PEEK));
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    free(tmp);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_get_undefined(env, &result);
      return result;
    }
    return throw_errno(env, e, "recv");
  }
  if (n == 0) {
    free(tmp);
    napi_get_null(env, &result);
    return result;
  }
  napi_create_buffer_copy(env, (size_t)n, tmp, &data, &buffer);
  free(tmp);
  return buffer;
}

/* connectTcp(ip, port, sourceIp, transparent, mark, sourcePort) -> fd: a non-blocking TCP socket (no
 * delay, close-on-exec) whose connect has begun; whenConnected tells how it ended. sourceIp ""
 * lets the kernel choose; with transparent it may be an address of another host (the client's:
 * full transparency), its port picked at connect (IP_BIND_ADDRESS_NO_PORT), so that many
 * connections share it. mark > 0 is SO_MARK, which policy routing and nftables match.
 * sourcePort > 0 binds that port instead (SO_REUSEADDR: one in TIME_WAIT will do; EADDRINUSE
 * is thrown for one in use, for the caller to try another). */
static napi_value connect_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  char *address = get_string(env, args[0]);
  char *source = get_string(env, args[2]);
  int32_t port = 0, mark = 0;
  bool transparent = false;
  get_int(env, args[1], &port);
  napi_get_value_bool(env, args[3], &transparent);
  get_int(env, args[4], &mark);
  int32_t source_port = 0;
  if (argc >= 6) get_int(env, args[5], &source_port);
  struct sockaddr_storage to, from;
  socklen_t tolen, fromlen = 0;
  int family = parse_address(address, port, &to, &tolen);
  int source_family =
      source && *source ? parse_address(source, source_port, &from, &fromlen) : family;
  free(address);
  free(source);
  if (!family || source_family != family) return throw_errno(env, EINVAL, "inet_pton");
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (mark > 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
    return close_and_throw(env, fd, "setsockopt SO_MARK");
  if (transparent && set_transparent(fd, family) < 0)
    return close_and_throw(env, fd, "setsockopt IP_TRANSPARENT");
  if (fromlen > 0) {
    if (source_port > 0)
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    else
      setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&from, fromlen) < 0) return close_and_throw(env, fd, "bind");
  }
  if (connect(fd, (struct sockaddr *)&to, tolen) < 0 && errno != EINPROGRESS)
    return close_and_throw(env, fd, "connect");
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}


/* connectUnix(path) -> fd: a non-blocking stream socket connected to the UNIX socket at path
 * (close-on-exec). Such a connect is over when it returns: a full backlog is EAGAIN. */
static napi_value connect_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  char *path = get_os_string(env, args[0]);
  struct sockaddr_un to = {.sun_family = AF_UNIX};
  if (!path || strlen(path) >= sizeof to.sun_path) {
    free(path);
    return throw_errno(env, ENAMETOOLONG, "connect");
  }
  strcpy(to.sun_path, path);
  free(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) return close_and_throw(env, fd, "connect");
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/* connectStatus(fd) -> 0 connected, -errno failed, 1 still connecting: a connect to this host
 * is often over before connect() returns, and needs no poll then. */
static napi_value connect_status(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  struct pollfd p = {fd, POLLOUT, 0};
  int status = 1;
  if (poll(&p, 1, 0) == 1) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    status = -err;
  }
  napi_value result;
  napi_create_int32(env, status, &result);
  return result;
}

/* abortOnClose(fd): closing fd resets the connection (SO_LINGER 0), as a refused connect
 * resets a client: a forwarder whose service refused answers its client the same way. */
static napi_value abort_on_close(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  return NULL;
}

/* socketPair(sndbuf?) -> [fd, fd]: a connected AF_UNIX stream pair, close-on-exec. A program on
 * a transformed connection (TLS) gets one end as its fds 0/1 (or 6/7): like a TCP socket it
 * carries both directions and a half-close (shutdown), which a pair of pipes would not.
 * sndbuf > 0 sets SO_SNDBUF on the first end (ours): how much we may write ahead of the program
 * (best effort: the kernel caps it at net.core.wmem_max). */
static napi_value socket_pair(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t sndbuf = 0;
  if (argc >= 1) get_int(env, args[0], &sndbuf);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return throw_errno(env, errno, "socketpair");
  if (sndbuf > 0) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, sv[0], &v);
  napi_set_element(env, arr, 0, v);
  napi_create_int32(env, sv[1], &v);
  napi_set_element(env, arr, 1, v);
  return arr;
}

/* dup(fd) -> a new close-on-exec fd for the same open file. */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (n < 0) return throw_errno(env, errno, "dup");
  napi_value result;
  napi_create_int32(env, n, &result);
  return result;
}

/* socketKind(fd) -> [domain, type, listening]: SO_DOMAIN, SO_TYPE and SO_ACCEPTCONN of a socket
 * this process was given (systemd's LISTEN_FDS); throws EBADF or ENOTSOCK for anything else. */
static napi_value socket_kind(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd)) return NULL;
  int values[3];
  const int options[3] = {SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN};
  for (int i = 0; i < 3; i++) {
    socklen_t len = sizeof values[i];
    if (getsockopt(fd, SOL_SOCKET, options[i], &values[i], &len) < 0)
      return throw_errno(env, errno, "getsockopt");
  }
  napi_value arr, v;
  napi_create_array_with_length(env, 3, &arr);
  for (int i = 0; i < 3; i++) {
    napi_create_int32(env, values[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"spawn", NULL, spawn, NULL, NULL, NULL, napi_default, NULL},
      {"spawnAsync", NULL, spawn_async, NULL, NULL, NULL, napi_default, NULL},
      {"startSpawner", NULL, start_spawner, NULL, NULL, NULL, napi_default, NULL},
      {"spawnerSpawn", NULL, spawner_spawn, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, listen_tcp, NULL, NULL, NULL, napi_default, NULL},
      {"localAddress", NULL, local_address, NULL, NULL, NULL, napi_default, NULL},
      {"socketKind", NULL, socket_kind, NULL, NULL, NULL, napi_default, NULL},
      {"accept", NULL, accept_loop, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"devNull", NULL, dev_null, NULL, NULL, NULL, napi_default, NULL},
      {"trimMemory", NULL, trim_memory, NULL, NULL, NULL, napi_default, NULL},
      {"unblockSigusr1", NULL, unblock_sigusr1, NULL, NULL, NULL, napi_default, NULL},
      {"shutdownWrite", NULL, shutdown_write, NULL, NULL, NULL, napi_default, NULL},
      {"kill", NULL, kill_child, NULL, NULL, NULL, napi_default, NULL},
      {"recv", NULL, recv_peek, NULL, NULL, NULL, napi_default, NULL},
      {"rcvLowat", NULL, rcv_lowat, NULL, NULL, NULL, napi_default, NULL},
      {"socketPair", NULL, socket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"dup", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
      {"whenReadable", NULL, when_readable, NULL, NULL, NULL, napi_default, NULL},
      {"whenConnected", NULL, when_connected, NULL, NULL, NULL, napi_default, NULL},
      {"cancelWait", NULL, cancel_wait, NULL, NULL, NULL, napi_default, NULL},
      {"connectTcp", NULL, connect_tcp, NULL, NULL, NULL, napi_default, NULL},
      {"connectUnix", NULL, connect_unix, NULL, NULL, NULL, napi_default, NULL},
      {"abortOnClose", NULL, abort_on_close, NULL, NULL, NULL, napi_default, NULL},
      {"relay", NULL, relay_fds, NULL, NULL, NULL, napi_default, NULL},
      {"connectStatus", NULL, connect_status, NULL, NULL, NULL, napi_default, NULL},
      {"tlsContext", NULL, tls_context, NULL, NULL, NULL, napi_default, NULL},
      {"tlsServe", NULL, tls_serve, NULL, NULL, NULL, napi_default, NULL},
      {"tlsRelay", NULL, tls_relay, NULL, NULL, NULL, napi_default, NULL},
      {"tlsAdopt", NULL, tls_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"tlsPending", NULL, tls_pending, NULL, NULL, NULL, napi_default, NULL},
      {"tlsClose", NULL, tls_close, NULL, NULL, NULL, napi_default, NULL},
      {"tlsResume", NULL, tls_resume, NULL, NULL, NULL, napi_default, NULL},
      {"tlsHandshakeSteps", NULL, tls_handshake_steps, NULL, NULL, NULL, napi_default, NULL},
      {"tlsShareCores", NULL, tls_share_cores, NULL, NULL, NULL, napi_default, NULL},
      {"tlsTicketKeys", NULL, tls_ticket_keys, NULL, NULL, NULL, napi_default, NULL},
      {"tlsSetTicketKeys", NULL, tls_set_ticket_keys, NULL, NULL, NULL, napi_default, NULL},
      {"ocspCheck", NULL, ocsp_check, NULL, NULL, NULL, napi_default, NULL},
      {"ocspRequest", NULL, ocsp_request, NULL, NULL, NULL, napi_default, NULL},
      {"ocspMustStaple", NULL, ocsp_must_staple, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  loop_no_idle_metrics(env);
  return exports;
}

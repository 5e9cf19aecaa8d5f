/* What the addon's source files share: Node-API argument helpers, JavaScript callbacks kept for
 * libuv, and the parts of a child's start that every spawn path sets up the same way. */
#ifndef UCSPI_NATIVE_COMMON_H
#define UCSPI_NATIVE_COMMON_H

#include <node_api.h>
#include <spawn.h>
#include <stdint.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return NULL;                                                            \
  } while (0)

/* Throws an Error with Node's errno fields (code, errno, syscall); returns NULL. */
napi_value throw_errno(napi_env env, int err, const char *syscall);
/* The same error as a value, for a callback. */
napi_value errno_value(napi_env env, int err, const char *syscall);

int get_int(napi_env env, napi_value v, int32_t *out);
/* A Buffer's bytes (not copied): 0, or -1 when v is not a Buffer. */
int get_buffer(napi_env env, napi_value v, void **data, size_t *len);
/* An argument that must be a number (an fd, a port): 0, or -1 with a TypeError thrown. */
int number_arg(napi_env env, napi_value v, int32_t *out);
/* The call's first n (at most 4) arguments, all numbers, into out: 0, or -1 with an exception
 * pending (return at once). The prologue of every call that takes only fds and numbers. */
int int_args(napi_env env, napi_callback_info info, size_t n, int32_t *out);
char *get_string(napi_env env, napi_value v);
/* A byte string (one JavaScript character per byte): environment entries. */
char *get_bytes(napi_env env, napi_value v);
/* A word of argv or a file name, as bytes (see ucspi_native.c). */
char *get_os_string(napi_env env, napi_value v);
/* A NULL-terminated char* array from a JS array of strings. */
char **get_string_array(napi_env env, napi_value arr, char *(*get)(napi_env, napi_value));
void free_string_array(char **a);

/* A JavaScript function kept alive for a libuv callback, with its async context. */
typedef struct {
  napi_env env;
  napi_ref fn;
  napi_async_context context;
} js_callback_t;

void js_callback_init(js_callback_t *cb, napi_env env, napi_value fn, const char *name);
/* Calls it from a libuv callback; argv must have been made inside the caller's handle scope. */
void js_callback_call(js_callback_t *cb, size_t argc, napi_value *argv);
void js_uncaught_if_thrown(napi_env env);
/* Calls it with up to four numbers, in a handle scope of its own. */
void js_callback_call_ints(js_callback_t *cb, size_t argc, const int32_t *values);
void js_callback_free(js_callback_t *cb);

/* fds 0-2 that no dup2 targets reach the child (Node marks them close-on-exec). */
void inherit_stdio(posix_spawn_file_actions_t *fa, const int *targets, int ntargets);
/* The child starts with an empty signal mask and Node's ignored signals at their defaults. */
void reset_signals(posix_spawnattr_t *attr);
/* Clears O_NONBLOCK, which the child would share (UCSPI programs expect blocking fds). */
void make_blocking(int fd);

/* watch.c: the addon's own epoll set, polled by libuv as one fd. A watch_t is put in it with
 * watch_change (events 0 takes it out); ready(w, events) is called for what it waits for. */
typedef struct watch_s watch_t;
struct watch_s {
  int fd;
  uint32_t added; /* the events it is in the set for; 0: not in it */
  void (*ready)(watch_t *w, uint32_t events);
  void *owner;
  int index;
};
/* Work left for after the current pass over the set's events (freeing what they may name). */
typedef struct deferred_s {
  void (*fn)(void *);
  void *arg;
  struct deferred_s *next;
} deferred_t;
/* Node's loop without libuv's idle-time metrics (a non-blocking epoll_pwait before each wait). */
void loop_no_idle_metrics(napi_env env);
/* Opens the set on first use: 0, or -1 with errno. */
int watch_open(napi_env env);
/* 0, or -1 with errno (from epoll_ctl). */
int watch_change(watch_t *w, uint32_t events);
/* The loop is kept alive while the holds are more than none. */
void watch_hold(int delta);
/* fn(arg) after the current pass, or at once outside one. */
void watch_defer(deferred_t *d, void (*fn)(void *), void *arg);

/* relay.c: relay(a, b, onDone), the splice relay of two sockets. */
napi_value relay_fds(napi_env env, napi_callback_info info);
/* wait.c: whenReadable(fd, cb), whenConnected(fd, cb) and cancelWait(fd, number). */
napi_value when_readable(napi_env env, napi_callback_info info);
napi_value when_connected(napi_env env, napi_callback_info info);
napi_value cancel_wait(napi_env env, napi_callback_info info);

/* tls-engine.c: tlsContext, tlsServe, tlsRelay and tlsClose, the native TLS engine. */
napi_value tls_context(napi_env env, napi_callback_info info);
napi_value tls_serve(napi_env env, napi_callback_info info);
napi_value tls_relay(napi_env env, napi_callback_info info);
napi_value tls_adopt(napi_env env, napi_callback_info info);
napi_value tls_pending(napi_env env, napi_callback_info info);
napi_value tls_close(napi_env env, napi_callback_info info);
/* tls-engine.c's tlsResume; tls-engine-hello.c: onClientHello(serverName, alpn) called with
 * what the ClientHello asks for; whether it holds the handshake. */
napi_value tls_resume(napi_env env, napi_callback_info info);
napi_value tls_handshake_steps(napi_env env, napi_callback_info info);
napi_value tls_share_cores(napi_env env, napi_callback_info info);
typedef struct ssl_st SSL;
int hello_hold_ask(napi_env env, SSL *ssl, napi_ref on_client_hello);
/* Inside the client-hello callback: the ClientHello's server name as OpenSSL will take it (1;
 * not NUL-terminated), none (0), or one that OpenSSL's parse must judge (-1). */
int hello_server_name(SSL *ssl, const char **name, size_t *name_len);
/* The pointer of an external made with napi type tag `tag`, else NULL. */
void *tagged(napi_env env, napi_value v, const napi_type_tag *tag);
/* tls-engine-tickets.c: tlsTicketKeys, tlsSetTicketKeys, and a context's opts.ticketKeys
 * (0, or -1 when it is not a key set). */
napi_value tls_ticket_keys(napi_env env, napi_callback_info info);
napi_value tls_set_ticket_keys(napi_env env, napi_callback_info info);
typedef struct ssl_ctx_st SSL_CTX;
int tls_context_tickets(napi_env env, SSL_CTX *ctx, napi_value opts);
/* tls-engine-ocsp.c: ocspCheck(der, chainPem), ocspRequest(chainPem), ocspMustStaple(chainPem);
 * a context's opts.ocsp and opts.ocspUntil, the response it staples (0, or -1 when they are not
 * a Buffer and a number). */
napi_value ocsp_check(napi_env env, napi_callback_info info);
napi_value ocsp_request(napi_env env, napi_callback_info info);
napi_value ocsp_must_staple(napi_env env, napi_callback_info info);
int tls_context_ocsp(napi_env env, SSL_CTX *ctx, napi_value opts);
/* tls-engine-gather.c: the relay's records gathered into one write a pass. gather_on puts a
 * buffer in front of the client's socket, gather_off takes it off once it is empty (both do
 * nothing when they cannot yet); gather_flush: 0 all out (or no buffer), 1 the socket would
 * block, -1 it failed (errno); gather_pending: the bytes in it. */
void gather_on(SSL *ssl);
int gather_flush(SSL *ssl);
void gather_off(SSL *ssl);
long gather_pending(SSL *ssl);

/* offload.c: work on a pool thread of our own, its done back on the loop thread. A job is
 * embedded in what it works on; work must not call Node-API. */
typedef struct offload_job_s offload_job_t;
struct offload_job_s {
  void (*work)(offload_job_t *job); /* on a pool thread */
  void (*done)(offload_job_t *job); /* then on the loop thread */
  offload_job_t *next;
};
/* Whether a job submitted now finds a thread free: 0 on a single core, where the pool has none
 * (the pool starts on the first ask). */
int offload_room(napi_env env);
void offload_submit(offload_job_t *job);
/* How many processes share the cores (tcpserver --workers), before the pool starts. */
void offload_share(int processes);

/* spawner-client.c: the ucspi-spawner helper process (see spawner.c). */
napi_value start_spawner(napi_env env, napi_callback_info info);
napi_value spawner_spawn(napi_env env, napi_callback_info info);
/* Sends signo through the spawner when pid is one of its children: 1, else 0. */
int spawner_kill(int32_t pid, int signo);

#endif

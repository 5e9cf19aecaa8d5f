/* whenReadable(fd, cb) and whenConnected(fd, cb): one wait for a socket, in the addon's own
 * epoll set (watch.c). Each returns the wait's number; cancelWait(fd, number) ends it unless it
 * is over already (a number of a finished wait names nothing, even once the fd is reused).
 *   whenReadable: cb(0) once fd has bytes (as many as SO_RCVLOWAT asks, or fewer when the
 *     receive buffer is full), cb(1) once its peer has shut its writing side (or the connection
 *     failed): bytes may still be queued before that end;
 *   whenConnected: cb(0, or -errno) once connectTcp's connect is over. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "common.h"

typedef struct {
  watch_t watch;
  js_callback_t cb;
  uint32_t number;
  int connecting; /* whenConnected: the status is the connect's outcome (SO_ERROR) */
  deferred_t freeing;
} wait_t;

/* The wait on each fd, if any: an fd is in the set once at most. */
static wait_t **by_fd;
static int by_fd_size;
static uint32_t last_number;

static void wait_free(void *arg) {
  wait_t *w = arg;
  js_callback_free(&w->cb);
  free(w);
}

/* Out of the set and the table; freed once the current pass is over. */
static void wait_end(wait_t *w) {
  watch_change(&w->watch, 0);
  by_fd[w->watch.fd] = NULL;
  watch_hold(-1);
  watch_defer(&w->freeing, wait_free, w);
}

static void wait_ready(watch_t *watch, uint32_t events) {
  wait_t *w = watch->owner;
  if (by_fd[watch->fd] != w) return;
  int32_t status = 0;
  if (w->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(watch->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (!err && (events & EPOLLERR)) err = EIO;
    status = -err;
  } else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    status = 1;
  }
  wait_end(w);
  js_callback_call_ints(&w->cb, 1, &status);
}

static int table_fit(int fd) {
  if (fd < by_fd_size) return 0;
  int size = by_fd_size ? by_fd_size : 256;
  while (size <= fd) size *= 2;
  wait_t **grown = realloc(by_fd, (size_t)size * sizeof *grown);
  if (!grown) return -1;
  memset(grown + by_fd_size, 0, (size_t)(size - by_fd_size) * sizeof *grown);
  by_fd = grown;
  by_fd_size = size;
  return 0;
}

static napi_value wait_start(napi_env env, napi_callback_info info, int connecting) {
  size_t argc = 2;
  napi_value args[2];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t fd;
  if (number_arg(env, args[0], &fd)) return NULL;
  if (fd < 0) return throw_errno(env, EBADF, "poll");
  if (watch_open(env) < 0 || table_fit(fd) < 0) return throw_errno(env, errno, "poll");
  /* A wait left on this number belongs to an fd that was closed without cancelWait (the
   * kernel took it out of the set then): it can never fire, so it goes. */
  if (by_fd[fd]) wait_end(by_fd[fd]);
  wait_t *w = calloc(1, sizeof(wait_t));
  if (!w) return throw_errno(env, ENOMEM, "poll");
  w->watch.fd = fd;
  w->watch.owner = w;
  w->watch.ready = wait_ready;
  w->connecting = connecting;
  if (watch_change(&w->watch, connecting ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) < 0) {
    int e = errno;
    free(w);
    return throw_errno(env, e == EPERM ? EBADF : e, "poll");
  }
  js_callback_init(&w->cb, env, args[1], connecting ? "ucspi.connected" : "ucspi.readable");
  w->number = ++last_number ? last_number : ++last_number;
  by_fd[fd] = w;
  watch_hold(1);
  napi_value result;
  napi_create_uint32(env, w->number, &result);
  return result;
}

napi_value when_readable(napi_env env, napi_callback_info info) {
  return wait_start(env, info, 0);
}

napi_value when_connected(napi_env env, napi_callback_info info) {
  return wait_start(env, info, 1);
}

napi_value cancel_wait(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t fd;
  uint32_t number = 0;
  if (number_arg(env, args[0], &fd)) return NULL;
  napi_get_value_uint32(env, args[1], &number);
  if (fd >= 0 && fd < by_fd_size && by_fd[fd] && by_fd[fd]->number == number) wait_end(by_fd[fd]);
  return NULL;
}

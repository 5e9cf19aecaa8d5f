/* One epoll set of our own for the addon's short-lived watches of fds (the splice relays, and
 * the waits of a peek or a connect), polled by libuv as a single fd.
 *
 * A uv_poll per fd would cost four or five epoll_ctl calls for every fd watched once: libuv
 * checks each new fd by adding it to its set and removing it, adds it again to start, removes
 * it to stop, and tries to remove it once more after it is closed. Here a watch costs an add
 * and a removal, and a change only when what it waits for changes. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"

static int set_fd = -1;
static uv_poll_t set_poll;
static int holds;
/* Set while the events of one epoll_wait are handed out: what is released meanwhile (a watch
 * whose owner finished) is freed once they all have been, as a later event may name it. */
static int in_pass;
static deferred_t *after_pass;

static void set_ready(uv_poll_t *poll, int status, int events) {
  (void)poll;
  (void)status;
  (void)events;
  struct epoll_event ev[64];
  int n = epoll_wait(set_fd, ev, 64, 0);
  in_pass = 1;
  for (int k = 0; k < n; k++) {
    watch_t *w = ev[k].data.ptr;
    w->ready(w, ev[k].events);
  }
  in_pass = 0;
  while (after_pass) {
    deferred_t *d = after_pass;
    after_pass = d->next;
    d->fn(d->arg);
  }
}

/* Node turns on libuv's idle-time metrics for its loop (performance.eventLoopUtilization), and
 * with them every wait of the loop begins with an epoll_pwait that does not block; when it
 * finds nothing, a second one blocks. That is a system call more at nearly every wake-up of a
 * relay (two of the ten a PostgreSQL query cost through starttls-wrapper at c=1), and none of our
 * programs asks for the loop's idle time. uv_loop_configure can set the flag but never clear
 * it; it is the first member of the loop's internal fields in every libuv 1.x that has it
 * (1.39 and later), so it is cleared there, and in no other libuv. */
void loop_no_idle_metrics(napi_env env) {
  uv_loop_t *loop;
  unsigned int v = uv_version();
  if (v < ((1u << 16) | (39u << 8)) || v >= (2u << 16)) return;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop || !loop->internal_fields) return;
  unsigned int *flags = loop->internal_fields;
  *flags &= ~(unsigned int)UV_METRICS_IDLE_TIME; /* uv_loop_configure sets it so */
}

int watch_open(napi_env env) {
  if (set_fd >= 0) return 0;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    errno = EINVAL;
    return -1;
  }
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return -1;
  if (uv_poll_init(loop, &set_poll, fd) != 0) {
    close(fd);
    errno = EBADF;
    return -1;
  }
  set_fd = fd;
  uv_poll_start(&set_poll, UV_READABLE, set_ready);
  uv_unref((uv_handle_t *)&set_poll);
  return 0;
}

int watch_change(watch_t *w, uint32_t events) {
  if (events == w->added) return 0;
  struct epoll_event ev = {.events = events, .data = {.ptr = w}};
  int op = w->added == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  int rc = epoll_ctl(set_fd, op, w->fd, &ev);
  /* A failed removal leaves nothing to remove: the fd was closed, which removed it. */
  if (rc == 0 || op == EPOLL_CTL_DEL) w->added = events;
  return rc;
}

void watch_hold(int delta) {
  int before = holds;
  holds += delta;
  if (before == 0 && holds > 0) uv_ref((uv_handle_t *)&set_poll);
  if (before > 0 && holds == 0) uv_unref((uv_handle_t *)&set_poll);
}

void watch_defer(deferred_t *d, void (*fn)(void *), void *arg) {
  if (!in_pass) {
    fn(arg);
    return;
  }
  d->fn = fn;
  d->arg = arg;
  d->next = after_pass;
  after_pass = d;
}

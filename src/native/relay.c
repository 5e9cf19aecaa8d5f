/* The splice relay: relay(a, b, onDone) moves the bytes of two sockets to each other in the
 * kernel (splice through a pipe per direction: no copy to user space, no JavaScript per chunk;
 * small reads are copied, see COPY_MAX) until both directions have ended. An end of input is
 * passed on as a half-close (shutdown SHUT_WR); a failure ends both directions at once.
 * onDone(errno, side) once: errno 0 when both ended normally, else the first failure's errno and
 * the side it came from (0: a, 1: b). The fds stay open (the caller closes them); they are
 * non-blocking from here on.
 *
 * The sockets are watched in the addon's own epoll set (watch.c): a short connection costs four
 * epoll_ctl calls (two adds, two removals), and a change only when a direction waits for its
 * writer. */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define RELAY_CHUNK (1 << 20)
/* A direction moves its first bytes by copy (recv and send): for the few bytes of a request or
 * an answer that is cheaper than splice, which puts them in a page of the pipe on the way. A
 * read that fills the buffer says a transfer is big: that direction splices from then on. */
#define COPY_MAX (16 << 10)
#define WANT_READ 1
#define WANT_WRITE 2

typedef struct relay_s relay_t;

typedef struct {
  int from, to;   /* sockets */
  int pipe[2];    /* the bytes in between */
  size_t pending; /* in the pipe */
  int eof;        /* from has ended */
  int done;       /* the end was passed on */
  int bulk;       /* a read filled the copy buffer: splice from here on */
  size_t capacity; /* the pipe's */
} direction_t;

struct relay_s {
  int fd[2];
  watch_t side[2];    /* the sockets in the watch set (index 0: a, 1: b) */
  direction_t dir[2]; /* 0: a -> b, 1: b -> a */
  js_callback_t on_done;
  int failed, failed_side, finished;
  deferred_t freeing;
};

/* Empty pipes of finished relays, kept for the next ones: a pipe pair and its 1 MiB size cost
 * five system calls, which a short connection would otherwise pay each time. */
#define PIPE_POOL 64
static struct {
  int fd[2];
  size_t capacity;
} pipe_pool[PIPE_POOL];
static int pipe_pooled;

/* A pipe and what it holds: 1 MiB, or less where the kernel keeps it smaller (a user over
 * pipe-user-pages-soft gets two pages). */
static int pipe_take(int p[2], size_t *capacity) {
  if (pipe_pooled > 0) {
    pipe_pooled--;
    p[0] = pipe_pool[pipe_pooled].fd[0];
    p[1] = pipe_pool[pipe_pooled].fd[1];
    *capacity = pipe_pool[pipe_pooled].capacity;
    return 0;
  }
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
  int size = fcntl(p[1], F_SETPIPE_SZ, RELAY_CHUNK);
  if (size < 0) size = fcntl(p[1], F_GETPIPE_SZ);
  *capacity = size > 0 ? (size_t)size : 4096;
  return 0;
}

/* Back to the pool when it is empty (a relay that ended well), else closed. */
static void pipe_give(int p[2], size_t capacity, size_t pending) {
  if (pending == 0 && pipe_pooled < PIPE_POOL) {
    pipe_pool[pipe_pooled].fd[0] = p[0];
    pipe_pool[pipe_pooled].fd[1] = p[1];
    pipe_pool[pipe_pooled].capacity = capacity;
    pipe_pooled++;
    return;
  }
  close(p[0]);
  close(p[1]);
}

/* Each socket is watched for what its two directions wait for: reading while its direction
 * has room, writing while the other direction has bytes for it. */
static void relay_update(relay_t *r) {
  int want[2] = {0, 0};
  for (int d = 0; d < 2; d++) {
    direction_t *x = &r->dir[d];
    if (x->done) continue;
    if (!x->eof && x->pending < RELAY_CHUNK) want[d] |= WANT_READ;
    if (x->pending > 0) want[1 - d] |= WANT_WRITE;
  }
  for (int i = 0; i < 2; i++)
    watch_change(&r->side[i], (want[i] & WANT_READ ? EPOLLIN | EPOLLRDHUP : 0) |
                                  (want[i] & WANT_WRITE ? EPOLLOUT : 0));
}

static void relay_free(void *arg) {
  relay_t *r = arg;
  js_callback_free(&r->on_done);
  free(r);
}

static void relay_finish(relay_t *r) {
  if (r->finished) return;
  r->finished = 1;
  for (int i = 0; i < 2; i++) {
    watch_change(&r->side[i], 0);
    pipe_give(r->dir[i].pipe, r->dir[i].capacity, r->failed ? 1 : r->dir[i].pending);
  }
  watch_hold(-1);
  int32_t outcome[2] = {r->failed, r->failed_side};
  js_callback_call_ints(&r->on_done, 2, outcome);
  watch_defer(&r->freeing, relay_free, r);
}

/* Moves what it can in one direction; -1 (errno set, the failing side in *side) on a failure.
 * After a short read that left nothing behind it stops, unless the writer has hung up (`hup`):
 * the set is level-triggered and says when more comes, so a read that would only find nothing
 * is not made. */
static int relay_move(relay_t *r, int d, int hup, int *side) {
  direction_t *x = &r->dir[d];
  for (;;) {
    int progress = 0, drained = 0;
    if (!x->eof && x->pending == 0 && !x->bulk) {
      char buf[COPY_MAX];
      /* No more than the pipe holds: a send that comes up short leaves its rest there. */
      size_t most = x->capacity < sizeof buf ? x->capacity : sizeof buf;
      ssize_t n = recv(x->from, buf, most, MSG_DONTWAIT);
      if (n > 0) {
        progress = 1;
        drained = (size_t)n < most;
        x->bulk = !drained;
        ssize_t sent = send(x->to, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EINTR) {
          *side = 1 - d;
          return -1;
        }
        if (sent < 0) sent = 0;
        /* What the writer did not take waits in the (empty) pipe, as spliced bytes do. */
        if (sent < n) {
          ssize_t kept = write(x->pipe[1], buf + sent, (size_t)(n - sent));
          if (kept != n - sent) {
            if (kept >= 0) errno = EIO;
            *side = d;
            return -1;
          }
          x->pending = (size_t)kept;
        }
      } else if (n == 0) {
        x->eof = 1;
        progress = 1;
      } else if (errno != EAGAIN && errno != EINTR) {
        *side = d;
        return -1;
      }
    } else if (!x->eof && x->pending < RELAY_CHUNK) {
      size_t room = RELAY_CHUNK - x->pending;
      ssize_t n = splice(x->from, NULL, x->pipe[1], NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        x->pending += (size_t)n;
        progress = 1;
        drained = (size_t)n < room;
      } else if (n == 0) {
        x->eof = 1;
        progress = 1;
      } else if (errno != EAGAIN && errno != EINTR) {
        *side = d;
        return -1;
      }
    }
    if (x->pending > 0) {
      ssize_t n =
          splice(x->pipe[0], NULL, x->to, NULL, x->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        x->pending -= (size_t)n;
        progress = 1;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        *side = 1 - d;
        return -1;
      }
    }
    if (x->eof && x->pending == 0 && !x->done) {
      x->done = 1;
      shutdown(x->to, SHUT_WR);
    }
    if (!progress || x->done) return 0;
    if (drained && x->pending == 0 && !hup) return 0;
  }
}

/* What one socket's events ask for: its own direction read, the other one written to it. */
static void relay_event(watch_t *s, uint32_t events) {
  relay_t *r = s->owner;
  if (r->finished) return;
  int i = s->index, side = 0, failed = 0;
  int hup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !r->dir[i].eof)
    failed = relay_move(r, i, hup, &side) < 0;
  if (!failed && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && r->dir[1 - i].pending > 0)
    failed = relay_move(r, 1 - i, 0, &side) < 0;
  int e = failed ? errno : 0;
  if (!failed && (events & EPOLLERR)) {
    /* An error the moves did not meet (the socket had nothing to do): it says which. */
    socklen_t len = sizeof e;
    getsockopt(r->fd[i], SOL_SOCKET, SO_ERROR, &e, &len);
    side = i;
    failed = e != 0;
  }
  if (failed) {
    r->failed = e ? e : EIO;
    r->failed_side = side;
    relay_finish(r);
  } else if (r->dir[0].done && r->dir[1].done) {
    relay_finish(r);
  } else {
    relay_update(r);
  }
}

napi_value relay_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t a, b;
  if (number_arg(env, args[0], &a) || number_arg(env, args[1], &b)) return NULL;
  if (watch_open(env) < 0) return throw_errno(env, errno, "epoll_create1");
  relay_t *r = calloc(1, sizeof(relay_t));
  if (!r) return throw_errno(env, ENOMEM, "relay");
  r->fd[0] = a;
  r->fd[1] = b;
  for (int d = 0; d < 2; d++) {
    if (pipe_take(r->dir[d].pipe, &r->dir[d].capacity) < 0) {
      int e = errno;
      if (d == 1) pipe_give(r->dir[0].pipe, r->dir[0].capacity, 0);
      free(r);
      return throw_errno(env, e, "pipe2");
    }
    r->dir[d].from = d == 0 ? a : b;
    r->dir[d].to = d == 0 ? b : a;
    r->side[d].fd = r->fd[d];
    r->side[d].owner = r;
    r->side[d].index = d;
    r->side[d].ready = relay_event;
    int on = 1;
    ioctl(r->fd[d], FIONBIO, &on);
  }
  js_callback_init(&r->on_done, env, args[2], "ucspi.relay");
  watch_hold(1);
  relay_update(r);
  if (r->side[0].added == 0 || r->side[1].added == 0) {
    /* Not a socket epoll can watch (or not open): said at once, as a failure of that side. */
    r->failed = errno ? errno : EBADF;
    r->failed_side = r->side[0].added == 0 ? 0 : 1;
    relay_finish(r);
  }
  return NULL;
}

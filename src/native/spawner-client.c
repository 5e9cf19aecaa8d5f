/* The server's side of ucspi-spawner (spawner.c): starts a few of them, sends each program to
 * run with its fds (SCM_RIGHTS) to the least busy one, and turns their replies into the same
 * onSpawned/onExit callbacks that spawnAsync makes. A spawner does one posix_spawn at a time
 * (about 0.6 ms), so one or two per core (src/ucspi/spawner.ts) keep a burst of connections
 * from queueing behind it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"

enum { SPAWN = 1, KILL = 2, SPAWNED = 1, EXITED = 2 };
enum { CONTROL = 3, MAX_FDS = 64, BUCKETS = 1024, MAX_SPAWNERS = 8 };
/* Big enough for a burst of requests; a request that does not fit is spawned here instead. */
#define SEND_BUFFER (4 << 20)
#define REPLIES_AT_ONCE 16

struct request {
  uint32_t type, id;
  int32_t a, b, c;
};

struct reply {
  uint32_t type, id;
  int32_t value;
};

/* A program sent to the spawner whose exit has not been reported yet. */
typedef struct entry {
  uint32_t id;
  pid_t pid; /* 0 until it is spawned */
  js_callback_t on_spawned, on_exit;
  struct entry *next;
} entry_t;

typedef struct {
  int fd;
  pid_t pid;
  uv_poll_t poll;
  napi_env env;
  js_callback_t on_lost;
  unsigned pending;  /* sent and not exited: the event loop waits for these */
  unsigned inflight; /* sent and not spawned yet: how busy it is */
  entry_t *buckets[BUCKETS];
} spawner_t;

static spawner_t *pool[MAX_SPAWNERS];
static uint32_t next_id;

static entry_t **slot(spawner_t *sp, uint32_t id) {
  entry_t **p = &sp->buckets[id % BUCKETS];
  while (*p && (*p)->id != id) p = &(*p)->next;
  return p;
}

/* Keeps the event loop alive while exits are awaited, as a directly spawned child does. */
static void count_pending(spawner_t *sp, int delta) {
  sp->pending += delta;
  if (sp->pending) uv_ref((uv_handle_t *)&sp->poll);
  else uv_unref((uv_handle_t *)&sp->poll);
}

static void call_spawned(spawner_t *sp, entry_t *e, int err) {
  napi_value argv[2];
  if (err) {
    argv[0] = errno_value(sp->env, err, "posix_spawn");
    napi_get_undefined(sp->env, &argv[1]);
  } else {
    napi_get_null(sp->env, &argv[0]);
    napi_create_int32(sp->env, e->pid, &argv[1]);
  }
  js_callback_call(&e->on_spawned, 2, argv);
}

static void call_exit(entry_t *e, int32_t wstatus) {
  js_callback_call_ints(&e->on_exit, 1, &wstatus);
}

static void drop(spawner_t *sp, entry_t **p) {
  entry_t *e = *p;
  *p = e->next;
  js_callback_free(&e->on_spawned);
  js_callback_free(&e->on_exit);
  free(e);
  count_pending(sp, -1);
}

static void handle_reply(spawner_t *sp, const struct reply *r) {
  entry_t **p = slot(sp, r->id);
  entry_t *e = *p;
  if (!e) return;
  if (r->type == SPAWNED) sp->inflight--;
  if (r->type == SPAWNED && r->value < 0) {
    call_spawned(sp, e, -r->value);
    drop(sp, p);
  } else if (r->type == SPAWNED) {
    e->pid = r->value;
    call_spawned(sp, e, 0);
  } else if (r->type == EXITED) {
    call_exit(e, r->value);
    drop(sp, slot(sp, r->id)); /* the callback may have added entries */
  }
}

static void spawner_closed(uv_handle_t *h) { free(h->data); }

/* The spawner has gone (killed, say): what it was running is out of our sight, so each
 * program still awaited is reported as failed (111), and the next spawn starts a new one. */
static int lost(spawner_t *sp) {
  for (int i = 0; i < MAX_SPAWNERS; i++)
    if (pool[i] == sp) return 0;
  return 1;
}

static void lose(spawner_t *sp) {
  for (int i = 0; i < MAX_SPAWNERS; i++)
    if (pool[i] == sp) pool[i] = NULL;
  uv_poll_stop(&sp->poll);
  close(sp->fd);
  /* Gone or going (its end closed): make sure, so that the wait cannot block. */
  kill(sp->pid, SIGKILL);
  waitpid(sp->pid, NULL, 0);
  for (int b = 0; b < BUCKETS; b++)
    while (sp->buckets[b]) {
      entry_t *e = sp->buckets[b];
      if (e->pid) call_exit(e, 111 << 8);
      else call_spawned(sp, e, EPIPE);
      drop(sp, slot(sp, e->id));
    }
  js_callback_call(&sp->on_lost, 0, NULL);
  js_callback_free(&sp->on_lost);
  uv_close((uv_handle_t *)&sp->poll, spawner_closed);
}

static void spawner_ready(uv_poll_t *poll, int status, int events) {
  spawner_t *sp = poll->data;
  (void)status;
  (void)events;
  napi_handle_scope scope;
  napi_open_handle_scope(sp->env, &scope);
  /* The replies waiting, up to REPLIES_AT_ONCE in one call: a batch that is not full was all
   * there was, so no call is made only to meet EAGAIN (the poll is level-triggered, and says
   * so again for replies that came meanwhile). */
  struct reply r[REPLIES_AT_ONCE];
  struct iovec iov[REPLIES_AT_ONCE];
  struct mmsghdr msgs[REPLIES_AT_ONCE];
  for (int done = 0; !done;) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < REPLIES_AT_ONCE; i++) {
      iov[i] = (struct iovec){&r[i], sizeof r[i]};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(sp->fd, msgs, REPLIES_AT_ONCE, MSG_DONTWAIT, NULL);
    if (got < 0) {
      if (errno != EAGAIN && errno != EINTR) lose(sp);
      break;
    }
    done = got < REPLIES_AT_ONCE;
    for (int i = 0; i < got; i++) {
      /* Anything but a whole reply is its end (EOF: a message of no bytes). */
      if (msgs[i].msg_len != sizeof r[i]) {
        lose(sp);
        done = 1;
        break;
      }
      handle_reply(sp, &r[i]);
      if (lost(sp)) { /* a callback's spawn found it gone */
        done = 1;
        break;
      }
    }
  }
  napi_close_handle_scope(sp->env, scope);
}

/* Starts one spawner with its end of a SOCK_SEQPACKET pair on fd 3 and fds 0-2 inherited (its
 * children's fd 2); 0 or an errno. */
static int start_one(napi_env env, uv_loop_t *loop, const char *path, napi_value on_lost,
                     spawner_t **out) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) return errno;
  int size = SEND_BUFFER;
  setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int targets[] = {CONTROL};
  inherit_stdio(&fa, targets, 1);
  posix_spawn_file_actions_adddup2(&fa, pair[1], CONTROL);
  posix_spawn_file_actions_addclosefrom_np(&fa, CONTROL + 1);
  reset_signals(&attr);
  char *argv[] = {"ucspi-spawner", NULL};
  char *envp[] = {NULL};
  pid_t pid;
  int err = posix_spawn(&pid, path, &fa, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(pair[1]);
  spawner_t *sp = err ? NULL : calloc(1, sizeof *sp);
  if (!sp) {
    close(pair[0]);
    if (err) return err;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return ENOMEM;
  }
  fcntl(pair[0], F_SETFL, O_NONBLOCK | fcntl(pair[0], F_GETFL));
  sp->fd = pair[0];
  sp->pid = pid;
  sp->env = env;
  js_callback_init(&sp->on_lost, env, on_lost, "ucspi.spawner");
  uv_poll_init(loop, &sp->poll, sp->fd);
  sp->poll.data = sp;
  uv_poll_start(&sp->poll, UV_READABLE, spawner_ready);
  uv_unref((uv_handle_t *)&sp->poll);
  *out = sp;
  return 0;
}

/* startSpawner(helperPath, count, onLost): makes sure `count` spawners run (starting those
 * missing, after one was lost, say). Throws when none can be started. */
napi_value start_spawner(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t count = 1;
  get_int(env, args[1], &count);
  if (count < 1) count = 1;
  if (count > MAX_SPAWNERS) count = MAX_SPAWNERS;
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  char *path = get_string(env, args[0]);
  if (!path) return throw_errno(env, ENOMEM, "spawner");
  int err = 0, running = 0;
  for (int i = 0; i < count; i++) {
    if (!pool[i]) err = start_one(env, loop, path, args[2], &pool[i]);
    running += pool[i] != NULL;
  }
  free(path);
  if (!running) return throw_errno(env, err, "posix_spawn");
  return NULL;
}

/* The running spawner with the fewest spawns still to do. */
static spawner_t *least_busy(void) {
  spawner_t *best = NULL;
  for (int i = 0; i < MAX_SPAWNERS; i++)
    if (pool[i] && (!best || pool[i]->inflight < best->inflight)) best = pool[i];
  return best;
}

/* The spawn request for (file, argv, envp, fdPairs) in one buffer; NULL when it cannot be made
 * (then the caller spawns the program itself). */
static char *build_request(napi_env env, napi_value *args, uint32_t id, int *fds, int *nfds,
                           size_t *length) {
  char *file = get_os_string(env, args[0]);
  char **argv = get_string_array(env, args[1], get_os_string);
  char **envp = get_string_array(env, args[2], get_bytes);
  uint32_t npairs = 0;
  napi_get_array_length(env, args[3], &npairs);
  char *buf = NULL;
  if (!file || !argv || !envp || !argv[0] || npairs / 2 > MAX_FDS) goto done;
  int argc = 0, envc = 0;
  size_t size = sizeof(struct request) + (npairs / 2) * sizeof(int32_t) + strlen(file) + 1;
  for (; argv[argc]; argc++) size += strlen(argv[argc]) + 1;
  for (; envp[envc]; envc++) size += strlen(envp[envc]) + 1;
  if (size > SEND_BUFFER / 2 || !(buf = malloc(size))) goto done;
  struct request rq = {SPAWN, id, (int32_t)(npairs / 2), argc, envc};
  memcpy(buf, &rq, sizeof rq);
  char *p = buf + sizeof rq;
  *nfds = 0;
  for (uint32_t i = 0; i + 1 < npairs; i += 2) {
    napi_value a, b;
    int32_t from = -1, to = -1;
    napi_get_element(env, args[3], i, &a);
    napi_get_element(env, args[3], i + 1, &b);
    get_int(env, a, &from);
    get_int(env, b, &to);
    /* A socket on both 0 and 1 is one open file: made blocking once. */
    if (*nfds == 0 || fds[*nfds - 1] != from) make_blocking(from);
    fds[(*nfds)++] = from;
    memcpy(p, &to, sizeof to);
    p += sizeof to;
  }
  p = stpcpy(p, file) + 1;
  for (int i = 0; i < argc; i++) p = stpcpy(p, argv[i]) + 1;
  for (int i = 0; i < envc; i++) p = stpcpy(p, envp[i]) + 1;
  *length = size;
done:
  free(file);
  free_string_array(argv);
  free_string_array(envp);
  return buf;
}

static int send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } control;
  struct iovec iov = {(void *)buf, len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? errno : 0;
}

/* spawnerSpawn(file, argv, envp, fdPairs, onSpawned, onExit) -> boolean: as spawnAsync (the
 * child gets fds 0-2 and the pairs' targets, nothing else), with the spawn done by the spawner.
 * false when there is no spawner or the request could not be sent at once: the caller then
 * spawns the program itself, and no callback will come from here. */
napi_value spawner_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6], result;
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  spawner_t *sp = least_busy();
  int sent = 0;
  if (sp && argc >= 6) {
    int fds[MAX_FDS];
    int nfds = 0;
    size_t length = 0;
    uint32_t id = ++next_id;
    char *buf = build_request(env, args, id, fds, &nfds, &length);
    if (buf) {
      int err = send_with_fds(sp->fd, buf, length, fds, nfds);
      free(buf);
      if (!err) {
        entry_t *e = calloc(1, sizeof *e);
        if (!e) abort(); /* sent: the reply must find it */
        e->id = id;
        js_callback_init(&e->on_spawned, env, args[4], "ucspi.spawn");
        js_callback_init(&e->on_exit, env, args[5], "ucspi.child");
        e->next = sp->buckets[id % BUCKETS];
        sp->buckets[id % BUCKETS] = e;
        count_pending(sp, 1);
        sp->inflight++;
        sent = 1;
      }
    }
  }
  napi_get_boolean(env, sent, &result);
  return result;
}

int spawner_kill(int32_t pid, int signo) {
  for (int i = 0; i < MAX_SPAWNERS; i++) {
    spawner_t *sp = pool[i];
    for (int b = 0; sp && b < BUCKETS; b++)
      for (entry_t *e = sp->buckets[b]; e; e = e->next)
        if (e->pid == pid) {
          struct request rq = {KILL, e->id, signo, 0, 0};
          return send_with_fds(sp->fd, &rq, sizeof rq, NULL, 0) == 0;
        }
  }
  return 0;
}

/* ucspi-spawner: spawns programs for a tcpserver that holds many connections.
 *
 * Every posix_spawn copies the caller's whole fd table into the child, and execve then closes
 * every close-on-exec entry one by one; a tcpserver that holds 2,000 TLS connections in its
 * own process has about 8,000 fds open, which made each spawn cost 0.3 ms more (DESIGN.md
 * section 3: the spawn path must not grow with what the server holds). This small process has
 * a handful of fds, so its spawns cost the same whatever the server holds. The server starts it
 * once, on its first spawn, and sends it each program to run with the fds to give it.
 *
 * Protocol: a SOCK_SEQPACKET socket on fd 3, one message per request or reply, native byte
 * order (both ends are the same machine).
 *   spawn:   struct request {SPAWN, id, npairs, argc, envc}, int32 target[npairs], then the
 *            strings file, argv..., envp..., each NUL-terminated; SCM_RIGHTS carries npairs
 *            fds, the i-th to become the child's fd target[i].
 *   kill:    struct request {KILL, id, signo}: a signal to that child, if it has not been
 *            reaped yet (a pidfd, so never to a process that reused its pid).
 *   replies: struct reply {SPAWNED, id, pid or -errno} then {EXITED, id, raw wait status}.
 * The children get fds 0, 1 and 2 and the targets; everything else here is close-on-exec.
 * When the server's end closes (it exited), this process exits; the children go on.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "glibc-signals.h"

enum { SPAWN = 1, KILL = 2, SPAWNED = 1, EXITED = 2 };
enum { CONTROL = 3, MAX_FDS = 64, MAX_MESSAGE = 4 << 20 };

struct request {
  uint32_t type, id;
  int32_t a, b, c; /* spawn: npairs, argc, envc; kill: signo */
};

struct reply {
  uint32_t type, id;
  int32_t value;
};

typedef struct child {
  uint32_t id;
  pid_t pid;
  int pidfd;
  struct child *prev, *next;
} child_t;

static child_t *children;
static int epfd;
static sigset_t reset_signals;
/* A static buffer: the spawner serves one request at a time. */
static char message[MAX_MESSAGE];

static void reply(uint32_t type, uint32_t id, int32_t value) {
  struct reply r = {type, id, value};
  /* Blocking: if the server does not read its replies, waiting is all there is to do. */
  while (send(CONTROL, &r, sizeof r, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) exit(errno == EPIPE ? 0 : 111);
}

static void unlink_child(child_t *c) {
  if (c->prev) c->prev->next = c->next;
  else children = c->next;
  if (c->next) c->next->prev = c->prev;
}

/* Takes each fd in fds above `floor`: dup2 into the child's targets then never clobbers a fd
 * a later pair still reads. Close-on-exec, as everything of ours is. */
static int lift_fds(int *fds, int n, int floor) {
  for (int i = 0; i < n; i++) {
    int lifted = fcntl(fds[i], F_DUPFD_CLOEXEC, floor);
    if (lifted < 0) return errno;
    close(fds[i]);
    fds[i] = lifted;
  }
  return 0;
}

/* Splits n NUL-terminated strings off [*p, end) into out[0..n-1]; 0 or EINVAL. */
static int take_strings(char **p, char *end, char **out, int n) {
  for (int i = 0; i < n; i++) {
    char *nul = memchr(*p, 0, (size_t)(end - *p));
    if (!nul) return EINVAL;
    out[i] = *p;
    *p = nul + 1;
  }
  return 0;
}

static int spawn_child(const struct request *rq, size_t len, int *fds, int nfds, pid_t *pid) {
  int npairs = rq->a, argc = rq->b, envc = rq->c;
  if (npairs != nfds || npairs < 0 || argc < 1 || envc < 0 || argc > MAX_MESSAGE / 2 ||
      envc > MAX_MESSAGE / 2)
    return EINVAL;
  char *p = message + sizeof *rq;
  char *end = message + len;
  if ((size_t)(end - p) < (size_t)npairs * sizeof(int32_t)) return EINVAL;
  int32_t targets[MAX_FDS];
  memcpy(targets, p, (size_t)npairs * sizeof(int32_t));
  p += (size_t)npairs * sizeof(int32_t);
  int highest = 2;
  for (int i = 0; i < npairs; i++) {
    if (targets[i] < 0) return EINVAL;
    if (targets[i] > highest) highest = targets[i];
  }
  char **argv = malloc(sizeof(char *) * ((size_t)argc + 1));
  char **envp = malloc(sizeof(char *) * ((size_t)envc + 1));
  char *file[1];
  int err = !argv || !envp ? ENOMEM : 0;
  if (!err) err = take_strings(&p, end, file, 1);
  if (!err) err = take_strings(&p, end, argv, argc);
  if (!err) err = take_strings(&p, end, envp, envc);
  if (!err) {
    argv[argc] = NULL;
    envp[envc] = NULL;
  }
  if (!err) err = lift_fds(fds, nfds, highest + 1);
  if (!err) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < npairs; i++) posix_spawn_file_actions_adddup2(&fa, fds[i], targets[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &reset_signals);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    err = posix_spawn(pid, file[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  free(argv);
  free(envp);
  return err;
}

static void watch(uint32_t id, pid_t pid) {
  child_t *c = calloc(1, sizeof *c);
  int pidfd = c ? (int)syscall(SYS_pidfd_open, pid, 0) /* close-on-exec */ : -1;
  int err = !c ? ENOMEM : pidfd < 0 ? errno : 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (!err && epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) err = errno;
  if (err) {
    /* Cannot watch it: it must not run unwatched, nor stay a zombie. */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (pidfd >= 0) close(pidfd);
    free(c);
    reply(SPAWNED, id, -err);
    return;
  }
  c->id = id;
  c->pid = pid;
  c->pidfd = pidfd;
  c->next = children;
  if (children) children->prev = c;
  children = c;
  reply(SPAWNED, id, pid);
}

static void reap(child_t *c) {
  int wstatus = 0;
  pid_t r;
  do r = waitpid(c->pid, &wstatus, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return; /* a spurious wake-up */
  if (r < 0) wstatus = 111 << 8;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
  close(c->pidfd);
  unlink_child(c);
  reply(EXITED, c->id, wstatus);
  free(c);
}

static void signal_child(uint32_t id, int signo) {
  for (child_t *c = children; c; c = c->next)
    if (c->id == id) {
      syscall(SYS_pidfd_send_signal, c->pidfd, signo, NULL, 0);
      return;
    }
}

/* One request from the server; 0 when its end is closed. */
static int serve_request(void) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } control;
  struct iovec iov = {message, sizeof message};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t n = recvmsg(CONTROL, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? -1 : 0;
  if (n == 0) return 0;
  int fds[MAX_FDS];
  int nfds = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count && nfds < MAX_FDS; i++)
      memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
  }
  struct request rq;
  if ((size_t)n < sizeof rq) {
    for (int i = 0; i < nfds; i++) close(fds[i]);
    return 1;
  }
  memcpy(&rq, message, sizeof rq);
  if (rq.type == KILL) {
    signal_child(rq.id, rq.a);
  } else if (rq.type == SPAWN) {
    pid_t pid = 0;
    int err = msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC) ? E2BIG : 0;
    if (!err) err = spawn_child(&rq, (size_t)n, fds, nfds, &pid);
    if (err) reply(SPAWNED, rq.id, -err);
    else watch(rq.id, pid);
  }
  /* The child has its own copies now (or never will). */
  for (int i = 0; i < nfds; i++) close(fds[i]);
  return 1;
}

int main(void) {
  /* Our end of the server's shutdown is EOF on the control socket, not a signal: a ^C or a
   * SIGTERM to the whole process group must not take away the exit statuses the server waits
   * for. The children get these back at their defaults. */
  int ignored[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigemptyset(&reset_signals);
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
    signal(ignored[i], SIG_IGN);
    sigaddset(&reset_signals, ignored[i]);
  }
  add_glibc_signals(&reset_signals);
  if (fcntl(CONTROL, F_SETFD, FD_CLOEXEC) < 0) return 111;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, CONTROL, &ev) < 0) return 111;
  for (;;) {
    struct epoll_event events[64];
    int n = epoll_wait(epfd, events, 64, -1);
    if (n < 0 && errno != EINTR) return 111;
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr) {
        reap(events[i].data.ptr);
        continue;
      }
      int served;
      while ((served = serve_request()) > 0) {
      }
      if (served == 0) return 0;
    }
  }
}

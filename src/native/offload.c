/* Work moved off Node's loop thread: a small pool of threads of our own, for the native TLS
 * engine's handshake steps (tls-engine.c), whose public-key operations are most of a TLS
 * server's CPU. With one loop thread, many clients in their handshakes at once were served one
 * after the other on one core while another stood partly idle; a step taken here leaves the loop
 * to the other sessions meanwhile.
 *
 * A job's work runs on a pool thread; its done runs back on the loop thread, in the order the
 * jobs finished, from the addon's epoll set (an eventfd in it, watch.c). libuv's own threadpool
 * is not used: tcpserver's spawns run there, and a program's start must not wait behind a queue
 * of handshakes.
 *
 * When the process exits, a pool thread may be in a job: the exit waits for that job to end
 * and then holds the pool, so that nothing runs while OpenSSL's own exit handler frees it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common.h"

/* A host with more cores than this gives more of them to more tcpserver --workers. */
#define MAX_THREADS 4
/* Jobs a thread may have waiting: the loop goes on with other sessions while they wait, and
 * does a step itself once the pool has this many (so neither side idles while the other is
 * behind). */
#define QUEUED_PER_THREAD 8

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
/* Held by a thread for the whole of a job, and for good by the exit handler. */
static pthread_mutex_t running = PTHREAD_MUTEX_INITIALIZER;
static offload_job_t *queue_head, *queue_tail; /* waiting for a thread */
static offload_job_t *done_head, *done_tail;   /* finished, waiting for the loop */
static int threads = -1;                       /* -1: not started yet; 0: none (one core) */
static int sharing = 1;                        /* processes that share the cores (--workers) */
static int outstanding;                        /* submitted and not yet done: loop thread only */
static int done_fd = -1;
static watch_t done_watch;

static void push(offload_job_t **head, offload_job_t **tail, offload_job_t *job) {
  job->next = NULL;
  if (*tail)
    (*tail)->next = job;
  else
    *head = job;
  *tail = job;
}

static void *pool_thread(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "tls-handshake");
  for (;;) {
    pthread_mutex_lock(&lock);
    while (!queue_head) pthread_cond_wait(&wake, &lock);
    offload_job_t *job = queue_head;
    queue_head = job->next;
    if (!queue_head) queue_tail = NULL;
    pthread_mutex_unlock(&lock);
    pthread_mutex_lock(&running);
    job->work(job);
    pthread_mutex_unlock(&running);
    pthread_mutex_lock(&lock);
    int was_empty = done_head == NULL;
    push(&done_head, &done_tail, job);
    pthread_mutex_unlock(&lock);
    /* One wake-up for a batch: the loop takes every finished job when it reads. */
    if (was_empty) {
      uint64_t one = 1;
      ssize_t n = write(done_fd, &one, sizeof one);
      (void)n; /* an eventfd's counter cannot overflow at one a batch */
    }
  }
  return NULL;
}

static void finished(watch_t *w, uint32_t events) {
  (void)w, (void)events;
  uint64_t count;
  ssize_t n = read(done_fd, &count, sizeof count);
  (void)n; /* EAGAIN: a batch already taken with the one before */
  pthread_mutex_lock(&lock);
  offload_job_t *job = done_head;
  done_head = done_tail = NULL;
  pthread_mutex_unlock(&lock);
  while (job) {
    offload_job_t *next = job->next;
    outstanding--;
    job->done(job);
    job = next;
  }
}

static void hold_at_exit(void) { pthread_mutex_lock(&running); }

/* This process's share of the cores it may run on, less the loop's own; at most MAX_THREADS.
 * Processes of tcpserver --workers split the cores: with as many as there are cores, each
 * keeps its handshakes on its own loop. */
static int pool_size(void) {
  cpu_set_t set;
  int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  int n = cores / sharing - 1;
  return n < 0 ? 0 : n > MAX_THREADS ? MAX_THREADS : n;
}

static void start(napi_env env) {
  threads = 0;
  int want = pool_size();
  if (want == 0 || watch_open(env) < 0) return;
  done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (done_fd < 0) return;
  done_watch = (watch_t){.fd = done_fd, .ready = finished};
  if (watch_change(&done_watch, EPOLLIN) < 0) {
    close(done_fd);
    done_fd = -1;
    return;
  }
  /* Registered after OpenSSL's own (made when Node started), so it runs before it. */
  atexit(hold_at_exit);
  /* Pool threads take no signals: they stay with the loop thread, as Node expects. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 1024 * 1024); /* address space: pages only as used */
  for (int i = 0; i < want; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, pool_thread, NULL) == 0) threads++;
  }
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void offload_share(int processes) {
  if (threads < 0 && processes > 0) sharing = processes;
}

int offload_room(napi_env env) {
  if (threads < 0) start(env);
  return outstanding < threads * QUEUED_PER_THREAD;
}

void offload_submit(offload_job_t *job) {
  outstanding++;
  pthread_mutex_lock(&lock);
  push(&queue_head, &queue_tail, job);
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
}

/* reaper: runs a server as its child with PR_SET_CHILD_SUBREAPER set, so that processes the
 * server's per-connection children leave behind (a chain whose first process exits before the
 * processes it forked, as s6-ucspitlsd's and smtpd-starttls-proxy-io's do) are reparented to
 * it and reaped by it instead of by init: their CPU lands in its cutime/cstime, which
 * bench/smtp.mjs adds to the server's. SIGTERM/SIGINT/SIGHUP/SIGQUIT are passed on to the
 * server; it exits with the server's status once the server has exited.
 *   reaper prog args...   (prints nothing of its own; stdin/stdout/stderr are the server's) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t server;

static void pass(int sig) {
  if (server > 0) kill(server, sig);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: reaper prog args...\n", stderr);
    return 100;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
    perror("reaper: prctl(PR_SET_CHILD_SUBREAPER)");
    return 111;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("reaper: fork");
    return 111;
  }
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    perror("reaper: exec");
    _exit(127);
  }
  server = pid;
  struct sigaction sa = {0};
  sa.sa_handler = pass;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, 0);
  sigaction(SIGINT, &sa, 0);
  sigaction(SIGHUP, &sa, 0);
  sigaction(SIGQUIT, &sa, 0);
  for (;;) {
    int status;
    pid_t w = waitpid(-1, &status, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 111;
    }
    if (w == pid) {
      /* Reap whatever is left without waiting, then report the server's end. */
      while (waitpid(-1, 0, WNOHANG) > 0) {}
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
  }
}

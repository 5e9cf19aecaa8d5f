/* queue-sink: a QMAILQUEUE program for bench/smtp.mjs's SMTP_BACKEND=qmail-smtpd runs. It
 * takes the message (fd 0, to EOF) and the envelope (fd 1, to EOF) as qmail-queue does,
 * keeps nothing, and exits 0 ("queued"). */
#include <errno.h>
#include <unistd.h>

static int drain(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
  }
}

int main(void) {
  if (drain(0) < 0) return 54; /* qmail-queue: unable to read the message */
  if (drain(1) < 0) return 54;
  return 0;
}

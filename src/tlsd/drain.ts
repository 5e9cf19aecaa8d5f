// A refused handshake's close, without a reset. In TLS 1.3 a client's Certificate,
// CertificateVerify and Finished come in one flight, and the engine refuses at the first of
// them: the rest is still unread when tcpserver closes the socket, and a close with bytes
// unread is a reset. A client that writes after its handshake (its own view: done) then meets
// that reset and never reads our alert. So our side is shut after the alert, and what the
// client has sent by now is read and dropped: the close is then a FIN, and what the client
// writes later is refused by a reset that comes after the alert in its queue.
import { native } from "../ucspi/native.ts";

/** At most this much is read: a client that keeps sending gets its reset. */
const DRAIN_BYTES = 64 * 1024;

export function shutAndDrain(fd: number): void {
  const n = native();
  try {
    n.shutdownWrite(fd);
    for (let read = 0; read < DRAIN_BYTES;) {
      const got = n.recv(fd, 16384, true);
      if (!got) return; // nothing more now, or the client's end
      read += got.length;
    }
  } catch {
    // The connection is gone already: nothing to spare it.
  }
}

// The two ends of a TLS session that tlsd and tlsc share: waiting for the handshake (with its
// timeout) and saying goodbye when the program is done.
import type { TLSSocket } from "node:tls";

/** How long a finished connection may take to say goodbye (close_notify, FIN) to its peer. */
const CLOSE_GRACE_MS = 5000;

/** Resolves when the handshake is done (`event`: "secure" on a server, "secureConnect" on a
 * client); rejects with a one-line reason on failure, close, or after timeoutMs (0: never). */
export function handshake(
  tls: TLSSocket,
  event: "secure" | "secureConnect",
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutMs > 0
        ? setTimeout(() => reject(new Error("handshake timed out")), timeoutMs)
        : undefined;
    const fail = (error: Error) => {
      clearTimeout(timer);
      // OpenSSL's own errors (they name their `library`) carry a short `reason`; their message
      // is an error-queue dump with a newline at the end.
      const openssl = error as Error & { library?: string; reason?: string };
      const text = openssl.library && openssl.reason ? openssl.reason : error.message;
      reject(new Error(`TLS handshake failed: ${text.trim().replace(/\s*\n\s*/g, " ")}`));
    };
    const closed = () => fail(new Error("connection closed"));
    tls.once("error", fail);
    tls.once("close", closed);
    // A TLSSocket made on a half-open stream does not close at the peer's FIN: only "end" says
    // that the peer went away before (or without) its hello.
    tls.once("end", closed);
    tls.once(event, () => {
      clearTimeout(timer);
      tls.off("error", fail);
      tls.off("close", closed);
      tls.off("end", closed);
      resolve();
    });
  });
}

/** Ends the session (close_notify, then FIN) and waits a little for the peer to close too.
 * `halfClosed`: the program's end was passed on as a bare TCP half-close already (-s), so no
 * close_notify follows; the peer's end, or the grace time, closes the session. */
export function goodbye(tls: TLSSocket, halfClosed = false): Promise<void> {
  return new Promise((resolve) => {
    if (tls.destroyed) return resolve();
    const timer = setTimeout(() => {
      tls.destroy();
      resolve();
    }, CLOSE_GRACE_MS);
    tls.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    tls.on("error", () => tls.destroy());
    if (halfClosed) tls.once("end", () => tls.destroy());
    else tls.end();
    tls.resume();
  });
}

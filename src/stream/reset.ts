// A connection cut with a reset, where it has one: how a relay passes a peer's reset on,
// rather than end the other side as if all were well.
import { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** A TCP socket is reset; anything else (a TLS session after tlsd, a UNIX socket, a pipe) has
 * no reset of its own and is ended at once instead, as is a socket already half-closed (Node's
 * reset would neither reset nor close it). */
export function resetStream(stream: Duplex): void {
  if (stream instanceof Socket && !stream.destroyed && !stream.writableEnded) {
    try {
      stream.resetAndDestroy();
      return;
    } catch {
      // Not a TCP socket: Node says so by throwing (ERR_INVALID_HANDLE_TYPE), and did nothing.
    }
  }
  stream.destroy();
}

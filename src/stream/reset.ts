// A connection cut with a reset, where it has one: how a relay passes a peer's reset on,
// rather than end the other side as if all were well.
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";

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

/** A stage's connection is reset rather than ended: by the hook of the stage that owns it (a
 * TLS session, a starttls-wrapper's socket pair, which has no reset of its own), else its fd
 * closes with a reset when it is closed (by whoever closes it), else its stream is reset. */
export function resetConnection(connection: Connection): void {
  if (connection.reset) connection.reset();
  else if (connection.fd !== undefined) native().abortOnClose(connection.fd);
  else if (connection.stream) resetStream(connection.stream);
}

// s6-tlsd's and s6-tlsc's close_notify policies, for tlsd and tlsc alike:
//   -S / -s  on the program's EOF, end the session with close_notify / with a bare TCP
//            half-close (our default is -S: OpenSSL 3 peers report a missing close_notify as
//            an error, and it is what tells a peer that nothing was cut off);
//   -J / -j  the peer's TCP FIN without a close_notify first is fatal / normal.
// Node reports both kinds of end as one "end" event, so -J watches the transport: a TLS end
// that comes while the transport is still open can only be the peer's close_notify.
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { connectionStream } from "../ucspi/chain.ts";
import { FrontStream } from "../stream/front-stream.ts";
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";
import { closeNotifyFor } from "./options.ts";
import type { CommonTlsOptions } from "./options.ts";

export const MISSING_CLOSE_NOTIFY = "remote closed connection without a close_notify";

export interface CloseNotifyWatch {
  /** The transport to make the TLS session on. */
  transport: Duplex;
  /** Call once on the TLS socket: `onMissing` runs if the peer ends without close_notify. */
  watch(tls: TLSSocket, onMissing: () => void): void;
}

/** A transport whose end reaches the TLS layer one turn late, so that a close_notify that came
 * with the FIN is seen first. */
export function watchCloseNotify(transport: Duplex): CloseNotifyWatch {
  let transportEnded = false;
  const front = new FrontStream(transport, {
    ended: (end) =>
      setImmediate(() => {
        transportEnded = true;
        end();
      }),
  });
  return {
    transport: front,
    watch(tls, onMissing) {
      tls.once("end", () => {
        if (transportEnded) onMissing();
      });
    },
  };
}

/**
 * -s: the stream the program gets, whose end is a TCP half-close with no close_notify. Every
 * record written has gone out once the writes are done; `fd` is the connection's socket, and
 * without one (a transport that is a stream of ours) the transport itself is ended.
 */
export function withoutCloseNotify(tls: TLSSocket, fd: number | undefined, transport: Duplex) {
  return new FrontStream(tls, {
    final(_inner, done) {
      if (fd !== undefined) native().shutdownWrite(fd);
      else transport.end();
      done();
    },
  });
}

/** Nagle off on a TCP connection (a no-op on other streams): TLS writes whole records, and
 * Nagle, with the peer's delayed ACK, holds the record that follows another (a server's first
 * bytes after its session tickets) for 40 ms. stunnel does the same. */
export function noDelay(stream: Duplex): void {
  if (stream instanceof Socket) stream.setNoDelay(true);
}

/** A session's plumbing under the -S/-s and -J/-j policies, for tlsd and tlsc alike. */
export interface ClosePolicy {
  /** What to make the TLS session on. */
  transport: Duplex;
  /** The stream the program gets for the session `tls`; with -J, a missing close_notify
   * cuts the session and calls `onMissing`. */
  attach(tls: TLSSocket, onMissing: () => void): Duplex;
}

export function closePolicy(
  connection: Connection,
  options: Pick<CommonTlsOptions, "closeNotify" | "enforceCloseNotify">,
): ClosePolicy {
  const raw = connectionStream(connection);
  noDelay(raw);
  const watched = options.enforceCloseNotify ? watchCloseNotify(raw) : undefined;
  return {
    transport: watched?.transport ?? raw,
    attach(tls, onMissing) {
      watched?.watch(tls, () => {
        tls.destroy();
        onMissing();
      });
      return closeNotifyFor(options.closeNotify, tls.getProtocol())
        ? tls
        : withoutCloseNotify(tls, connection.fd, raw);
    },
  };
}

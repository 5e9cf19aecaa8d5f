// s6-tlsd's and s6-tlsc's close_notify policies, for tlsd and tlsc alike:
//   -S / -s  on the program's EOF, end the session with close_notify / with a bare TCP
//            half-close (our default is -S: OpenSSL 3 peers report a missing close_notify as
//            an error, and it is what tells a peer that nothing was cut off);
//   -J / -j  the peer's TCP FIN without a close_notify first is fatal / normal.
// Node reports both kinds of end as one "end" event, so -J watches the transport: a TLS end
// that comes while the transport is still open can only be the peer's close_notify.
// In TLS 1.2 the peer's close_notify ends the whole session (RFC 5246 7.2.1), as s6-tlsd and
// s6-tlsc built on BearSSL take it: we answer with ours and close, and what the program still
// writes is dropped. In TLS 1.3 it closes one direction only, and the program's answer goes out.
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

/** How long a finished connection may take to say goodbye (close_notify, FIN) to its peer; and
 * how long a program may write on, unheard, after a TLS 1.2 close_notify ended its session. */
export const CLOSE_GRACE_MS = 5000;

export interface CloseNotifyWatch {
  /** The transport to make the TLS session on. */
  transport: Duplex;
  /** Call once on the TLS socket: `onMissing` runs if the peer ends without close_notify. */
  watch(tls: TLSSocket, onMissing: () => void): void;
  /** Whether the transport's end has reached the TLS layer. */
  ended(): boolean;
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
    ended: () => transportEnded,
  };
}

/** Whether the peer's end was read from `stream` already (the bytes before it may still wait
 * in its buffer). A TLS socket made on a net.Socket takes its handle over, and an end read
 * before then never reaches it: Node keeps that in the stream's state only. */
export function endWasRead(stream: Duplex): boolean {
  const state = (stream as Duplex & { _readableState?: { ended?: boolean } })._readableState;
  return stream.readableEnded || state?.ended === true;
}

/** Without -J's watch: whether the transport (`fd`, else the stream `raw`) is still open when
 * the TLS session ends, so that its end was the peer's close_notify. A look at the socket, one
 * recv when the session ends: a watch for every session costs a stream layer in the relay. A
 * FIN that came right behind the close_notify is taken for a bare FIN: the session stays
 * half-open as before, the safe side (a reply that a half-closing peer waits for is never lost). */
function transportOpen(fd: number | undefined, raw: Duplex): boolean {
  return fd === undefined ? !endWasRead(raw) : socketOpen(fd);
}

/** Whether the peer's end has not reached socket `fd` yet (a peek of one byte). */
export function socketOpen(fd: number): boolean {
  try {
    return native().recv(fd, 1, false) !== null;
  } catch {
    return false;
  }
}

/** How the stream the program gets ends a session: see programStream. */
interface ProgramEnd {
  /** -s: the program's end is a TCP half-close with no close_notify. Every record written has
   * gone out once the writes are done; `fd` is the connection's socket, and without one (a
   * transport that is a stream of ours) the transport itself is ended. */
  halfClose?: { fd: number | undefined; transport: Duplex };
  /** TLS 1.2: called when the session's reading side ends; true when that was the peer's
   * close_notify, which ends the session. */
  closeNotifyCame?: () => boolean;
}

/** The stream the program gets for `tls`: the session itself, or, for -s or TLS 1.2, a front
 * that ends it as `how` says. After a TLS 1.2 close_notify (`onEnded` is told) the front answers
 * with ours (then FIN) and drops what the program still writes, for CLOSE_GRACE_MS: a reply
 * the program was making is not cut short (s6-tlsd's engine closes at once, and the program's
 * next write fails), and one that writes on for ever (`yes`, `tail -f`) is not kept for ever:
 * the front then closes, and its next write fails (EPIPE). */
function programStream(tls: TLSSocket, how: ProgramEnd, onEnded = () => {}): Duplex {
  const { halfClose, closeNotifyCame } = how;
  if (!halfClose && !closeNotifyCame) return tls;
  const front: FrontStream = new FrontStream(tls, {
    ...(halfClose && {
      final(_inner, done) {
        if (halfClose.fd !== undefined) native().shutdownWrite(halfClose.fd);
        else halfClose.transport.end();
        done();
      },
    }),
    ...(closeNotifyCame && {
      ended(end) {
        if (closeNotifyCame()) {
          onEnded();
          front.detach();
          tls.end();
          const cut = setTimeout(() => front.destroy(), CLOSE_GRACE_MS);
          front.once("close", () => clearTimeout(cut));
        }
        end();
      },
    }),
  });
  return front;
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
  /** Whether a TLS 1.2 close_notify from the peer ended the session (a clean end). */
  endedByPeer(): boolean;
}

export function closePolicy(
  connection: Connection,
  options: Pick<CommonTlsOptions, "closeNotify" | "enforceCloseNotify">,
): ClosePolicy {
  const raw = connectionStream(connection);
  noDelay(raw);
  const watched = options.enforceCloseNotify ? watchCloseNotify(raw) : undefined;
  const closeNotifyCame = watched
    ? () => !watched.ended()
    : () => transportOpen(connection.fd, raw);
  let endedByPeer = false;
  return {
    transport: watched?.transport ?? raw,
    attach(tls, onMissing) {
      watched?.watch(tls, () => {
        tls.destroy();
        onMissing();
      });
      const protocol = tls.getProtocol();
      return programStream(
        tls,
        {
          ...(!closeNotifyFor(options.closeNotify, protocol) && {
            halfClose: { fd: connection.fd, transport: raw },
          }),
          ...(protocol !== "TLSv1.3" && { closeNotifyCame }),
        },
        () => (endedByPeer = true),
      );
    },
    endedByPeer: () => endedByPeer,
  };
}

// tlsd's look at a connection's first bytes before the handshake. A TLS service behind
// starttls-wrapper, or haproxy's send-proxy, whose tcpserver lacks --proxy gets a PROXY header
// where the ClientHello should be; OpenSSL calls that "wrong version number", as it calls
// plaintext, and the bytes are gone by then. Looked at first, it can be named.
// The first chunk is read from the connection's stream, which tlsd makes anyway, and put back
// in front of it: Node's TLS socket takes what its socket has buffered as if it had read it.
// (A peek, MSG_PEEK, would need a wait of its own: the ClientHello is almost never there yet
// when tlsd starts.) Either way the look costs an in-process handshake about 7% of tcpserver's
// CPU, so suspects.ts decides which connections get it.
import { moreForProxySignature, startsWithProxySignature } from "../proxy/signature.ts";
import { PROXY_V2_SIGNATURE } from "../proxy/v2.ts";
import { connectionStream } from "../ucspi/chain.ts";
import { peekStream } from "../stream/peek.ts";
import { LONGEST_TIMER_MS } from "../ucspi/timers.ts";
import type { Connection } from "../ucspi/stage.ts";
import { causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";

export type FirstBytes =
  /** A PROXY protocol header (v1 or v2). */
  | { kind: "proxy" }
  /** Nothing, or only part of a signature, came within the limit. */
  | { kind: "silent" }
  /** The client left (or its connection failed: `reason`) before its first bytes decided. */
  | { kind: "closed"; reason: string }
  /** Anything else: the handshake decides (it names what is wrong, if anything is). */
  | { kind: "other" };

/** What comes first on `connection` (from now on a stream, every byte still in it), waited
 * for at most `limitMs` in all (0: no limit); "other" for a connection that is a stream
 * already. */
export async function lookAtFirstBytes(
  connection: Connection,
  limitMs: number,
): Promise<FirstBytes> {
  // A stream an earlier stage made (starttls-wrapper's own TLS in local mode) is not where a
  // PROXY header comes: tcpserver's connection is, and its stream is made here.
  if (connection.stream || connection.fd === undefined) return { kind: "other" };
  const look = await peekStream(
    connectionStream(connection),
    { silenceMs: limitMs || LONGEST_TIMER_MS, maxBytes: PROXY_V2_SIGNATURE.length },
    examine,
  );
  switch (look.kind) {
    case "done":
      return startsWithProxySignature(look.bytes) ? { kind: "proxy" } : { kind: "other" };
    case "closed":
      return closed(look.reason);
    case "unfinished":
      // A signature cut short and left there is as silent as nothing at all.
      if (look.reason !== "timed out") return closed(look.reason);
      return limitMs > 0 ? { kind: "silent" } : { kind: "other" };
    case "silent":
      return limitMs > 0 ? { kind: "silent" } : { kind: "other" };
  }
}

function closed(reason: string): FirstBytes {
  return { kind: "closed", reason: reason === "closed" ? "connection closed" : reason };
}

/** Enough bytes (true) or how many in all: the first decides, except inside a signature. */
export function examine(bytes: Buffer): true | number {
  return moreForProxySignature(bytes) ?? true;
}

/** The same look for the native engine, which takes the socket as it is: a peek (MSG_PEEK)
 * once bytes are there, waited for at most `limitMs` (0: no limit); a signature cut short is
 * waited for whole (SO_RCVLOWAT), as the stream's look does. */
export function peekFirstBytes(fd: number, limitMs: number): Promise<FirstBytes> {
  const n = native();
  return new Promise((resolve) => {
    let wait = 0;
    const done = (first: FirstBytes) => {
      clearTimeout(timer);
      n.rcvLowat(fd, 1);
      resolve(first);
    };
    const timer =
      limitMs > 0
        ? setTimeout(() => {
            n.cancelWait(fd, wait);
            done({ kind: "silent" });
          }, limitMs)
        : undefined;
    const look = () => {
      wait = n.whenReadable(fd, (status) => {
        let bytes: Buffer | null | undefined;
        try {
          bytes = n.recv(fd, PROXY_V2_SIGNATURE.length, false);
        } catch (error) {
          return done(closed(causeText(error)));
        }
        if (bytes === null) return done(closed("closed"));
        const more = bytes === undefined ? 1 : examine(bytes);
        if (more !== true) {
          if (status !== 0) return done(closed("closed"));
          n.rcvLowat(fd, more);
          return look();
        }
        done(startsWithProxySignature(bytes as Buffer) ? { kind: "proxy" } : { kind: "other" });
      });
    };
    look();
  });
}

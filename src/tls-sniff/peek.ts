// tls-sniff's look at a connection: its first bytes, peeked (none taken; see stream/peek.ts),
// until the ClientHello parser can tell TLS from plaintext.
import { moreForProxySignature, startsWithProxySignature } from "../proxy/signature.ts";
import { drain as drainBytes, peekBytes } from "../stream/peek.ts";
import type { Look } from "../stream/peek.ts";
import type { Connection } from "../ucspi/stage.ts";
import { MAX_SNIFF_BYTES, sniff } from "./client-hello.ts";
import type { ClientHelloInfo, SniffResult } from "./client-hello.ts";

export type Verdict =
  | { kind: "tls"; hello: ClientHelloInfo }
  /** silent: the client sent nothing within the silence limit (it waits for the server). */
  | { kind: "plain"; silent: boolean }
  /** A PROXY protocol header (v1 or v2): the tcpserver in front lacks --proxy. */
  | { kind: "proxy" }
  | { kind: "malformed"; reason: string }
  /** The client left before sending a byte. */
  | { kind: "closed" }
  /** It started a ClientHello and did not finish it: in time, or before it closed. */
  | { kind: "unfinished"; reason: string };

export interface Limits {
  silenceMs: number;
  helloMs: number;
}

export interface Peeked {
  verdict: Verdict;
  /** The connection to pass on, every byte still in it. */
  connection: Connection;
}

/** The verdict on the connection's first bytes; none of them is consumed. */
export async function peek(connection: Connection, limits: Limits): Promise<Peeked> {
  const { look, connection: passOn } = await peekBytes(
    connection,
    { ...limits, maxBytes: MAX_SNIFF_BYTES },
    (bytes) => {
      // "P" may be a plaintext request or a PROXY header: the signature's length tells.
      const more = moreForProxySignature(bytes);
      if (more !== undefined) return more;
      const result = sniff(bytes);
      return result.kind === "more" ? result.need : true;
    },
  );
  return { verdict: verdictOf(look), connection: passOn };
}

function verdictOf(look: Look): Verdict {
  switch (look.kind) {
    case "done":
      return startsWithProxySignature(look.bytes)
        ? { kind: "proxy" }
        : toVerdict(sniff(look.bytes));
    case "silent":
      return { kind: "plain", silent: true };
    case "closed":
      return { kind: "closed" };
    case "unfinished":
      // Part of a signature, and no more: a plaintext client that said little.
      if (moreForProxySignature(look.bytes) !== undefined) return { kind: "plain", silent: false };
      return { kind: "unfinished", reason: `${look.reason} inside the ClientHello` };
  }
}

/** Takes the bytes peeked so far off a socket, so that closing it sends a FIN, not a reset. */
export function drain(connection: Connection): void {
  drainBytes(connection, MAX_SNIFF_BYTES);
}

function toVerdict(result: SniffResult): Verdict {
  switch (result.kind) {
    case "tls":
      return { kind: "tls", hello: result.hello };
    case "plain":
      return { kind: "plain", silent: false };
    case "malformed":
      return { kind: "malformed", reason: result.reason };
    case "more":
      // Cannot happen (the parser calls a hello longer than MAX_SNIFF_BYTES malformed before
      // it gets there); the switch has to cover it.
      return { kind: "malformed", reason: "ClientHello too long" };
  }
}

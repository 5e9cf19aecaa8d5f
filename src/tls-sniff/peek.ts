// tls-sniff's look at a connection: its first bytes, peeked (none taken; see ucspi/peek.ts),
// until the ClientHello parser can tell TLS from plaintext.
import { drain as drainBytes, peekBytes } from "../ucspi/peek.ts";
import type { Connection } from "../ucspi/stage.ts";
import { MAX_SNIFF_BYTES, sniff } from "./client-hello.ts";
import type { ClientHelloInfo, SniffResult } from "./client-hello.ts";

export type Verdict =
  | { kind: "tls"; hello: ClientHelloInfo }
  /** silent: the client sent nothing within the silence limit (it waits for the server). */
  | { kind: "plain"; silent: boolean }
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
      const result = sniff(bytes);
      return result.kind === "more" ? result.need : true;
    },
  );
  const verdict: Verdict =
    look.kind === "done"
      ? toVerdict(sniff(look.bytes))
      : look.kind === "silent"
        ? { kind: "plain", silent: true }
        : look.kind === "closed"
          ? { kind: "closed" }
          : { kind: "unfinished", reason: `${look.reason} inside the ClientHello` };
  return { verdict, connection: passOn };
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

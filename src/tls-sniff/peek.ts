// tls-sniff's look at a connection: its first bytes, peeked (none taken; see stream/peek.ts),
// until the ClientHello parser can tell TLS from plaintext.
import { moreForProxySignature, startsWithProxySignature } from "../proxy/signature.ts";
import { drain as drainBytes, peekBytes } from "../stream/peek.ts";
import type { Look } from "../stream/peek.ts";
import type { Connection } from "../ucspi/stage.ts";
import { MAX_SNIFF_BYTES, sniff } from "./client-hello.ts";
import type { ClientHelloInfo, SniffResult } from "./client-hello.ts";
import type { PlainRoute } from "./options.ts";
import { plainMatches } from "./plaintext.ts";

export type Verdict =
  | { kind: "tls"; hello: ClientHelloInfo }
  /** silent: the client sent nothing within the silence limit (it waits for the server);
   * route: the plaintext route its first bytes match, if any. */
  | { kind: "plain"; silent: boolean; route?: PlainRoute | undefined }
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
  /** Plaintext routes by the first bytes (tls-sniff's --ssh, --http, --prefix). */
  plainRoutes?: readonly PlainRoute[];
}

export interface Peeked {
  verdict: Verdict;
  /** The connection to pass on, every byte still in it. */
  connection: Connection;
}

/** The verdict on the connection's first bytes; none of them is consumed. */
export async function peek(connection: Connection, limits: Limits): Promise<Peeked> {
  const plainRoutes = limits.plainRoutes ?? [];
  const { look, connection: passOn } = await peekBytes(
    connection,
    { ...limits, maxBytes: MAX_SNIFF_BYTES },
    (bytes) => {
      // "P" may be a plaintext request or a PROXY header: the signature's length tells.
      const more = moreForProxySignature(bytes);
      if (more !== undefined) return more;
      const result = sniff(bytes);
      if (result.kind === "plain") {
        const need = plainRouteOf(plainRoutes, bytes, false);
        return typeof need === "number" ? need : true;
      }
      return result.kind === "more" ? result.need : true;
    },
  );
  return { verdict: verdictOf(look, plainRoutes), connection: passOn };
}

/**
 * The first plaintext route the bytes match, in the order given (undefined: none does), or,
 * unless `final` (nothing more will come), how many bytes in all would tell the first one that
 * is still open.
 */
function plainRouteOf(
  routes: readonly PlainRoute[],
  bytes: Uint8Array,
  final: boolean,
): PlainRoute | number | undefined {
  for (const route of routes) {
    const m = plainMatches(route.match, bytes, final);
    if (m === true) return route;
    if (m !== false) return m;
  }
  return undefined;
}

function verdictOf(look: Look, plainRoutes: readonly PlainRoute[]): Verdict {
  switch (look.kind) {
    case "done":
      return startsWithProxySignature(look.bytes)
        ? { kind: "proxy" }
        : toVerdict(sniff(look.bytes), look.bytes, plainRoutes);
    case "silent":
      return { kind: "plain", silent: true };
    case "closed":
      return { kind: "closed" };
    case "unfinished":
      // Part of a signature, and no more: a plaintext client that said little. Plaintext that
      // a route was waiting on goes by what came.
      if (moreForProxySignature(look.bytes) !== undefined || sniff(look.bytes).kind === "plain")
        return plainVerdict(look.bytes, plainRoutes);
      return { kind: "unfinished", reason: `${look.reason} inside the ClientHello` };
  }
}

function plainVerdict(bytes: Uint8Array, plainRoutes: readonly PlainRoute[]): Verdict {
  const route = plainRouteOf(plainRoutes, bytes, true);
  return { kind: "plain", silent: false, route: typeof route === "number" ? undefined : route };
}

/** Takes the bytes peeked so far off a socket, so that closing it sends a FIN, not a reset. */
export function drain(connection: Connection): void {
  drainBytes(connection, MAX_SNIFF_BYTES);
}

function toVerdict(
  result: SniffResult,
  bytes: Uint8Array,
  plainRoutes: readonly PlainRoute[],
): Verdict {
  switch (result.kind) {
    case "tls":
      return { kind: "tls", hello: result.hello };
    case "plain":
      return plainVerdict(bytes, plainRoutes);
    case "malformed":
      return { kind: "malformed", reason: result.reason };
    case "more":
      // Cannot happen (the parser calls a hello longer than MAX_SNIFF_BYTES malformed before
      // it gets there); the switch has to cover it.
      return { kind: "malformed", reason: "ClientHello too long" };
  }
}

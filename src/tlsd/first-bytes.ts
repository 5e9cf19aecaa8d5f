// tlsd's look at a connection's first bytes before the handshake (peeked: none is taken). A TLS
// service behind starttls-wrapper, or haproxy's send-proxy, whose tcpserver lacks --proxy gets a
// PROXY header where the ClientHello should be; OpenSSL calls that "wrong version number", as it
// calls plaintext, and the bytes are gone by then. Looked at first, it can be named.
import { PROXY_V2_SIGNATURE } from "../proxy/v2.ts";
import { drain, peekBytes } from "../ucspi/peek.ts";
import type { Connection } from "../ucspi/stage.ts";

const PROXY_V1_SIGNATURE = Buffer.from("PROXY ", "latin1");
const SIGNATURES = [PROXY_V1_SIGNATURE, PROXY_V2_SIGNATURE];
const LONGEST = Math.max(...SIGNATURES.map((signature) => signature.length));
/** A TLS record starts with its content type; a ClientHello's is handshake (22). */
const HANDSHAKE_RECORD = 0x16;
/** setTimeout's longest wait, for "no limit" (-K 0). */
const NO_LIMIT_MS = 2 ** 31 - 1;

export type FirstBytes =
  /** A PROXY protocol header (v1 or v2). */
  | { kind: "proxy" }
  /** Nothing, or only part of a signature, came within the limit. */
  | { kind: "silent" }
  /** Anything else: the handshake decides (it names what is wrong, if anything is). */
  | { kind: "other"; connection: Connection };

/** What comes first on `connection`, waited for at most `limitMs` (0: no limit). */
export async function lookAtFirstBytes(
  connection: Connection,
  limitMs: number,
): Promise<FirstBytes> {
  const limit = limitMs || NO_LIMIT_MS;
  const { look, connection: passOn } = await peekBytes(
    connection,
    { silenceMs: limit, helloMs: limit, maxBytes: LONGEST },
    examine,
  );
  if (look.kind === "done" && isProxySignature(look.bytes)) {
    // Taken off the socket, so that closing it says FIN to the sender, not a reset.
    drain(passOn, 1 << 16);
    return { kind: "proxy" };
  }
  if (look.kind === "silent" || (look.kind === "unfinished" && look.reason === "timed out"))
    return limitMs > 0 ? { kind: "silent" } : { kind: "other", connection: passOn };
  return { kind: "other", connection: passOn };
}

/** Enough bytes (true) or how many in all: the first decides, except inside a signature. */
export function examine(bytes: Buffer): true | number {
  if (bytes[0] === HANDSHAKE_RECORD) return true;
  for (const signature of SIGNATURES)
    if (bytes.length < signature.length && isPrefixOf(bytes, signature)) return signature.length;
  return true;
}

export function isProxySignature(bytes: Buffer): boolean {
  return SIGNATURES.some(
    (signature) => bytes.length >= signature.length && isPrefixOf(signature, bytes),
  );
}

function isPrefixOf(prefix: Buffer, bytes: Buffer): boolean {
  return bytes.subarray(0, prefix.length).equals(prefix);
}

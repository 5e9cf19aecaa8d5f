// The PROXY protocol's signatures alone: whether bytes that arrived where something else was
// expected (a ClientHello, a plaintext request) are a PROXY header instead, so that the
// program can name the mistake (a tcpserver without --proxy behind a proxy that sends them).
import { PROXY_V2_SIGNATURE } from "./v2.ts";

const PROXY_V1_SIGNATURE = Buffer.from("PROXY ", "latin1");
const SIGNATURES = [PROXY_V1_SIGNATURE, PROXY_V2_SIGNATURE];

/** How many bytes in all tell whether `bytes` start a PROXY header, when they are a proper
 * prefix of a signature; undefined when they tell already. */
export function moreForProxySignature(bytes: Uint8Array): number | undefined {
  for (const signature of SIGNATURES)
    if (bytes.length < signature.length && isPrefixOf(bytes, signature)) return signature.length;
  return undefined;
}

/** Whether `bytes` start with a PROXY v1 or v2 signature. */
export function startsWithProxySignature(bytes: Uint8Array): boolean {
  return SIGNATURES.some(
    (signature) => bytes.length >= signature.length && isPrefixOf(signature, bytes),
  );
}

// Byte by byte: the signatures are a few bytes, and this runs on every connection tls-sniff
// and acme-challenge look at, where a subarray and a compare cost more than the bytes.
function isPrefixOf(prefix: Uint8Array, bytes: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== bytes[i]) return false;
  return true;
}

// tlsc's check of the server's certificate, done after the handshake in our own words: Node's
// messages name its own fixes (`--use-system-ca`) and hide the name that did not match.
import { X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from "node:tls";
import { checkServerIdentity } from "node:tls";
import type { TrustAnchors } from "../tls/cert-store.ts";
import { statusText } from "../tls/ocsp-staple.ts";
import { native } from "../ucspi/native.ts";

/** OpenSSL's words for the chain errors a server's certificate meets in practice (Node reports
 * only the code); any other code is spelled out from its name. */
const CHAIN_ERRORS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
  SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
  UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to verify the first certificate",
  CERT_HAS_EXPIRED: "certificate has expired",
  CERT_NOT_YET_VALID: "certificate is not yet valid",
  CERT_SIGNATURE_FAILURE: "certificate signature failure",
  CERT_REVOKED: "certificate revoked",
  INVALID_CA: "invalid CA certificate",
  INVALID_PURPOSE: "unsupported certificate purpose",
  CERT_UNTRUSTED: "certificate not trusted",
  CERT_REJECTED: "certificate rejected",
};

export function chainErrorText(code: string): string {
  return CHAIN_ERRORS[code] ?? code.toLowerCase().replace(/_/g, " ");
}

/** Where the anchors came from, for the message: the user's fix is to set or change them. */
function anchorsHint(anchors: TrustAnchors | undefined): string {
  if (!anchors) return "set CAFILE or CADIR";
  return "dir" in anchors
    ? `checked against CADIR ${anchors.dir}`
    : `checked against CAFILE ${anchors.file}`;
}

/** The names a certificate is for, as a person reads them. */
function namesOf(cert: PeerCertificate): string {
  return cert.subjectaltname || (cert.subject?.CN ? `CN=${String(cert.subject.CN)}` : "no name");
}

/**
 * Throws, in our words, when the server's chain did not verify against the anchors or its
 * certificate is not for `name` (a DNS name, or an address checked against the IP SANs).
 */
export function verifyServer(
  tls: TLSSocket,
  name: string,
  anchors: TrustAnchors | undefined,
): void {
  if (!tls.authorized) {
    const code = String(tls.authorizationError ?? "UNKNOWN");
    throw new Error(
      `unable to verify the server certificate: ${chainErrorText(code)} (${anchorsHint(anchors)})`,
    );
  }
  const cert = tls.getPeerCertificate();
  if (checkServerIdentity(name, cert))
    throw new Error(`the server certificate is not for ${name}: it is for ${namesOf(cert)}`);
}

/**
 * The server's stapled OCSP response, checked after the chain and the name (a verified issuer
 * to check it against), as tlsd checks one before it staples it (ocspCheck): valid now, for
 * the certificate, signed by its issuer (as verified: the trust store completes a chain the
 * server sent short) or by a responder that issuer certified. Throws, in our words:
 * - with `required` (--cert-status), unless it is such a response saying `good`;
 * - for a certificate that must be stapled (its TLS Feature extension asks for
 *   status_request, RFC 7633), the same: the server promised one;
 * - otherwise only when it is such a response saying `revoked`: the CA's own word, which no
 *   client should pass over once it has it. A response that is no good is ignored then, as
 *   there was none.
 */
export function verifyStapled(
  tls: TLSSocket,
  response: Buffer | null | undefined,
  required: boolean,
): void {
  const leaf = tls.getPeerCertificate(true);
  const issuer: DetailedPeerCertificate | undefined = leaf.issuerCertificate;
  const chain = Buffer.from(
    [leaf, ...(issuer && issuer !== leaf ? [issuer] : [])]
      .map((c) => new X509Certificate(c.raw).toString())
      .join(""),
  );
  // Why a good response is owed, if it is: asked only where the answer matters (a good
  // response, or a revoked one, settles it without reading the certificate's extensions).
  const owed = (): string | undefined =>
    required
      ? " (--cert-status)"
      : native().ocspMustStaple(chain)
        ? ", and its certificate must be served with one (TLS Feature status_request)"
        : undefined;
  if (!response || response.length === 0) {
    const why = owed();
    if (why !== undefined) throw new Error(`the server stapled no OCSP response${why}`);
    return;
  }
  let read;
  try {
    read = native().ocspCheck(response, chain);
  } catch (error) {
    if (owed() === undefined) return;
    throw new Error(`the server's stapled OCSP response is refused: ${(error as Error).message}`);
  }
  if (read.status === "good" || (read.status === "unknown" && owed() === undefined)) return;
  throw new Error(`the server's stapled OCSP response is refused: ${statusText(read)}`);
}

// The protocol settings every context of ours shares, server and client: versions, groups,
// TLS 1.2 suites, the server's preference, no renegotiation.
import { constants } from "node:crypto";

/** TLS 1.3 groups, the post-quantum hybrid first. With the server's preference on, a client
 * that sends both key shares gets the hybrid whatever its order; one that sends only X25519
 * gets X25519 at once (no HelloRetryRequest, no extra round trip). */
export const GROUPS = "X25519MLKEM768:X25519:P-256:P-384";

/** TLS 1.2 suites by default: forward secrecy (ECDHE) and AEAD only, so an RSA certificate
 * never serves static-RSA key exchange or CBC. TLS 1.3 suites are OpenSSL's own (all AEAD). */
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
].join(":");

export interface ProtocolOptions {
  minVersion: "TLSv1.2";
  ecdhCurve: string;
  ciphers: string;
  honorCipherOrder: boolean;
  secureOptions: number;
}

/** The settings for a context; `ciphers`: the TLS 1.2 list, from $CIPHERS (ucspi-ssl's name)
 * when the user wants a legacy one. Renegotiation is refused both ways: a client's is a cheap
 * way to make a server do full handshakes, and neither side of ours needs it. */
export function protocolOptions(ciphers: string | undefined): ProtocolOptions {
  return {
    minVersion: "TLSv1.2",
    ecdhCurve: GROUPS,
    ciphers: ciphers ?? TLS12_CIPHERS,
    honorCipherOrder: true,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

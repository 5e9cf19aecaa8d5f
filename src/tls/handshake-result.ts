// What a server handshake came to, in the few words tcpserver --metrics counts by: why one
// failed (a fixed set, never OpenSSL's or a client's text) and, for one that worked, the key
// exchange group. Node tells a server nothing of its group (getEphemeralKeyInfo() is null
// there), but OpenSSL keeps it in the session, which getSession() gives as DER.
import type { TLSSocket } from "node:tls";

export type FailureReason =
  /** -K ran out. */
  | "timeout"
  /** The client closed or reset the connection before the handshake was done. */
  | "closed"
  /** Not TLS at all: plaintext, an HTTP request, garbage. */
  | "not_tls"
  /** A TLS version we do not take (1.0, 1.1, SSL). */
  | "protocol_version"
  /** No cipher suite, group or signature algorithm in common. */
  | "no_shared_algorithms"
  /** No certificate for the name the client asked for (-k 2, an ACME order not done). */
  | "no_certificate"
  /** The client ended the handshake with an alert: mostly, it did not accept our certificate. */
  | "client_alert"
  /** -y: no client certificate, or one that did not verify. */
  | "client_certificate"
  | "other";

/** A handshake that failed, with its reason for the metrics; the message is the log's. */
export class HandshakeError extends Error {
  readonly reason: FailureReason;
  constructor(message: string, reason: FailureReason) {
    super(message);
    this.reason = reason;
  }
}

const REASONS: [RegExp, FailureReason][] = [
  [/wrong version number|http request|https proxy request|packet length too long/, "not_tls"],
  [/unsupported protocol|protocol version|version too low|unsupported version/, "protocol_version"],
  [
    /no shared|no suitable (key share|signature|digest)|no ciphers available/,
    "no_shared_algorithms",
  ],
  [/alert/, "client_alert"],
  [/unexpected eof/, "closed"],
];

/** The reason of an error the TLS socket emitted during the handshake. */
export function failureReason(error: Error): FailureReason {
  const openssl = error as Error & { library?: string; reason?: string };
  if (!openssl.library) {
    // Ours (the SNI callback's), or the transport's (a reset, a broken pipe).
    if (/^no certificate for /.test(error.message)) return "no_certificate";
    return /^the client's server name/.test(error.message) ? "other" : "closed";
  }
  return reasonOfText(openssl.reason ?? error.message) ?? "other";
}

/** The reason OpenSSL's words for a failure say ("wrong version number"...), if they say one. */
export function reasonOfText(text: string): FailureReason | undefined {
  const lower = text.toLowerCase();
  return REASONS.find(([pattern]) => pattern.test(lower))?.[1];
}

/** IANA's TLS Supported Groups that OpenSSL may negotiate, by number. */
const GROUPS = new Map<number, string>([
  [23, "P-256"],
  [24, "P-384"],
  [25, "P-521"],
  [29, "X25519"],
  [30, "X448"],
  [256, "ffdhe2048"],
  [257, "ffdhe3072"],
  [258, "ffdhe4096"],
  [259, "ffdhe6144"],
  [260, "ffdhe8192"],
  [0x0200, "MLKEM512"],
  [0x0201, "MLKEM768"],
  [0x0202, "MLKEM1024"],
  [0x11eb, "SecP256r1MLKEM768"],
  [0x11ec, "X25519MLKEM768"],
  [0x11ed, "SecP384r1MLKEM1024"],
]);

/** OpenSSL's names of the groups (SSL_get0_group_name, the native engine's), lower-cased, as
 * the IANA names above: the same labels whichever engine served. */
const OPENSSL_GROUP_NAMES = new Map<string, string>([
  ["x25519", "X25519"],
  ["x448", "X448"],
  ["secp256r1", "P-256"],
  ["prime256v1", "P-256"],
  ["secp384r1", "P-384"],
  ["secp521r1", "P-521"],
  ...[...GROUPS.values()].map((name): [string, string] => [name.toLowerCase(), name]),
]);

/** The label of a group that OpenSSL names (undefined: none). */
export function groupLabel(name: string | undefined): string {
  if (name === undefined) return "none";
  return OPENSSL_GROUP_NAMES.get(name.toLowerCase()) ?? "other";
}

/** The key exchange group of an established session: IANA's name, "none" when it has none,
 * "other" for a number not in the list. For a resumed TLS 1.2 session (no key exchange), the
 * group of the handshake that made it. */
export function keyExchangeGroup(tls: TLSSocket): string {
  const session = tls.getSession();
  const id = session ? kexGroup(session) : undefined;
  if (id === undefined) return "none";
  return GROUPS.get(id) ?? "other";
}

/** OpenSSL's SSL_SESSION in DER is a SEQUENCE whose field [19] (context-specific, explicit)
 * holds the group's number as an INTEGER (ssl/ssl_asn1.c, `kex_group`). */
export function kexGroup(der: Uint8Array): number | undefined {
  let at = 0;
  const length = (): number => {
    const first = der[at++] ?? 0;
    if (first < 0x80) return first;
    let value = 0;
    for (let n = first & 0x7f; n > 0; n--) value = value * 256 + (der[at++] ?? 0);
    return value;
  };
  if (der[at++] !== 0x30) return undefined;
  const end = Math.min(length() + at, der.length);
  while (at < end) {
    const tag = der[at++];
    const size = length();
    if (tag === 0xb3) {
      if (der[at++] !== 0x02) return undefined;
      let value = 0;
      for (let n = length(); n > 0; n--) value = value * 256 + (der[at++] ?? 0);
      return value;
    }
    at += size;
  }
  return undefined;
}

/** "TLSv1.3", "TLSv1.2" (the only versions tlsd takes), else "other". */
export function versionLabel(tls: TLSSocket): string {
  const version = tls.getProtocol();
  return version === "TLSv1.3" || version === "TLSv1.2" ? version : "other";
}

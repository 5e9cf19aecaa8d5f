// What a TLS layer tells the next program about the session, in s6-tlsd's names.
import { createHash } from "node:crypto";
import type { PeerCertificate, TLSSocket } from "node:tls";

/** s6's subject form: the six RDNs it knows, in its order, with RFC 4514 escaping. */
export function s6Subject(subject: PeerCertificate["subject"]): string {
  const parts: string[] = [];
  for (const key of ["C", "ST", "L", "O", "OU", "CN"] as const) {
    const value = (subject as unknown as Record<string, string | string[] | undefined>)[key];
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      parts.push(`${key}=${escapeRdn(v)}`);
    }
  }
  return parts.join(", ");
}

function escapeRdn(value: string): string {
  let out = value.replace(/[,=+<>#;\\"]/g, (c) => `\\${c}`);
  if (out.startsWith(" ")) out = `\\${out}`;
  if (out.endsWith(" ") && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** The variables to set (name, value) and to unset (name, undefined), in s6's order. */
export function sessionEnv(socket: TLSSocket): [string, string | undefined][] {
  const cipher = socket.getCipher();
  const peer = socket.getPeerCertificate();
  const hasPeer = peer && Object.keys(peer).length > 0 && peer.raw !== undefined;
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  return [
    ["SSL_PROTOCOL", socket.getProtocol() ?? "unknown"],
    ["SSL_CIPHER", cipher?.name ?? ""],
    ["SSL_TLS_SNI_SERVERNAME", servername ? servername : undefined],
    [
      "SSL_PEER_CERT_HASH",
      hasPeer ? `SHA256:${createHash("sha256").update(peer.raw).digest("hex")}` : undefined,
    ],
    ["SSL_PEER_CERT_SUBJECT", hasPeer ? s6Subject(peer.subject) : undefined],
  ];
}

// What a TLS layer tells the next program about the session, in s6-tlsd's names.
import { X509Certificate, createHash } from "node:crypto";
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from "node:tls";
import { tcpVar, toBytes } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import type { CommonTlsOptions } from "./options.ts";
import type { TlsFacts } from "../ucspi/native.ts";

/** s6's subject form: the six RDNs it knows, in its order, with RFC 4514 escaping applied to
 * the decoded values (so no character of a certificate can pass for a separator). */
export function s6Subject(subject: PeerCertificate["subject"]): string {
  const parts: string[] = [];
  for (const key of ["C", "ST", "L", "O", "OU", "CN"] as const) {
    for (const v of valuesOf(subject as unknown as DecodedName, key))
      parts.push(`${key}=${escapeRdn(v)}`);
  }
  return parts.join(", ");
}

/** A name as Node decodes it: each attribute's values, in the certificate's order. */
type DecodedName = Record<string, string | string[] | undefined>;

function valuesOf(name: DecodedName, key: string): string[] {
  const value = name[key];
  return Array.isArray(value) ? value : value === undefined ? [] : [value];
}

/** RFC 4514's escapes, and s6's `=`, `<`, `>`, `#` anywhere; control characters (NUL would
 * cut the value short in the environment) as `\HH`. */
export function escapeRdn(value: string): string {
  const chars = [...value];
  return chars
    .map((c, i) => {
      if (/[,=+<>#;\\"]/.test(c)) return `\\${c}`;
      if (/[\x00-\x1f\x7f]/.test(c)) return `\\${hexByte(c)}`;
      if (c === " " && (i === 0 || i === chars.length - 1)) return "\\ ";
      return c;
    })
    .join("");
}

function hexByte(c: string): string {
  return c.charCodeAt(0).toString(16).padStart(2, "0");
}

/** One RDN's value alone (SSL_CLIENT_S_DN_CN...): as decoded, but for control characters as
 * `\HH`, so that a NUL cannot cut the name short and a newline cannot start a line. */
export function plainValue(value: string): string {
  return value.replace(/[\x00-\x1f\x7f\\]/g, (c) => (c === "\\" ? "\\\\" : `\\${hexByte(c)}`));
}

/** The peer's certificate as Node decodes it, once per session: the client certificate check
 * and the environment both read it, and each getPeerCertificate() decodes it anew. */
const decoded = new WeakMap<TLSSocket, PeerCertificate>();

export function peerCertificate(socket: TLSSocket): PeerCertificate {
  let peer = decoded.get(socket);
  if (!peer) {
    peer = socket.getPeerCertificate();
    decoded.set(socket, peer);
  }
  return peer;
}

/** The variables to set (name, value) and to unset (name, undefined), in s6's order;
 * `peerTrusted`: the peer's certificate verified, so it may be told as an identity. */
export function sessionEnv(socket: TLSSocket, peerTrusted = true): [string, string | undefined][] {
  const cipher = socket.getCipher();
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  return [
    ["SSL_PROTOCOL", socket.getProtocol() ?? "unknown"],
    ["SSL_CIPHER", cipher?.name ?? ""],
    ["SSL_TLS_SNI_SERVERNAME", servername ? servername : undefined],
    ...identityEnv(peerTrusted ? peerCertificate(socket) : undefined),
  ];
}

/** s6's identity of the peer (SSL_PEER_CERT_HASH, SSL_PEER_CERT_SUBJECT), from its
 * certificate as Node decodes it; unset without one (`peer` undefined, or empty). The subject
 * is unset, as s6-tlsd's is, when it has none of the six attributes. */
function identityEnv(peer: PeerCertificate | undefined): [string, string | undefined][] {
  const has = peer && Object.keys(peer).length > 0 && peer.raw !== undefined;
  return [
    [
      "SSL_PEER_CERT_HASH",
      has ? `SHA256:${createHash("sha256").update(peer.raw).digest("hex")}` : undefined,
    ],
    ["SSL_PEER_CERT_SUBJECT", (has && s6Subject(peer.subject)) || undefined],
  ];
}

/** OpenSSL's one-line form of a name, /C=FR/O=Org/CN=name, as mod_ssl and ucspi-ssl print it;
 * a `/` or `\\` inside a value is escaped, so a value cannot start an RDN of its own. */
function oneLine(name: DecodedName): string {
  return Object.keys(name)
    .flatMap((k) => valuesOf(name, k).map((x) => `/${k}=${plainValue(x).replace(/\//g, "\\/")}`))
    .join("");
}

const DN_PARTS: [string, string][] = [
  ["C", "C"],
  ["ST", "ST"],
  ["L", "L"],
  ["O", "O"],
  ["OU", "OU"],
  ["CN", "CN"],
  ["emailAddress", "Email"],
  ["UID", "UID"],
];

/** OpenSSL's long names of the key types, as mod_ssl and ucspi-ssl print them (A_KEY). */
const KEY_NAMES: Record<string, string> = {
  rsa: "rsaEncryption",
  "rsa-pss": "rsassaPss",
  ec: "id-ecPublicKey",
  ed25519: "ED25519",
  ed448: "ED448",
  dsa: "dsaEncryption",
};

/** The most chain certificates told (CERT_CHAIN_n). */
const MAX_CHAIN = 8;

function pemOf(der: Buffer): string {
  const body = der
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

/** The issuers above `cert`, as the verification found them (a detailed PeerCertificate). */
function issuersOf(cert: DetailedPeerCertificate): Buffer[] {
  const out: Buffer[] = [];
  for (let c = cert; out.length < MAX_CHAIN;) {
    const next = c.issuerCertificate as DetailedPeerCertificate | undefined;
    if (!next?.raw || next === c || next.raw.equals(c.raw)) break;
    out.push(next.raw);
    c = next;
  }
  return out;
}

export function certificateEnv(
  prefix: string,
  cert: PeerCertificate | DetailedPeerCertificate | undefined,
): [string, string][] {
  if (!cert || !cert.raw) return [];
  const out: [string, string][] = [];
  const subject = cert.subject as unknown as DecodedName;
  const issuer = cert.issuer as unknown as DecodedName;
  const x509 = new X509Certificate(cert.raw);
  out.push([`${prefix}_M_VERSION`, "3"]);
  // mod_ssl's form (i2a_ASN1_INTEGER): upper-case hex, two digits a byte. ucspi-ssl 0.95's
  // decimal cannot hold the 128-bit serials of today's certificates.
  const serial = cert.serialNumber.toUpperCase();
  out.push([`${prefix}_M_SERIAL`, serial.length % 2 === 1 ? `0${serial}` : serial]);
  out.push([`${prefix}_A_SIG`, x509.signatureAlgorithm ?? "UNKNOWN"]);
  const keyType = x509.publicKey.asymmetricKeyType ?? "";
  out.push([`${prefix}_A_KEY`, KEY_NAMES[keyType] ?? "UNKNOWN"]);
  out.push([`${prefix}_S_DN`, oneLine(subject)]);
  out.push([`${prefix}_I_DN`, oneLine(issuer)]);
  for (const [field, name] of DN_PARTS) {
    const [s] = valuesOf(subject, field);
    if (s !== undefined) out.push([`${prefix}_S_DN_${name}`, plainValue(s)]);
    const [i] = valuesOf(issuer, field);
    if (i !== undefined) out.push([`${prefix}_I_DN_${name}`, plainValue(i)]);
  }
  out.push([`${prefix}_V_START`, cert.valid_from]);
  out.push([`${prefix}_V_END`, cert.valid_to]);
  out.push([`${prefix}_CERT`, pemOf(cert.raw)]);
  if ("issuerCertificate" in cert)
    for (const [n, der] of issuersOf(cert).entries())
      out.push([`${prefix}_CERT_CHAIN_${n}`, pemOf(der)]);
  return out;
}

/** Every name certificateEnv may set under `prefix`. */
function certificateNames(prefix: string): string[] {
  const names = ["M_VERSION", "M_SERIAL", "A_SIG", "A_KEY", "S_DN", "I_DN", "V_START", "V_END"];
  names.push("CERT");
  for (let n = 0; n < MAX_CHAIN; n++) names.push(`CERT_CHAIN_${n}`);
  for (const [, name] of DN_PARTS) names.push(`S_DN_${name}`, `I_DN_${name}`);
  return names.map((name) => `${prefix}_${name}`);
}

/**
 * The mod_ssl / ucspi-ssl superset that qmail-family programs read (SSL_CLIENT_S_DN_CN...):
 * the peer's certificate under `peer` (CLIENT on a server, SERVER on a client) and our own
 * under the other name, plus the cipher's key sizes.
 */
export function modSslEnv(
  socket: TLSSocket,
  peer: "CLIENT" | "SERVER",
  peerTrusted = true,
): [string, string | undefined][] {
  return modSslFacts(
    {
      cipher: socket.getCipher()?.name ?? "",
      resumed: socket.isSessionReused(),
      peerChain: () => socket.getPeerCertificate(true),
      own: () => socket.getCertificate() as PeerCertificate | undefined,
    },
    peer,
    peerTrusted,
  );
}

/** What --mod-ssl tells of a session, whichever TLS engine ran it. */
interface ModSslSession {
  cipher: string;
  resumed: boolean;
  /** The peer's certificate with its issuers (getPeerCertificate(true)); read if told. */
  peerChain: () => DetailedPeerCertificate | PeerCertificate | undefined;
  /** Our own certificate (getCertificate()). */
  own: () => PeerCertificate | undefined;
}

function modSslFacts(
  session: ModSslSession,
  peer: "CLIENT" | "SERVER",
  peerTrusted: boolean,
): [string, string | undefined][] {
  const own = peer === "CLIENT" ? "SERVER" : "CLIENT";
  const bits = keyBits(session.cipher);
  const out: [string, string | undefined][] = [
    ["SSL_VERSION_INTERFACE", "ucspi-tls"],
    ["SSL_VERSION_LIBRARY", `OpenSSL ${process.versions.openssl}`],
    ["SSL_CIPHER_EXPORT", "false"],
    ["SSL_CIPHER_USEKEYSIZE", String(bits)],
    ["SSL_CIPHER_ALGKEYSIZE", String(bits)],
    ["SSL_SESSION_RESUMED", session.resumed ? "Resumed" : "Initial"],
  ];
  const told = peerTrusted ? certificateEnv(`SSL_${peer}`, session.peerChain()) : [];
  out.push(...told);
  // Unset the rest, so that no inherited value passes for the peer's.
  const names = new Set(told.map(([name]) => name));
  for (const name of certificateNames(`SSL_${peer}`))
    if (!names.has(name)) out.push([name, undefined]);
  out.push(...certificateEnv(`SSL_${own}`, session.own()));
  return out;
}

/** The symmetric key size of a cipher suite, from its name (AES_256, CHACHA20 = 256...). */
function keyBits(name: string): number {
  if (/CHACHA20|256/.test(name)) return 256;
  if (/128/.test(name)) return 128;
  return 0;
}

/** ucspi-ssl's sslserver/sslclient names for the connection's ends (SSLREMOTEIP...), which
 * qmail-family programs written for sslserver read: the TCP (or TCP6) values, unset when
 * absent. */
export function sslAddressFacts(env: Readonly<Env>): [string, string | undefined][] {
  return [
    "LOCALIP",
    "LOCALPORT",
    "LOCALHOST",
    "REMOTEIP",
    "REMOTEPORT",
    "REMOTEHOST",
    "REMOTEINFO",
  ].map((name) => [`SSL${name}`, tcpVar(env, name)]);
}

/** Every variable a TLS layer of ours may tell about a session or its ends (s6's names, and
 * --mod-ssl's for either side): whichever of them a session does not set is unset, so that no
 * inherited value (an outer layer's, or one a parent set by hand) passes for this session's. */
const SESSION_VARIABLES: readonly string[] = [
  "SSL_PROTOCOL",
  "SSL_CIPHER",
  "SSL_TLS_SNI_SERVERNAME",
  "SSL_PEER_CERT_HASH",
  "SSL_PEER_CERT_SUBJECT",
  "SSL_ALPN_PROTOCOL",
  "SSL_VERSION_INTERFACE",
  "SSL_VERSION_LIBRARY",
  "SSL_CIPHER_EXPORT",
  "SSL_CIPHER_USEKEYSIZE",
  "SSL_CIPHER_ALGKEYSIZE",
  "SSL_SESSION_RESUMED",
  "SSL_CLIENT_VERIFY",
  ...certificateNames("SSL_CLIENT"),
  ...certificateNames("SSL_SERVER"),
  ...sslAddressFacts({}).map(([name]) => name),
];
/** The same, to look names up in; every one starts with SSL (SSL_*, SSLLOCALIP...). */
const SESSION_NAMES: ReadonlySet<string> = new Set(SESSION_VARIABLES);

/** The program's environment: `env` without the TLS configuration (unless -Z), with `facts`
 * (the session), and with --mod-ssl ucspi-ssl's address set, which the TCP variables give.
 * Every other session variable (SESSION_VARIABLES) that `env` has is unset.
 * `env` is the stage's own copy (StageContext.env), changed in place; the result is a new
 * object, one spread of env and the changes: adding a dozen variables to env one by one made
 * it a hash table (V8 limits new properties stored by a computed name), 4 KiB of garbage per
 * handshake, and slower to read and copy after. Read `env` for nothing else after. */
export function programEnv(
  env: Env,
  options: Pick<CommonTlsOptions, "keepEnv" | "modSsl">,
  facts: readonly [string, string | undefined][] = [],
): Env {
  if (!options.keepEnv) stripTlsConfig(env);
  const all = options.modSsl ? [...facts, ...sslAddressFacts(env)] : facts;
  return { ...env, ...factChanges(env, all) };
}

const TLS_CONFIG = new Set([
  "CADIR",
  "CAFILE",
  "CERTFILE",
  "KEYFILE",
  "CERTDIR",
  "CIPHERS",
  "CRLFILE",
  "TICKETFILE",
  "TLS_UID",
  "TLS_GID",
  "UCSPI_TLS_ENGINE",
]);

/** The TLS configuration variables, which the program never sees unless -Z. */
export function stripTlsConfig(env: Env): void {
  for (const name in env) {
    if (env[name] === undefined) continue;
    if (
      TLS_CONFIG.has(name) ||
      name.startsWith("ACME_") ||
      name.startsWith("CERTFILE:") ||
      name.startsWith("KEYFILE:")
    )
      env[name] = undefined;
  }
}

/**
 * What the program learns of the session: s6's names, SSL_ALPN_PROTOCOL (unset when nothing
 * was negotiated or --alpn not given, so an inherited value never leaks), and with --mod-ssl
 * the mod_ssl set, the peer's certificate under `peer`. Undefined = a fact that is absent.
 */
export function tlsFacts(
  tls: TLSSocket,
  options: Pick<CommonTlsOptions, "alpn" | "modSsl">,
  peer: "CLIENT" | "SERVER",
  peerTrusted = true,
): [string, string | undefined][] {
  const facts = sessionEnv(tls, peerTrusted);
  facts.push(["SSL_ALPN_PROTOCOL", (options.alpn && tls.alpnProtocol) || undefined]);
  if (options.modSsl) facts.push(...modSslEnv(tls, peer, peerTrusted));
  return facts;
}

/** What the program learns of a session of the native TLS engine (src/tlsd/native-session.ts):
 * tlsFacts's, from the facts its handshake told; the client's certificate, decoded as node:tls
 * decodes it, when it verified (`peerTrusted`); `own`: the certificate served (PEM). */
export function engineFacts(
  facts: TlsFacts,
  options: Pick<CommonTlsOptions, "alpn" | "modSsl">,
  peerTrusted: boolean,
  own: Buffer | undefined,
): [string, string | undefined][] {
  const der = peerTrusted ? facts.peerCertificateDer : undefined;
  const out: [string, string | undefined][] = [
    ["SSL_PROTOCOL", facts.version],
    ["SSL_CIPHER", facts.cipher],
    ["SSL_TLS_SNI_SERVERNAME", facts.servername || undefined],
    ...identityEnv(der && legacyCertificate(der)),
    ["SSL_ALPN_PROTOCOL", (options.alpn && facts.alpn) || undefined],
  ];
  if (options.modSsl)
    out.push(
      ...modSslFacts(
        {
          cipher: facts.cipher,
          resumed: facts.resumed,
          peerChain: () => der && withIssuers(der, facts.issuersDer ?? []),
          own: () => own && legacyCertificate(own),
        },
        "CLIENT",
        peerTrusted,
      ),
    );
  return out;
}

/** A certificate as getPeerCertificate() gives it, from its DER (or PEM: the first one). */
function legacyCertificate(certificate: Buffer): PeerCertificate {
  return new X509Certificate(certificate).toLegacyObject();
}

/** A certificate and the issuers its verification found, as getPeerCertificate(true) links
 * them (issuerCertificate). */
function withIssuers(der: Buffer, issuers: readonly Buffer[]): DetailedPeerCertificate {
  const chain = [der, ...issuers].map((c) => legacyCertificate(c) as DetailedPeerCertificate);
  chain.forEach((c, i) => (c.issuerCertificate = chain[i + 1] ?? c));
  return chain[0] as DetailedPeerCertificate;
}

/** The facts that are present, as UTF-8 (the environment holds bytes, and a certificate's
 * names are Unicode), and the absent ones that env has, as unset (see Env). */
function factChanges(env: Readonly<Env>, facts: readonly [string, string | undefined][]): Env {
  const changes: Env = {};
  // By env's own names (a few dozen, rarely one of ours), not by the hundred of ours: a look-up
  // of each in env cost about 5 µs a handshake.
  for (const name in env)
    if (name.startsWith("SSL") && SESSION_NAMES.has(name) && env[name] !== undefined)
      changes[name] = undefined;
  for (const [name, value] of facts) {
    if (value !== undefined) changes[name] = toBytes(value);
    else if (env[name] !== undefined) changes[name] = undefined;
  }
  return changes;
}

// What a PROXY v2 header tells a service of the client's TLS session, as haproxy's
// `send-proxy-v2-ssl-cn` and hitch's `--proxy-proto` tell it: the TLVs PP2_TYPE_SSL (the
// session is TLS, its version and cipher, and whether a client certificate verified, with its
// CN), PP2_TYPE_AUTHORITY (the SNI name) and PP2_TYPE_ALPN. Made from the variables tlsd wrote
// for the session, so a chain `tlsd tcpforward --proxy` gives them to the service; a plaintext
// session (no SSL_PROTOCOL) gets none. Dovecot takes PP2_CLIENT_SSL for a secured connection
// (plaintext logins allowed under `disable_plaintext_auth`), lighttpd for https.
import type { Env } from "../ucspi/env.ts";
import type { ProxyTlv } from "./types.ts";
import { PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL, encodeTlvs } from "./v2.ts";

export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;

/** The longest value passed on: SNI and ALPN names are at most 255 bytes, and a CN is 64
 * characters by RFC 5280; a longer one is left out rather than cut inside a character. */
const MAX_BYTES = 1024;

/** The TLVs for the TLS session env describes, none when it describes none. */
export function tlsTlvs(env: Readonly<Env>): ProxyTlv[] {
  const version = env["SSL_PROTOCOL"];
  if (!version) return [];
  const tlvs: ProxyTlv[] = [];
  const alpn = env["SSL_ALPN_PROTOCOL"];
  if (fits(alpn)) tlvs.push({ type: PP2_TYPE_ALPN, value: bytes(alpn) });
  const authority = env["SSL_TLS_SNI_SERVERNAME"];
  if (fits(authority)) tlvs.push({ type: PP2_TYPE_AUTHORITY, value: bytes(authority) });
  tlvs.push({ type: PP2_TYPE_SSL, value: sslValue(env, version) });
  return tlvs;
}

/** PP2_TYPE_SSL's value: the client field, verify (0 only for a certificate that verified),
 * then the version, the CN of a verified client certificate and the cipher as sub-TLVs. tlsd
 * exports a client certificate (SSL_PEER_CERT_*) only when it verified; with --mod-ssl,
 * SSL_CLIENT_VERIFY also says when one came and did not. The certificate is the session's, so
 * a resumed session counts it too: CERT_CONN and CERT_SESS alike. */
function sslValue(env: Readonly<Env>, version: string): Buffer {
  const verified = env["SSL_PEER_CERT_HASH"] !== undefined;
  const failed = env["SSL_CLIENT_VERIFY"]?.startsWith("FAILED") === true;
  const client =
    PP2_CLIENT_SSL | (verified || failed ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(verified ? 0 : 1, 1);
  const subs: ProxyTlv[] = [];
  if (fits(version)) subs.push({ type: PP2_SUBTYPE_SSL_VERSION, value: bytes(version) });
  const cn = verified ? firstCommonName(env["SSL_PEER_CERT_SUBJECT"] ?? "") : undefined;
  if (fits(cn)) subs.push({ type: PP2_SUBTYPE_SSL_CN, value: bytes(cn) });
  const cipher = env["SSL_CIPHER"];
  if (fits(cipher)) subs.push({ type: PP2_SUBTYPE_SSL_CIPHER, value: bytes(cipher) });
  // Sub-TLVs have the layout of a header's own TLVs.
  return Buffer.concat([head, encodeTlvs(subs)]);
}

/** Whether a value is there and short enough to pass on. */
function fits(value: string | undefined): value is string {
  return value !== undefined && value !== "" && value.length <= MAX_BYTES;
}

/** The environment's values are byte strings (UTF-8 bytes, one character each). */
function bytes(value: string): Buffer {
  return Buffer.from(value, "latin1");
}

/** The first CN of a subject in tlsd's form (`C=.., O=.., CN=..`, RFC 4514 escapes: `\X`
 * for a special character, `\HH` for a control character), unescaped; undefined if it has
 * none. A byte string in, a byte string out: the escapes are ASCII. */
export function firstCommonName(subject: string): string | undefined {
  for (const [key, value] of rdns(subject)) if (key === "CN") return value;
  return undefined;
}

/** The subject's attributes in order, values unescaped. */
export function rdns(subject: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < subject.length) {
    const eq = subject.indexOf("=", i);
    if (eq < 0) break;
    const key = subject.slice(i, eq);
    let value = "";
    let j = eq + 1;
    for (; j < subject.length; j++) {
      const c = subject[j] ?? "";
      if (c === ",") break;
      if (c !== "\\") {
        value += c;
        continue;
      }
      const pair = subject.slice(j + 1, j + 3);
      if (/^[0-9a-fA-F]{2}$/.test(pair)) {
        value += String.fromCharCode(parseInt(pair, 16));
        j += 2;
      } else {
        value += subject[j + 1] ?? "";
        j += 1;
      }
    }
    out.push([key, value]);
    // Past the separator: `, `.
    i = j + 2;
  }
  return out;
}

/** What a PP2_TYPE_SSL value says, as another proxy (haproxy's send-proxy-v2-ssl, hitch, our
 * tcpforward) wrote it: the client field, verify, and the sub-TLVs by type (bytes as a byte
 * string). Undefined for a value too short to hold the first two; sub-TLVs are read up to the
 * first that would run past the value's end. */
export interface SslTlv {
  client: number;
  verify: number;
  subs: Map<number, string>;
}

export function readSslTlv(value: Uint8Array): SslTlv | undefined {
  if (value.length < 5) return undefined;
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.length);
  const subs = new Map<number, string>();
  for (let i = 5; i + 3 <= bytes.length;) {
    const length = bytes.readUInt16BE(i + 1);
    if (i + 3 + length > bytes.length) break;
    const type = bytes[i] ?? 0;
    if (!subs.has(type)) subs.set(type, bytes.toString("latin1", i + 3, i + 3 + length));
    i += 3 + length;
  }
  return { client: bytes[0] ?? 0, verify: bytes.readUInt32BE(1), subs };
}

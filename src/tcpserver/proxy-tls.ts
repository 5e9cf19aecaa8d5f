// tcpserver --proxy: what the proxy in front said of the client's TLS session (PP2_TYPE_SSL,
// AUTHORITY and ALPN, as haproxy's send-proxy-v2-ssl-cn, hitch or our `tlsd tcpforward --proxy`
// write them), told to the program in tlsd's names, so that a program behind a TLS-terminating
// proxy learns what it would under `tcpserver tlsd`. A header without them unsets every session
// variable: an inherited SSL_PROTOCOL never passes for this client's.
import type { ProxyHeader } from "../proxy/index.ts";
import { PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL } from "../proxy/index.ts";
import {
  PP2_CLIENT_CERT_CONN,
  PP2_CLIENT_CERT_SESS,
  PP2_CLIENT_SSL,
  PP2_SUBTYPE_SSL_CIPHER,
  PP2_SUBTYPE_SSL_CN,
  PP2_SUBTYPE_SSL_VERSION,
  readSslTlv,
} from "../proxy/tls-tlvs.ts";
import { plainValue, programEnv } from "../tls/peer-env.ts";
import type { Env } from "../ucspi/env.ts";

/** The session's facts from a header's TLVs, by variable (undefined: absent). */
export function proxiedTlsFacts(header: ProxyHeader): [string, string | undefined][] {
  const tlv = (type: number) => header.tlvs.find((t) => t.type === type)?.value;
  const sslValue = tlv(PP2_TYPE_SSL);
  const ssl = sslValue ? readSslTlv(sslValue) : undefined;
  if (!ssl || (ssl.client & PP2_CLIENT_SSL) === 0) return [];
  const presented = (ssl.client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) !== 0;
  const verified = presented && ssl.verify === 0;
  const text = (bytes: string | Uint8Array | undefined) => {
    if (bytes === undefined || bytes.length === 0) return undefined;
    const raw = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : Buffer.from(bytes);
    return plainValue(raw.toString("utf8"));
  };
  return [
    ["SSL_PROTOCOL", text(ssl.subs.get(PP2_SUBTYPE_SSL_VERSION))],
    ["SSL_CIPHER", text(ssl.subs.get(PP2_SUBTYPE_SSL_CIPHER))],
    ["SSL_TLS_SNI_SERVERNAME", text(tlv(PP2_TYPE_AUTHORITY))],
    ["SSL_ALPN_PROTOCOL", text(tlv(PP2_TYPE_ALPN))],
    // mod_ssl's names: the proxy tells a CN and a verdict, not a whole subject or a hash.
    [
      "SSL_CLIENT_VERIFY",
      verified ? "SUCCESS" : presented ? `FAILED:verify result ${ssl.verify}` : "NONE",
    ],
    ["SSL_CLIENT_S_DN_CN", verified ? text(ssl.subs.get(PP2_SUBTYPE_SSL_CN)) : undefined],
  ];
}

/** The program's environment with what the header said of the session. */
export function withProxiedTls(env: Env, header: ProxyHeader): Env {
  return programEnv(env, { keepEnv: true, modSsl: false }, proxiedTlsFacts(header));
}

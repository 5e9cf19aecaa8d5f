// tlsc's argv → options: s6-tlsc's letters, plus long names.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import {
  COMMON_TLS_DEFAULTS,
  COMMON_TLS_LONG,
  applyCommonTlsOption,
  optionNumber,
} from "../tls/options.ts";
import type { CommonTlsOptions } from "../tls/options.ts";
import { STARTTLS_PROTOCOLS } from "../starttls-client/index.ts";
import { quoted } from "../starttls-client/reader.ts";
import { isHelloName } from "../starttls-client/text-replies.ts";

export const USAGE =
  "tlsc [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -v verbosity ] [ -K timeout ] [ -k servername ] [ -6 rfd ] [ -7 wfd ] [ --no-verify-cert ] [ --cert-status ] [ --alpn list ] [ --mod-ssl ] [ --starttls protocol [ --plaintext-fallback ] [ --local-name name ] ] prog...";

export interface TlscOptions extends CommonTlsOptions {
  sendClientCert: boolean;
  serverName: string | undefined;
  readFd: number;
  writeFd: number;
  verify: boolean;
  /** --cert-status: a good OCSP response for the server's certificate must be stapled. */
  certStatus: boolean;
  /** --starttls: the protocol whose upgrade comes before the handshake. */
  starttls: string | undefined;
  plaintextFallback: boolean;
  localName: string | undefined;
  program: string[];
}

export function parseTlscArgs(args: readonly string[]): TlscOptions {
  const { options, rest } = getopt(args, {
    flags: "SsJjYyZz",
    values: "vKk67",
    long: [
      ...COMMON_TLS_LONG,
      "client-cert",
      "no-client-cert",
      "verify-cert",
      "no-verify-cert",
      "cert-status",
      "servername=",
      "read-fd=",
      "write-fd=",
      "starttls=",
      "plaintext-fallback",
      "local-name=",
    ],
  });
  const o: TlscOptions = {
    ...COMMON_TLS_DEFAULTS,
    closeNotify: undefined,
    sendClientCert: false,
    serverName: undefined,
    readFd: 6,
    writeFd: 7,
    verify: true,
    certStatus: false,
    starttls: undefined,
    plaintextFallback: false,
    localName: undefined,
    program: [],
  };
  for (const { name, value } of options) {
    if (applyCommonTlsOption(o, name, value)) continue;
    switch (name) {
      case "y":
      case "client-cert":
        o.sendClientCert = true;
        break;
      case "Y":
      case "no-client-cert":
        o.sendClientCert = false;
        break;
      case "verify-cert":
        o.verify = true;
        break;
      case "no-verify-cert":
        o.verify = false;
        break;
      case "cert-status":
        o.certStatus = true;
        break;
      case "k":
      case "servername":
        o.serverName = value;
        break;
      case "6":
      case "read-fd":
        o.readFd = optionNumber(value, name);
        break;
      case "7":
      case "write-fd":
        o.writeFd = optionNumber(value, name);
        break;
      case "starttls":
        if (!STARTTLS_PROTOCOLS.includes(value))
          throw new UsageError(
            `unknown STARTTLS protocol ${value}: one of ${STARTTLS_PROTOCOLS.join(", ")}`,
          );
        o.starttls = value;
        break;
      case "plaintext-fallback":
        o.plaintextFallback = true;
        break;
      case "local-name":
        if (!isHelloName(value))
          throw new UsageError(`--local-name: not a host name or [address]: ${quoted(value)}`);
        o.localName = value;
        break;
    }
  }
  if (o.readFd < 3 || o.writeFd < 3)
    throw new UsageError("the network fds (-6, -7) must be 3 or more");
  // The response's signer is checked against the server's issuer: a chain taken unverified
  // would let any server vouch for itself.
  if (o.certStatus && !o.verify)
    throw new UsageError("--cert-status cannot go with --no-verify-cert");
  if ((o.plaintextFallback || o.localName !== undefined) && o.starttls === undefined)
    throw new UsageError("--plaintext-fallback and --local-name go with --starttls");
  if (o.plaintextFallback && o.starttls === "xmpp")
    throw new UsageError("--plaintext-fallback cannot go with --starttls xmpp");
  if (rest.length < 1) throw new UsageError("");
  o.program = rest;
  return o;
}

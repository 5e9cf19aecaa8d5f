// tlsd's argv → options: s6-tlsd's letters (upper/lower on/off pairs), plus long names.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../ucspi/getopt.ts";

export const USAGE =
  "tlsd [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -n ] [ -v verbosity ] [ -K timeout ] [ -k snilevel ] [ --alpn list ] [ --mod-ssl ] prog...";

export interface TlsdOptions {
  closeNotify: boolean;
  enforceCloseNotify: boolean;
  clientCert: "none" | "optional" | "mandatory";
  keepEnv: boolean;
  /** -n: UCSPI-TLS delayed mode (src/tlsd/delayed.ts): TLS starts when the program asks. */
  delayed: boolean;
  verbosity: number;
  handshakeTimeoutMs: number;
  sniLevel: number;
  alpn: string[] | undefined;
  /** Also export the mod_ssl / ucspi-ssl variables (SSL_CLIENT_S_DN_CN...). */
  modSsl: boolean;
  program: string[];
}

export function parseTlsdArgs(args: readonly string[]): TlsdOptions {
  const { options, rest } = getopt(args, {
    flags: "SsJjYyZzn",
    values: "vKk",
    long: [
      "close-notify",
      "no-close-notify",
      "enforce-close-notify",
      "no-enforce-close-notify",
      "client-cert",
      "mandatory-client-cert",
      "keep",
      "no-keep",
      "delayed",
      "verbosity=",
      "handshake-timeout=",
      "sni-level=",
      "sni",
      "mandatory-sni",
      "alpn=",
      "mod-ssl",
    ],
  });
  const o: TlsdOptions = {
    closeNotify: false,
    enforceCloseNotify: false,
    clientCert: "none",
    keepEnv: false,
    delayed: false,
    verbosity: 1,
    handshakeTimeoutMs: 0,
    sniLevel: 0,
    alpn: undefined,
    modSsl: false,
    program: [],
  };
  for (const { name, value } of options) {
    switch (name) {
      case "S":
      case "close-notify":
        o.closeNotify = true;
        break;
      case "s":
      case "no-close-notify":
        o.closeNotify = false;
        break;
      case "J":
      case "enforce-close-notify":
        o.enforceCloseNotify = true;
        break;
      case "j":
      case "no-enforce-close-notify":
        o.enforceCloseNotify = false;
        break;
      case "Y":
      case "client-cert":
        o.clientCert = "optional";
        break;
      case "y":
      case "mandatory-client-cert":
        o.clientCert = "mandatory";
        break;
      case "Z":
      case "keep":
        o.keepEnv = true;
        break;
      case "z":
      case "no-keep":
        o.keepEnv = false;
        break;
      case "n":
      case "delayed":
        o.delayed = true;
        break;
      case "v":
      case "verbosity":
        o.verbosity = number(value, name);
        break;
      case "K":
      case "handshake-timeout":
        o.handshakeTimeoutMs = number(value, name);
        break;
      case "k":
      case "sni-level":
        o.sniLevel = number(value, name);
        break;
      case "sni":
        o.sniLevel = 1;
        break;
      case "mandatory-sni":
        o.sniLevel = 2;
        break;
      case "mod-ssl":
        o.modSsl = true;
        break;
      case "alpn":
        o.alpn = value.split(",").filter(Boolean);
        break;
    }
  }
  if (rest.length < 1) throw new UsageError("");
  o.program = rest;
  return o;
}

function number(value: string, option: string): number {
  if (!/^[0-9]{1,9}$/.test(value))
    throw new UsageError(
      `${option.length > 1 ? "--" : "-"}${option} needs a number, not '${value}'`,
    );
  return Number(value);
}

// tlsc's argv → options: s6-tlsc's letters, plus long names.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../ucspi/getopt.ts";

export const USAGE =
  "tlsc [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -v verbosity ] [ -K timeout ] [ -k servername ] [ -6 rfd ] [ -7 wfd ] [ --no-verify-cert ] [ --alpn list ] [ --mod-ssl ] prog...";

export interface TlscOptions {
  sendClientCert: boolean;
  keepEnv: boolean;
  verbosity: number;
  handshakeTimeoutMs: number;
  serverName: string | undefined;
  readFd: number;
  writeFd: number;
  verify: boolean;
  alpn: string[] | undefined;
  /** Also export the mod_ssl / ucspi-ssl variables (SSL_SERVER_S_DN_CN...). */
  modSsl: boolean;
  program: string[];
}

export function parseTlscArgs(args: readonly string[]): TlscOptions {
  const { options, rest } = getopt(args, {
    flags: "SsJjYyZz",
    values: "vKk67",
    long: [
      "close-notify",
      "no-close-notify",
      "enforce-close-notify",
      "no-enforce-close-notify",
      "client-cert",
      "no-client-cert",
      "keep",
      "no-keep",
      "verify-cert",
      "no-verify-cert",
      "verbosity=",
      "handshake-timeout=",
      "servername=",
      "read-fd=",
      "write-fd=",
      "alpn=",
      "mod-ssl",
    ],
  });
  const o: TlscOptions = {
    sendClientCert: false,
    keepEnv: false,
    verbosity: 1,
    handshakeTimeoutMs: 0,
    serverName: undefined,
    readFd: 6,
    writeFd: 7,
    verify: true,
    alpn: undefined,
    modSsl: false,
    program: [],
  };
  for (const { name, value } of options) {
    switch (name) {
      case "y":
      case "client-cert":
        o.sendClientCert = true;
        break;
      case "Y":
      case "no-client-cert":
        o.sendClientCert = false;
        break;
      case "Z":
      case "keep":
        o.keepEnv = true;
        break;
      case "z":
      case "no-keep":
        o.keepEnv = false;
        break;
      case "verify-cert":
        o.verify = true;
        break;
      case "no-verify-cert":
        o.verify = false;
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
      case "servername":
        o.serverName = value;
        break;
      case "6":
      case "read-fd":
        o.readFd = number(value, name);
        break;
      case "7":
      case "write-fd":
        o.writeFd = number(value, name);
        break;
      case "mod-ssl":
        o.modSsl = true;
        break;
      case "alpn":
        o.alpn = value.split(",").filter(Boolean);
        break;
    }
  }
  if (o.readFd < 3 || o.writeFd < 3)
    throw new UsageError("the network fds (-6, -7) must be 3 or more");
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

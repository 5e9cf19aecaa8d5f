// tlsc's argv → options: s6-tlsc's letters, plus long names.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../ucspi/getopt.ts";
import {
  COMMON_TLS_DEFAULTS,
  COMMON_TLS_LONG,
  applyCommonTlsOption,
  optionNumber,
} from "../tls/options.ts";
import type { CommonTlsOptions } from "../tls/options.ts";

export const USAGE =
  "tlsc [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -v verbosity ] [ -K timeout ] [ -k servername ] [ -6 rfd ] [ -7 wfd ] [ --no-verify-cert ] [ --alpn list ] [ --mod-ssl ] prog...";

export interface TlscOptions extends CommonTlsOptions {
  sendClientCert: boolean;
  serverName: string | undefined;
  readFd: number;
  writeFd: number;
  verify: boolean;
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
      "servername=",
      "read-fd=",
      "write-fd=",
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
    }
  }
  if (o.readFd < 3 || o.writeFd < 3)
    throw new UsageError("the network fds (-6, -7) must be 3 or more");
  if (rest.length < 1) throw new UsageError("");
  o.program = rest;
  return o;
}

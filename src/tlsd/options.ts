// tlsd's argv → options: s6-tlsd's letters (upper/lower on/off pairs), plus long names.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import {
  COMMON_TLS_DEFAULTS,
  COMMON_TLS_LONG,
  applyCommonTlsOption,
  optionNumber,
} from "../tls/options.ts";
import type { CommonTlsOptions } from "../tls/options.ts";

export const USAGE =
  "tlsd [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -n ] [ -v verbosity ] [ -K timeout ] [ -k snilevel ] [ --alpn list ] [ --mod-ssl ] prog...";

export interface TlsdOptions extends CommonTlsOptions {
  clientCert: "none" | "optional" | "mandatory";
  /** -n: UCSPI-TLS delayed mode (src/tlsd/delayed.ts): TLS starts when the program asks. */
  delayed: boolean;
  sniLevel: number;
  program: string[];
}

export function parseTlsdArgs(args: readonly string[]): TlsdOptions {
  const { options, rest } = getopt(args, {
    flags: "SsJjYyZzn",
    values: "vKk",
    long: [
      ...COMMON_TLS_LONG,
      "client-cert",
      "mandatory-client-cert",
      "delayed",
      "sni-level=",
      "sni",
      "mandatory-sni",
    ],
  });
  const o: TlsdOptions = {
    ...COMMON_TLS_DEFAULTS,
    clientCert: "none",
    delayed: false,
    sniLevel: 0,
    program: [],
  };
  for (const { name, value } of options) {
    if (applyCommonTlsOption(o, name, value)) continue;
    switch (name) {
      case "Y":
      case "client-cert":
        o.clientCert = "optional";
        break;
      case "y":
      case "mandatory-client-cert":
        o.clientCert = "mandatory";
        break;
      case "n":
      case "delayed":
        o.delayed = true;
        break;
      case "k":
      case "sni-level":
        o.sniLevel = optionNumber(value, name);
        break;
      case "sni":
        o.sniLevel = 1;
        break;
      case "mandatory-sni":
        o.sniLevel = 2;
        break;
    }
  }
  if (rest.length < 1) throw new UsageError("");
  o.program = rest;
  return o;
}

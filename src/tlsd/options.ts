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
  "tlsd [ -S | -s ] [ -J | -j ] [ -Y | -y ] [ -Z | -z ] [ -n ] [ -v verbosity ] [ -K timeout ] [ -k snilevel ] [ --alpn list ] [ --mod-ssl ] [ --engine node|native ] prog...";

export interface TlsdOptions extends CommonTlsOptions {
  clientCert: "none" | "optional" | "mandatory";
  /** -n: UCSPI-TLS delayed mode (src/tlsd/delayed.ts): TLS starts when the program asks. */
  delayed: boolean;
  sniLevel: number;
  /** --engine: node:tls, or the native TLS engine (src/tlsd/native-session.ts); undefined:
   * the environment's UCSPI_TLS_ENGINE, else native (see engineOf). */
  engine: "node" | "native" | undefined;
  program: string[];
}

/** The TLS engine a connection gets: --engine, else UCSPI_TLS_ENGINE from tlsd's environment
 * (for running a test suite on either engine without editing each command line), else the
 * native engine. */
export function engineOf(
  options: Pick<TlsdOptions, "engine">,
  env: Readonly<Record<string, string | undefined>>,
): "node" | "native" {
  return options.engine ?? (env["UCSPI_TLS_ENGINE"] === "node" ? "node" : "native");
}

/** Whether the engine was named (--engine or UCSPI_TLS_ENGINE) rather than left to the
 * default: only then does -v 2 say which engine served (the default would add a line to
 * every -v 2 log). */
export function engineNamed(
  options: Pick<TlsdOptions, "engine">,
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  return options.engine !== undefined || env["UCSPI_TLS_ENGINE"] !== undefined;
}

/** A warning for a UCSPI_TLS_ENGINE that names no engine (it is then the default's). */
export function engineVariableWarning(
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const value = env["UCSPI_TLS_ENGINE"];
  if (value === undefined || value === "node" || value === "native") return undefined;
  return `UCSPI_TLS_ENGINE is node or native, not '${value}': the native engine serves`;
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
      "engine=",
    ],
  });
  const o: TlsdOptions = {
    ...COMMON_TLS_DEFAULTS,
    clientCert: "none",
    delayed: false,
    sniLevel: 0,
    engine: undefined,
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
      case "engine":
        if (value !== "node" && value !== "native")
          throw new UsageError(`--engine is node or native, not '${value}'`);
        o.engine = value;
        break;
    }
  }
  if (rest.length < 1) throw new UsageError("");
  o.program = rest;
  return o;
}

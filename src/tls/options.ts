// The option letters tlsd and tlsc share (s6-tlsd/s6-tlsc), read the same way by both.
import { UsageError } from "../ucspi/errors.ts";

export interface CommonTlsOptions {
  keepEnv: boolean;
  verbosity: number;
  handshakeTimeoutMs: number;
  alpn: string[] | undefined;
  /** Also export the mod_ssl / ucspi-ssl variables (SSL_CLIENT_S_DN_CN...). */
  modSsl: boolean;
  /** -S / -s: end with close_notify / with a bare TCP half-close; undefined (tlsc's default):
   * by the version, see closeNotifyFor. */
  closeNotify: boolean | undefined;
  /** -J / -j (default): the peer's FIN without close_notify is fatal / normal. */
  enforceCloseNotify: boolean;
}

/** Long names of the shared options, for getopt. */
export const COMMON_TLS_LONG = [
  "close-notify",
  "no-close-notify",
  "enforce-close-notify",
  "no-enforce-close-notify",
  "keep",
  "no-keep",
  "verbosity=",
  "handshake-timeout=",
  "alpn=",
  "mod-ssl",
];

export const COMMON_TLS_DEFAULTS: CommonTlsOptions = {
  keepEnv: false,
  verbosity: 1,
  handshakeTimeoutMs: 60_000,
  alpn: undefined,
  modSsl: false,
  closeNotify: true,
  enforceCloseNotify: false,
};

/** Whether the program's end is sent as close_notify in `protocol` ("TLSv1.3"...): -S/-s, or
 * by default only in TLS 1.3, where close_notify closes one direction; in TLS 1.2 it ends the
 * whole session, and a server that takes it so (s6-tlsd) would never send its answer. */
export function closeNotifyFor(closeNotify: boolean | undefined, protocol: string | null): boolean {
  return closeNotify ?? protocol === "TLSv1.3";
}

/** Applies one of -S/-s, -J/-j, -Z/-z, -v, -K, --alpn, --mod-ssl; false when `name` is not
 * one of them. */
export function applyCommonTlsOption(o: CommonTlsOptions, name: string, value: string): boolean {
  switch (name) {
    case "S":
    case "close-notify":
      o.closeNotify = true;
      return true;
    case "s":
    case "no-close-notify":
      o.closeNotify = false;
      return true;
    case "J":
    case "enforce-close-notify":
      o.enforceCloseNotify = true;
      return true;
    case "j":
    case "no-enforce-close-notify":
      o.enforceCloseNotify = false;
      return true;
    case "Z":
    case "keep":
      o.keepEnv = true;
      return true;
    case "z":
    case "no-keep":
      o.keepEnv = false;
      return true;
    case "v":
    case "verbosity":
      o.verbosity = optionNumber(value, name);
      return true;
    case "K":
    case "handshake-timeout":
      o.handshakeTimeoutMs = optionNumber(value, name);
      return true;
    case "mod-ssl":
      o.modSsl = true;
      return true;
    case "alpn":
      o.alpn = value.split(",").filter(Boolean);
      return true;
    default:
      return false;
  }
}

/** A decimal option value, or a usage error naming the option. */
export function optionNumber(value: string, option: string): number {
  if (!/^[0-9]{1,9}$/.test(value))
    throw new UsageError(
      `${option.length > 1 ? "--" : "-"}${option} needs a number, not '${value}'`,
    );
  return Number(value);
}

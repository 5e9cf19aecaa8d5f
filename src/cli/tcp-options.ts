// The letters and operands tcpserver and tcpclient share, read the same way by both.
import { toBytes } from "../ucspi/env.ts";
import { scanUnsigned } from "./getopt.ts";
import { parsePort } from "../ucspi/address.ts";
import { UsageError } from "../ucspi/errors.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";

export interface CommonTcpOptions {
  verbosity: 0 | 1 | 2;
  /** -l, as a byte string (its UTF-8 bytes, as djb's passes argv on): TCPLOCALHOST's value. */
  localName: string | undefined;
  identTimeoutMs: number;
  ident: boolean;
  remoteHostLookup: boolean;
  noDelay: boolean;
  /** -4 (Debian's ucspi-tcp-ipv6): IPv4 sockets only, so only a host's IPv4 addresses. */
  ipv4Only: boolean;
  /** -6 (Debian's): the variables in IPv6 form for every connection: PROTO=TCP6, and an IPv4
   * address in its mapped form (::ffff:127.0.0.1), as an IPv6 socket sees it. */
  v6Env: boolean;
  /** -I (Debian's): the interface of a link-local IPv6 address given without its %zone. */
  interfaceName: string | undefined;
}

/** The defaults of the options applyCommonOption sets. */
export function commonDefaults(): CommonTcpOptions {
  return {
    verbosity: 1,
    localName: undefined,
    identTimeoutMs: 26_000,
    ident: true,
    remoteHostLookup: true,
    noDelay: false,
    ipv4Only: false,
    v6Env: false,
    interfaceName: undefined,
  };
}

/** Applies one of -qQv, -l, -t, -rR, -hH, -dD, -46, -I; false when `name` is not one of them. */
export function applyCommonOption(o: CommonTcpOptions, name: string, value: string): boolean {
  switch (name) {
    case "q":
    case "Q":
    case "v":
      o.verbosity = name === "q" ? 0 : name === "Q" ? 1 : 2;
      return true;
    case "l":
      o.localName = toBytes(value);
      return true;
    case "t":
      o.identTimeoutMs = secondsAsTimerMs(scanUnsigned(value));
      return true;
    case "r":
    case "R":
      o.ident = name === "r";
      return true;
    case "h":
    case "H":
      o.remoteHostLookup = name === "h";
      return true;
    case "d":
    case "D":
      o.noDelay = name === "D";
      return true;
    case "4":
      o.ipv4Only = true;
      return true;
    case "6":
      o.v6Env = true;
      return true;
    case "I":
      o.interfaceName = value;
      return true;
    default:
      return false;
  }
}

/** `host port program...`, checked in djb's order: an unknown port name is fatal (111, from
 * parsePort) before a missing program is a usage error. */
export function hostPortProgram(rest: readonly string[]): {
  host: string;
  port: string;
  program: string[];
} {
  if (rest.length === 2) parsePort(rest[1] ?? "");
  if (rest.length < 3) throw new UsageError("");
  return { host: rest[0] ?? "", port: rest[1] ?? "", program: rest.slice(2) };
}

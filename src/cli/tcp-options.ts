// The letters and operands tcpserver and tcpclient share, read the same way by both.
import { toBytes } from "../ucspi/env.ts";
import { scanUnsigned } from "./getopt.ts";
import { parsePort } from "../ucspi/address.ts";
import { UsageError } from "../ucspi/errors.ts";

export interface CommonTcpOptions {
  verbosity: 0 | 1 | 2;
  /** -l, as a byte string (its UTF-8 bytes, as djb's passes argv on): TCPLOCALHOST's value. */
  localName: string | undefined;
  identTimeoutMs: number;
  ident: boolean;
  remoteHostLookup: boolean;
  noDelay: boolean;
}

/** Applies one of -qQv, -l, -t, -rR, -hH, -dD; false when `name` is not one of them. */
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
      o.identTimeoutMs = scanUnsigned(value) * 1000;
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

// The letters tcpserver and tcpclient share, read the same way by both.
import { toBytes } from "../ucspi/env.ts";
import { scanUnsigned } from "./getopt.ts";

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

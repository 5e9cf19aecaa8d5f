// What both encoders check before writing a header: command, family, and addresses that match
// the family (returned in canonical text).
import { ProxyFormatError } from "./errors.ts";
import { canonicalIP } from "../net/ip.ts";
import type { ProxyAddress, ProxyHeaderInit } from "./types.ts";

export interface CheckedAddresses {
  family: "tcp4" | "tcp6";
  source: ProxyAddress;
  destination: ProxyAddress;
}

function checkAddress(
  a: ProxyAddress | undefined,
  family: "tcp4" | "tcp6",
  what: string,
): ProxyAddress {
  if (!a) throw new ProxyFormatError(`a ${family} header needs a ${what} address`);
  const ip = typeof a.ip === "string" ? canonicalIP(a.ip, family) : undefined;
  if (ip === undefined) {
    throw new ProxyFormatError(`invalid ${family} ${what} address "${String(a.ip)}"`);
  }
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) {
    throw new ProxyFormatError(`invalid ${what} port ${String(a.port)}`);
  }
  return { ip, port: a.port };
}

/** The header's addresses, checked and canonical; undefined for an "unknown"-family header. */
export function checkAddresses(h: ProxyHeaderInit): CheckedAddresses | undefined {
  if (h.command !== "proxy" && h.command !== "local") {
    throw new ProxyFormatError(`invalid command "${String(h.command)}"`);
  }
  if (h.family === "unknown") {
    if (h.source || h.destination) {
      throw new ProxyFormatError("an unknown-family header carries no addresses");
    }
    return undefined;
  }
  if (h.family !== "tcp4" && h.family !== "tcp6") {
    throw new ProxyFormatError(`invalid family "${String(h.family)}"`);
  }
  if (h.command === "local") {
    throw new ProxyFormatError("a LOCAL header carries no addresses (family must be unknown)");
  }
  return {
    family: h.family,
    source: checkAddress(h.source, h.family, "source"),
    destination: checkAddress(h.destination, h.family, "destination"),
  };
}

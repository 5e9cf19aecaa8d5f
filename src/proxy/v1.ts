// PROXY protocol v1: one US-ASCII line, "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN...\r\n", at most 107 bytes. Parsed strictly: single spaces, addresses of the
// announced family, decimal ports without leading zeros, CRLF only. A partial line is
// "incomplete" only while some valid line still starts with it.
import { checkAddresses } from "./check.ts";
import { ProxyFormatError } from "./errors.ts";
import { canonicalIP, isIPv4Prefix, isIPv6Prefix } from "../net/ip.ts";
import { failure, INCOMPLETE } from "./types.ts";
import type { ProxyDecodeResult, ProxyHeader, ProxyHeaderInit } from "./types.ts";

/** The longest v1 line, CRLF included ("PROXY UNKNOWN" + two full IPv6 addresses and ports). */
export const V1_MAX_LENGTH = 107;

const PREFIX = "PROXY ";
const PROTOCOLS = ["TCP4", "TCP6", "UNKNOWN"] as const;
const FIELD_NAMES = ["source address", "destination address", "source port", "destination port"];

function isPortPrefix(s: string): boolean {
  return s === "" || isPort(s);
}

function isPort(s: string): boolean {
  return /^(0|[1-9][0-9]{0,4})$/.test(s) && Number(s) <= 65535;
}

function lineError(what: string): ProxyDecodeResult {
  return failure(`PROXY v1: ${what}`);
}

/**
 * Checks `text` (the line without CRLF): when `complete`, decodes it; otherwise says whether a
 * valid line can still start with it.
 */
function scanLine(text: string, complete: boolean): ProxyDecodeResult | undefined {
  const rest = text.slice(PREFIX.length);
  const sp = rest.indexOf(" ");
  const proto = sp < 0 ? rest : rest.slice(0, sp);
  if (sp < 0 && !complete) {
    return PROTOCOLS.some((p) => p.startsWith(proto)) ? undefined : lineError("unknown protocol");
  }
  if (proto === "UNKNOWN") {
    // The receiver must ignore whatever follows "UNKNOWN" on the line.
    if (!complete) return undefined;
    return { state: "ok", header: unknownHeader(), length: 0 };
  }
  if (proto !== "TCP4" && proto !== "TCP6") return lineError(`unknown protocol "${proto}"`);
  const family = proto === "TCP4" ? "tcp4" : "tcp6";
  if (sp < 0) return lineError("missing addresses");
  const fields = rest.slice(sp + 1).split(" ");
  if (fields.length > 4) return lineError("too many fields");
  const values: string[] = [];
  for (const [i, field] of fields.entries()) {
    const name = FIELD_NAMES[i] ?? "field";
    const isAddress = i < 2;
    if (!complete && i === fields.length - 1) {
      const ok = isAddress
        ? (family === "tcp4" ? isIPv4Prefix : isIPv6Prefix)(field)
        : isPortPrefix(field);
      if (!ok) return lineError(`invalid ${name}`);
      continue;
    }
    if (field === "") return lineError(`empty ${name} (fields are separated by one space)`);
    const value = isAddress ? canonicalIP(field, family) : isPort(field) ? field : undefined;
    if (value === undefined) return lineError(`invalid ${name} "${field}"`);
    values.push(value);
  }
  if (!complete) return undefined;
  if (fields.length < 4) return lineError(`missing ${FIELD_NAMES[fields.length] ?? "field"}`);
  const [src = "", dst = "", sport = "0", dport = "0"] = values;
  return {
    state: "ok",
    header: {
      version: 1,
      command: "proxy",
      family,
      source: { ip: src, port: Number(sport) },
      destination: { ip: dst, port: Number(dport) },
      tlvs: [],
    },
    length: 0,
  };
}

function unknownHeader(): ProxyHeader {
  return { version: 1, command: "proxy", family: "unknown", tlvs: [] };
}

/** Decodes a v1 header at the start of `buf` (see decodeProxyHeader). */
export function decodeProxyV1(buf: Uint8Array, maxLength = V1_MAX_LENGTH): ProxyDecodeResult {
  const limit = Math.min(V1_MAX_LENGTH, maxLength);
  const text = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, limit)).toString(
    "latin1",
  );
  const sig = Math.min(text.length, PREFIX.length);
  if (text.slice(0, sig) !== PREFIX.slice(0, sig)) return failure("not a PROXY protocol header");
  // The line ends at the first CR or LF, which must be a CR followed by LF.
  const cr = text.search(/[\r\n]/);
  let end = -1;
  if (cr >= 0) {
    if (text[cr] === "\n") return lineError("bare LF (lines end with CRLF)");
    if (cr + 1 < text.length) {
      if (text[cr + 1] !== "\n") return lineError("bare CR (lines end with CRLF)");
      end = cr;
    }
  }
  if (end < 0) {
    if (text.length >= limit) return lineError(`no CRLF in the first ${limit} bytes`);
    if (text.length <= PREFIX.length) return INCOMPLETE;
    return scanLine(cr >= 0 ? text.slice(0, cr) : text, false) ?? INCOMPLETE;
  }
  if (end < PREFIX.length) return failure("not a PROXY protocol header");
  const result = scanLine(text.slice(0, end), true);
  if (!result || result.state !== "ok") return result ?? lineError("truncated");
  return { ...result, length: end + 2 };
}

/**
 * Encodes a header as a v1 line. v1 has no LOCAL command and no TLVs: a "local" (or
 * "unknown"-family) header becomes "PROXY UNKNOWN\r\n"; TLVs are refused.
 */
export function encodeProxyV1(h: ProxyHeaderInit): Buffer {
  if (h.tlvs && h.tlvs.length > 0) throw new ProxyFormatError("PROXY v1 cannot carry TLVs");
  const a = checkAddresses(h);
  if (!a) return Buffer.from("PROXY UNKNOWN\r\n", "latin1");
  const { source: s, destination: d } = a;
  const proto = a.family === "tcp4" ? "TCP4" : "TCP6";
  return Buffer.from(`PROXY ${proto} ${s.ip} ${d.ip} ${s.port} ${d.port}\r\n`, "latin1");
}

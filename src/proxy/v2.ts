// PROXY protocol v2: a 16-byte binary preamble (signature, version/command, family/transport,
// length), the address block, then TLVs. A partial header is "incomplete" only while the bytes
// so far can still start a valid one; a CRC32C TLV, when present, is checked.
import { checkAddresses } from "./check.ts";
import { crc32c } from "./crc32c.ts";
import { ProxyFormatError } from "./errors.ts";
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "../net/ip.ts";
import { failure, INCOMPLETE, u16, u8 } from "./types.ts";
import type { ProxyDecodeResult, ProxyHeader, ProxyHeaderInit, ProxyTlv } from "./types.ts";

/** \r\n\r\n\0\r\nQUIT\n: the first 12 bytes of every v2 header. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from("0d0a0d0a000d0a515549540a", "hex");
/** The preamble: signature, version/command, family/transport, 16-bit length. */
export const V2_PREAMBLE_LENGTH = 16;
/** The longest v2 header the length field allows. */
export const V2_MAX_LENGTH = V2_PREAMBLE_LENGTH + 0xffff;

export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_NOOP = 0x04;
export const PP2_TYPE_UNIQUE_ID = 0x05;
export const PP2_TYPE_SSL = 0x20;
export const PP2_TYPE_NETNS = 0x30;
export const PP2_TYPE_MIN_CUSTOM = 0xe0;
export const PP2_TYPE_MAX_CUSTOM = 0xef;

const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;
const FAM_TCP4 = 0x11;
const FAM_TCP6 = 0x21;
/** Address block size of each family/transport byte the spec lists (TCP, UDP, UNIX, UNSPEC). */
const ADDRESS_LENGTH = new Map<number, number>([
  [0x00, 0],
  [0x11, 12],
  [0x12, 12],
  [0x21, 36],
  [0x22, 36],
  [0x31, 216],
  [0x32, 216],
]);

function v2Error(what: string): ProxyDecodeResult {
  return failure(`PROXY v2: ${what}`);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0")}`;
}

interface ScannedTlvs {
  tlvs: ProxyTlv[];
  /** Where the CRC32C TLV's value starts, if there is one. */
  crcAt: number | undefined;
}

/**
 * Walks the TLVs in buf[start, end), of which only buf[start, available) has arrived. Returns
 * an error as soon as one shows (a TLV that cannot fit before `end`, a CRC32C TLV that is not
 * 4 bytes or not the only one), else the TLVs seen whole.
 */
function scanTlvs(
  buf: Uint8Array,
  start: number,
  end: number,
  available: number,
): ScannedTlvs | string {
  const tlvs: ProxyTlv[] = [];
  let crcAt: number | undefined;
  let pos = start;
  while (pos < end) {
    if (end - pos < 3) return `${end - pos} stray bytes after the last TLV`;
    if (pos + 3 > available) break;
    const type = u8(buf, pos);
    const length = u16(buf, pos + 1);
    if (pos + 3 + length > end) return `TLV ${hex(type)} runs past the end of the header`;
    if (type === PP2_TYPE_CRC32C) {
      if (length !== 4) return `CRC32C TLV of ${length} bytes (must be 4)`;
      if (crcAt !== undefined) return "more than one CRC32C TLV";
      crcAt = pos + 3;
    }
    if (pos + 3 + length > available) break;
    tlvs.push({ type, value: Buffer.from(buf.subarray(pos + 3, pos + 3 + length)) });
    pos += 3 + length;
  }
  return { tlvs, crcAt };
}

/** The CRC-32C of buf[0, total) with the 4 bytes at `crcAt` zeroed must be those 4 bytes. */
function checkCrc(buf: Uint8Array, total: number, crcAt: number): string | undefined {
  const copy = Buffer.from(buf.subarray(0, total));
  const expected = copy.readUInt32BE(crcAt);
  copy.fill(0, crcAt, crcAt + 4);
  const actual = crc32c(copy);
  if (actual === expected) return undefined;
  return `CRC32C mismatch (header says ${expected.toString(16)}, computed ${actual.toString(16)})`;
}

/** Decodes a v2 header at the start of `buf` (see decodeProxyHeader). */
export function decodeProxyV2(buf: Uint8Array, maxLength = V2_MAX_LENGTH): ProxyDecodeResult {
  const sig = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  for (let i = 0; i < sig; i++) {
    if (buf[i] !== PROXY_V2_SIGNATURE[i]) return failure("not a PROXY protocol header");
  }
  const tooLong = v2Error(`header longer than ${maxLength} bytes`);
  const verCmd = u8(buf, 12);
  const cmd = verCmd & 0x0f;
  if (buf.length > 12) {
    if (verCmd >> 4 !== 2) return v2Error(`unsupported version ${verCmd >> 4}`);
    if (cmd !== CMD_LOCAL && cmd !== CMD_PROXY) return v2Error(`unknown command ${hex(cmd)}`);
  }
  const fam = u8(buf, 13);
  if (buf.length > 13 && cmd === CMD_PROXY && !ADDRESS_LENGTH.has(fam)) {
    return v2Error(`unsupported address family/transport ${hex(fam)}`);
  }
  if (buf.length < V2_PREAMBLE_LENGTH) {
    return buf.length >= maxLength ? tooLong : INCOMPLETE;
  }
  const total = V2_PREAMBLE_LENGTH + u16(buf, 14);
  if (total > maxLength) return tooLong;
  // LOCAL ignores the family; its TLVs are read only when the address block size is known.
  const addressLength = ADDRESS_LENGTH.get(fam);
  let tlvStart = total;
  if (addressLength !== undefined && V2_PREAMBLE_LENGTH + addressLength <= total) {
    tlvStart = V2_PREAMBLE_LENGTH + addressLength;
  } else if (cmd === CMD_PROXY) {
    return v2Error(`address block of ${total - V2_PREAMBLE_LENGTH} bytes for family ${hex(fam)}`);
  }
  const available = Math.min(buf.length, total);
  const scanned = scanTlvs(buf, tlvStart, total, available);
  if (typeof scanned === "string") return v2Error(scanned);
  if (buf.length < total) return INCOMPLETE;
  const crcError = scanned.crcAt === undefined ? undefined : checkCrc(buf, total, scanned.crcAt);
  if (crcError) return v2Error(crcError);
  // NOOP is ignored, as the spec says; CRC32C has been checked.
  const tlvs = scanned.tlvs.filter((t) => t.type !== PP2_TYPE_CRC32C && t.type !== PP2_TYPE_NOOP);
  const header: ProxyHeader = { version: 2, command: "proxy", family: "unknown", tlvs };
  if (cmd === CMD_LOCAL) {
    header.command = "local";
  } else if (fam === FAM_TCP4) {
    const a = V2_PREAMBLE_LENGTH;
    header.family = "tcp4";
    header.source = { ip: formatIPv4(buf.subarray(a, a + 4)), port: u16(buf, a + 8) };
    header.destination = { ip: formatIPv4(buf.subarray(a + 4, a + 8)), port: u16(buf, a + 10) };
  } else if (fam === FAM_TCP6) {
    const a = V2_PREAMBLE_LENGTH;
    header.family = "tcp6";
    header.source = { ip: formatIPv6(buf.subarray(a, a + 16)), port: u16(buf, a + 32) };
    header.destination = { ip: formatIPv6(buf.subarray(a + 16, a + 32)), port: u16(buf, a + 34) };
  }
  // Any other family (UNSPEC, UDP, UNIX) falls back to UNSPEC, as the spec allows: "unknown".
  return { state: "ok", header, length: total };
}

/** Writes `tlvs` into `out` at `pos` (type, 16-bit length, value each); returns the bytes
 * written. The caller has checked each TLV and made room. */
function writeTlvs(out: Buffer, pos: number, tlvs: readonly ProxyTlv[]): number {
  let at = pos;
  for (const t of tlvs) {
    out[at] = t.type;
    out.writeUInt16BE(t.value.length, at + 1);
    out.set(t.value, at + 3);
    at += 3 + t.value.length;
  }
  return at - pos;
}

/** TLVs as bytes: the layout of a header's TLVs, and of PP2_TYPE_SSL's sub-TLVs inside one. */
export function encodeTlvs(tlvs: readonly ProxyTlv[]): Buffer {
  const out = Buffer.alloc(tlvs.reduce((n, t) => n + 3 + t.value.length, 0));
  writeTlvs(out, 0, tlvs);
  return out;
}

export interface EncodeV2Options {
  /** Append a PP2_TYPE_CRC32C TLV holding the checksum of the whole header. */
  crc32c?: boolean;
}

/**
 * Encodes a header in the v2 binary format. A "local" header must have family "unknown" and
 * is sent as LOCAL/UNSPEC; "unknown" with "proxy" is sent as PROXY/UNSPEC. TLVs are written in
 * order (NOOP included); a CRC32C TLV is only added through `opts.crc32c`.
 */
export function encodeProxyV2(h: ProxyHeaderInit, opts: EncodeV2Options = {}): Buffer {
  const a = checkAddresses(h);
  const tlvs = h.tlvs ?? [];
  let tlvLength = opts.crc32c ? 7 : 0;
  for (const t of tlvs) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) {
      throw new ProxyFormatError(`invalid TLV type ${String(t.type)}`);
    }
    if (t.type === PP2_TYPE_CRC32C) {
      throw new ProxyFormatError("the CRC32C TLV is added by the crc32c option, not by hand");
    }
    if (!(t.value instanceof Uint8Array) || t.value.length > 0xffff) {
      throw new ProxyFormatError(`TLV ${hex(t.type)} value is not a Buffer of at most 65535 bytes`);
    }
    tlvLength += 3 + t.value.length;
  }
  const addressLength = a ? (a.family === "tcp4" ? 12 : 36) : 0;
  const length = addressLength + tlvLength;
  if (length > 0xffff) throw new ProxyFormatError(`header of ${length} bytes after the preamble`);
  const out = Buffer.alloc(V2_PREAMBLE_LENGTH + length);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20 | (h.command === "local" ? CMD_LOCAL : CMD_PROXY);
  out[13] = a ? (a.family === "tcp4" ? FAM_TCP4 : FAM_TCP6) : 0x00;
  out.writeUInt16BE(length, 14);
  let pos = V2_PREAMBLE_LENGTH;
  if (a) {
    const parse = a.family === "tcp4" ? parseIPv4 : parseIPv6;
    const size = a.family === "tcp4" ? 4 : 16;
    out.set(parse(a.source.ip) ?? [], pos);
    out.set(parse(a.destination.ip) ?? [], pos + size);
    out.writeUInt16BE(a.source.port, pos + 2 * size);
    out.writeUInt16BE(a.destination.port, pos + 2 * size + 2);
    pos += addressLength;
  }
  pos += writeTlvs(out, pos, tlvs);
  if (opts.crc32c) {
    out[pos] = PP2_TYPE_CRC32C;
    out.writeUInt16BE(4, pos + 1);
    out.writeUInt32BE(crc32c(out), pos + 3);
  }
  return out;
}

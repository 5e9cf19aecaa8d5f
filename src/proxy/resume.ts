// The resume record: what a STARTTLS wrapper tells the TLS service behind it, carried as the
// value of one PROXY v2 TLV of type RESUME_TLV_TYPE (0xE0, the first custom type).
//
// Layout (version 1), all lengths big-endian, nothing after the last field:
//   0      version   0x01
//   1      flags     0x01 swallow present, 0x02 data present, 0x04 no upgrade (no field);
//                    other bits must be 0
//   2      P         protocol length, 1..32
//   3      protocol  P bytes: lowercase name, [a-z0-9][a-z0-9.+-]* ("smtp", "imap", "pop3")
//   ..     S, swallow  if flag 0x01: 16-bit length, then S bytes of UTF-8
//   ..     D, data     if flag 0x02: 16-bit length, then D bytes
import { ProxyFormatError } from "./errors.ts";
import { u16, u8 } from "./types.ts";
import type { ProxyHeader, ProxyTlv } from "./types.ts";

export const RESUME_TLV_TYPE = 0xe0;
export const RESUME_RECORD_VERSION = 1;
const FLAG_SWALLOW = 0x01;
const FLAG_DATA = 0x02;
const FLAG_NO_UPGRADE = 0x04;
const PROTOCOL_RE = /^[a-z0-9][a-z0-9.+-]{0,31}$/;
/** The largest value a TLV can hold. */
const MAX_VALUE = 0xffff;

export interface ResumeRecord {
  /** The application protocol whose grammar the TLS side follows ("smtp", "imap", "pop3"). */
  protocol: string;
  /** What the TLS side must swallow from the application (text, meaning set by the protocol). */
  swallow?: string;
  /** Bytes the TLS side must replay to the application. */
  data?: Buffer;
  /** The wrapper saw the server's capabilities, and no upgrade of its own among them: the TLS
   * side need not take one out of what a fresh server says (after-tls.ts). */
  noUpgrade?: true;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function malformed(what: string): ProxyFormatError {
  return new ProxyFormatError(`malformed resume record: ${what}`);
}

/** The TLV value for a resume record. Throws ProxyFormatError on a bad protocol or size. */
export function encodeResumeRecord(r: ResumeRecord): Buffer {
  if (typeof r.protocol !== "string" || !PROTOCOL_RE.test(r.protocol)) {
    throw new ProxyFormatError(`invalid resume protocol name "${String(r.protocol)}"`);
  }
  const parts: Buffer[] = [Buffer.from([RESUME_RECORD_VERSION, 0, r.protocol.length])];
  parts.push(Buffer.from(r.protocol, "latin1"));
  let flags = 0;
  const field = (bytes: Uint8Array, flag: number, name: string) => {
    if (bytes.length > MAX_VALUE) throw new ProxyFormatError(`resume ${name} longer than 65535`);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(bytes.length);
    parts.push(len, Buffer.from(bytes));
    flags |= flag;
  };
  if (r.swallow !== undefined) {
    if (typeof r.swallow !== "string" || !r.swallow.isWellFormed()) {
      throw new ProxyFormatError("resume swallow text is not well-formed Unicode");
    }
    field(Buffer.from(r.swallow, "utf8"), FLAG_SWALLOW, "swallow text");
  }
  if (r.data !== undefined) {
    if (!(r.data instanceof Uint8Array)) throw new ProxyFormatError("resume data is not bytes");
    field(r.data, FLAG_DATA, "data");
  }
  if (r.noUpgrade) flags |= FLAG_NO_UPGRADE;
  const out = Buffer.concat(parts);
  out[1] = flags;
  if (out.length > MAX_VALUE) throw new ProxyFormatError("resume record longer than 65535");
  return out;
}

/** Decodes a resume TLV value. Throws ProxyFormatError when it is malformed. */
export function decodeResumeRecord(value: Uint8Array): ResumeRecord {
  if (value.length < 3) throw malformed(`${value.length} bytes`);
  const version = u8(value, 0);
  if (version !== RESUME_RECORD_VERSION) throw malformed(`unsupported version ${version}`);
  const flags = u8(value, 1);
  if (flags & ~(FLAG_SWALLOW | FLAG_DATA | FLAG_NO_UPGRADE))
    throw malformed(`unknown flags 0x${flags.toString(16)}`);
  let pos = 2;
  const take = (length: number, name: string): Buffer => {
    if (pos + length > value.length) throw malformed(`${name} runs past the end`);
    const bytes = Buffer.from(value.subarray(pos, pos + length));
    pos += length;
    return bytes;
  };
  const protocol = take(u8(value, pos++), "protocol").toString("latin1");
  if (!PROTOCOL_RE.test(protocol)) throw malformed("invalid protocol name");
  const record: ResumeRecord = { protocol };
  const lengthOf = (name: string): number => {
    if (pos + 2 > value.length) throw malformed(`${name} length runs past the end`);
    pos += 2;
    return u16(value, pos - 2);
  };
  if (flags & FLAG_SWALLOW) {
    const bytes = take(lengthOf("swallow"), "swallow");
    try {
      record.swallow = utf8.decode(bytes);
    } catch (cause) {
      throw new ProxyFormatError("malformed resume record: swallow text is not UTF-8", { cause });
    }
  }
  if (flags & FLAG_DATA) record.data = take(lengthOf("data"), "data");
  if (flags & FLAG_NO_UPGRADE) record.noUpgrade = true;
  if (pos !== value.length) throw malformed(`${value.length - pos} trailing bytes`);
  return record;
}

/** A resume record as the TLV to put in a v2 header. */
export function resumeTlv(r: ResumeRecord): ProxyTlv {
  return { type: RESUME_TLV_TYPE, value: encodeResumeRecord(r) };
}

/**
 * The resume record of a decoded header, or undefined if it has none. Throws ProxyFormatError
 * when the record is malformed or there is more than one.
 */
export function findResumeRecord(header: ProxyHeader): ResumeRecord | undefined {
  const found = header.tlvs.filter((t) => t.type === RESUME_TLV_TYPE);
  if (found.length > 1) throw new ProxyFormatError("more than one resume record");
  return found[0] && decodeResumeRecord(found[0].value);
}

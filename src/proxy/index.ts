// The PROXY protocol codec (v1 text, v2 binary) and our resume record: the public API.
import { decodeProxyV1 } from "./v1.ts";
import { decodeProxyV2, V2_MAX_LENGTH } from "./v2.ts";
import { failure, INCOMPLETE } from "./types.ts";
import type { ProxyDecodeResult } from "./types.ts";

export { ProxyFormatError } from "./errors.ts";
export type {
  ProxyAddress,
  ProxyDecodeResult,
  ProxyHeader,
  ProxyHeaderInit,
  ProxyTlv,
} from "./types.ts";
export { encodeProxyV1, V1_MAX_LENGTH } from "./v1.ts";
export {
  encodeProxyV2,
  PP2_TYPE_ALPN,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_MAX_CUSTOM,
  PP2_TYPE_MIN_CUSTOM,
  PP2_TYPE_NETNS,
  PP2_TYPE_NOOP,
  PP2_TYPE_SSL,
  PP2_TYPE_UNIQUE_ID,
  PROXY_V2_SIGNATURE,
  V2_MAX_LENGTH,
} from "./v2.ts";
export type { EncodeV2Options } from "./v2.ts";
export { crc32c } from "./crc32c.ts";
export {
  decodeResumeRecord,
  encodeResumeRecord,
  findResumeRecord,
  RESUME_RECORD_VERSION,
  RESUME_TLV_TYPE,
  resumeTlv,
} from "./resume.ts";
export type { ResumeRecord } from "./resume.ts";

export interface DecodeOptions {
  /** Refuse headers longer than this many bytes (default: the v2 maximum, 65551). */
  maxLength?: number;
}

/**
 * Decodes the PROXY header (v1 or v2) at the start of `buf`, the bytes received so far.
 * "incomplete": every byte so far can still start a valid header, read more (a client that
 * sends no header is refused at its first byte that cannot); "ok": `length` bytes were the
 * header and the rest of `buf` is the application's; "error": not a valid header. Never throws
 * on any input.
 */
export function decodeProxyHeader(buf: Uint8Array, opts: DecodeOptions = {}): ProxyDecodeResult {
  const maxLength = opts.maxLength ?? V2_MAX_LENGTH;
  if (!Number.isInteger(maxLength) || maxLength < 1) {
    throw new TypeError(`maxLength must be a positive integer, not ${String(maxLength)}`);
  }
  if (buf.length === 0) return INCOMPLETE;
  switch (buf[0]) {
    case 0x0d:
      return decodeProxyV2(buf, maxLength);
    case 0x50: // "P"
      return decodeProxyV1(buf, maxLength);
    default:
      return failure("not a PROXY protocol header");
  }
}

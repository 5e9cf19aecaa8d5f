// The decoded form of a PROXY protocol header (v1 or v2), shared by both codecs.

export interface ProxyAddress {
  /** IPv4 dotted quad, or IPv6 in Node's compressed form ("::1", "::ffff:192.0.2.1"). */
  ip: string;
  port: number;
}

export interface ProxyTlv {
  /** 0x00-0xff; 0xE0-0xEF is the range for applications (ours: RESUME_TLV_TYPE). */
  type: number;
  value: Buffer;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** "local": the proxy's own connection (health check); use the real socket addresses. */
  command: "proxy" | "local";
  /** "unknown": no usable addresses (v1 UNKNOWN, v2 LOCAL/UNSPEC/UDP/UNIX); use the socket's. */
  family: "tcp4" | "tcp6" | "unknown";
  /** Present exactly when family is "tcp4" or "tcp6". */
  source?: ProxyAddress;
  destination?: ProxyAddress;
  /** v2 TLVs in wire order, without NOOP (ignored) and CRC32C (checked, then dropped). */
  tlvs: ProxyTlv[];
}

/** What the encoders take: a header, with the version and the TLV list optional. */
export type ProxyHeaderInit = Omit<ProxyHeader, "version" | "tlvs"> & {
  version?: 1 | 2;
  tlvs?: readonly ProxyTlv[];
};

export type ProxyDecodeResult =
  | { state: "incomplete" }
  | { state: "ok"; header: ProxyHeader; length: number }
  | { state: "error"; reason: string };

export const INCOMPLETE: ProxyDecodeResult = Object.freeze({ state: "incomplete" as const });

export function failure(reason: string): ProxyDecodeResult {
  return { state: "error", reason };
}

/** A byte of `buf`, or 0 past its end (callers check lengths first; this keeps types strict). */
export function u8(buf: Uint8Array, i: number): number {
  return buf[i] ?? 0;
}

export function u16(buf: Uint8Array, i: number): number {
  return (u8(buf, i) << 8) | u8(buf, i + 1);
}

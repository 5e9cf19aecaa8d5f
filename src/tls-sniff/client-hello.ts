// tls-sniff's ClientHello parser: looks at the first bytes of a connection, as many as have
// arrived, and says whether they are a TLS ClientHello (and what it offers), plaintext, broken,
// or not decidable yet. Nothing is consumed: the caller keeps every byte and hands them on
// unchanged to whatever comes next (a TLS engine or a plaintext program), so no byte is lost or
// reordered. The caller re-calls sniff() with the grown buffer after each TCP segment.
//
// Accepted grammar (RFC 8446 sections 4.1.2 and 5.1, RFC 5246 section 7.4.1.2, RFC 6066
// section 3, RFC 7301 section 3.1; all integers big-endian):
//
//   first flight  = record+                  the records that carry the ClientHello message
//   record        = 0x16 0x03 minor len16 fragment[len16]
//                   handshake content type; any 3.x record version; 1 <= len16 <= 2^14
//   message       = fragment || fragment ... the records' payloads, concatenated
//                 = 0x01 len24 body[len24]   client_hello; the message ends exactly at the end
//                                            of a record (nothing else may share that record)
//   body          = legacy_version(0x03 xx) random[32] session_id<0..32>
//                   cipher_suites<2..2^16-2, even> compression_methods<1..2^8-1, with 0>
//                   [ extensions<0..2^16-1> ]  absent only in old (TLS <= 1.2) hellos; when
//                                              present it fills the body exactly
//   extension     = type16 data<0..2^16-1>   each type at most once
//   server_name (0)  = list<..> holding exactly one entry: 0x00 (host_name) name<1..2^16-1>;
//                   name is a hostname: labels of [A-Za-z0-9_-] (1..63 bytes) joined by dots,
//                   253 bytes at most, no trailing dot (RFC 6066 forbids it); reported lowercase
//   alpn (16)        = list<2..2^16-1> of name<1..255>, reported as latin1 strings
//   supported_versions (43) = list<2..254, even> of version16
//   other extensions are kept by type only, their contents unchecked.
//
// Decisions:
// - "plain" as early as possible: first byte not 0x16 (decided on that byte alone), or 0x16
//   followed by a major version other than 0x03 ("0x16 0x04 ..." is plain: no TLS version has
//   major 4, and some binary protocol may well start with 0x16). SSLv2-style hellos (first byte
//   0x80 or so) are plain too: no TLS engine we hand to accepts them anyway.
// - Once the bytes start 0x16 0x03 the connection is TLS-shaped: anything wrong from then on is
//   "malformed" (the caller closes and logs the reason): a zero-length or over-long record, a
//   record of another type (an alert, application data, ...) before the hello is whole, a
//   handshake message other than client_hello, a hello longer than MAX_SNIFF_BYTES on the wire
//   (record headers included), any length that overruns its container or leaves bytes over, a
//   duplicate extension, a bad server_name, alpn or supported_versions extension.
// - A verdict other than "more" is final: more bytes never change its kind ("tls" and "plain"
//   stay identical; a "malformed" stays malformed, though with more bytes the reason reported
//   may be another fault that shows earlier in the walk). Every check uses bytes already
//   present or lengths already declared, so a proper prefix of a valid hello is always "more".
// - "more" carries `need`: the caller cannot get another verdict with fewer bytes than that in
//   total (always more than it has).
//
// Bounds: reads are index-checked against the buffer (u8 reads 0 past the end, and no length
// is used before it is checked); every loop advances through the buffer; no recursion. A
// single-record hello (the usual case) is parsed in place; a fragmented one is copied once.

export interface ClientHelloInfo {
  /** The version in the first record header (0x0301 for most modern clients). */
  recordVersion: number;
  /** The ClientHello's legacy_version (0x0303 for TLS 1.2 and 1.3 clients). */
  legacyVersion: number;
  /** From server_name (0), host_name entry, lowercase ASCII; absent without that extension. */
  serverName?: string;
  /** From application_layer_protocol_negotiation (16), in the client's order, latin1. */
  alpn?: string[];
  /** From supported_versions (43), in the client's order (0x0304 is TLS 1.3). */
  supportedVersions?: number[];
  cipherSuites: number[];
  /** Extension types in wire order (GREASE values included). */
  extensions: number[];
}

export type SniffResult =
  /** Cannot decide yet: call again once the buffer holds at least `need` bytes. */
  | { kind: "more"; need: number }
  /** Not TLS: pass the bytes on as plaintext. */
  | { kind: "plain" }
  /** A whole ClientHello; `length` is the number of bytes of the records that carried it. */
  | { kind: "tls"; hello: ClientHelloInfo; length: number }
  /** Starts like TLS but is broken: close the connection, log `reason`. */
  | { kind: "malformed"; reason: string };

/** The most bytes sniff() ever needs: a hello that would take more (record headers included)
 * is malformed. Callers can size their buffer to this. */
export const MAX_SNIFF_BYTES = 0x10000;
/** Largest record payload allowed for plaintext records (2^14). */
export const MAX_RECORD_PAYLOAD = 0x4000;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 1;
/** legacy_version + random + session_id<0> + one cipher suite + one compression method. */
const MIN_HELLO_BODY = 2 + 32 + 1 + 2 + 2 + 1 + 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const MAX_HOSTNAME = 253;
const MAX_LABEL = 63;

const PLAIN: SniffResult = Object.freeze({ kind: "plain" as const });

type Malformed = { kind: "malformed"; reason: string };
/** Why a walk stopped short: need handshake bytes [0, at), or a fault. */
type Stop = { kind: "more"; at: number } | Malformed;

function malformed(reason: string): Malformed {
  return { kind: "malformed", reason };
}

function u8(buf: Uint8Array, i: number): number {
  return buf[i] ?? 0;
}

function u16(buf: Uint8Array, i: number): number {
  return (u8(buf, i) << 8) | u8(buf, i + 1);
}

function hex(n: number, digits = 2): string {
  return `0x${n.toString(16).padStart(digits, "0")}`;
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString("latin1");
}

// ---- record layer -------------------------------------------------------------------------

/** One record of the hello: its payload is bytes[start, end) (perhaps not all arrived yet)
 * and holds handshake bytes [hsStart, hsStart + end - start). */
interface Fragment {
  start: number;
  end: number;
  hsStart: number;
}

interface Walk {
  kind: "walk";
  records: Fragment[];
  /** Handshake bytes present / announced by the record headers seen. */
  available: number;
  declared: number;
  /** The handshake message's length, header included, once its header has arrived. */
  total: number | undefined;
  /** Wire end of the record that completes the message, once its header has arrived. */
  complete: number | undefined;
  /** Bytes at which the record layer can learn something new (Infinity once complete). */
  need: number;
}

/** The handshake byte at offset i (which must be available). */
function handshakeByte(bytes: Uint8Array, records: readonly Fragment[], i: number): number {
  for (const r of records) {
    if (i < r.hsStart + (r.end - r.start)) return u8(bytes, r.start + i - r.hsStart);
  }
  return 0;
}

/** Checks the handshake header as soon as its bytes are there; sets w.total. */
function checkHandshakeHeader(bytes: Uint8Array, w: Walk): Malformed | undefined {
  if (w.available < 1 || w.total !== undefined) return undefined;
  const type = handshakeByte(bytes, w.records, 0);
  if (type !== HANDSHAKE_CLIENT_HELLO) {
    return malformed(`handshake message type ${type} where client_hello (1) was expected`);
  }
  if (w.available < HANDSHAKE_HEADER) return undefined;
  const body =
    (handshakeByte(bytes, w.records, 1) << 16) |
    (handshakeByte(bytes, w.records, 2) << 8) |
    handshakeByte(bytes, w.records, 3);
  if (body < MIN_HELLO_BODY) return malformed(`ClientHello of ${body} bytes is too short`);
  w.total = HANDSHAKE_HEADER + body;
  return undefined;
}

/** Checks the partial record header at bytes[pos, n) and says when to look again. */
function partialRecordHeader(bytes: Uint8Array, pos: number): Malformed | number {
  const n = bytes.length;
  if (pos < n && u8(bytes, pos) !== CONTENT_HANDSHAKE) {
    return malformed(`record of type ${u8(bytes, pos)} before the ClientHello is complete`);
  }
  if (pos + 1 < n && u8(bytes, pos + 1) !== 3) {
    return malformed(`record version ${u8(bytes, pos + 1)}.x inside the ClientHello`);
  }
  // The type and major version bytes are checked one by one; the rest only as a whole.
  return n <= pos ? pos + 1 : n === pos + 1 ? pos + 2 : pos + RECORD_HEADER;
}

/**
 * Walks the records that carry the hello, as far as the bytes go. Stops at the record that
 * completes the handshake message (the message length is known by then).
 */
function walkRecords(bytes: Uint8Array): Walk | Malformed {
  const n = bytes.length;
  const w: Walk = {
    kind: "walk",
    records: [],
    available: 0,
    declared: 0,
    total: undefined,
    complete: undefined,
    need: Infinity,
  };
  let pos = 0;
  // Each turn moves pos past one whole record, or returns.
  for (;;) {
    if (pos + RECORD_HEADER > n) {
      const at = partialRecordHeader(bytes, pos);
      if (typeof at !== "number") return at;
      w.need = at;
      return w;
    }
    const header = partialRecordHeader(bytes, pos);
    if (typeof header !== "number") return header;
    const length = u16(bytes, pos + 3);
    if (length === 0) return malformed("empty handshake record");
    if (length > MAX_RECORD_PAYLOAD) return malformed(`record of ${length} bytes (max 16384)`);
    const start = pos + RECORD_HEADER;
    const end = start + length;
    if (end > MAX_SNIFF_BYTES)
      return malformed(`ClientHello over ${MAX_SNIFF_BYTES} bytes, the most looked at`);
    w.records.push({ start, end, hsStart: w.declared });
    w.declared += length;
    w.available += Math.min(end, n) - start;
    const fault = checkHandshakeHeader(bytes, w);
    if (fault) return fault;
    if (w.total !== undefined) {
      // Bytes still missing need at least one more record, header included.
      const left = w.total - w.declared;
      if (left > 0 && end + RECORD_HEADER + left > MAX_SNIFF_BYTES) {
        return malformed(`ClientHello over ${MAX_SNIFF_BYTES} bytes, the most looked at`);
      }
      if (left < 0) return malformed(`${-left} bytes after the ClientHello in its last record`);
      if (left === 0) {
        w.complete = end;
        return w;
      }
    }
    if (end > n) {
      // The next record header's first byte is the next thing the record layer can check.
      w.need = end + 1;
      return w;
    }
    pos = end;
  }
}

/** The handshake bytes present, contiguous: in place for one record, else one copy. */
function handshakeBytes(bytes: Uint8Array, w: Walk): Uint8Array {
  const n = bytes.length;
  const [only] = w.records;
  if (w.records.length === 1 && only) return bytes.subarray(only.start, Math.min(only.end, n));
  const out = new Uint8Array(w.available);
  for (const r of w.records) {
    if (r.start < n) out.set(bytes.subarray(r.start, Math.min(r.end, n)), r.hsStart);
  }
  return out;
}

/** The wire length that holds handshake bytes [0, at). */
function wireNeed(w: Walk, at: number): number {
  for (const r of w.records) {
    if (at <= r.hsStart + (r.end - r.start)) return r.start + (at - r.hsStart);
  }
  const last = w.records[w.records.length - 1];
  return (last ? last.end : 0) + RECORD_HEADER + (at - w.declared);
}

// ---- the ClientHello body -----------------------------------------------------------------

/** A position in the (contiguous) handshake bytes present so far. */
interface Reader {
  buf: Uint8Array;
  pos: number;
}

/** Whether `count` bytes at r.pos lie before `limit` and have arrived; else why not. */
function span(r: Reader, count: number, limit: number, what: string): Stop | undefined {
  if (r.pos + count > limit) return malformed(`${what} runs past its container`);
  if (r.pos + count > r.buf.length) return { kind: "more", at: r.pos + count };
  return undefined;
}

function isHostnameByte(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === 0x5f // _ (not LDH, but real internal names carry it and clients send them)
  );
}

/** Why bytes[start, end) is not a hostname, or undefined when it is one. */
function hostnameFault(buf: Uint8Array, start: number, end: number): string | undefined {
  if (end - start > MAX_HOSTNAME) return `server name of ${end - start} bytes (max 253)`;
  let label = 0;
  for (let i = start; i < end; i++) {
    const c = u8(buf, i);
    if (c === 0x2e) {
      if (label === 0) return "server name with an empty label";
      label = 0;
    } else if (!isHostnameByte(c)) {
      return `server name with byte ${hex(c)}`;
    } else if (++label > MAX_LABEL) {
      return "server name with a label over 63 bytes";
    }
  }
  if (label === 0) return "server name with an empty last label (or a trailing dot)";
  return undefined;
}

/** server_name: exactly one host_name entry (what OpenSSL accepts too). */
function parseServerName(buf: Uint8Array, start: number, end: number): string | Malformed {
  if (end - start < 2 || start + 2 + u16(buf, start) !== end) {
    return malformed("server_name list length does not match the extension");
  }
  if (end - start < 2 + 3) return malformed("empty server_name list");
  const type = u8(buf, start + 2);
  if (type !== 0) return malformed(`server name type ${type} (only host_name, 0)`);
  const nameEnd = start + 5 + u16(buf, start + 3);
  if (nameEnd > end) return malformed("server name runs past the server_name list");
  if (nameEnd < end) return malformed("more than one entry in the server_name list");
  if (nameEnd === start + 5) return malformed("empty server name");
  const fault = hostnameFault(buf, start + 5, nameEnd);
  if (fault !== undefined) return malformed(fault);
  return latin1(buf, start + 5, nameEnd).toLowerCase();
}

/** application_layer_protocol_negotiation: a non-empty list of non-empty names. */
function parseAlpn(buf: Uint8Array, start: number, end: number): string[] | Malformed {
  if (end - start < 2 || start + 2 + u16(buf, start) !== end) {
    return malformed("ALPN list length does not match the extension");
  }
  if (end - start === 2) return malformed("empty ALPN list");
  const names: string[] = [];
  // Each turn moves p past at least the length byte.
  for (let p = start + 2; p < end;) {
    const length = u8(buf, p);
    if (length === 0) return malformed("empty ALPN protocol name");
    if (p + 1 + length > end) return malformed("ALPN protocol name runs past the list");
    names.push(latin1(buf, p + 1, p + 1 + length));
    p += 1 + length;
  }
  return names;
}

/** supported_versions, the ClientHello form: a one-byte-length list of 16-bit versions. */
function parseSupportedVersions(buf: Uint8Array, start: number, end: number): number[] | Malformed {
  const length = u8(buf, start);
  if (start + 1 + length !== end) {
    return malformed("supported_versions list length does not match the extension");
  }
  if (length === 0 || length % 2 !== 0) {
    return malformed(`supported_versions list of ${length} bytes`);
  }
  const versions: number[] = [];
  for (let p = start + 1; p < end; p += 2) versions.push(u16(buf, p));
  return versions;
}

/** Reads the contents of one of the three extensions we look into. */
function readExtension(
  info: ClientHelloInfo,
  type: number,
  buf: Uint8Array,
  start: number,
  end: number,
): Malformed | undefined {
  if (type === EXT_SERVER_NAME) {
    const v = parseServerName(buf, start, end);
    if (typeof v !== "string") return v;
    info.serverName = v;
  } else if (type === EXT_ALPN) {
    const v = parseAlpn(buf, start, end);
    if (!Array.isArray(v)) return v;
    info.alpn = v;
  } else if (type === EXT_SUPPORTED_VERSIONS) {
    const v = parseSupportedVersions(buf, start, end);
    if (!Array.isArray(v)) return v;
    info.supportedVersions = v;
  }
  return undefined;
}

/** Walks the extension block r.buf[r.pos, end), which the caller checked fills the body. */
function parseExtensions(r: Reader, end: number, info: ClientHelloInfo): Stop | undefined {
  const seen = new Set<number>();
  // Each turn moves r.pos past at least the 4-byte extension header.
  while (r.pos < end) {
    const stop = span(r, 4, end, "extension header");
    if (stop) return stop;
    const type = u16(r.buf, r.pos);
    const length = u16(r.buf, r.pos + 2);
    r.pos += 4;
    if (r.pos + length > end) return malformed(`extension ${type} runs past the extension block`);
    if (seen.has(type)) return malformed(`extension ${type} appears twice`);
    seen.add(type);
    info.extensions.push(type);
    if (type === EXT_SERVER_NAME || type === EXT_ALPN || type === EXT_SUPPORTED_VERSIONS) {
      const wait = span(r, length, end, `extension ${type}`);
      if (wait) return wait;
      const fault = readExtension(info, type, r.buf, r.pos, r.pos + length);
      if (fault) return fault;
    }
    r.pos += length;
  }
  return undefined;
}

/** Reads a length-prefixed vector's length (1 or 2 bytes) and checks its body fits. */
function vector(r: Reader, prefix: 1 | 2, limit: number, what: string): Stop | number {
  const head = span(r, prefix, limit, `${what} length`);
  if (head) return head;
  const length = prefix === 1 ? u8(r.buf, r.pos) : u16(r.buf, r.pos);
  r.pos += prefix;
  if (r.pos + length > limit) return malformed(`${what} runs past the ClientHello`);
  return length;
}

/** Parses the handshake message buf[0, total) (total known), as far as buf goes. */
function parseHello(buf: Uint8Array, total: number, recordVersion: number): ClientHelloInfo | Stop {
  const r: Reader = { buf, pos: HANDSHAKE_HEADER };
  const fixed = span(r, 34, total, "legacy_version and random");
  if (fixed) return fixed;
  const legacyVersion = u16(buf, r.pos);
  if (legacyVersion >> 8 !== 3) return malformed(`legacy_version ${hex(legacyVersion, 4)}`);
  r.pos += 34;
  const session = vector(r, 1, total, "session id");
  if (typeof session !== "number") return session;
  if (session > 32) return malformed(`session id of ${session} bytes (max 32)`);
  r.pos += session;
  const suites = vector(r, 2, total, "cipher suite list");
  if (typeof suites !== "number") return suites;
  if (suites === 0 || suites % 2 !== 0) return malformed(`cipher suite list of ${suites} bytes`);
  const wait = span(r, suites, total, "cipher suite list");
  if (wait) return wait;
  const cipherSuites: number[] = [];
  for (let i = 0; i < suites; i += 2) cipherSuites.push(u16(buf, r.pos + i));
  r.pos += suites;
  const methods = vector(r, 1, total, "compression methods");
  if (typeof methods !== "number") return methods;
  const present = span(r, methods, total, "compression methods");
  if (present) return present;
  if (!buf.subarray(r.pos, r.pos + methods).includes(0)) {
    return malformed("no null compression method");
  }
  r.pos += methods;
  const info: ClientHelloInfo = { recordVersion, legacyVersion, cipherSuites, extensions: [] };
  if (r.pos < total) {
    const block = vector(r, 2, total, "extension block");
    if (typeof block !== "number") return block;
    if (r.pos + block < total) return malformed(`${total - r.pos - block} bytes after extensions`);
    const stop = parseExtensions(r, total, info);
    if (stop) return stop;
  }
  // Extensions we do not read were skipped: the whole message must still be here.
  return buf.length < total ? { kind: "more", at: total } : info;
}

// ---- the verdict --------------------------------------------------------------------------

/**
 * Decides what the first bytes of a connection are (see the header comment). Never throws;
 * reads only `bytes`; call again with a longer buffer (same prefix) after a "more".
 */
export function sniff(bytes: Uint8Array): SniffResult {
  const n = bytes.length;
  if (n === 0) return { kind: "more", need: 1 };
  if (u8(bytes, 0) !== CONTENT_HANDSHAKE) return PLAIN;
  if (n === 1) return { kind: "more", need: 2 };
  if (u8(bytes, 1) !== 3) return PLAIN;
  const w = walkRecords(bytes);
  if (w.kind === "malformed") return w;
  let at: number;
  if (w.total === undefined) {
    at = w.available < 1 ? 1 : HANDSHAKE_HEADER;
  } else {
    const hello = parseHello(handshakeBytes(bytes, w), w.total, u16(bytes, 1));
    if (!("kind" in hello)) {
      // parseHello has all of the message, so its last record has arrived.
      return { kind: "tls", hello, length: w.complete ?? n };
    }
    if (hello.kind === "malformed") return hello;
    at = hello.at;
  }
  return { kind: "more", need: Math.min(w.need, wireNeed(w, at)) };
}

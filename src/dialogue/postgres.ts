// PostgreSQL's start of a connection (protocol 3.0, "Message Flow: Start-up" and "SSL Session
// Encryption"), as starttls-wrapper reads it: the client speaks first, with one untyped packet,
// Int32 length (itself included) then Int32 code. SSLRequest asks for TLS (the server answers
// one byte, 'S' or 'N'), GSSENCRequest for GSSAPI encryption (we answer 'N'), CancelRequest
// cancels a query of another connection, and anything else is a StartupMessage, whose code is
// the protocol version (3.0 = 196608).

export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;
/** PostgreSQL refuses longer start-up packets (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP = 10000;
/** The longest secret key of a CancelRequest: 4 bytes in protocol 3.0, up to 256 from 3.2
 * (PostgreSQL 18's MAX_CANCEL_KEY_LENGTH). */
const MAX_CANCEL_KEY = 256;

export type StartupPacket =
  /** Not all there yet: this many bytes are needed in all. */
  | { kind: "more"; need: number }
  /** extra: bytes the client sent after the request, before our answer (none is allowed). */
  | { kind: "ssl"; extra: number }
  | { kind: "gssenc"; extra: number }
  | { kind: "cancel" }
  /** A StartupMessage of this protocol version (major << 16 | minor). */
  | { kind: "startup"; version: number }
  | { kind: "malformed"; reason: string };

/** What the client's first bytes are (never throws). */
export function readStartup(bytes: Uint8Array): StartupPacket {
  if (bytes.length < 8) return { kind: "more", need: 8 };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0);
  const code = view.getUint32(4);
  if (length < 8 || length > MAX_STARTUP)
    return { kind: "malformed", reason: `a start-up packet of ${length} bytes` };
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    if (length !== 8) return { kind: "malformed", reason: `a ${length}-byte SSLRequest` };
    return { kind: code === SSL_REQUEST ? "ssl" : "gssenc", extra: bytes.length - 8 };
  }
  if (bytes.length < length) return { kind: "more", need: length };
  if (code === CANCEL_REQUEST) {
    // Length, code and process ID, then the key (the server checks the same bounds).
    return length > 12 && length <= 12 + MAX_CANCEL_KEY
      ? { kind: "cancel" }
      : { kind: "malformed", reason: `a ${length}-byte CancelRequest` };
  }
  const major = code >>> 16;
  if (major !== 3 && major !== 2)
    return { kind: "malformed", reason: `protocol version ${major}.${code & 0xffff}` };
  return { kind: "startup", version: code };
}

/** An ErrorResponse ('E') that ends the connection: severity FATAL, a SQLSTATE and a
 * message, as the server's own. */
export function fatalError(sqlstate: string, message: string): Buffer {
  const fields = Buffer.concat([
    field("S", "FATAL"),
    field("V", "FATAL"),
    field("C", sqlstate),
    field("M", message),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write("E", 0, "latin1");
  head.writeUInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

function field(type: string, value: string): Buffer {
  return Buffer.concat([Buffer.from(type, "latin1"), Buffer.from(value, "utf8"), Buffer.from([0])]);
}

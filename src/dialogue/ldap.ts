// LDAP's StartTLS (RFC 4511 section 4.14, RFC 4513 section 3), as starttls-wrapper reads it:
// the client speaks first, in BER. Its first LDAPMessage is read whole (SEQUENCE { messageID
// INTEGER, protocolOp, controls [0] OPTIONAL }): an ExtendedRequest ([APPLICATION 23]) whose
// requestName ([0]) is the StartTLS OID is answered here, any other operation goes to the
// server. Definite lengths only, as LDAP requires.

export const STARTTLS_OID = "1.3.6.1.4.1.1466.20037";
/** The unsolicited "Notice of Disconnection" (RFC 4511 section 4.4.1). */
const NOTICE_OID = "1.3.6.1.4.1.1466.20036";
/** The most bytes a first message may have here (a bind or a search fits easily). */
export const MAX_FIRST_MESSAGE = 64 * 1024;

const EXTENDED_REQUEST = 0x77; // [APPLICATION 23], constructed
const EXTENDED_RESPONSE = 0x78; // [APPLICATION 24], constructed

export type FirstMessage =
  | { kind: "more"; need: number }
  /** length: the message's bytes; extra: what the client sent after it before our answer. */
  | { kind: "starttls"; messageId: number; length: number; extra: number }
  /** Another operation (its BER tag), or an ExtendedRequest for something else. */
  | { kind: "other"; op: number }
  | { kind: "malformed"; reason: string };

interface Tlv {
  tag: number;
  /** Where the value starts and ends. */
  start: number;
  end: number;
}

/** The TLV at `at` (undefined: not all there; a string: why it cannot be one). */
function readTlv(b: Uint8Array, at: number): Tlv | undefined | string {
  if (at + 2 > b.length) return undefined;
  const tag = b[at] ?? 0;
  if ((tag & 0x1f) === 0x1f) return "a multi-byte tag";
  const first = b[at + 1] ?? 0;
  let length = first;
  let start = at + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0) return "an indefinite length";
    if (n > 4) return "a length of more than 4 bytes";
    if (at + 2 + n > b.length) return undefined;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (b[at + 2 + i] ?? 0);
    start += n;
  }
  return { tag, start, end: start + length };
}

/** What the client's first bytes are (never throws). */
export function readFirstMessage(bytes: Uint8Array): FirstMessage {
  const message = readTlv(bytes, 0);
  if (message === undefined) return { kind: "more", need: Math.max(bytes.length + 1, 2) };
  if (typeof message === "string") return { kind: "malformed", reason: message };
  if (message.tag !== 0x30) return { kind: "malformed", reason: "not an LDAPMessage" };
  if (message.end > MAX_FIRST_MESSAGE)
    return { kind: "malformed", reason: `a first message of ${message.end} bytes` };
  if (bytes.length < message.end) return { kind: "more", need: message.end };
  const id = readTlv(bytes, message.start);
  if (typeof id !== "object" || id.tag !== 0x02 || id.end - id.start < 1 || id.end - id.start > 4)
    return { kind: "malformed", reason: "no messageID" };
  let messageId = 0;
  for (let i = id.start; i < id.end; i++) messageId = messageId * 256 + (bytes[i] ?? 0);
  if ((bytes[id.start] ?? 0) & 0x80) return { kind: "malformed", reason: "a negative messageID" };
  const op = readTlv(bytes, id.end);
  if (typeof op !== "object" || op.end > message.end)
    return { kind: "malformed", reason: "no operation" };
  if (op.tag !== EXTENDED_REQUEST) return { kind: "other", op: op.tag };
  const name = readTlv(bytes, op.start);
  if (typeof name !== "object" || name.tag !== 0x80 || name.end > op.end)
    return { kind: "malformed", reason: "an ExtendedRequest without its requestName" };
  const oid = Buffer.from(bytes.subarray(name.start, name.end)).toString("latin1");
  if (oid !== STARTTLS_OID) return { kind: "other", op: op.tag };
  return { kind: "starttls", messageId, length: message.end, extra: bytes.length - message.end };
}

/** The StartTLS ExtendedResponse: success, for this request's messageID. */
export function startTlsResponse(messageId: number): Buffer {
  return extendedResponse(messageId, 0, "", STARTTLS_OID);
}

/** The Notice of Disconnection the server sends before it closes: resultCode and why. */
export function noticeOfDisconnection(resultCode: number, message: string): Buffer {
  return extendedResponse(0, resultCode, message, NOTICE_OID);
}

/** LDAP result codes used here. */
export const PROTOCOL_ERROR = 2;
export const CONFIDENTIALITY_REQUIRED = 13;

function extendedResponse(id: number, code: number, message: string, oid: string): Buffer {
  const op = tlv(
    EXTENDED_RESPONSE,
    Buffer.concat([
      tlv(0x0a, Buffer.from([code])),
      tlv(0x04, Buffer.alloc(0)),
      tlv(0x04, Buffer.from(message, "utf8")),
      tlv(0x8a, Buffer.from(oid, "latin1")),
    ]),
  );
  return tlv(0x30, Buffer.concat([tlv(0x02, integer(id)), op]));
}

/** A BER INTEGER's contents: big-endian, shortest, a leading 0 when the top bit is set. */
export function integer(n: number): Buffer {
  const bytes: number[] = [];
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return Buffer.from(bytes);
}

/** A BER TLV, with a short or long length (up to 64 KiB). */
export function tlv(tag: number, value: Buffer): Buffer {
  const n = value.length;
  const length =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, value]);
}

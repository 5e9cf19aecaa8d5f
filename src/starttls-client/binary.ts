// PostgreSQL's SSLRequest (protocol 3, §55.2.10) and LDAP's StartTLS extended operation
// (RFC 4511 §4.14): a request of ours, one answer read to its last byte.
import { SSL_REQUEST } from "../dialogue/postgres.ts";
import { STARTTLS_OID, integer, tlv } from "../dialogue/ldap.ts";
import { UpgradeError, quoted } from "./reader.ts";
import type { ClientUpgrade } from "./types.ts";

export const postgres: ClientUpgrade = async (io) => {
  const request = Buffer.alloc(8);
  request.writeUInt32BE(8, 0);
  request.writeUInt32BE(SSL_REQUEST, 4);
  io.send(request);
  const answer = (await io.bytes(1))[0] ?? 0;
  if (answer === 0x4e) throw new UpgradeError("not-offered", "server does not offer TLS (N)");
  if (answer !== 0x53) {
    const hex = `0x${answer.toString(16).padStart(2, "0")}`;
    throw new UpgradeError("refused", `server refused SSLRequest: it answered ${hex}, not S or N`);
  }
};

/** The largest LDAP answer we read before TLS. */
const MAX_MESSAGE = 64 * 1024;

/** The StartTLS ExtendedRequest, message ID 1. */
export function startTlsRequest(): Buffer {
  const op = tlv(0x77, tlv(0x80, Buffer.from(STARTTLS_OID, "latin1")));
  return tlv(0x30, Buffer.concat([tlv(0x02, integer(1)), op]));
}

export type LdapAnswer =
  | { kind: "more"; need: number }
  | { kind: "bad"; why: string }
  | { kind: "extended"; messageId: number; resultCode: number; diagnostic: string };

/** A BER length at `at`: its value and where the contents start, "more", or undefined. */
function lengthAt(
  bytes: Uint8Array,
  at: number,
): { length: number; start: number } | "more" | undefined {
  const first = bytes[at];
  if (first === undefined) return "more";
  if (first < 0x80) return { length: first, start: at + 1 };
  const count = first & 0x7f;
  if (count === 0 || count > 3) return undefined;
  if (bytes.length < at + 1 + count) return "more";
  let length = 0;
  for (let i = 0; i < count; i++) length = length * 256 + (bytes[at + 1 + i] ?? 0);
  return { length, start: at + 1 + count };
}

/** Reads one LDAPMessage: an ExtendedResponse (its ID, resultCode and diagnosticMessage), how
 * many bytes are still needed, or why it is not one. */
export function readLdapAnswer(bytes: Uint8Array): LdapAnswer {
  if (bytes.length === 0) return { kind: "more", need: 2 };
  if (bytes[0] !== 0x30) return { kind: "bad", why: "not an LDAP message" };
  const outer = lengthAt(bytes, 1);
  if (outer === "more") return { kind: "more", need: 1 };
  if (!outer || outer.length > MAX_MESSAGE) return { kind: "bad", why: "bad LDAP message length" };
  const end = outer.start + outer.length;
  if (bytes.length < end) return { kind: "more", need: end - bytes.length };
  const read = (from: number, to: number) => {
    const found: { tag: number; value: Uint8Array }[] = [];
    let at = from;
    while (at < to) {
      const tag = bytes[at] ?? 0;
      const len = lengthAt(bytes, at + 1);
      if (!len || len === "more" || len.start + len.length > to) return undefined;
      found.push({ tag, value: bytes.subarray(len.start, len.start + len.length) });
      at = len.start + len.length;
    }
    return found;
  };
  const top = read(outer.start, end);
  if (!top || top.length < 2) return { kind: "bad", why: "bad LDAP message" };
  const [id, op] = top;
  if (id?.tag !== 0x02 || id.value.length < 1 || id.value.length > 4)
    return { kind: "bad", why: "bad LDAP message ID" };
  const messageId = id.value.reduce((n, b) => n * 256 + b, 0);
  if (op?.tag !== 0x78) return { kind: "bad", why: "not an ExtendedResponse" };
  const opStart = op.value.byteOffset - bytes.byteOffset;
  const inner = read(opStart, opStart + op.value.length);
  const [code, , diagnostic] = inner ?? [];
  if (code?.tag !== 0x0a || code.value.length !== 1 || diagnostic?.tag !== 0x04)
    return { kind: "bad", why: "bad ExtendedResponse" };
  return {
    kind: "extended",
    messageId,
    resultCode: code.value[0] ?? 0,
    diagnostic: Buffer.from(diagnostic.value).toString("latin1"),
  };
}

/** protocolError: the server does not know the operation (RFC 4511 §4.12). */
const PROTOCOL_ERROR = 2;

export const ldap: ClientUpgrade = async (io) => {
  io.send(startTlsRequest());
  let bytes = Buffer.alloc(0);
  for (;;) {
    const answer = readLdapAnswer(bytes);
    if (answer.kind === "more") {
      bytes = Buffer.concat([bytes, await io.bytes(answer.need)]);
      continue;
    }
    if (answer.kind === "bad") throw new UpgradeError("protocol", `server sent ${answer.why}`);
    // Message ID 0 is the server's Notice of Disconnection (RFC 4511 §4.4.1); any other but
    // ours answers nothing we asked.
    if (answer.messageId === 0)
      throw new UpgradeError("refused", `server ended the session: ${quoted(answer.diagnostic)}`);
    if (answer.messageId !== 1)
      throw new UpgradeError(
        "protocol",
        `server answered message ID ${answer.messageId}, not our StartTLS's (1)`,
      );
    if (answer.resultCode === PROTOCOL_ERROR)
      throw new UpgradeError("not-offered", "server does not offer StartTLS");
    if (answer.resultCode !== 0)
      throw new UpgradeError(
        "refused",
        `server refused StartTLS: resultCode ${answer.resultCode}${answer.diagnostic ? ` ${quoted(answer.diagnostic)}` : ""}`,
      );
    return;
  }
};

// The MySQL / MariaDB client/server protocol's connection phase, as starttls-wrapper needs it
// (MySQL's "Connection Phase" docs; MariaDB's the same here): packets are a 3-byte
// little-endian length, a sequence number, then the payload. The server speaks first
// (Protocol::HandshakeV10, with its capability flags); a client that wants TLS answers with
// an SSLRequest (the first 32 bytes of a HandshakeResponse41, CLIENT_SSL set), does the TLS
// handshake, then sends its HandshakeResponse41 inside TLS. Authentication ends with OK or
// ERR, after AuthSwitchRequest / AuthMoreData rounds.

export const CLIENT_SSL = 0x0800;
const CLIENT_PROTOCOL_41 = 0x0200;
/** The longest packet taken in the connection phase (a handshake or an auth round). */
export const MAX_PACKET = 64 * 1024;

export interface Packet {
  seq: number;
  payload: Buffer;
}

/** One packet from the front of `bytes`: the packet and its size, or what is missing. */
export function readPacket(
  bytes: Uint8Array,
): { packet: Packet; size: number } | { need: number } | { error: string } {
  if (bytes.length < 4) return { need: 4 };
  const length = (bytes[0] ?? 0) | ((bytes[1] ?? 0) << 8) | ((bytes[2] ?? 0) << 16);
  if (length > MAX_PACKET) return { error: `a packet of ${length} bytes in the connection phase` };
  if (bytes.length < 4 + length) return { need: 4 + length };
  return {
    packet: { seq: bytes[3] ?? 0, payload: Buffer.from(bytes.subarray(4, 4 + length)) },
    size: 4 + length,
  };
}

export function writePacket(seq: number, payload: Uint8Array): Buffer {
  const head = Buffer.from([
    payload.length & 0xff,
    (payload.length >> 8) & 0xff,
    payload.length >> 16,
    seq & 0xff,
  ]);
  return Buffer.concat([head, payload]);
}

/** Where the lower two bytes of the server's capability flags are in a HandshakeV10. */
function greetingCapabilityOffset(p: Uint8Array): number | undefined {
  if (p[0] !== 10) return undefined; // protocol version 10
  const end = p.indexOf(0, 1); // server version, NUL-terminated
  if (end < 0) return undefined;
  // thread id (4), auth-plugin-data part 1 (8), filler (1), then the flags
  const at = end + 1 + 4 + 8 + 1;
  return at + 2 <= p.length ? at : undefined;
}

/** The server's greeting with CLIENT_SSL added, or undefined when it is no HandshakeV10 the
 * wrapper knows (an ERR: "too many connections", say, goes to the client as it is). */
export function advertiseTls(greeting: Buffer): { payload: Buffer; hadTls: boolean } | undefined {
  const at = greetingCapabilityOffset(greeting);
  if (at === undefined) return undefined;
  const flags = greeting.readUInt16LE(at);
  if (!(flags & CLIENT_PROTOCOL_41)) return undefined;
  const payload = Buffer.from(greeting);
  payload.writeUInt16LE(flags | CLIENT_SSL, at);
  return { payload, hadTls: (flags & CLIENT_SSL) !== 0 };
}

/** What a client needs of a greeting to ask for TLS: whether the server offers it, its
 * capability flags (both halves), and the greeting as a program behind us must see it:
 * offering `only` (never CLIENT_SSL) and no MariaDB extended capabilities, because the
 * server keeps the capabilities of the SSLRequest for the session, and the program must not
 * choose others; undefined when it is no HandshakeV10 with the 4.1 protocol. */
export function tlsOffered(
  greeting: Buffer,
  only: number,
): { tls: boolean; flags: number; forProgram: Buffer } | undefined {
  const at = greetingCapabilityOffset(greeting);
  if (at === undefined || at + 18 > greeting.length) return undefined;
  const lower = greeting.readUInt16LE(at);
  if (!(lower & CLIENT_PROTOCOL_41)) return undefined;
  // character set (1) and status flags (2), then the upper half of the flags.
  const upper = greeting.readUInt16LE(at + 5);
  const flags = (lower | (upper << 16)) >>> 0;
  const offered = (flags & only & ~CLIENT_SSL) >>> 0;
  const forProgram = Buffer.from(greeting);
  forProgram.writeUInt16LE(offered & 0xffff, at);
  forProgram.writeUInt16LE(offered >>> 16, at + 5);
  // auth data length (1), 6 reserved bytes, then MariaDB's extended capabilities (4).
  forProgram.fill(0, at + 14, at + 18);
  return { tls: (lower & CLIENT_SSL) !== 0, flags, forProgram };
}

/** The client's first answer: an SSLRequest (32 bytes, CLIENT_SSL), or a HandshakeResponse41
 * for a session without TLS. */
export function clientAsksTls(payload: Uint8Array): boolean {
  if (payload.length < 4) return false;
  const flags = Buffer.from(payload).readUInt32LE(0);
  return (flags & CLIENT_SSL) !== 0 && payload.length === 32;
}

/** The client's HandshakeResponse41 with CLIENT_SSL taken out, for a server without TLS. */
export function withoutTlsFlag(payload: Buffer): Buffer {
  const copy = Buffer.from(payload);
  if (copy.length >= 4) copy.writeUInt32LE((copy.readUInt32LE(0) & ~CLIENT_SSL) >>> 0, 0);
  return copy;
}

export type ServerStep =
  /** OK or ERR: the connection phase is over. */
  | { kind: "done" }
  /** An auth round that goes on (AuthSwitchRequest to another plugin, AuthMoreData). */
  | { kind: "more" }
  /** The server wants the password in clear (mysql_clear_password, PAM's dialog,
   * sha256_password or caching_sha2_password's full authentication): over the plaintext
   * link behind the wrapper it would leak; why says which. */
  | { kind: "cleartext"; why: string };

const CLEARTEXT_PLUGINS = ["mysql_clear_password", "dialog", "sha256_password"];

/** What a server packet of the authentication rounds means. */
export function serverStep(payload: Uint8Array): ServerStep {
  const first = payload[0];
  if (first === 0x00 || first === 0xff) return { kind: "done" };
  if (first === 0xfe) {
    const end = payload.indexOf(0, 1);
    const plugin = Buffer.from(payload.subarray(1, end < 0 ? payload.length : end)).toString(
      "latin1",
    );
    return CLEARTEXT_PLUGINS.includes(plugin)
      ? { kind: "cleartext", why: `the server asks for ${plugin}` }
      : { kind: "more" };
  }
  // caching_sha2_password: 0x01 0x04 is "perform full authentication" (the password in clear).
  if (first === 0x01 && payload[1] === 0x04 && payload.length === 2)
    return { kind: "cleartext", why: "caching_sha2_password asks for a full authentication" };
  return { kind: "more" };
}

const CLIENT_CONNECT_WITH_DB = 0x0008;
const CLIENT_SECURE_CONNECTION = 0x8000;
const CLIENT_PLUGIN_AUTH = 0x80000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000;

/** The plugin a HandshakeResponse41 names (the one its auth response was made with: the
 * greeting's, as a client takes it) and that response, or undefined when it names none or
 * cannot be read. */
export function responsePlugin(payload: Buffer): { plugin: string; auth: Buffer } | undefined {
  if (payload.length < 32) return undefined;
  const flags = payload.readUInt32LE(0);
  if (!(flags & CLIENT_PLUGIN_AUTH)) return undefined;
  const cString = (at: number) => {
    const end = payload.indexOf(0, at);
    return end < 0 ? undefined : { text: payload.toString("latin1", at, end), next: end + 1 };
  };
  const user = cString(32);
  if (!user) return undefined;
  let at = user.next;
  let auth: Buffer;
  if (flags & (CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_SECURE_CONNECTION)) {
    // A length-encoded integer (one byte below 0xfb, else 0xfc, 0xfd, 0xfe and 2, 3 or 8
    // bytes), or one length byte.
    const first = payload[at];
    if (first === undefined) return undefined;
    let size = 0;
    if (flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA && first >= 0xfb) {
      if (first === 0xfb || first === 0xff) return undefined;
      size = first === 0xfc ? 2 : first === 0xfd ? 3 : 8;
    }
    if (at + 1 + size > payload.length) return undefined;
    const length = size === 0 ? first : payload.readUIntLE(at + 1, Math.min(size, 6));
    auth = payload.subarray(at + 1 + size, at + 1 + size + length);
    at += 1 + size + length;
  } else {
    const data = cString(at);
    if (!data) return undefined;
    auth = payload.subarray(at, data.next - 1);
    at = data.next;
  }
  if (flags & CLIENT_CONNECT_WITH_DB) {
    const db = cString(at);
    if (!db) return undefined;
    at = db.next;
  }
  if (at >= payload.length) return undefined;
  return { plugin: cString(at)?.text ?? payload.toString("latin1", at), auth };
}

/** The client's login (its HandshakeResponse41) made with a plugin that sends the password in
 * clear (the greeting named it): over the plaintext link behind the wrapper it would leak.
 * sha256_password's that asks for the server's RSA key (one byte, 1) or has no password is
 * not: a user of another plugin goes on to the server's switch to it. */
export function loginStep(payload: Buffer): { kind: "cleartext"; why: string } | undefined {
  const login = responsePlugin(payload);
  if (login === undefined || !CLEARTEXT_PLUGINS.includes(login.plugin)) return undefined;
  if (login.plugin === "sha256_password" && login.auth.length <= 1) return undefined;
  return { kind: "cleartext", why: `the login uses ${login.plugin}` };
}

/** An ERR packet: error code, SQL state and message (CLIENT_PROTOCOL_41 form). */
export function errPacket(code: number, sqlState: string, message: string): Buffer {
  const head = Buffer.alloc(3);
  head[0] = 0xff;
  head.writeUInt16LE(code, 1);
  return Buffer.concat([head, Buffer.from(`#${sqlState}`, "latin1"), Buffer.from(message, "utf8")]);
}

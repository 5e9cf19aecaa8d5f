// MySQL / MariaDB connection-phase payloads as servers and clients send them, for the tests.

/** A server's HandshakeV10 payload with the 4.1 protocol: `flags` (both halves), then
 * mysql_native_password as its auth plugin. */
export function greetingPayload(flags: number, version = "10.11.0-fake"): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(flags >>> 0);
  return Buffer.concat([
    Buffer.from([10]),
    Buffer.from(`${version}\0`, "latin1"),
    Buffer.from([1, 0, 0, 0]), // thread id
    Buffer.from("abcdefgh", "latin1"), // auth-plugin-data, part 1
    Buffer.from([0]),
    bytes.subarray(0, 2),
    Buffer.from([45, 2, 0]), // character set, status flags
    bytes.subarray(2, 4),
    Buffer.from([21]), // auth-plugin-data length
    Buffer.alloc(10),
    Buffer.from("ijklmnopqrst\0mysql_native_password\0", "latin1"),
  ]);
}

/** A client's SSLRequest payload: the 32-byte head of a HandshakeResponse41 with `flags`. */
export function sslRequestPayload(flags: number): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE(flags >>> 0, 0);
  head.writeUInt32LE(16 * 1024 * 1024, 4);
  head[8] = 45;
  return head;
}

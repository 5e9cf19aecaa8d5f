// The PostgreSQL start-up packet reader (src/dialogue/postgres.ts): properties over any bytes,
// and the packets real clients send.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CANCEL_REQUEST,
  GSSENC_REQUEST,
  MAX_STARTUP,
  SSL_REQUEST,
  fatalError,
  readStartup,
} from "../../src/dialogue/postgres.ts";

const packet = (code: number, body: Uint8Array = new Uint8Array()) => {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(code, 4);
  return Buffer.concat([head, body]);
};

test("any bytes: a verdict, never a throw; 'more' always asks for more than there is, within the limit", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const r = readStartup(bytes);
      if (r.kind === "more") {
        assert.ok(r.need > bytes.length && r.need <= MAX_STARTUP);
      }
    }),
    { numRuns: 2000 },
  );
});

test("any prefix of a valid packet asks for more; the whole is read as what it is, whatever follows", () => {
  const valid = fc.oneof(
    fc.constant({ bytes: packet(SSL_REQUEST), kind: "ssl" }),
    fc.constant({ bytes: packet(GSSENC_REQUEST), kind: "gssenc" }),
    fc
      .uint8Array({ minLength: 8, maxLength: 8 })
      .map((b) => ({ bytes: packet(CANCEL_REQUEST, b), kind: "cancel" })),
    fc.uint8Array({ maxLength: 300 }).map((b) => ({ bytes: packet(196608, b), kind: "startup" })),
  );
  fc.assert(
    fc.property(valid, fc.uint8Array({ maxLength: 20 }), ({ bytes, kind }, after) => {
      for (let cut = 0; cut < bytes.length; cut++) {
        const r = readStartup(bytes.subarray(0, cut));
        // An 8-byte request is known from its first 8 bytes.
        if (cut >= 8 && (kind === "ssl" || kind === "gssenc")) continue;
        assert.equal(r.kind, "more");
      }
      const whole = readStartup(Buffer.concat([bytes, after]));
      assert.equal(whole.kind, kind);
      if (whole.kind === "ssl" || whole.kind === "gssenc") assert.equal(whole.extra, after.length);
    }),
    { numRuns: 300 },
  );
});

test("what is refused: lengths out of bounds, requests of the wrong size, unknown protocol versions", () => {
  assert.equal(readStartup(Buffer.from("GET / HTTP/1.0\r\n")).kind, "malformed");
  const long = Buffer.alloc(8);
  long.writeUInt32BE(MAX_STARTUP + 1, 0);
  assert.equal(readStartup(long).kind, "malformed");
  assert.equal(readStartup(packet(SSL_REQUEST, Buffer.alloc(4))).kind, "malformed");
  assert.equal(readStartup(packet(CANCEL_REQUEST, Buffer.alloc(4))).kind, "malformed");
  assert.deepEqual(readStartup(packet(4 << 16)), {
    kind: "malformed",
    reason: "protocol version 4.0",
  });
});

test("fatalError: an 'E' message whose length covers its fields, as libpq reads it", () => {
  const e = fatalError("28000", "TLS is required");
  assert.equal(e.toString("latin1", 0, 1), "E");
  assert.equal(e.readUInt32BE(1), e.length - 1);
  assert.equal(e.toString("latin1", 5), "SFATAL\0VFATAL\0C28000\0MTLS is required\0\0");
});

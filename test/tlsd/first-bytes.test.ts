// tlsd's look at the first bytes (src/tlsd/first-bytes.ts): the PROXY signatures are told from a
// ClientHello and from anything else, whole or cut at any point, within their length; and which
// connections get that look (src/tlsd/suspects.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { examine } from "../../src/tlsd/first-bytes.ts";
import { startsWithProxySignature } from "../../src/proxy/signature.ts";
import { Suspects } from "../../src/tlsd/suspects.ts";
import { encodeProxyV1 } from "../../src/proxy/v1.ts";
import { encodeProxyV2 } from "../../src/proxy/v2.ts";
import type { ProxyHeaderInit } from "../../src/proxy/types.ts";

/** As peekBytes drives `examine`: the first `arrived` bytes, then as many as it asks for. */
function decide(bytes: Buffer, arrived: number): boolean {
  let length = Math.min(arrived, bytes.length);
  for (;;) {
    const verdict = examine(bytes.subarray(0, length));
    if (verdict === true) return startsWithProxySignature(bytes.subarray(0, length));
    assert.ok(verdict > length && verdict <= 12, `asks for ${verdict} after ${length}`);
    if (verdict > bytes.length) return false;
    length = verdict;
  }
}

const ipv4 = fc.ipV4();
const port = fc.integer({ min: 1, max: 65535 });
const header: fc.Arbitrary<ProxyHeaderInit> = fc.record({
  command: fc.constant("proxy" as const),
  family: fc.constant("tcp4" as const),
  source: fc.record({ ip: ipv4, port }),
  destination: fc.record({ ip: ipv4, port }),
});

test("a PROXY header, v1 or v2, is found however it arrives, and whatever follows it", () => {
  fc.assert(
    fc.property(
      header,
      fc.boolean(),
      fc.uint8Array({ maxLength: 64 }),
      fc.integer({ min: 1, max: 200 }),
      (h, v2, after, arrived) => {
        const encoded = v2 ? encodeProxyV2(h) : encodeProxyV1(h);
        assert.equal(decide(Buffer.concat([encoded, after]), arrived), true);
      },
    ),
  );
});

test("a TLS record is decided by its first byte, and is never a PROXY header", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (rest) => {
      const bytes = Buffer.concat([Buffer.from([0x16]), rest]);
      assert.equal(examine(bytes.subarray(0, 1)), true);
      assert.equal(startsWithProxySignature(bytes), false);
    }),
  );
});

test("any bytes: decided within 12, a PROXY header exactly when a signature starts them", () => {
  const signatures = [Buffer.from("PROXY "), Buffer.from("0d0a0d0a000d0a515549540a", "hex")];
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        // Near misses: a signature with one byte changed, or cut short.
        fc
          .tuple(fc.constantFrom(...signatures), fc.nat(), fc.integer({ min: 0, max: 255 }))
          .map(([s, at, byte]) => {
            const copy = Buffer.from(s);
            copy[at % copy.length] = byte;
            return copy;
          }),
        fc
          .tuple(fc.constantFrom(...signatures), fc.nat())
          .map(([s, cut]) => s.subarray(0, cut % s.length)),
      ),
      fc.integer({ min: 1, max: 40 }),
      (raw, arrived) => {
        const bytes = Buffer.from(raw);
        const expected = signatures.some((s) => bytes.subarray(0, s.length).equals(s));
        assert.equal(bytes.length === 0 ? false : decide(bytes, arrived), expected);
      },
    ),
  );
});

test("Suspects: a process's first connection, then only addresses that were not TLS lately", () => {
  const suspects = new Suspects();
  const now = 1_000_000;
  assert.equal(suspects.shouldLook("192.0.2.7", now), true, "the first connection");
  assert.equal(suspects.shouldLook("192.0.2.7", now), false);
  suspects.notTls("192.0.2.7", now);
  assert.equal(suspects.shouldLook("192.0.2.7", now + 1), true);
  assert.equal(suspects.shouldLook("192.0.2.8", now + 1), false, "another address");
  assert.equal(suspects.shouldLook(undefined, now + 1), false, "no address");
  // Ten minutes later it is forgotten; a TLS record from it clears it at once.
  assert.equal(suspects.shouldLook("192.0.2.7", now + 10 * 60 * 1000 + 1), false);
  suspects.notTls("192.0.2.7", now);
  suspects.cleared("192.0.2.7");
  assert.equal(suspects.shouldLook("192.0.2.7", now + 1), false);
});

test("Suspects: at most 1024 addresses, the oldest forgotten first", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3000 }), (count) => {
      const suspects = new Suspects();
      suspects.shouldLook(undefined, 0);
      for (let i = 0; i < count; i++) suspects.notTls(`10.0.${i >> 8}.${i & 255}`, 0);
      const remembered = (i: number) => suspects.shouldLook(`10.0.${i >> 8}.${i & 255}`, 1);
      assert.equal(remembered(count - 1), true, "the newest");
      assert.equal(remembered(0), count <= 1024, "the oldest");
    }),
    { numRuns: 20 },
  );
});

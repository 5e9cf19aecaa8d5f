// PROXY protocol v2 (src/proxy/v2.ts), its CRC-32C (src/proxy/crc32c.ts), and how
// decodeProxyHeader tells a header from a client that sent none (src/proxy/index.ts).
import assert from "node:assert/strict";
import { SocketAddress } from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import {
  crc32c,
  decodeProxyHeader,
  encodeProxyV1,
  encodeProxyV2,
  PP2_TYPE_CRC32C,
  PP2_TYPE_NOOP,
  PROXY_V2_SIGNATURE,
  ProxyFormatError,
  V2_MAX_LENGTH,
} from "../../src/proxy/index.ts";
import type { ProxyHeader, ProxyHeaderInit, ProxyTlv } from "../../src/proxy/index.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const SIG = "0d0a0d0a000d0a515549540a";

function nodeIPv6(ip: string): string {
  return new SocketAddress({ address: ip, family: "ipv6" }).address;
}

/** Every proper prefix of `header` is incomplete; header + trailer is ok with the exact length. */
function assertDecodesExactly(header: Buffer, trailer: Buffer): ProxyHeader {
  for (let n = 0; n < header.length; n++) {
    assert.deepEqual(decodeProxyHeader(header.subarray(0, n)), { state: "incomplete" }, `${n}`);
  }
  const whole = Buffer.concat([header, trailer]);
  const r = decodeProxyHeader(whole);
  assert.ok(r.state === "ok", JSON.stringify(r));
  assert.equal(r.length, header.length);
  assert.deepEqual(whole.subarray(r.length), trailer);
  return r.header;
}

function reason(buf: Buffer): string {
  const r = decodeProxyHeader(buf);
  assert.equal(r.state, "error", `${buf.toString("hex")}: ${JSON.stringify(r)}`);
  return r.state === "error" ? r.reason : "";
}

test("the signature is \\r\\n\\r\\n\\0\\r\\nQUIT\\n", () => {
  assert.deepEqual(PROXY_V2_SIGNATURE, Buffer.from("\r\n\r\n\0\r\nQUIT\n", "latin1"));
  assert.equal(PROXY_V2_SIGNATURE.toString("hex"), SIG);
});

test("golden TCP4 header, byte for byte, both ways", () => {
  const wire = hex(`${SIG} 21 11 000c  c0000201 c6336407  dc04 01bb`);
  const h: ProxyHeader = {
    version: 2,
    command: "proxy",
    family: "tcp4",
    source: { ip: "192.0.2.1", port: 56324 },
    destination: { ip: "198.51.100.7", port: 443 },
    tlvs: [],
  };
  assert.deepEqual(encodeProxyV2(h), wire);
  assert.deepEqual(assertDecodesExactly(wire, Buffer.from("EHLO x\r\n")), h);
});

test("golden TCP6 header with a v4-mapped source, and a LOCAL header", () => {
  const wire = hex(`${SIG} 21 21 0024
    00000000000000000000ffffc0000201 20010db8000000000000000000000001  0019 01bb`);
  const h = assertDecodesExactly(wire, Buffer.alloc(0));
  assert.deepEqual(h.source, { ip: "::ffff:192.0.2.1", port: 25 });
  assert.deepEqual(h.destination, { ip: "2001:db8::1", port: 443 });
  assert.equal(h.family, "tcp6");
  assert.deepEqual(encodeProxyV2(h), wire);
  const local = hex(`${SIG} 20 00 0000`);
  assert.deepEqual(encodeProxyV2({ command: "local", family: "unknown" }), local);
  assert.deepEqual(assertDecodesExactly(local, Buffer.from("x")), {
    version: 2,
    command: "local",
    family: "unknown",
    tlvs: [],
  });
});

test("CRC-32C known answers", () => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
  // RFC 3720 (iSCSI) appendix B.4.
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  const up = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  assert.equal(crc32c(up), 0x46dd794e);
  assert.equal(crc32c(up.subarray(16), crc32c(up.subarray(0, 16))), 0x46dd794e);
});

test("a CRC32C TLV is checked: any flipped bit after the preamble is an error", () => {
  const h: ProxyHeaderInit = {
    command: "proxy",
    family: "tcp4",
    source: { ip: "192.0.2.1", port: 1234 },
    destination: { ip: "192.0.2.2", port: 25 },
    tlvs: [{ type: 0xe0, value: Buffer.from("abc") }],
  };
  const wire = encodeProxyV2(h, { crc32c: true });
  const tail = wire.subarray(wire.length - 7);
  assert.equal(tail[0], PP2_TYPE_CRC32C);
  assert.equal(tail.readUInt16BE(1), 4);
  const zeroed = Buffer.from(wire);
  zeroed.fill(0, wire.length - 4);
  assert.equal(tail.readUInt32BE(3), crc32c(zeroed));
  const got = assertDecodesExactly(wire, Buffer.from("data"));
  assert.deepEqual(got.tlvs, h.tlvs, "the CRC32C TLV is dropped once checked");
  // Every byte after the preamble but the CRC TLV's type (which would make it another TLV).
  for (let byte = 16; byte < wire.length; byte++) {
    if (byte === wire.length - 7) continue;
    for (let bit = 0; bit < 8; bit++) {
      const bad = Buffer.from(wire);
      bad[byte] = (bad[byte] ?? 0) ^ (1 << bit);
      assert.equal(decodeProxyHeader(bad).state, "error", `byte ${byte} bit ${bit}`);
    }
  }
});

test("malformed CRC32C TLVs are errors", () => {
  const addr = "c0000201 c0000202 0001 0002";
  assert.match(reason(hex(`${SIG} 21 11 0012 ${addr} 03 0003 000000`)), /CRC32C/);
  const two = hex(`${SIG} 21 11 001a ${addr} 03 0004 00000000 03 0004 00000000`);
  assert.match(reason(two), /more than one CRC32C/);
  assert.throws(
    () => encodeProxyV2({ command: "local", family: "unknown", tlvs: [{ type: 3, value: two }] }),
    ProxyFormatError,
  );
});

test("NOOP TLVs are skipped, other TLVs kept in order", () => {
  const wire = hex(`${SIG} 21 11 0023  c0000201 c0000202 0001 0002
    04 0000   01 0002 6832   04 0003 000000   e0 0001 41   05 0002 ffff`);
  const h = assertDecodesExactly(wire, Buffer.alloc(0));
  assert.deepEqual(h.tlvs, [
    { type: 0x01, value: Buffer.from("h2") },
    { type: 0xe0, value: Buffer.from("A") },
    { type: 0x05, value: hex("ffff") },
  ]);
  const padded = encodeProxyV2({
    command: "local",
    family: "unknown",
    tlvs: [{ type: PP2_TYPE_NOOP, value: Buffer.alloc(5) }],
  });
  assert.equal(padded.length, 16 + 8);
  assert.deepEqual(assertDecodesExactly(padded, Buffer.alloc(0)).tlvs, []);
});

test("families other than TCP fall back to unknown; LOCAL ignores the address block", () => {
  const cases: [string, ProxyHeader["command"]][] = [
    [`21 12 000c ${"00".repeat(12)}`, "proxy"], // UDP over IPv4
    [`21 22 0024 ${"00".repeat(36)}`, "proxy"], // UDP over IPv6
    [`21 31 00d8 ${"00".repeat(216)}`, "proxy"], // UNIX stream
    [`21 00 0003 e00000`, "proxy"], // UNSPEC: TLVs right after the preamble
    [`20 11 000c c0000201 c0000202 0001 0002`, "local"],
    [`20 ff 0002 abcd`, "local"], // LOCAL: the family is ignored, the block skipped
  ];
  for (const [rest, command] of cases) {
    const h = assertDecodesExactly(hex(SIG + rest), Buffer.from("x"));
    assert.equal(h.command, command, rest);
    assert.equal(h.family, "unknown", rest);
    assert.equal(h.source, undefined);
    assert.equal(h.destination, undefined);
  }
});

test("bad headers are refused at the first byte that shows it", () => {
  const early: [string, number][] = [
    [`${SIG} 11`, 13], // version 1 in binary form
    [`${SIG} 30`, 13], // version 3
    [`${SIG} 22`, 13], // command 2
    [`${SIG} 21 13`, 14], // transport 3
    [`${SIG} 21 41`, 14], // family 4
    [`${SIG} 21 10`, 14], // AF_INET with UNSPEC transport: not a listed combination
    [`${SIG} 21 11 0005`, 16], // too short for IPv4 addresses
    [`${SIG} 21 21 000c`, 16], // too short for IPv6 addresses
    [`${SIG} 21 11 000e`, 16], // 2 bytes after the addresses cannot hold a TLV
    [`${SIG} 21 11 0013 c0000201c0000202 00010002 e00005`, 31], // TLV runs past the end
    [`${SIG} 20 00 0004 e00002`, 19], // same, on a LOCAL header
    [`${SIG} 20 00 000e 030005 0000000000 030004`, 19], // CRC32C TLV of 5 bytes
    [`${SIG} 20 00 000e 030004 00000000 030004`, 26], // a second CRC32C TLV
  ];
  for (const [text, at] of early) {
    const buf = hex(text);
    for (let n = 1; n < at; n++) {
      assert.equal(decodeProxyHeader(buf.subarray(0, n)).state, "incomplete", `${text} @${n}`);
    }
    assert.equal(decodeProxyHeader(buf.subarray(0, at)).state, "error", text);
  }
});

test("maxLength refuses a long header as soon as its length is known", () => {
  const wire = encodeProxyV2({
    command: "local",
    family: "unknown",
    tlvs: [{ type: 0xe1, value: Buffer.alloc(1000) }],
  });
  assert.equal(decodeProxyHeader(wire, { maxLength: 1019 }).state, "ok");
  assert.equal(decodeProxyHeader(wire, { maxLength: 1018 }).state, "error");
  assert.equal(decodeProxyHeader(wire.subarray(0, 15), { maxLength: 1018 }).state, "incomplete");
  assert.equal(decodeProxyHeader(wire.subarray(0, 16), { maxLength: 1018 }).state, "error");
  assert.equal(decodeProxyHeader(wire.subarray(0, 16)).state, "incomplete");
});

const port = fc.integer({ min: 0, max: 65535 });
const tlv: fc.Arbitrary<ProxyTlv> = fc.record(
  {
    type: fc
      .integer({ min: 0, max: 255 })
      .filter((t) => t !== PP2_TYPE_CRC32C && t !== PP2_TYPE_NOOP),
    value: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  },
  { noNullPrototype: true },
);
const tlvs = fc.array(tlv, { maxLength: 4 });
const v2Header: fc.Arbitrary<ProxyHeaderInit> = fc.oneof(
  fc.record({
    command: fc.constant("proxy" as const),
    family: fc.constant("tcp4" as const),
    source: fc.record({ ip: fc.ipV4(), port }),
    destination: fc.record({ ip: fc.ipV4(), port }),
    tlvs,
  }),
  fc.record({
    command: fc.constant("proxy" as const),
    family: fc.constant("tcp6" as const),
    source: fc.record({ ip: fc.ipV6(), port }),
    destination: fc.record({ ip: fc.ipV6(), port }),
    tlvs,
  }),
  fc.record({
    command: fc.constantFrom("proxy" as const, "local" as const),
    family: fc.constant("unknown" as const),
    tlvs,
  }),
);

test("random headers: encode, then every prefix is incomplete and the whole decodes back", () => {
  fc.assert(
    fc.property(v2Header, fc.boolean(), fc.uint8Array({ maxLength: 20 }), (h, crc, trailer) => {
      const wire = encodeProxyV2(h, { crc32c: crc });
      const got = assertDecodesExactly(wire, Buffer.from(trailer));
      const canon = (a: { ip: string; port: number } | undefined) =>
        a && { ip: h.family === "tcp6" ? nodeIPv6(a.ip) : a.ip, port: a.port };
      const want: ProxyHeader = {
        version: 2,
        command: h.command,
        family: h.family,
        tlvs: [...(h.tlvs ?? [])],
      };
      if (h.source) want.source = canon(h.source);
      if (h.destination) want.destination = canon(h.destination);
      assert.deepEqual(got, want);
      assert.deepEqual(encodeProxyV2(got, { crc32c: crc }), wire);
    }),
    { numRuns: 200 },
  );
});

test("v1 and v2 give the same header for the same connection", () => {
  fc.assert(
    fc.property(v2Header, (h) => {
      if (h.command === "local") return;
      const one = decodeProxyHeader(encodeProxyV1({ ...h, tlvs: [] }));
      const two = decodeProxyHeader(encodeProxyV2({ ...h, tlvs: [] }));
      assert.ok(one.state === "ok" && two.state === "ok");
      assert.deepEqual({ ...one.header, version: 2 }, two.header);
    }),
    { numRuns: 100 },
  );
});

test("clients that send no header are refused at once", () => {
  const clients = [
    hex("160301 0200 010001fc 0303"), // TLS ClientHello
    Buffer.from("EHLO x\r\n"),
    Buffer.from("GET / HTTP/1.1\r\n"),
    Buffer.from("PRI * HTTP/2.0\r\n"),
    Buffer.from("SSH-2.0-OpenSSH_9.6\r\n"),
    Buffer.from("\r\n\r\nQUIT\r\n"),
    Buffer.from("PROXY\r\n"),
    Buffer.from([0]),
  ];
  for (const c of clients) {
    let n = 1;
    while (decodeProxyHeader(c.subarray(0, n)).state === "incomplete") n++;
    assert.ok(n <= 12, `${JSON.stringify(c.toString("latin1"))}: undecided until byte ${n}`);
    assert.equal(decodeProxyHeader(c).state, "error");
  }
  assert.equal(reason(hex("16")), "not a PROXY protocol header");
});

test("random bytes never throw and are never incomplete past what they announce", () => {
  const start = fc.constantFrom(
    Buffer.alloc(0),
    PROXY_V2_SIGNATURE,
    Buffer.concat([PROXY_V2_SIGNATURE, hex("21")]),
    Buffer.concat([PROXY_V2_SIGNATURE, hex("2111")]),
    Buffer.concat([PROXY_V2_SIGNATURE, hex("2000")]),
    Buffer.from("PROXY "),
  );
  const maxLength = fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined });
  fc.assert(
    fc.property(start, fc.uint8Array({ maxLength: 300 }), maxLength, (s, b, max) => {
      const buf = Buffer.concat([s, b]);
      const r = decodeProxyHeader(buf, max === undefined ? {} : { maxLength: max });
      const limit = max ?? V2_MAX_LENGTH;
      if (buf.length >= limit) assert.notEqual(r.state, "incomplete");
      if (r.state === "incomplete" && buf.length >= 16 && buf[0] === 0x0d) {
        assert.ok(buf.length < 16 + buf.readUInt16BE(14));
      }
      if (r.state === "incomplete" && buf.length > 0 && buf[0] === 0x0d) {
        const n = Math.min(buf.length, 12);
        assert.deepEqual(buf.subarray(0, n), PROXY_V2_SIGNATURE.subarray(0, n));
      }
      if (r.state === "ok") assert.ok(r.length <= buf.length && r.length <= limit);
    }),
    { numRuns: 1000 },
  );
});

test("the encoder refuses what it cannot write, with ProxyFormatError", () => {
  const a = { ip: "192.0.2.1", port: 1 };
  const bad: ProxyHeaderInit[] = [
    { command: "proxy", family: "tcp4", source: a },
    { command: "local", family: "tcp4", source: a, destination: a },
    { command: "proxy", family: "tcp6", source: a, destination: a },
    { command: "local", family: "unknown", tlvs: [{ type: 256, value: Buffer.alloc(0) }] },
    { command: "local", family: "unknown", tlvs: [{ type: 0xe0, value: Buffer.alloc(65536) }] },
    {
      command: "local",
      family: "unknown",
      tlvs: [
        { type: 0xe0, value: Buffer.alloc(40000) },
        { type: 0xe1, value: Buffer.alloc(40000) },
      ],
    },
  ];
  for (const h of bad) {
    assert.throws(
      () => encodeProxyV2(h),
      (e: unknown) => e instanceof ProxyFormatError && e.code === "EPROXYFORMAT",
    );
  }
});

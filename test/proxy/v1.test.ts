// PROXY protocol v1 (src/proxy/v1.ts) and the address texts it carries (src/net/ip.ts).
import assert from "node:assert/strict";
import { isIPv4, SocketAddress } from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeProxyHeader,
  encodeProxyV1,
  ProxyFormatError,
  V1_MAX_LENGTH,
} from "../../src/proxy/index.ts";
import type { ProxyHeader, ProxyHeaderInit } from "../../src/proxy/index.ts";
import { formatIPv6, isIPv4Prefix, isIPv6Prefix, parseIPv4, parseIPv6 } from "../../src/net/ip.ts";

const latin1 = (s: string) => Buffer.from(s, "latin1");

/** How Node prints an IPv6 address, or undefined if Node does not take it. */
function nodeIPv6(ip: string): string | undefined {
  try {
    return new SocketAddress({ address: ip, family: "ipv6" }).address;
  } catch {
    return undefined;
  }
}

/** Every proper prefix of `header` is incomplete; header + trailer is ok with the exact length. */
function assertDecodesExactly(header: Buffer, trailer: Buffer): ProxyHeader {
  for (let n = 0; n < header.length; n++) {
    assert.deepEqual(decodeProxyHeader(header.subarray(0, n)), { state: "incomplete" }, `${n}`);
  }
  const whole = Buffer.concat([header, trailer]);
  const r = decodeProxyHeader(whole);
  assert.equal(r.state, "ok", JSON.stringify(r));
  assert.ok(r.state === "ok");
  assert.equal(r.length, header.length);
  assert.deepEqual(whole.subarray(r.length), trailer);
  return r.header;
}

test("the spec's example line, with the HTTP request after it left alone", () => {
  const line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  const rest = "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
  const h = assertDecodesExactly(latin1(line), latin1(rest));
  assert.deepEqual(h, {
    version: 1,
    command: "proxy",
    family: "tcp4",
    source: { ip: "192.168.0.1", port: 56324 },
    destination: { ip: "192.168.0.11", port: 443 },
    tlvs: [],
  });
  assert.equal(encodeProxyV1(h).toString("latin1"), line);
});

test("UNKNOWN: short form, ignored rest of line, the 107-byte worst case and one byte more", () => {
  const unknown = { version: 1, command: "proxy", family: "unknown", tlvs: [] };
  assert.deepEqual(assertDecodesExactly(latin1("PROXY UNKNOWN\r\n"), latin1("x")), unknown);
  const f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const worst = `PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`;
  assert.equal(worst.length, V1_MAX_LENGTH);
  assert.deepEqual(assertDecodesExactly(latin1(worst), latin1("")), unknown);
  const over = `PROXY UNKNOWN ${f} ${f} 65535 655350\r\n`;
  assert.equal(decodeProxyHeader(latin1(over)).state, "error");
  assert.equal(decodeProxyHeader(latin1(over.slice(0, 107))).state, "error");
  assert.equal(decodeProxyHeader(latin1(over.slice(0, 106))).state, "incomplete");
  assert.equal(
    encodeProxyV1({ command: "local", family: "unknown" }).toString(),
    "PROXY UNKNOWN\r\n",
  );
});

test("the longest TCP6 line (104 bytes) decodes", () => {
  const f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const line = `PROXY TCP6 ${f} ${f} 65535 65535\r\n`;
  assert.equal(line.length, 104);
  const h = assertDecodesExactly(latin1(line), latin1("\x16\x03\x01"));
  assert.deepEqual(h.source, { ip: f, port: 65535 });
});

test("IPv6 addresses come out as Node prints them; v4-mapped stay in tcp6", () => {
  const cases: [string, string][] = [
    ["0:0:0:0:0:0:0:1", "::1"],
    ["::FFFF:192.0.2.1", "::ffff:192.0.2.1"],
    ["0:0:0:0:0:ffff:c000:0201", "::ffff:192.0.2.1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0001:0:0:0::", "1::"],
  ];
  for (const [given, printed] of cases) {
    const r = decodeProxyHeader(latin1(`PROXY TCP6 ${given} ::1 1 2\r\n`));
    assert.ok(r.state === "ok", given);
    assert.equal(r.header.family, "tcp6");
    assert.equal(r.header.source?.ip, printed, given);
    assert.equal(nodeIPv6(given), printed, given);
  }
});

test("lines that break the grammar are errors", () => {
  const bad = [
    "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
    "PROXY TCP4\r\n",
    "PROXY \r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    "PROXY TCP6 ::1%lo ::1 1 2\r\n",
    "PROXY TCP6 1::2::3 ::1 1 2\r\n",
    "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
    "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
    "PROXY TCP6 ::12345 ::1 1 2\r\n",
    "PROXY TCP6 ::1.2.3.04 ::1 1 2\r\n",
    "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n",
    "PROXY UNKNOWN\n",
    "PROXY UNKNOWNX\r\n",
    "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
  ];
  for (const line of bad) {
    const r = decodeProxyHeader(latin1(line));
    assert.equal(r.state, "error", JSON.stringify(line));
    assert.ok(r.state === "error" && r.reason.length > 0);
  }
});

test("a partial line is refused at the first byte no valid line can have", () => {
  const early: [string, number][] = [
    ["PROXY  ", 7],
    ["PROXY TCP5", 10],
    ["PROXY TCP4 1.2.3.4  ", 20],
    ["PROXY TCP4 256", 14],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 01", 29],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536", 32],
    ["PROXY TCP6 1.2", 13],
    ["PROXY TCP6 :1", 13],
    ["PROXY TCP6 1:2:3:4:5:6:7:8:", 27],
    ["PROXY TCP6 ::1:2:3:4:5:6:7:", 27],
    ["PROXY X", 7],
  ];
  for (const [text, at] of early) {
    const buf = latin1(text);
    for (let n = 1; n < at; n++) {
      assert.equal(decodeProxyHeader(buf.subarray(0, n)).state, "incomplete", `${text} @${n}`);
    }
    assert.equal(decodeProxyHeader(buf.subarray(0, at)).state, "error", text);
  }
});

test("the encoder refuses what it cannot write, with ProxyFormatError", () => {
  const tcp4 = { command: "proxy", family: "tcp4" } as const;
  const a = { ip: "192.0.2.1", port: 1 };
  const bad: ProxyHeaderInit[] = [
    { ...tcp4, source: a },
    { ...tcp4, source: { ip: "::1", port: 1 }, destination: a },
    { ...tcp4, source: { ip: "1.2.3.04", port: 1 }, destination: a },
    { ...tcp4, source: { ip: "192.0.2.1", port: 65536 }, destination: a },
    { ...tcp4, source: { ip: "192.0.2.1", port: 1.5 }, destination: a },
    { ...tcp4, source: { ip: "192.0.2.1", port: -1 }, destination: a },
    { command: "proxy", family: "tcp6", source: a, destination: a },
    { command: "local", family: "tcp4", source: a, destination: a },
    { command: "proxy", family: "unknown", source: a },
    { ...tcp4, source: a, destination: a, tlvs: [{ type: 0xe0, value: Buffer.from("x") }] },
  ];
  for (const h of bad) {
    assert.throws(
      () => encodeProxyV1(h),
      (e: unknown) => e instanceof ProxyFormatError && e.code === "EPROXYFORMAT",
      JSON.stringify(h),
    );
  }
});

const port = fc.integer({ min: 0, max: 65535 });
const v1Header: fc.Arbitrary<ProxyHeaderInit> = fc.oneof(
  fc.record({
    command: fc.constant("proxy" as const),
    family: fc.constant("tcp4" as const),
    source: fc.record({ ip: fc.ipV4(), port }),
    destination: fc.record({ ip: fc.ipV4(), port }),
  }),
  fc.record({
    command: fc.constant("proxy" as const),
    family: fc.constant("tcp6" as const),
    source: fc.record({ ip: fc.ipV6(), port }),
    destination: fc.record({ ip: fc.ipV6(), port }),
  }),
  fc.constant({ command: "proxy" as const, family: "unknown" as const }),
);

test("random headers: encode, then every prefix is incomplete and the whole decodes back", () => {
  fc.assert(
    fc.property(v1Header, fc.uint8Array({ maxLength: 20 }), (h, trailer) => {
      const line = encodeProxyV1(h);
      assert.ok(line.length <= V1_MAX_LENGTH);
      const got = assertDecodesExactly(line, Buffer.from(trailer));
      const canon = (a: { ip: string; port: number } | undefined) =>
        a && { ip: h.family === "tcp6" ? (nodeIPv6(a.ip) ?? "?") : a.ip, port: a.port };
      const want: ProxyHeader = { version: 1, command: h.command, family: h.family, tlvs: [] };
      if (h.source) want.source = canon(h.source);
      if (h.destination) want.destination = canon(h.destination);
      assert.deepEqual(got, want);
      assert.deepEqual(encodeProxyV1(got), line);
    }),
    { numRuns: 300 },
  );
});

test("random bytes after a v1 start never throw, and 107 bytes are never incomplete", () => {
  const tail = fc.oneof(
    fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
    fc
      .array(fc.constantFrom(..."PROXY TCP46UNKW0123456789abcdef:.\r\n "), { maxLength: 120 })
      .map((cs) => latin1(cs.join(""))),
  );
  const start = fc.constantFrom("", "P", "PROXY ", "PROXY TCP4 ", "PROXY TCP6 ", "PROXY UNKNOWN");
  fc.assert(
    fc.property(start, tail, (s, t) => {
      const buf = Buffer.concat([latin1(s), t]);
      const r = decodeProxyHeader(buf);
      if (buf.length >= V1_MAX_LENGTH) assert.notEqual(r.state, "incomplete");
      if (r.state === "ok") assert.ok(r.length <= V1_MAX_LENGTH && r.length <= buf.length);
    }),
    { numRuns: 500 },
  );
});

test("maxLength shortens the v1 limit", () => {
  const line = latin1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  assert.equal(decodeProxyHeader(line, { maxLength: line.length }).state, "ok");
  assert.equal(decodeProxyHeader(line, { maxLength: line.length - 1 }).state, "error");
  assert.equal(decodeProxyHeader(line.subarray(0, 10), { maxLength: 10 }).state, "error");
});

// --- the address texts ---

const v6Chars = fc.constantFrom(..."0123456789abcdefABCDEF:.::");
// Near misses: 0-10 pieces joined by ":", each a hex group of 0-5 digits or a dotted quad that
// may have too few or many numbers, leading zeros or values over 255.
const v6Piece = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF"), maxLength: 5 }),
  fc
    .array(fc.oneof(fc.nat(300).map(String), fc.constant("01")), { minLength: 1, maxLength: 5 })
    .map((ns) => ns.join(".")),
);
const nearV6 = fc.array(v6Piece, { maxLength: 10 }).map((ps) => ps.join(":"));

test("IPv6 text: accepted exactly when Node accepts it, printed exactly as Node prints it", () => {
  const text = fc.oneof(
    fc.ipV6(),
    nearV6,
    fc.array(v6Chars, { maxLength: 45 }).map((cs) => cs.join("")),
    fc
      .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
      .map((g) => g.map((x) => (x < 0x20 ? 0 : x).toString(16)).join(":")),
  );
  fc.assert(
    fc.property(text, (s) => {
      const bytes = parseIPv6(s);
      const node = nodeIPv6(s);
      assert.equal(bytes !== undefined, node !== undefined, s);
      if (bytes) assert.equal(formatIPv6(bytes), node, s);
    }),
    { numRuns: 3000 },
  );
});

test("IPv6 prefixes: every prefix of a valid address passes, and what passes can be finished", () => {
  fc.assert(
    fc.property(fc.ipV6(), (s) => {
      for (let n = 0; n <= s.length; n++) assert.ok(isIPv6Prefix(s.slice(0, n)), s.slice(0, n));
    }),
    { numRuns: 500 },
  );
  // Search a completion over a small alphabet, guided by the prefix test itself.
  const finishable = (s: string, depth: number): boolean =>
    parseIPv6(s) !== undefined ||
    (depth > 0 &&
      ["0", "1", ":", "."].some((c) => isIPv6Prefix(s + c) && finishable(s + c, depth - 1)));
  fc.assert(
    fc.property(
      fc.oneof(
        fc.array(v6Chars, { maxLength: 30 }).map((cs) => cs.join("")),
        nearV6,
      ),
      (s) => {
        if (isIPv6Prefix(s)) assert.ok(finishable(s, 6), s);
      },
    ),
    { numRuns: 2000 },
  );
});

test("IPv4 text: strict dotted quads, like net.isIPv4, and their prefixes", () => {
  const text = fc.oneof(
    fc.ipV4(),
    fc.array(fc.constantFrom(..."0123456789.."), { maxLength: 16 }).map((cs) => cs.join("")),
  );
  fc.assert(
    fc.property(text, (s) => {
      const bytes = parseIPv4(s);
      assert.equal(bytes !== undefined, isIPv4(s), s);
      if (bytes) {
        assert.equal([...bytes].join("."), s);
        for (let n = 0; n <= s.length; n++) assert.ok(isIPv4Prefix(s.slice(0, n)));
      }
    }),
    { numRuns: 1000 },
  );
});

// The resume record (src/proxy/resume.ts): its byte layout, its checks, and its place in a
// PROXY v2 header.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeProxyHeader,
  decodeResumeRecord,
  encodeProxyV2,
  encodeResumeRecord,
  findResumeRecord,
  ProxyFormatError,
  RESUME_TLV_TYPE,
  resumeTlv,
} from "../../src/proxy/index.ts";
import type { ResumeRecord } from "../../src/proxy/index.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const isFormatError = (e: unknown) => e instanceof ProxyFormatError && e.code === "EPROXYFORMAT";

test("the layout, byte for byte", () => {
  assert.equal(RESUME_TLV_TYPE, 0xe0);
  const cases: [ResumeRecord, string][] = [
    [{ protocol: "pop3" }, "01 00 04 706f7033"],
    [{ protocol: "smtp", swallow: "greeting" }, "01 01 04 736d7470 0008 6772656574696e67"],
    [{ protocol: "imap", data: Buffer.from("a1 ") }, "01 02 04 696d6170 0003 613120"],
    [{ protocol: "smtp", swallow: "é", data: Buffer.alloc(0) }, "01 03 04 736d7470 0002 c3a9 0000"],
    [
      { protocol: "smtp", swallow: "greeting", noUpgrade: true },
      "01 05 04 736d7470 0008 6772656574696e67",
    ],
  ];
  for (const [record, bytes] of cases) {
    assert.deepEqual(encodeResumeRecord(record), hex(bytes), bytes);
    assert.deepEqual(decodeResumeRecord(hex(bytes)), record, bytes);
  }
});

test("malformed values are refused with ProxyFormatError", () => {
  const bad = [
    "", // empty
    "01", // no flags
    "0100", // no protocol length
    "02 00 04 736d7470", // version 2
    "00 00 04 736d7470", // version 0
    "01 08 04 736d7470", // unknown flag
    "01 80 04 736d7470", // unknown flag
    "01 00 00", // empty protocol
    "01 00 05 736d7470", // protocol runs past the end
    "01 00 04 534d5450", // "SMTP": names are lowercase
    "01 00 04 736d7420", // "smt "
    "01 00 04 2d6d7470", // "-mtp": starts with a letter or digit
    "01 01 04 736d7470", // swallow flag, no length
    "01 01 04 736d7470 00", // half a length
    "01 01 04 736d7470 0002 61", // swallow runs past the end
    "01 01 04 736d7470 0001 ff", // swallow is not UTF-8
    "01 01 04 736d7470 0003 eda080", // a UTF-16 surrogate in UTF-8
    "01 02 04 736d7470 0005 6161", // data runs past the end
    "01 00 04 736d7470 00", // a trailing byte
    "01 02 04 736d7470 0000 0000", // data given twice
    `01 00 21 ${"61".repeat(33)}`, // protocol name longer than 32
  ];
  for (const bytes of bad)
    assert.throws(() => decodeResumeRecord(hex(bytes)), isFormatError, bytes);
});

test("the encoder refuses what it cannot write", () => {
  const bad: ResumeRecord[] = [
    { protocol: "" },
    { protocol: "SMTP" },
    { protocol: "smtp submission" },
    { protocol: "a".repeat(33) },
    { protocol: "smtp", swallow: "\ud800" },
    { protocol: "smtp", data: Buffer.alloc(65536) },
    { protocol: "smtp", swallow: "x".repeat(40000), data: Buffer.alloc(40000) },
  ];
  for (const r of bad) assert.throws(() => encodeResumeRecord(r), isFormatError, r.protocol);
});

const record: fc.Arbitrary<ResumeRecord> = fc.record(
  {
    protocol: fc.stringMatching(/^[a-z0-9][a-z0-9.+-]{0,31}$/),
    swallow: fc.string({ unit: "binary", maxLength: 50 }),
    data: fc.uint8Array({ maxLength: 50 }).map((b) => Buffer.from(b)),
    noUpgrade: fc.constant(true as const),
  },
  { requiredKeys: ["protocol"], noNullPrototype: true },
);

test("random records round-trip", () => {
  fc.assert(
    fc.property(record, (r) => {
      assert.deepEqual(decodeResumeRecord(encodeResumeRecord(r)), r);
    }),
    { numRuns: 500 },
  );
});

test("random bytes decode to a record that encodes back the same, or throw ProxyFormatError", () => {
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc
      .tuple(fc.integer({ min: 0, max: 7 }), fc.uint8Array({ maxLength: 40 }))
      .map(([flags, b]) => Uint8Array.from([1, flags, 4, 0x73, 0x6d, 0x74, 0x70, ...b])),
  );
  fc.assert(
    fc.property(bytes, (b) => {
      let r: ResumeRecord;
      try {
        r = decodeResumeRecord(b);
      } catch (e) {
        assert.ok(isFormatError(e), String(e));
        return;
      }
      assert.deepEqual(encodeResumeRecord(r), Buffer.from(b));
    }),
    { numRuns: 1000 },
  );
});

test("in a PROXY v2 header: found, absent, or refused when there are two", () => {
  const r: ResumeRecord = { protocol: "smtp", swallow: "220", data: Buffer.from("EHLO x\r\n") };
  const base = {
    command: "proxy",
    family: "tcp6",
    source: { ip: "2001:db8::7", port: 40000 },
    destination: { ip: "2001:db8::1", port: 25 },
  } as const;
  const wire = encodeProxyV2({ ...base, tlvs: [resumeTlv(r)] }, { crc32c: true });
  const d = decodeProxyHeader(wire);
  assert.ok(d.state === "ok" && d.length === wire.length);
  assert.deepEqual(findResumeRecord(d.header), r);
  const none = decodeProxyHeader(encodeProxyV2(base));
  assert.ok(none.state === "ok");
  assert.equal(findResumeRecord(none.header), undefined);
  const two = decodeProxyHeader(encodeProxyV2({ ...base, tlvs: [resumeTlv(r), resumeTlv(r)] }));
  assert.ok(two.state === "ok");
  assert.throws(() => findResumeRecord(two.header), isFormatError);
  const broken = decodeProxyHeader(
    encodeProxyV2({ ...base, tlvs: [{ type: RESUME_TLV_TYPE, value: hex("0200") }] }),
  );
  assert.ok(broken.state === "ok");
  assert.throws(() => findResumeRecord(broken.header), isFormatError);
});

// ARI (RFC 9773) in parts: a certificate's identifier, the CA's answer read as untrusted bytes,
// the moment chosen in a window, and when to ask again. The whole, against pebble behind a
// front that answers ARI: acme-renewal-info.test.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  RenewalInfoError,
  certificateId,
  nextAsk,
  parseRenewalInfo,
  renewalMoment,
} from "../../src/acme/renewal-info.ts";
import { scratchDir } from "../helpers/scratch.ts";

test("the identifier of RFC 9773's example: its issuer's key identifier and its serial with DER's sign byte", () => {
  assert.equal(
    certificateId("69885b6b87464041e1b37b847ba0ae2cde01c8d4", "87654321"),
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
  );
  // A first byte under 0x80 gets none; an odd number of hex digits is a whole first byte.
  assert.equal(certificateId("01", "7f01"), "AQ.fwE");
  assert.equal(certificateId("01", "fff"), "AQ.D_8");
});

test("the identifier of a certificate openssl made with that key identifier and serial", async () => {
  const dir = scratchDir("ari-id");
  const openssl = (args: string[]) =>
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  openssl([
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ca"],
    ...[
      "-addext",
      "subjectKeyIdentifier=69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4",
    ],
    ...["-addext", "basicConstraints=critical,CA:true"],
  ]);
  openssl([
    ...["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=a.test"],
  ]);
  writeFileSync(join(dir, "ext"), "authorityKeyIdentifier=keyid\nsubjectAltName=DNS:a.test\n");
  openssl([
    ...["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
    ...["-set_serial", "0x0087654321", "-days", "2", "-extfile", "ext", "-out", "leaf.pem"],
  ]);
  const pem = readFileSync(join(dir, "leaf.pem"), "latin1");
  const { authorityKeyId, parseCertificate } = await import("../../src/x509/certificates.ts");
  const leaf = parseCertificate(pem);
  assert.ok(leaf);
  const aki = authorityKeyId(leaf);
  assert.ok(aki);
  assert.equal(certificateId(aki, leaf.serialNumber), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  // Node's own reading of the serial gives the same.
  assert.equal(
    certificateId(aki, new X509Certificate(pem).serialNumber),
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
  );
});

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

test("a CA's answer: the window read, its explanation kept only as a URL", () => {
  const read = parseRenewalInfo(
    encode({
      suggestedWindow: { start: "2026-12-20T00:00:00Z", end: "2026-12-22T12:30:00.5+01:00" },
      explanationURL: "https://ca.example/why",
    }),
  );
  assert.deepEqual(read, {
    start: Date.parse("2026-12-20T00:00:00Z"),
    end: Date.parse("2026-12-22T11:30:00.5Z"),
    explanationUrl: "https://ca.example/why",
  });
  const noUrl = parseRenewalInfo(
    encode({
      suggestedWindow: { start: "2026-12-20T00:00:00Z", end: "2026-12-21T00:00:00Z" },
      explanationURL: "javascript:alert(1)",
    }),
  );
  assert.equal(noUrl.explanationUrl, undefined);
  for (const [body, cause] of [
    ["", "the answer is not JSON"],
    ["\xff", "the answer is not JSON"],
    ["null", "the answer has no suggestedWindow"],
    ['{"suggestedWindow":"soon"}', "the answer has no suggestedWindow"],
    [
      '{"suggestedWindow":{"start":"2026-12-20","end":"2026-12-21"}}',
      "the suggested window's start is not an RFC 3339 time",
    ],
    [
      '{"suggestedWindow":{"start":"2026-12-20T00:00:00Z","end":1}}',
      "the suggested window's end is not an RFC 3339 time",
    ],
    [
      '{"suggestedWindow":{"start":"2026-12-20T00:00:00Z","end":"2026-12-20T00:00:00Z"}}',
      "the suggested window ends before it starts",
    ],
    [
      '{"suggestedWindow":{"start":"2026-13-40T99:00:00Z","end":"2026-12-20T00:00:00Z"}}',
      "the suggested window's start is not an RFC 3339 time",
    ],
  ] as const)
    assert.throws(() => parseRenewalInfo(Buffer.from(body, "latin1")), { message: cause }, body);
  assert.throws(() => parseRenewalInfo(new Uint8Array(64 * 1024 + 1)), {
    message: "the answer is too long",
  });
});

test("any bytes from a CA: a window that starts before it ends, or RenewalInfoError (fast-check)", () => {
  const time = fc
    .date({ min: new Date(0), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true })
    .map((d) => d.toISOString());
  const answer = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc
      .record({
        suggestedWindow: fc.oneof(
          fc.record({ start: time, end: time }),
          fc.record({ start: fc.oneof(time, fc.string()), end: fc.anything() }),
          fc.anything(),
        ),
        explanationURL: fc.oneof(fc.webUrl(), fc.string()),
      })
      .map(encode),
    fc.json().map((j) => new TextEncoder().encode(j)),
  );
  fc.assert(
    fc.property(answer, (bytes) => {
      try {
        const w = parseRenewalInfo(bytes);
        assert.ok(Number.isFinite(w.start) && Number.isFinite(w.end) && w.start < w.end);
        if (w.explanationUrl !== undefined) assert.match(w.explanationUrl, /^https?:\/\/\S+$/);
      } catch (error) {
        assert.ok(error instanceof RenewalInfoError, String(error));
      }
    }),
    { numRuns: 2000 },
  );
});

test("the moment is in the window; the next question between a minute and a day, six hours when the CA does not say", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 42 }),
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (start, length, random) => {
        const moment = renewalMoment({ start, end: start + length }, random);
        assert.ok(moment >= start && moment < start + length);
      },
    ),
  );
  const now = Date.parse("2026-12-07T00:00:00Z");
  const HOUR = 3_600_000;
  assert.equal(nextAsk(undefined, now), now + 6 * HOUR);
  assert.equal(nextAsk("soon", now), now + 6 * HOUR);
  assert.equal(nextAsk("21600", now), now + 6 * HOUR);
  assert.equal(nextAsk("0", now), now + 60_000);
  assert.equal(nextAsk("864000", now), now + 24 * HOUR);
  assert.equal(nextAsk("Mon, 07 Dec 2026 02:00:00 GMT", now), now + 2 * HOUR);
  assert.equal(nextAsk("Sun, 06 Dec 2026 02:00:00 GMT", now), now + 60_000);
});

// tls-sniff's plaintext matchers (--ssh, --http, --prefix) on bytes: fast-check properties over
// real request lines and random bytes, and the cases that must not be taken for HTTP.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { MAX_REQUEST_LINE, plainMatches } from "../../src/tls-sniff/plaintext.ts";
import type { PlainMatch } from "../../src/tls-sniff/plaintext.ts";

const HTTP: PlainMatch = { kind: "http" };
const SSH: PlainMatch = { kind: "ssh" };
const bytes = (text: string) => Buffer.from(text, "latin1");

const tchar = fc.constantFrom(
  ..."!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
);
const method = fc.array(tchar, { minLength: 1, maxLength: 32 }).map((c) => c.join(""));
const visible = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const target = fc.array(visible, { minLength: 1, maxLength: 200 }).map((c) => c.join(""));
const digit = fc.integer({ min: 0, max: 9 });
const requestLine = fc
  .tuple(method, target, digit, digit, fc.constantFrom("\r\n", "\n"))
  .map(([m, t, a, b, end]) => `${m} ${t} HTTP/${a}.${b}${end}`);
const matchers: fc.Arbitrary<PlainMatch> = fc.oneof(
  fc.constant(HTTP),
  fc.constant(SSH),
  fc
    .uint8Array({ minLength: 1, maxLength: 16 })
    .map((b) => ({ kind: "prefix" as const, bytes: Buffer.from(b) })),
);

test("every well-formed request line is HTTP, with anything after it; each shorter start asks for more", () => {
  fc.assert(
    fc.property(requestLine, fc.uint8Array({ maxLength: 64 }), (line, rest) => {
      const whole = Buffer.concat([bytes(line), rest]);
      assert.equal(plainMatches(HTTP, whole), true);
      for (let n = 0; n < line.length; n++) {
        const need = plainMatches(HTTP, whole.subarray(0, n));
        assert.equal(typeof need, "number", `${JSON.stringify(line)} cut at ${n}`);
        assert.ok((need as number) > n);
        assert.equal(plainMatches(HTTP, whole.subarray(0, n), true), false);
      }
    }),
  );
});

test("any bytes: an answer, never a throw; a yes or a no stays so whatever comes after, a request for more asks past what is there", () => {
  fc.assert(
    fc.property(
      matchers,
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 64 }),
      (m, start, more) => {
        const first = plainMatches(m, start);
        const later = plainMatches(m, Buffer.concat([start, more]));
        if (typeof first === "boolean") assert.equal(later, first);
        else {
          assert.ok(first > start.length && first <= MAX_REQUEST_LINE + 1);
          assert.equal(typeof plainMatches(m, start, true), "boolean");
        }
      },
    ),
  );
});

test("--ssh: an identification string (RFC 4253 4.2), not a banner or a lower-case one", () => {
  assert.equal(plainMatches(SSH, bytes("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")), true);
  assert.equal(plainMatches(SSH, bytes("SSH-")), true);
  assert.equal(plainMatches(SSH, bytes("SS")), 4);
  assert.equal(plainMatches(SSH, bytes("SS"), true), false);
  assert.equal(plainMatches(SSH, bytes("ssh-2.0")), false);
  assert.equal(plainMatches(SSH, bytes("GET / HTTP/1.1\r\n")), false);
});

test("--http: request lines of HTTP/1.x and h2c's preface, not SMTP, not a line without a version, not one too long", () => {
  for (const line of [
    "GET / HTTP/1.1\r\n",
    "OPTIONS * HTTP/1.1\r\n",
    "CONNECT example.org:443 HTTP/1.1\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "get /lower HTTP/1.0\n",
  ])
    assert.equal(plainMatches(HTTP, bytes(line)), true, JSON.stringify(line));
  for (const line of [
    "EHLO example.org\r\n",
    "GET /\r\n", // HTTP/0.9 has no version: not taken
    "GET  / HTTP/1.1\r\n", // two spaces
    "GET / HTTP/1.1 \r\n",
    "GET / http/1.1\r\n",
    "GET / HTTP/11\r\n",
    "GET /\x01 HTTP/1.1\r\n",
    "GET / HTTP/1.1\rX",
    " GET / HTTP/1.1\r\n",
    "\r\nGET / HTTP/1.1\r\n",
  ])
    assert.equal(plainMatches(HTTP, bytes(line)), false, JSON.stringify(line));
  assert.equal(
    plainMatches(HTTP, bytes(`GET /${"a".repeat(MAX_REQUEST_LINE)} HTTP/1.1\r\n`)),
    false,
  );
  assert.equal(plainMatches(HTTP, bytes(`${"A".repeat(33)} / HTTP/1.1\r\n`)), false);
});

test("--prefix: the bytes given, exactly", () => {
  const m: PlainMatch = { kind: "prefix", bytes: bytes("HELLO") };
  assert.equal(plainMatches(m, bytes("HELLO world")), true);
  assert.equal(plainMatches(m, bytes("HEL")), 5);
  assert.equal(plainMatches(m, bytes("HELP")), false);
  assert.equal(plainMatches(m, bytes("hello")), false);
});

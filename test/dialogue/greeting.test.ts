// The greeting grammars tlsd uses to swallow a fresh server's greeting after a STARTTLS
// hand-over: exact cases, and properties over any split and any bytes (fast-check).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { GREETING_PROTOCOLS, MAX_GREETING, greetingVerdict } from "../../src/dialogue/greeting.ts";

const b = (s: string) => Buffer.from(s, "latin1");

test("exact verdicts", () => {
  const cases: [string, string, unknown][] = [
    ["smtp", "220 mx ESMTP\r\nEHLO", { kind: "swallow", length: 14 }],
    ["smtp", "220-mx\r\n220-more\r\n220 end\r\n250", { kind: "swallow", length: 27 }],
    ["smtp", "220\r\n", { kind: "swallow", length: 5 }],
    ["smtp", "220 bare LF\n", { kind: "swallow", length: 12 }],
    ["smtp", "220-mx\r\n220 en", { kind: "more" }],
    ["smtp", "554 no\r\n", { kind: "forward" }],
    ["smtp", "220-mx\r\n421 bye\r\n", { kind: "forward" }],
    ["smtp", "2201\r\n", { kind: "forward" }],
    ["lmtp", "220 lmtp\r\n", { kind: "swallow", length: 10 }],
    ["imap", "* OK [CAPABILITY IMAP4rev1] hi\r\n", { kind: "swallow", length: 32 }],
    ["imap", "* ok hi\r\n", { kind: "swallow", length: 9 }],
    ["imap", "* BYE busy\r\n", { kind: "forward" }],
    ["imap", "* OKAY\r\n", { kind: "forward" }],
    [
      "imap",
      "* PREAUTH x\r\n",
      {
        kind: "fail",
        reason: "the server greeted with PREAUTH: the client would skip authentication",
      },
    ],
    ["imap", "* OK", { kind: "more" }],
    ["pop3", "+OK ready <1.2@h>\r\n", { kind: "swallow", length: 19 }],
    ["pop3", "-ERR no\r\n", { kind: "forward" }],
    ["nntp", "200 news\r\n", { kind: "swallow", length: 10 }],
    ["nntp", "502 no\r\n", { kind: "forward" }],
  ];
  for (const [protocol, bytes, verdict] of cases) {
    assert.deepEqual(
      greetingVerdict(protocol, b(bytes)),
      verdict,
      `${protocol} ${JSON.stringify(bytes)}`,
    );
  }
  assert.throws(() => greetingVerdict("gopher", b("x")), /no greeting grammar for protocol gopher/);
});

test("a greeting with no end is refused once it passes the bound", () => {
  const long = b(`220-${"x".repeat(100)}\r\n`.repeat(Math.ceil(MAX_GREETING / 100)));
  assert.deepEqual(greetingVerdict("smtp", long), {
    kind: "fail",
    reason: `greeting longer than ${MAX_GREETING} bytes`,
  });
});

const text = fc.string({ unit: fc.constantFrom(..."abc XYZ-[]<>@.0123456789"), maxLength: 40 });

/** A well-formed multi-line 220 greeting. */
const smtpGreeting = fc
  .tuple(fc.array(text, { maxLength: 5 }), text, fc.constantFrom("\r\n", "\n"))
  .map(([more, last, eol]) => more.map((l) => `220-${l}${eol}`).join("") + `220 ${last}${eol}`);

test("property: every prefix of a greeting wants more; the whole, then anything, is swallowed", () => {
  fc.assert(
    fc.property(smtpGreeting, fc.uint8Array({ maxLength: 64 }), (greeting, rest) => {
      const g = b(greeting);
      for (let i = 0; i < g.length; i++) {
        assert.deepEqual(greetingVerdict("smtp", g.subarray(0, i)), { kind: "more" });
      }
      const all = Buffer.concat([g, rest]);
      assert.deepEqual(greetingVerdict("smtp", all), { kind: "swallow", length: g.length });
    }),
  );
});

test("property: any bytes give a sound verdict, and a decided verdict never changes", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...GREETING_PROTOCOLS),
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 50 }),
      (protocol, head, tail) => {
        const bytes = Buffer.from(head);
        const verdict = greetingVerdict(protocol, bytes);
        if (verdict.kind === "swallow") {
          assert.ok(verdict.length > 0 && verdict.length <= bytes.length);
          assert.equal(bytes[verdict.length - 1], 10, "a greeting ends with its line");
        }
        if (verdict.kind !== "more") {
          const later = greetingVerdict(protocol, Buffer.concat([bytes, tail]));
          assert.deepEqual(later, verdict);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

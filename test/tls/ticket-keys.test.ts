// TICKETFILE's parser, property-tested (fast-check): whatever the keys, blank lines and
// comments, the line before the last key encrypts and every key decrypts; a line that is not
// 48 bytes in base64 is named by its number and never quoted (it may be a key cut short).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parseTicketKeys } from "../../src/tls/tickets.ts";

const key = fc.uint8Array({ minLength: 48, maxLength: 48 }).map((b) => Buffer.from(b));
const filler = fc.constantFrom("", "   ", "# a comment", "\t# indented comment");

test("the keys of a file: the one before the last encrypts, all of them decrypt", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(key, {
        minLength: 1,
        maxLength: 8,
        selector: (k) => k.toString("hex", 0, 16),
      }),
      fc.array(filler, { maxLength: 8 }),
      fc.boolean(),
      (keys, fillers, crlf) => {
        const lines = keys.map((k) => k.toString("base64"));
        for (const [i, f] of fillers.entries()) lines.splice(i % (lines.length + 1), 0, f);
        const parsed = parseTicketKeys(lines.join(crlf ? "\r\n" : "\n"));
        assert.ok(typeof parsed !== "string", parsed as string);
        const whole = (k: { name: Buffer; hmac: Buffer; aes: Buffer }) =>
          Buffer.concat([k.name, k.hmac, k.aes]).toString("hex");
        assert.deepEqual(
          parsed.known.map(whole),
          keys.map((k) => k.toString("hex")),
        );
        assert.equal(whole(parsed.encrypt), (keys.at(-2) ?? keys[0])?.toString("hex"));
      },
    ),
  );
});

test("a line that is no key: its number in the cause, never its text", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(key, { maxLength: 4, selector: (k) => k.toString("hex", 0, 16) }),
      fc.oneof(
        fc
          .uint8Array({ minLength: 1, maxLength: 80 })
          .filter((b) => b.length !== 48)
          .map((b) => Buffer.from(b).toString("base64")),
        fc
          .string({ minLength: 1, maxLength: 80 })
          .filter((s) => s.trim() !== "" && !s.trim().startsWith("#") && !s.includes("\n")),
      ),
      (keys, bad) => {
        const lines = [...keys.map((k) => k.toString("base64")), bad];
        const parsed = parseTicketKeys(lines.join("\n"));
        if (typeof parsed !== "string") {
          // Only a line that happens to be 48 bytes in base64 is a key.
          assert.equal(Buffer.from(bad.trim(), "base64").length, 48);
          return;
        }
        assert.equal(parsed, `line ${lines.length} is not 48 bytes in base64`);
      },
    ),
  );
});

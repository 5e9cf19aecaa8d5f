// tcpserver's rules lookup: the 8 steps in order, the value items, IPv6 keys, reading the file.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { cdbMake } from "../../src/rules/cdb.ts";
import {
  findRule,
  lookupRules,
  readRulesFile,
  ruleIp,
  ruleItems,
  ruleKeys,
} from "../../src/rules/rules.ts";
import type { RulesClient } from "../../src/rules/rules.ts";
import { parseRuleLines } from "../../src/rules/tcprules-parse.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("rules");

const b = (text: string) => Buffer.from(text, "latin1");

/** A cdb with one allow rule per key, each setting K to its own key. */
function rulesWith(keys: readonly string[]): Buffer {
  return cdbMake(keys.map((key) => ({ key: Buffer.from(key), data: Buffer.from(`+K=${key}\0`) })));
}

const FULL: RulesClient = { ip: "127.0.0.1", host: "host.a.example.com", info: "joe" };
const STEPS = [
  "joe@127.0.0.1", // 1 INFO@IP
  "joe@=host.a.example.com", // 2 INFO@=HOST
  "127.0.0.1", // 3 IP
  "=host.a.example.com", // 4 =HOST
  "127.0.0.", // 5 IP prefixes ending in a dot, longest first
  "127.0.",
  "127.",
  "=.a.example.com", // 6 host suffixes from each dot, longest first
  "=.example.com",
  "=.com",
  "=", // 7
  "", // 8
];

test("ruleKeys: djb's eight steps in order", () => {
  assert.deepEqual(ruleKeys(FULL), STEPS);
});

test("lookupRules: each step wins over every later one", () => {
  for (let i = 0; i < STEPS.length; i++) {
    // The rules hold this step's key and all later ones, in reverse file order.
    const cdb = rulesWith(STEPS.slice(i).reverse());
    const verdict = lookupRules(cdb, FULL);
    assert.equal(verdict.key, STEPS[i]);
    assert.deepEqual(verdict.env, [["K", STEPS[i]]]);
    assert.equal(verdict.deny, false);
  }
  assert.deepEqual(lookupRules(rulesWith([]), FULL), { key: undefined, deny: false, env: [] });
});

test("ruleKeys: steps that need INFO or HOST are skipped without them", () => {
  assert.deepEqual(ruleKeys({ ip: "10.1.2.3" }), ["10.1.2.3", "10.1.2.", "10.1.", "10.", ""]);
  assert.deepEqual(ruleKeys({ ip: "10.1.2.3", info: "bob" }), [
    "bob@10.1.2.3",
    "10.1.2.3",
    "10.1.2.",
    "10.1.",
    "10.",
    "",
  ]);
  assert.deepEqual(ruleKeys({ ip: "10.1.2.3", host: "x.y" }), [
    "10.1.2.3",
    "=x.y",
    "10.1.2.",
    "10.1.",
    "10.",
    "=.y",
    "=",
    "",
  ]);
  // Set but empty is set (djb tests the pointer): `=` is tried as the host key and as step 7.
  assert.deepEqual(ruleKeys({ ip: "1", host: "", info: "" }), ["@1", "@=", "1", "=", "=", ""]);
});

test("lookupRules: matching is byte-exact and case-sensitive", () => {
  const cdb = cdbMake(parseRuleLines(b("=localhost:allow,X='lower'\n:deny\n")));
  assert.deepEqual(lookupRules(cdb, { ip: "127.0.0.1", host: "LOCALHOST" }), {
    key: "",
    deny: true,
    env: [],
  });
  assert.equal(lookupRules(cdb, { ip: "127.0.0.1", host: "localhost" }).key, "=localhost");
});

test("lookupRules: the first of duplicate keys is used", () => {
  const cdb = cdbMake(parseRuleLines(b("1.2.3.4:allow,N='1'\n1.2.3.4:deny\n")));
  assert.deepEqual(lookupRules(cdb, { ip: "1.2.3.4" }), {
    key: "1.2.3.4",
    deny: false,
    env: [["N", "1"]],
  });
});

test("IPv6: the literal address, then prefixes ending in ':' or '.', as ucspi-tcp-ipv6 does", () => {
  assert.deepEqual(ruleKeys({ ip: "2001:db8::1:2", host: "a.example.com" }), [
    "2001:db8::1:2",
    "=a.example.com",
    "2001:db8::1:",
    "2001:db8::",
    "2001:db8:",
    "2001:",
    "=.example.com",
    "=.com",
    "=",
    "",
  ]);
  assert.deepEqual(ruleKeys({ ip: "::ffff:1.2.3.4" }), [
    "::ffff:1.2.3.4",
    "::ffff:1.2.3.",
    "::ffff:1.2.",
    "::ffff:1.",
    "::ffff:",
    "::",
    ":",
    "",
  ]);
  assert.deepEqual(ruleKeys({ ip: "::1" }), ["::1", "::", ":", ""]);
  // Written with the ucspi-tcp-ipv6 split: `fd00:::allow` is the key `fd00::`.
  const cdb = cdbMake(parseRuleLines(b("fd00::2:deny\nfd00:::allow,X='net'\n:::allow,X='any6'\n")));
  assert.equal(lookupRules(cdb, { ip: "fd00::2" }).deny, true);
  assert.deepEqual(lookupRules(cdb, { ip: "fd00::3" }).env, [["X", "net"]]);
  assert.deepEqual(lookupRules(cdb, { ip: "::1" }).env, [["X", "any6"]]);
  assert.equal(lookupRules(cdb, { ip: "127.0.0.1" }).key, undefined);
});

test("ruleIp: the text ucspi-tcp-ipv6 gives an address (recorded from its tcpclient)", () => {
  const table: [string, string][] = [
    ["2001:db8:0:1:1:1:1:1", "2001:db8::1:1:1:1:1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::127.0.0.1", "::7f00:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["fd00:0:0:0:0:0:0:2", "fd00::2"],
    ["::2:3:4:5:6:7:8", "::2:3:4:5:6:7:8"],
    ["1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7::"],
    ["ABCD::1", "abcd::1"],
    ["fe80::1%eth0", "fe80::1"],
    ["127.0.0.1", "127.0.0.1"],
    ["not an address", "not an address"],
  ];
  for (const [input, text] of table) assert.equal(ruleIp(input), text, input);
  assert.equal(ruleIp("::ffff:7f00:1", { keepMapped: true }), "::ffff:127.0.0.1");
});

test("ruleIp: any IPv6 address round-trips and is never longer than Node's text", () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0xdb8), { minLength: 8, maxLength: 8 }),
      (groups) => {
        const full = groups.map((g) => g.toString(16)).join(":");
        const text = ruleIp(full);
        const mapped = groups.slice(0, 6).join() === "0,0,0,0,0,65535";
        if (mapped) return;
        assert.equal(new URL(`http://[${text}]/`).hostname, new URL(`http://[${full}]/`).hostname);
        assert.ok(text.length <= new URL(`http://[${full}]/`).hostname.length - 2);
      },
    ),
  );
});

test("value items: D anywhere denies, + needs '=', others and a trailing rest are ignored", () => {
  const data = b("+A=1\0X junk\0\0+B\0D\0+C=x=y\0+D=unterminated");
  assert.deepEqual(ruleItems(data), [b("+A=1"), b("X junk"), b(""), b("+B"), b("D"), b("+C=x=y")]);
  const cdb = cdbMake([{ key: b("1.2.3.4"), data }]);
  assert.deepEqual(lookupRules(cdb, { ip: "1.2.3.4" }), {
    key: "1.2.3.4",
    deny: true,
    env: [
      ["A", "1"],
      ["C", "x=y"],
    ],
  });
  assert.deepEqual(ruleItems(b("")), []);
});

test("keys and values are byte strings (a character per byte), as env values are", () => {
  const cdb = cdbMake(
    parseRuleLines(Buffer.from("=h\u00e9.example:allow,GREETING='h\u00e9llo'\n", "utf8")),
  );
  const bytes = (text: string) => Buffer.from(text, "utf8").toString("latin1");
  assert.deepEqual(lookupRules(cdb, { ip: "1.2.3.4", host: bytes("h\u00e9.example") }).env, [
    ["GREETING", bytes("h\u00e9llo")],
  ]);
});

test("findRule: the key and raw value of the first match", () => {
  const cdb = cdbMake(parseRuleLines(b("10.:deny,X='1'\n")));
  assert.deepEqual(findRule(cdb, { ip: "10.1.1.1" }), { key: "10.", data: b("D\0+X=1\0") });
  assert.equal(findRule(cdb, { ip: "11.1.1.1" }), undefined);
});

test("lookupRules on a corrupt cdb throws CdbFormatError (djb: protocol error)", () => {
  assert.throws(() => lookupRules(Buffer.alloc(100), { ip: "1.2.3.4" }), {
    name: "CdbFormatError",
    message: "protocol error",
  });
});

test("readRulesFile: read afresh each time; errors keep their code", () => {
  const path = join(work, "rules.cdb");
  writeFileSync(path, rulesWith(["1.2.3.4"]));
  assert.equal(lookupRules(readRulesFile(path), { ip: "1.2.3.4" }).key, "1.2.3.4");
  writeFileSync(path, rulesWith(["1.2.3."]));
  assert.equal(lookupRules(readRulesFile(path), { ip: "1.2.3.4" }).key, "1.2.3.");
  assert.throws(() => readRulesFile(join(work, "missing.cdb")), { code: "ENOENT" });
  assert.throws(() => readRulesFile(work), { code: "EISDIR" });
});

test("ruleKeys with the port the client asked for: every key for that port first, then djb's", () => {
  const plain = ruleKeys({ ip: "10.0.0.2" });
  assert.deepEqual(ruleKeys({ ip: "10.0.0.2", localPort: 25 }), [
    ...plain.map((key) => `25/${key}`),
    ...plain,
  ]);
  assert.deepEqual(ruleKeys({ ip: "10.0.0.2", localPort: 25 }).slice(0, 5), [
    "25/10.0.0.2",
    "25/10.0.0.",
    "25/10.0.",
    "25/10.",
    "25/",
  ]);
});

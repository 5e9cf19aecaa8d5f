// tls-sniff's command line: routes as { } blocks (nested ones kept whole), options, errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSniffArgs } from "../../src/tls-sniff/options.ts";

test("routes in order, nested blocks whole, the rest the default program", () => {
  const o = parseSniffArgs([
    "-t50",
    "-K",
    "2000",
    "--sni=*.Example.ORG",
    "{",
    "tlsd",
    "imapd",
    "}",
    "--plain",
    "{",
    "tls-sniff",
    "--plain",
    "{",
    "a",
    "}",
    "b",
    "}",
    "--alpn",
    "h2",
    "{",
    "tlsd",
    "h2d",
    "}",
    "tlsd",
    "httpd",
    "}",
  ]);
  assert.equal(o.silenceMs, 50);
  assert.equal(o.helloMs, 2000);
  assert.deepEqual(o.plain, ["tls-sniff", "--plain", "{", "a", "}", "b"]);
  assert.deepEqual(o.routes, [
    { match: { sni: "*.example.org" }, program: ["tlsd", "imapd"] },
    { match: { alpn: "h2" }, program: ["tlsd", "h2d"] },
  ]);
  // A "}" after the options belongs to the program, as any word does.
  assert.deepEqual(o.program, ["tlsd", "httpd", "}"]);
});

test("no program: the filter form, with its defaults", () => {
  const o = parseSniffArgs(["-v", "2"]);
  assert.deepEqual(o, {
    verbosity: 2,
    silenceMs: 2000,
    helloMs: 10_000,
    plain: undefined,
    plainRoutes: [],
    routes: [],
    program: [],
  });
  assert.deepEqual(parseSniffArgs(["--", "-x"]).program, ["-x"]);
});

test("plaintext routes in the order given, each with its name", () => {
  const o = parseSniffArgs([
    "--http",
    "{",
    "a",
    "}",
    "--prefix=HELO",
    "{",
    "b",
    "}",
    "--ssh",
    "{",
    "c",
    "}",
    "d",
  ]);
  assert.deepEqual(
    o.plainRoutes.map((r) => [r.name, r.program]),
    [
      ["http", ["a"]],
      ["prefix:HELO", ["b"]],
      ["ssh", ["c"]],
    ],
  );
  assert.deepEqual(o.program, ["d"]);
});

test("bad command lines", () => {
  for (const [args, message] of [
    [["--plain", "{", "}", "x"], /--plain: empty \{ \}/],
    [["--plain", "{", "a", "}", "--plain", "{", "b", "}", "x"], /--plain given twice/],
    [["--alpn", "", "{", "a", "}", "x"], /--alpn: not a protocol name/],
    [["--sni", "a..b", "{", "a", "}", "x"], /--sni: not a host name/],
    [["-x", "prog"], /illegal option -- x/],
    [["-t"], /option requires an argument -- t/],
  ] as const) {
    assert.throws(() => parseSniffArgs(args), message);
  }
});

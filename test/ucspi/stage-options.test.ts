// Stage options parsed once per argv array, refused ones every time.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseForwardArgs } from "../../src/tcpforward/options.ts";
import { parseSniffArgs } from "../../src/tls-sniff/options.ts";
import { UsageError } from "../../src/ucspi/errors.ts";
import { stageOptions } from "../../src/ucspi/stage-options.ts";

test("one argv array is parsed once; an equal array of its own is parsed again", () => {
  let parsed = 0;
  const parse = (args: string[]) => {
    parsed++;
    return parseForwardArgs(args);
  };
  const argv = ["tcpforward", "-v", "2", "192.0.2.1", "25"];
  const first = stageOptions(argv, "usage", parse);
  assert.equal(stageOptions(argv, "usage", parse), first);
  assert.equal(parsed, 1);
  assert.equal(first.verbosity, 2);
  assert.ok(Object.isFrozen(first), "shared by connections, so not to be changed");
  assert.notEqual(stageOptions([...argv], "usage", parse), first);
  assert.equal(parsed, 2);
});

test("a route's program from cached options is the same array each time (its options cached too)", () => {
  const argv = ["tls-sniff", "--plain", "{", "tcpforward", "192.0.2.1", "80", "}", "tlsd", "cat"];
  const a = stageOptions(argv, "usage", parseSniffArgs);
  const b = stageOptions(argv, "usage", parseSniffArgs);
  assert.ok(a.plain && b.plain);
  assert.equal(a.plain, b.plain);
  assert.equal(
    stageOptions(a.plain, "u", parseForwardArgs),
    stageOptions(b.plain, "u", parseForwardArgs),
  );
});

test("a refused argv throws its usage every time, and is never taken for a good one", () => {
  const argv = ["tls-sniff", "--bogus", "cat"];
  for (let i = 0; i < 2; i++)
    assert.throws(
      () => stageOptions(argv, "tls-sniff [ -v verbosity ] prog...", parseSniffArgs),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message === "illegal option -- bogus" &&
        error.usage === "tls-sniff [ -v verbosity ] prog...",
    );
});

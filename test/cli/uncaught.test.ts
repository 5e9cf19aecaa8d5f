// A throw that nothing catches (a bug in an event handler, which in our tcpserver would end
// every connection it serves) ends the process with one line in our words and a status a
// supervisor acts on, never Node's stack dump. Run in a real process of its own.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, run } from "../helpers/programs.ts";

const MAIN = join(ROOT, "src", "cli", "main.ts");
const ERRORS = join(ROOT, "src", "ucspi", "errors.ts");

/** A process that calls endOnUncaught("prog") and then throws `what` from a timer. */
function crashWith(what: string) {
  const script = `
    const { endOnUncaught } = await import(${JSON.stringify(MAIN)});
    const { FatalError } = await import(${JSON.stringify(ERRORS)});
    endOnUncaught("prog");
    setTimeout(() => { ${what} });
    setTimeout(() => process.stdout.write("still running\\n"), 2000);
  `;
  return run(process.execPath, ["--input-type=module", "-e", script], { input: "" });
}

test("an error thrown from an event handler: one line, internal error, exit 111", async () => {
  const r = await crashWith('throw new TypeError("This handle type cannot be sent")');
  assert.deepEqual(
    [r.code, r.stderr, r.stdout],
    [111, "prog: fatal: internal error: This handle type cannot be sent\n", ""],
  );
});

test("a FatalError thrown from an event handler: its own line and status", async () => {
  const r = await crashWith('throw new FatalError("unable to go on", 96)');
  assert.deepEqual([r.code, r.stderr, r.stdout], [96, "prog: fatal: unable to go on\n", ""]);
});

test("a promise rejected with nobody to catch it: the same one line", async () => {
  const r = await crashWith('void Promise.reject(new RangeError("out of range"))');
  assert.deepEqual(
    [r.code, r.stderr, r.stdout],
    [111, "prog: fatal: internal error: out of range\n", ""],
  );
});

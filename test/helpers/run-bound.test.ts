// The test helpers' run() keeps its own bound: a command whose grandchild holds its output open
// ends at the bound, with the tree killed and a line saying so, instead of waiting for the test
// runner's timeout with nothing said.
import assert from "node:assert/strict";
import { test } from "node:test";
import { alive } from "./procs.ts";
import { run } from "./programs.ts";

test("a grandchild that holds stdout is killed with its parent at the bound", async () => {
  // The shell waits for its sleep, which has the shell's stdout: close comes only when both end.
  const r = await run("sh", ["-c", "sleep 300 & echo $!; wait"], { timeoutMs: 500 });
  // How the shell ends is not asked: killed, or (when its sleep is killed first) ended by its
  // `wait`, which then returns 0 (fresh-clone runs had both).
  assert.match(r.stderr, /\[run: sh killed after 500 ms\]/);
  const sleeper = Number(r.stdout.trim());
  assert.ok(sleeper > 1, r.stdout);
  assert.equal(alive(sleeper), false, "the grandchild was left running");
});

test("output held by a process that left the tree is let go after the bound", async () => {
  // setsid's child is reparented when the shell exits at once; it still holds both pipes.
  const r = await run("sh", ["-c", "setsid sh -c 'echo $$; exec sleep 300' & sleep 0.2"], {
    timeoutMs: 500,
  });
  const daemon = Number(r.stdout.trim());
  try {
    assert.equal(r.code, 0);
    assert.match(r.stderr, /\[run: sh killed after 500 ms\]/);
    assert.ok(daemon > 1, r.stdout);
  } finally {
    if (daemon > 1 && alive(daemon)) process.kill(daemon, "SIGKILL");
  }
});

test("a command that ends in time is not marked", async () => {
  const r = await run("sh", ["-c", "echo out; echo err >&2"], { timeoutMs: 10_000 });
  assert.deepEqual(r, { code: 0, signal: null, stdout: "out\n", stderr: "err\n" });
});

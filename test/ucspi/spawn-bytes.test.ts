// spawnWithBytes (src/ucspi/spawn-bytes.ts) with a program that cannot be run: by the time its
// end says so, every fd it opened is closed (/dev/null, both ends of the stdout pair), and
// nothing of it keeps the loop alive. Run in a node process of its own, whose fds are counted.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, run } from "../helpers/programs.ts";

const SPAWN = join(ROOT, "src", "ucspi", "spawn-bytes.ts");
const NATIVE = join(ROOT, "src", "ucspi", "native.ts");

test("a program that cannot be run: its fds are all closed when its end is known, and the process exits", async () => {
  const script = `
    import { readdirSync } from "node:fs";
    import { Socket } from "node:net";
    const { spawnWithBytes } = await import(${JSON.stringify(SPAWN)});
    const { native } = await import(${JSON.stringify(NATIVE)});
    const open = () => readdirSync("/proc/self/fd").length;
    // What Node opens once, the first time it makes a stream of a socket's fd, is opened now.
    const [a, b] = native().socketPair();
    const warm = new Socket({ fd: a, readable: true, writable: false });
    native().close(b);
    await new Promise((resolve) => warm.once("close", resolve));
    for (const discardStdout of [false, true]) {
      const before = open();
      const child = spawnWithBytes("/nonexistent/program", ["x"], { PATH: "/bin" }, { discardStdout });
      const end = await child.ended;
      const after = open();
      console.log(JSON.stringify({ discardStdout, opened: after - before, pid: child.pid ?? null,
        stdout: child.stdout === undefined, code: end.error?.code ?? null }));
    }
  `;
  const r = await run(process.execPath, ["--input-type=module", "-e", script], {
    timeoutMs: 10_000,
  });
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ""]);
  assert.deepEqual(
    r.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as unknown),
    [false, true].map((discardStdout) => ({
      discardStdout,
      opened: 0,
      pid: null,
      stdout: true,
      code: "ENOENT",
    })),
  );
});

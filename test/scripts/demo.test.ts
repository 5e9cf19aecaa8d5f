// npm run demo (scripts/demo.sh): what README.md's first command starts ends with whatever
// started it. npm, when it is killed, does not pass that on, and the demo's three servers used
// to stay; package.json's script execs demo.sh, so that npm itself is the parent it watches. README.md's recipe that talks to the demo is run by test/docs/recipes.test.ts.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { freePort } from "../helpers/interop.ts";
import { ROOT } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

/** Whether something accepts on the port. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Asks until `want` comes (at most 100 times, 100 ms apart); the last answer. */
async function until(port: number, want: boolean): Promise<boolean> {
  let now = await answers(port);
  for (let i = 0; i < 100 && now !== want; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    now = await answers(port);
  }
  return now;
}

// What npm runs for `npm run demo`: package.json's script, by `sh -c`. Its build step is
// `true` here (a build while other tests use dist/ would break them); the list stays the same.
const demoScript = (
  JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: { demo: string } }
).scripts.demo.replace("node scripts/build.mjs", "true");

for (const signal of ["SIGKILL", "SIGTERM"] as const)
  test(`the demo's servers end when npm running it gets ${signal} (as from timeout or a supervisor)`, async () => {
    const dir = scratchDir("demo");
    const ports = [await freePort(), await freePort(), await freePort()];
    const [port, smtp, web] = ports.map(String) as [string, string, string];
    // This node process stands for npm: it runs the script by `sh -c`, as npm does, and is then
    // killed; it passes nothing on to the script.
    const npm = spawn(
      process.execPath,
      [
        "-e",
        `require("node:child_process").spawn("sh", ["-c", process.argv[1]], { stdio: "inherit" })`,
        demoScript,
      ],
      {
        cwd: ROOT,
        env: { ...process.env, PORT: port, SMTP_PORT: smtp, WEB_PORT: web, UCSPI_DEMO_DIR: dir },
        stdio: ["ignore", "ignore", "pipe"],
        // A group of its own: whatever the outcome, the finally below ends all of it.
        detached: true,
      },
    );
    let log = "";
    npm.stderr.on("data", (b: Buffer) => (log += b.toString("latin1")));
    try {
      for (const p of ports)
        assert.equal(await until(p, true), true, `port ${p} never answered: ${log}`);
      npm.kill(signal);
      for (const p of ports)
        assert.equal(await until(p, false), false, `port ${p} still answers: ${log}`);
    } finally {
      npm.kill("SIGKILL");
      try {
        if (npm.pid !== undefined) process.kill(-npm.pid, "SIGKILL");
      } catch {
        // the group has ended
      }
    }
  });

test("the demo ends with its main server's status when that one cannot start", async () => {
  const holder = createServer().listen(0, "127.0.0.1");
  await once(holder, "listening");
  const { port } = holder.address() as AddressInfo;
  const dir = scratchDir("demo");
  try {
    const demo = spawn("sh", ["scripts/demo.sh"], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        SMTP_PORT: String(await freePort()),
        WEB_PORT: String(await freePort()),
        UCSPI_DEMO_DIR: dir,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    demo.stderr.on("data", (b: Buffer) => (log += b.toString("latin1")));
    const [code] = (await once(demo, "exit")) as [number | null];
    assert.equal(code, 111, log);
    assert.match(log, /tcpserver: fatal: unable to bind: address already used/);
  } finally {
    holder.close();
  }
});

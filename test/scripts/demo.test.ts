// npm run demo (scripts/demo.sh): what README.md's first command starts ends with whatever
// started it. npm, when it is killed, does not pass that on, and the demo's three servers used
// to stay. README.md's recipe that talks to the demo is run by test/docs/recipes.test.ts.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, createServer } from "node:net";
import type { AddressInfo } from "node:net";
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

test("the demo's servers end when what started it is killed (as npm, killed, leaves its script)", async () => {
  const dir = scratchDir("demo");
  const ports = [await freePort(), await freePort(), await freePort()];
  const [port, smtp, web] = ports.map(String) as [string, string, string];
  // The parent stands for npm: it runs the script and waits, and is then killed outright.
  const parent = spawn("sh", ["-c", "sh scripts/demo.sh & wait"], {
    cwd: ROOT,
    env: { ...process.env, PORT: port, SMTP_PORT: smtp, WEB_PORT: web, UCSPI_DEMO_DIR: dir },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  parent.stderr.on("data", (b: Buffer) => (log += b.toString("latin1")));
  try {
    for (const p of ports)
      assert.equal(await until(p, true), true, `port ${p} never answered: ${log}`);
    parent.kill("SIGKILL");
    for (const p of ports)
      assert.equal(await until(p, false), false, `port ${p} still answers: ${log}`);
  } finally {
    parent.kill("SIGKILL");
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

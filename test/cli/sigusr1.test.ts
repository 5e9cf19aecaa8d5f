// SIGUSR1 kills every program of ours, as it kills djb's. Node's own answer to it would be to
// open its inspector on 127.0.0.1:9229, where any local user could then run code as the
// program (root, for a tcpserver that binds a low port, and for what runs under it). The
// launcher starts Node with that answer turned off (src/native/launcher.c), so each program is
// sent the signal once Node runs it, while it waits for its peer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess, StdioOptions } from "node:child_process";
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { makePki } from "../helpers/certs.ts";
import { ours, PATH_WITH_BIN } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const rulesDir = scratchDir("sigusr1");

/** Node is running the program: the launcher has exec'd it, Node has taken its signals, and
 * SIGUSR1 is not blocked (as Node's --disable-sigusr1 leaves it until our code runs). */
async function nodeStarted(child: ChildProcess): Promise<void> {
  const pid = child.pid ?? 0;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      const exe = readlinkSync(`/proc/${pid}/exe`);
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const mask = (name: string) =>
        BigInt(`0x${new RegExp(`^${name}:\\s*(\\w+)$`, "m").exec(status)?.[1] ?? "0"}`);
      const usr1 = 1n << 9n;
      if (!exe.endsWith("ucspi-launch") && mask("SigCgt") !== 0n && (mask("SigBlk") & usr1) === 0n)
        return;
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Case {
  args: string[];
  env?: Record<string, string>;
  stdio?: StdioOptions;
  /** Something for the program to wait on, made before it starts. */
  peer?: () => Promise<{ env: Record<string, string>; close: () => void }>;
}

/** A listener that takes connections and holds them: tcpforward's service. */
async function holdingService(): Promise<{ env: Record<string, string>; close: () => void }> {
  const held: Socket[] = [];
  const server = createServer((socket) => held.push(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    env: { TCPLOCALIP: "127.0.0.1", TCPLOCALPORT: String(port) },
    close: () => {
      for (const socket of held) socket.destroy();
      server.close();
    },
  };
}

const CASES: Record<string, Case> = {
  tlsd: { args: ["cat"], env: { CERTFILE: pair.cert, KEYFILE: pair.key } },
  tlsc: {
    args: ["-k", "localhost", "true"],
    // fds 6 and 7: a pipe pair that no server ever answers on.
    stdio: ["pipe", "pipe", "pipe", "ignore", "ignore", "ignore", "pipe", "pipe"],
  },
  "tls-sniff": { args: ["cat"] },
  "acme-challenge": { args: ["cat"], env: { CERTDIR: rulesDir } },
  "starttls-wrapper": { args: ["-p", "smtp", "cat"] },
  tcpforward: {
    args: ["-t", "60"],
    env: { TCPREMOTEIP: "127.0.0.1", TCPREMOTEPORT: "1" },
    peer: holdingService,
  },
  tcprules: { args: [join(rulesDir, "rules.cdb"), join(rulesDir, "rules.tmp")] },
};

for (const [name, c] of Object.entries(CASES)) {
  test(`SIGUSR1: ${name} dies of it, and no inspector opens`, async () => {
    const peer = c.peer ? await c.peer() : undefined;
    const child = spawn(ours(name), c.args, {
      stdio: c.stdio ?? ["pipe", "pipe", "pipe"],
      env: { PATH: PATH_WITH_BIN, ...c.env, ...peer?.env },
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("latin1")));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      await nodeStarted(child);
      assert.equal(child.exitCode, null, `${name} still runs: ${stderr}`);
      child.kill("SIGUSR1");
      const inspector = new Promise<string>((resolve) => {
        const look = () => {
          if (/Debugger listening/.test(stderr)) resolve("inspector opened");
        };
        child.stderr?.on("data", look);
        look();
      });
      const first = await Promise.race([exited, inspector]);
      assert.deepEqual(first, { code: null, signal: "SIGUSR1" }, stderr);
      assert.equal(stderr, "");
    } finally {
      child.kill("SIGKILL");
      peer?.close();
    }
  });
}

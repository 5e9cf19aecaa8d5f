// starttls-wrapper against a hostile client and a misbehaving server, with real processes:
// a client refused under -r that goes on sending while the server has not answered yet (its
// bytes must not be kept), a server whose reply is past the wrapper's bounds (the client must
// get an answer and the end, not a session that hangs while the reply piles up).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const dir = mkdtempSync(join(tmpdir(), "ucspi-wrapper-hardening-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const ENV = { ...process.env, PATH: PATH_WITH_BIN };
const FLOOD = 64 * 1024 * 1024;

/** The wrapper (remote mode, its TLS service never reached) in front of `sh -c script`. */
function wrapper(flags: string[], script: string) {
  return startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", ...flags],
      ...["127.0.0.1", "1", "sh", "-c", script],
    ],
    { env: ENV },
  );
}

/** A client socket and everything it has read, until the server closes. */
function open(port: number) {
  const socket: Socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let got = "";
  socket.on("data", (b: Buffer) => (got += b.toString("latin1")));
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(got)));
  return { socket, closed, got: () => got };
}

/** The peak resident memory of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  assert.ok(m, "no VmHWM");
  return Number(m[1]) * 1024;
}

test("-r: a refused client that goes on sending while the server has not greeted yet: none of its bytes are kept", async () => {
  // The server greets once the test creates the gate file (a server that delays its
  // greeting, as greetdelay or postscreen do).
  const gate = join(dir, "gate-1");
  const server = await wrapper(
    ["-r"],
    `while [ ! -e '${gate}' ]; do sleep 0.05; done; printf '220 late\\r\\n'; exec cat >/dev/null`,
  );
  try {
    const pid = server.child.pid ?? 0;
    const before = peakRss(pid);
    const c = open(server.port);
    // A bare LF: refused under -r, the refusal due after the greeting, which has not come.
    c.socket.write("EHLO a\n");
    const flood = Buffer.alloc(FLOOD, "A");
    // Once the kernel has taken it all, the wrapper has read all but its socket buffers.
    await new Promise<void>((resolve, reject) =>
      c.socket.write(flood, (error) => (error ? reject(error) : resolve())),
    );
    const grown = peakRss(pid) - before;
    writeFileSync(gate, "");
    assert.equal(await c.closed, "220 late\r\n500 5.5.2 bare LF in a command line\r\n");
    // Kept, the flood would be in the wrapper whole, and copied once more as each chunk was
    // added (its peak grew by more than twice the flood); dropped, it is garbage that the
    // collector takes back as it goes.
    assert.ok(grown < 1.5 * FLOOD, `the wrapper grew by ${grown} bytes`);
    await server.waitForLog(/^starttls-wrapper: warning: 127\.0\.0\.1: bare LF in a command line$/);
  } finally {
    await server.stop();
  }
});

// The native engine's relay makes no read that can only fail (src/native/tls-engine.c, pump):
// after a short read of either side the socket is empty, and the next read waits for the epoll
// set's word (level-triggered) instead of failing with EAGAIN. A request and its answer relayed
// each way cost three such reads before, a third of the relay's system calls. strace counts
// tcpserver's reads that failed over 200 ping-pongs through tlsd in-process.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const EXCHANGES = 200;

/** A TLS client that sends a line and reads its echo, EXCHANGES times, then says "ok". */
const pingPong = (port: number) => `
import socket, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
with socket.create_connection(("127.0.0.1", ${port})) as raw:
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    for i in range(${EXCHANGES}):
        line = b"ping %d\\n" % i
        tls.sendall(line)
        got = b""
        while not got.endswith(b"\\n"):
            got += tls.recv(100)
        assert got == line, got
    tls.close()
print("ok")
`;

/** strace on every thread of `pid`, writing the reads that failed into `file`; resolves once
 * it is attached, with a function that ends it. */
async function traceFailedReads(pid: number, file: string): Promise<() => Promise<void>> {
  const strace = spawn(
    "strace",
    ["-f", "-e", "trace=read,recvfrom,recvmsg", "-e", "status=failed", "-o", file, "-p", `${pid}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  // strace says "Process N attached" on stderr once it traces the process.
  await new Promise<void>((resolve, reject) => {
    let said = "";
    strace.stderr.setEncoding("latin1");
    strace.stderr.on("data", (text: string) => {
      said += text;
      if (/attached/.test(said)) resolve();
    });
    strace.on("exit", () => reject(new Error(`strace ended: ${said}`)));
  });
  return async () => {
    strace.kill("SIGINT");
    await new Promise((resolve) => strace.on("close", resolve));
  };
}

test("native engine: 200 requests and answers through tlsd make no read that fails with EAGAIN (a short read empties the socket)", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: pair.cert, KEYFILE: pair.key },
  });
  const file = join(pki.dir, "reads.strace");
  try {
    const stop = await traceFailedReads(s.child.pid as number, file);
    const client = await run("python3", ["-c", pingPong(s.port)]);
    await stop();
    assert.equal(client.stdout, "ok\n", client.stderr);
    const failed = readFileSync(file, "latin1")
      .split("\n")
      .filter((line) => /EAGAIN/.test(line));
    // The handshake's own: a read for the client's Finished before it came, and the like.
    assert.ok(
      failed.length < EXCHANGES / 20,
      `${failed.length} reads failed with EAGAIN over ${EXCHANGES} exchanges:\n${failed.slice(0, 12).join("\n")}`,
    );
  } finally {
    await s.stop();
  }
});

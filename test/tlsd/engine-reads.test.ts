// The native engine's relay makes no read that can only fail (src/native/tls-engine.c, pump):
// after a short read of either side the socket is empty, and the next read waits for the epoll
// set's word (level-triggered) instead of failing with EAGAIN. A request and its answer relayed
// each way cost three such reads before, a third of the relay's system calls. strace counts
// tcpserver's reads that failed over 200 ping-pongs through tlsd in-process.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { pingPong, straceOf } from "../helpers/strace.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const EXCHANGES = 200;

test("native engine: 200 requests and answers through tlsd make no read that fails with EAGAIN (a short read empties the socket)", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: pair.cert, KEYFILE: pair.key },
  });
  const file = join(pki.dir, "reads.strace");
  try {
    const filters = ["trace=read,recvfrom,recvmsg", "status=failed"];
    const stop = await straceOf(s.child.pid as number, filters, file);
    const client = await run("python3", ["-c", pingPong(s.port, pki.ca.cert, EXCHANGES)]);
    const lines = await stop();
    assert.equal(client.stdout, "ok\n", client.stderr);
    const failed = lines.filter((line) => /EAGAIN/.test(line));
    // The handshake's own: a read for the client's Finished before it came, and the like.
    assert.ok(
      failed.length < EXCHANGES / 20,
      `${failed.length} reads failed with EAGAIN over ${EXCHANGES} exchanges:\n${failed.slice(0, 12).join("\n")}`,
    );
  } finally {
    await s.stop();
  }
});

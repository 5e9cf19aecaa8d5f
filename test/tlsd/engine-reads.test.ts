// The native engine's relay makes no read that can only fail (src/native/tls-engine.c, pump):
// after a short read of either side the socket is empty, and the next read waits for the epoll
// set's word (level-triggered) instead of failing with EAGAIN. A request and its answer relayed
// each way cost three such reads before, a third of the relay's system calls. strace counts
// tcpserver's reads that failed over 200 ping-pongs through tlsd in-process.
import assert from "node:assert/strict";
import { test } from "node:test";
import { traceTlsdEchoes } from "../helpers/strace.ts";

const EXCHANGES = 200;

test("native engine: 200 requests and answers through tlsd make no read that fails with EAGAIN (a short read empties the socket)", async () => {
  const filters = ["trace=read,recvfrom,recvmsg", "status=failed"];
  const failed = (await traceTlsdEchoes(filters, EXCHANGES)).filter((line) => /EAGAIN/.test(line));
  // The handshake's own: a read for the client's Finished before it came, and the like.
  assert.ok(
    failed.length < EXCHANGES / 20,
    `${failed.length} reads failed with EAGAIN over ${EXCHANGES} exchanges:\n${failed.slice(0, 12).join("\n")}`,
  );
});

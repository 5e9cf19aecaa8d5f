// Node turns on libuv's idle-time metrics, and with them each wait of the loop begins with an
// epoll_pwait that cannot block (timeout 0), then blocks in a second one when the first found
// nothing: a system call more at nearly every wake-up. The addon clears the flag when it loads
// (src/native/watch.c, loop_no_idle_metrics). strace counts tcpserver's waits over 200
// ping-pongs through tlsd in-process: about two a ping-pong could not block before, none now.
import assert from "node:assert/strict";
import { test } from "node:test";
import { traceTlsdEchoes } from "../helpers/strace.ts";

const EXCHANGES = 200;

/** The timeout of each epoll_pwait strace wrote (its resumed half, for one it saw begin and end
 * apart): "epoll_pwait(15, [...], 1024, 0, NULL, 8) = 1". */
const timeouts = (lines: string[]) =>
  lines.flatMap((line) => {
    const m = /epoll_pwait.*, \d+, (-?\d+), (?:NULL|0x[0-9a-f]+), \d+\) = /.exec(line);
    return m ? [Number(m[1])] : [];
  });

test("the event loop's waits block: 200 requests and answers through tlsd, and no epoll_pwait that cannot wait before each wait (libuv's idle-time metrics are off)", async () => {
  const waits = timeouts(await traceTlsdEchoes(["trace=epoll_pwait"], EXCHANGES));
  // Each ping-pong wakes the loop at least once: the trace saw them.
  assert.ok(waits.length >= EXCHANGES, `${waits.length} waits traced`);
  const nonBlocking = waits.filter((t) => t === 0).length;
  assert.ok(
    nonBlocking < EXCHANGES / 20,
    `${nonBlocking} of ${waits.length} waits over ${EXCHANGES} exchanges had a timeout of 0`,
  );
});

// The launcher's UCSPI_FD_NOT_OPEN (launcher.c: which of fds 0-2 it found closed and held with
// /dev/null) is its word to the process it starts: a tcpserver or tcpclient started with a
// closed stdin passed it on to every program it ran, as if it were the user's variable.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";

const PATH = `${BIN}:/usr/bin:/bin`;
/** Runs the command that follows with its stdin closed. */
const STDIN_CLOSED = ["/bin/sh", "-c", 'exec "$@" <&-', "sh"];

test("tcpserver started with stdin closed: its programs' environment has no UCSPI_FD_NOT_OPEN", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "env"], {
    env: { PATH },
    wrap: STDIN_CLOSED,
  });
  try {
    const out = await talk(s.port);
    assert.match(out, /^TCPREMOTEIP=127\.0\.0\.1$/m);
    assert.doesNotMatch(out, /UCSPI_FD_NOT_OPEN/);
  } finally {
    await s.stop();
  }
});

test("tcpclient started with stdin closed: its program's environment has no UCSPI_FD_NOT_OPEN", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "echo", "hi"], {
    env: { PATH },
  });
  try {
    const [shell, ...head] = STDIN_CLOSED;
    const r = await run(
      shell ?? "",
      [...head, ours("tcpclient"), "-RHl0", "127.0.0.1", String(s.port), "env"],
      {
        env: { PATH },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^TCPREMOTEPORT=\d+$/m);
    assert.doesNotMatch(r.stdout, /UCSPI_FD_NOT_OPEN/);
  } finally {
    await s.stop();
  }
});

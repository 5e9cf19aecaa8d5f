// TLS_UID / TLS_GID (s6-tlsd's names): a tlsd that is a process of its own drops to them after
// loading its keys, when it runs as root; inside our tcpserver, which serves every connection
// from one process, a root server refuses rather than run the session as root.
import assert from "node:assert/strict";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const root = process.geteuid?.() === 0;
const self = `${process.geteuid?.()}\n${process.getegid?.()}\n`;

function env(extra: Record<string, string>) {
  return { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key, ...extra };
}

/** One TLS session through `tcpserver ... tlsd` running `id -u; id -g`: what the client read. */
async function ids(tcpserver: string, extra: Record<string, string>) {
  const s = await startServer(
    tcpserver,
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "/bin/sh", "-c", "id -u; id -g"],
    { env: env(extra) },
  );
  try {
    const r = await run("openssl", [
      "s_client",
      "-quiet",
      "-verify_return_error",
      "-CAfile",
      pki.ca.cert,
      "-servername",
      "localhost",
      "-connect",
      `127.0.0.1:${s.port}`,
    ]);
    await s.waitForLog(/^tcpserver: end /, 1);
    return { stdout: r.stdout, log: s.log() };
  } finally {
    await s.stop();
  }
}

test("tlsd under djb's tcpserver drops to TLS_UID/TLS_GID (root only) after loading its key", async () => {
  const r = await ids(djb("tcpserver"), { TLS_UID: "65534", TLS_GID: "65534" });
  // The key file is readable by its owner only; the session still works, so it was read first.
  assert.equal(r.stdout, root ? "65534\n65534\n" : self, r.log);
  assert.match(r.log, /^tcpserver: end \d+ status 0$/m);
});

test("a bad TLS_UID is one line and exit 100", async () => {
  const r = await ids(djb("tcpserver"), { TLS_UID: "nobody" });
  assert.equal(r.stdout, "");
  assert.match(r.log, /^tlsd: fatal: TLS_UID must be a numeric id, not 'nobody'$/m);
  assert.match(r.log, /^tcpserver: end \d+ status 25600$/m);
});

test("in-process under a root tcpserver, TLS_UID is refused, not ignored", async () => {
  const r = await ids(ours("tcpserver"), { TLS_UID: "65534" });
  if (root) {
    assert.equal(r.stdout, "");
    assert.match(r.log, /^tlsd: fatal: TLS_UID and TLS_GID cannot apply to one connection/m);
  } else {
    assert.equal(r.stdout, self);
  }
});

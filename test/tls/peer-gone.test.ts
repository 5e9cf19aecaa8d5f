// A peer that goes away while the program still writes: tlsd and tlsc stop the program (its
// next write fails with EPIPE), log one line naming the cause and end with 98, rather than read
// its output and drop it for ever. And a peer that only half-closes still gets the program's
// answer. In-process under our tcpserver/tcpclient and as processes of their own under djb's.
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:tls";
import type { TLSSocket } from "node:tls";
import { test } from "node:test";
import { BIN, TLSC_UNDER, TLSD_UNDER, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { makePki } from "../helpers/certs.ts";
import { descendantsOf } from "../helpers/interop.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const LOST = /: fatal: (127\.0\.0\.1: )?connection lost before the program was done: \S/;

/** A TLS server of the test's own for one connection, which `serve` talks to. */
async function tlsServer(serve: (socket: TLSSocket) => void) {
  const listener = createServer(
    {
      key: readFileSync(server.key),
      cert: readFileSync(server.cert),
      allowHalfOpen: true,
    },
    serve,
  );
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const address = listener.address();
  assert.ok(address && typeof address === "object");
  return { port: address.port, close: () => listener.close() };
}

for (const [who, tcpserver] of TLSD_UNDER) {
  test(`${who}: a client that leaves while the program writes stops it, with one line and status 98`, async () => {
    const s = await startServer(tcpserver, ["-v", "127.0.0.1", "0", "tlsd", "yes"], {
      env: { PATH, CERTFILE: server.cert, KEYFILE: server.key },
    });
    try {
      const client = connect({ port: s.port, host: "127.0.0.1", ca: readFileSync(pki.ca.cert) });
      client.setEncoding("latin1");
      let got = "";
      await new Promise<void>((resolve) =>
        client.on("data", (text: string) => {
          got += text;
          if (got.length > 100_000) resolve();
        }),
      );
      assert.match(got, /^(y\n)+/);
      // Gone with bytes unread: the kernel resets the connection.
      client.destroy();
      const [line] = await s.waitForLog(LOST);
      assert.match(line ?? "", /^tlsd: fatal: 127\.0\.0\.1: connection lost/);
      const [end] = await s.waitForLog(/ end \d+ status \d+/);
      assert.match(end ?? "", / status 25088$/, "98, as s6-tlsd's code for a TLS failure");
      // `yes` learnt it at its next write and is gone: nothing of the session is left.
      await waitFor(() =>
        descendantsOf(s.child.pid ?? 0).some((p) => p.comm === "yes") ? undefined : true,
      );
      assert.equal(
        s
          .log()
          .split("\n")
          .filter((l) => LOST.test(l)).length,
        1,
        s.log(),
      );
    } finally {
      await s.stop();
    }
  });
}

for (const [who, tcpclient] of TLSC_UNDER) {
  test(`${who}: a server that leaves while the program writes stops it, with one line and exit 98`, async () => {
    const s = await tlsServer((socket) => {
      socket.once("data", () => socket.destroy());
    });
    try {
      const r = await run(tcpclient, ["127.0.0.1", String(s.port), "tlsc", "sh", "-c", "yes >&7"], {
        env: { PATH, CAFILE: pki.ca.cert },
      });
      assert.equal(r.code, 98, r.stderr);
      assert.match(r.stderr, /^tlsc: fatal: connection lost before the program was done: \S/m);
    } finally {
      s.close();
    }
  });

  test(`${who}: after the server's half-close, the program's answer still reaches it`, async () => {
    let heard = "";
    const heardAll = Promise.withResolvers<void>();
    const s = await tlsServer((socket) => {
      socket.setEncoding("latin1");
      socket.on("data", (text: string) => (heard += text));
      socket.on("end", () => heardAll.resolve());
      // close_notify and FIN: nothing more from the server, while it still reads.
      socket.end("hello\n");
    });
    try {
      const r = await run(
        tcpclient,
        ["127.0.0.1", String(s.port), "tlsc", "sh", "-c", "cat <&6; echo back >&7"],
        { env: { PATH, CAFILE: pki.ca.cert } },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "hello\n");
      await heardAll.promise;
      assert.equal(heard, "back\n");
    } finally {
      s.close();
    }
  });
}

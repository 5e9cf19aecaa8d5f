// `tcpserver tlsd tcpforward` on the native engine: tcpforward hands its service's socket to
// tlsd's engine (Connection.relayTo), which relays TLS to it directly, with no socket pair and
// no splice hop in between. What the pair's path did must still hold: half-closes both ways,
// large transfers both ways, the log lines and statuses, no fd left. (A reset on either side:
// forward.test.ts's "after tlsd" tests and native-engine.test.ts's run on this path.)
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import { openFds } from "../helpers/interop.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { PY_BIO, READ_TO_END, pyHandshakeTo } from "../helpers/py-bio.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
const env = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key };

async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

/** `tcpserver -v tlsd -v 2 ... tcpforward -v 2 HOST PORT` (`engine`: tlsd's --engine). A name for
 * the host (localhost) is looked up on the thread pool: the client's first bytes, and its end,
 * reach the engine's socket pair before tcpforward has its service's socket to hand over. */
async function withChain(
  port: number,
  check: (s: RunningServer) => Promise<void>,
  engine = "native",
  host = "127.0.0.1",
) {
  const s = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", ...["tlsd", "--engine", engine, "-v", "2"]].concat([
      "tcpforward",
      "-v",
      "2",
      host,
      String(port),
    ]),
    { env },
  );
  try {
    await check(s);
  } finally {
    await s.stop();
  }
}

/** withChain to a host given by address, then by name (see withChain). */
async function byAddressAndName(port: number, check: (s: RunningServer) => Promise<void>) {
  for (const host of ["127.0.0.1", "localhost"]) await withChain(port, check, "native", host);
}

const sockets = (pid: number) =>
  [...openFds(pid).values()].filter((t) => t.startsWith("socket:")).length;

/** A service that says hello, then holds the connection until the client ends. */
async function holdingService() {
  const service = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", () => {});
    socket.write("hello\n");
    socket.on("end", () => socket.end());
    socket.resume();
  });
  return { service, port: await listening(service) };
}

test("the engine relays to the service's socket itself: a session holds two sockets in tcpserver (the client's, the service's), no socket pair; --engine node keeps its path", async () => {
  const { service, port } = await holdingService();
  try {
    await withChain(port, async (s) => {
      const pid = s.child.pid as number;
      const client = tlsConnect({
        port: s.port,
        host: "127.0.0.1",
        servername: "localhost",
        ca: [readFileSync(pki.ca.cert)],
      });
      client.setEncoding("latin1");
      const line = await new Promise((resolve) => client.once("data", resolve));
      assert.equal(line, "hello\n");
      const during = sockets(pid);
      client.end();
      await s.waitForLog(/^tcpserver: end \d+ status 0$/);
      await waitFor(() => (/tcpserver: status: 0\/\d+\n$/.test(s.log()) ? true : undefined));
      assert.equal(during - sockets(pid), 2, "sockets of a session");
    });
    await withChain(
      port,
      async (s) => {
        const r = await run("python3", ["-c", pyClient(s.port, "hello\\n", "notify")], {
          timeoutMs: 30_000,
        });
        assert.equal(r.stdout, "hello\nend: close_notify\n");
        await s.waitForLog(/^tcpserver: end \d+ status 0$/);
      },
      "node",
    );
  } finally {
    service.close();
  }
});

/** python3: sends `line`, then ends its side (a FIN, or a close_notify alone), prints what it
 * read and how that ended. */
function pyClient(port: number, line: string, end: "fin" | "notify", version = "TLSv1_3") {
  return `${PY_BIO}${READ_TO_END}
${pyHandshakeTo(pki.ca.cert, port, version)}tls.write(b"${line}")
flush()
if "${end}" == "fin":
    raw.shutdown(socket.SHUT_WR)
else:
    send_close_notify()
got, how = read_to_end()
sys.stdout.write(got.decode() + "end: " + how + "\\n")
`;
}

test("half-closes: the client's close_notify or FIN is the service's EOF (its answer still comes, then our close_notify); the service's EOF is our close_notify while the client still sends", async () => {
  // Answers once the client has ended: only a relay that passes the client's end on gets one.
  const service = createServer({ allowHalfOpen: true }, (socket) => {
    let input = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (input += d));
    socket.on("end", () => socket.end(`${input.length} bytes: ${input}`));
  });
  const port = await listening(service);
  try {
    await byAddressAndName(port, async (s) => {
      for (const [end, version] of [
        ["notify", "TLSv1_3"],
        ["fin", "TLSv1_3"],
        ["fin", "TLSv1_2"],
      ] as const) {
        const r = await run("python3", ["-c", pyClient(s.port, "hi there\\n", end, version)], {
          timeoutMs: 30_000,
        });
        assert.equal(r.stdout, "9 bytes: hi there\nend: close_notify\n", `${end} ${version}`);
      }
      await s.waitForLog(/^tcpserver: end \d+ status 0$/, 3);
      assert.doesNotMatch(s.log(), /fatal|warning/);
    });
  } finally {
    service.close();
  }
  // The service speaks and ends first; what the client sends after still reaches it.
  const heard: string[] = [];
  const first = createServer({ allowHalfOpen: true }, (socket) => {
    let input = "";
    socket.setEncoding("latin1");
    socket.end("bye\n");
    socket.on("data", (d: string) => (input += d));
    socket.on("end", () => heard.push(input));
  });
  const firstPort = await listening(first);
  try {
    await withChain(firstPort, async (s) => {
      const script = `${PY_BIO}${READ_TO_END}
${pyHandshakeTo(pki.ca.cert, s.port)}got, how = read_to_end()
tls.write(b"after your end\\n")
flush()
raw.shutdown(socket.SHUT_WR)
while raw.recv(65536):
    pass
sys.stdout.write(got.decode() + "end: " + how + "\\n")
`;
      const r = await run("python3", ["-c", script], { timeoutMs: 30_000 });
      assert.equal(r.stdout, "bye\nend: close_notify\n");
      // openssl s_client: the service's end is our close_notify, and s_client ends with it.
      const o = await run(
        "openssl",
        ["s_client", "-quiet", "-connect", `127.0.0.1:${s.port}`, "-CAfile", pki.ca.cert],
        { timeoutMs: 30_000 },
      );
      assert.equal(o.stdout, "bye\n");
      await waitFor(() => (heard.length === 2 ? true : undefined));
      assert.equal(heard[0], "after your end\n");
      await s.waitForLog(/^tcpserver: end \d+ status 0$/, 2);
    });
  } finally {
    first.close();
  }
});

/** 32 MiB of bytes that are not all alike (TLS does not compress, but a pattern is easier to
 * get wrong unnoticed). */
function payload(seed: number): Buffer {
  const b = Buffer.alloc(32 << 20);
  let x = seed;
  for (let i = 0; i < b.length; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

test("large transfers both ways at once: 32 MiB each way through the engine and the service's socket, byte for byte (a client that reads slowly at first)", async () => {
  const down = payload(1);
  const up = payload(2);
  const service = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    const hash = createHash("sha256");
    socket.on("data", (d: Buffer) => hash.update(d));
    socket.on("error", () => {});
    let written = false;
    let ended = false;
    const done = () => {
      if (written && ended) socket.end(`\n${hash.digest("hex")}`);
    };
    socket.write(down, () => {
      written = true;
      done();
    });
    socket.on("end", () => {
      ended = true;
      done();
    });
  });
  const port = await listening(service);
  try {
    await byAddressAndName(port, async (s) => {
      const client = tlsConnect({
        port: s.port,
        host: "127.0.0.1",
        servername: "localhost",
        ca: [readFileSync(pki.ca.cert)],
      });
      const got: Buffer[] = [];
      client.pause();
      await new Promise((resolve) => client.once("secureConnect", resolve));
      const sent = new Promise<void>((resolve) => client.end(up, resolve));
      // A while unread: the service's bytes back up to it through the engine's one record.
      await new Promise((resolve) => setTimeout(resolve, 300));
      client.on("data", (d: Buffer) => got.push(d));
      client.resume();
      await new Promise((resolve) => client.once("close", resolve));
      await sent;
      const all = Buffer.concat(got);
      const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
      assert.equal(all.length, down.length + 65);
      assert.equal(sha(all.subarray(0, down.length)), sha(down));
      assert.equal(all.subarray(down.length + 1).toString(), sha(up));
      await s.waitForLog(/^tcpserver: end \d+ status 0$/);
    });
  } finally {
    service.close();
  }
});

test("-v 2: tcpserver's lines and tcpforward's as on the socket pair's path; many sessions (clean, the service's reset, the client's reset) leave no fd open", async () => {
  let n = 0;
  const service = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", () => {});
    const which = n++ % 3;
    socket.write("hello\n");
    if (which === 1) socket.once("data", () => socket.resetAndDestroy());
    else socket.on("end", () => socket.end("bye\n"));
    socket.resume();
  });
  const port = await listening(service);
  try {
    await withChain(port, async (s) => {
      const pid = s.child.pid as number;
      /** One session: 0 ends cleanly, 1 meets the service's reset, 2 resets its own. */
      const session = (which: number) =>
        new Promise<string>((resolve) => {
          const tcp = connect(s.port, "127.0.0.1");
          tcp.on("error", () => {});
          const c = tlsConnect({
            socket: tcp,
            servername: "localhost",
            ca: [readFileSync(pki.ca.cert)],
          });
          let got = "";
          c.setEncoding("latin1");
          c.on("error", () => {});
          c.on("data", (d: string) => {
            got += d;
            if (got === "hello\n" && which === 2) tcp.resetAndDestroy();
            else if (got === "hello\n") c.end("go\n");
          });
          tcp.once("close", () => resolve(got));
        });
      assert.equal(await session(0), "hello\nbye\n");
      await s.waitForLog(/^tcpserver: end /, 1);
      const lines = s
        .log()
        .split("\n")
        .filter((l) => l)
        .map((l) => l.replace(/\b\d+\b/g, "N"));
      assert.deepEqual(lines, [
        "tcpserver: status: N/N",
        "tcpserver: status: N/N",
        "tlsd: info: native TLS engine",
        "tcpserver: pid N from N.N.N.N",
        "tcpserver: ok N N:N.N.N.N:N :N.N.N.N::N",
        "tcpforward: info: N.N.N.N: connected to N.N.N.N port N",
        "tcpserver: end N status N",
        "tcpserver: status: N/N",
      ]);
      assert.match(s.log(), /^tcpserver: end \d+ status 0$/m);
      const fds = openFds(pid).size;
      for (let i = 1; i < 31; i++) await session(i % 3);
      await s.waitForLog(/^tcpserver: end /, 31, 20_000);
      await waitFor(() => (/tcpserver: status: 0\/\d+\n$/.test(s.log()) ? true : undefined));
      assert.equal(openFds(pid).size, fds, "fds of tcpserver after 30 sessions");
      const count = (re: RegExp) => s.log().match(re)?.length ?? 0;
      assert.equal(count(/^tcpserver: end \d+ status 0$/gm), 11);
      assert.equal(count(/^tcpserver: end \d+ status 28416$/gm), 20);
      assert.equal(
        count(
          /^tcpforward: fatal: 127\.0\.0\.1: the connection to 127\.0\.0\.1 port \d+ broke: connection reset$/gm,
        ),
        10,
      );
      assert.equal(
        count(
          /^tcpforward: fatal: 127\.0\.0\.1: the client's connection broke: connection reset$/gm,
        ),
        10,
      );
    });
  } finally {
    service.close();
  }
});

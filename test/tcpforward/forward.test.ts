// tcpforward on loopback: the relay both ways with half-close, a PROXY v2 header that our
// tcpserver --proxy reads, a refused or broken service passed on to the client as a reset with
// one line, bad command lines refused before tcpserver serves, and the program on its own
// under djb's tcpserver.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import type { Server, Socket } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import { freePort, openFds } from "../helpers/interop.ts";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const env = { ...process.env, PATH: PATH_WITH_BIN };

/** A service on loopback that answers each connection with `answer(input)` once the client has
 * half-closed: only a relay that passes the half-close on gets an answer. */
async function halfCloseService(answer: (input: string, socket: Socket) => string) {
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    let input = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => (input += s));
    socket.on("end", () => socket.end(answer(input, socket)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { server, port: address.port };
}

/** A service on loopback that says a line, then resets the connection when the client
 * speaks. */
async function resettingService() {
  const server = createServer((socket) => {
    socket.write("partial answer\n");
    socket.once("data", () => socket.resetAndDestroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

for (const [name, tcpserver] of [
  ["our tcpserver (in-process)", ours("tcpserver")],
  ["djb's tcpserver (a process)", djb("tcpserver")],
] as const) {
  test(`${name}: both directions relayed byte for byte, the client's half-close passed on`, async () => {
    const service = await halfCloseService((input, socket) => {
      const from = `${socket.remoteAddress ?? ""}`;
      return `${input.length} bytes, sum ${[...input].reduce((a, c) => a + c.charCodeAt(0), 0)} from ${from}\n`;
    });
    const server = await startServer(
      tcpserver,
      ["-RHl0", "127.0.0.1", "0", ours("tcpforward"), "127.0.0.1", String(service.port)],
      { env },
    );
    try {
      const input = Buffer.alloc(300_000, "abcdefghij").toString("latin1");
      const sum = [...input].reduce((a, c) => a + c.charCodeAt(0), 0);
      assert.equal(await talk(server.port, input), `300000 bytes, sum ${sum} from 127.0.0.1\n`);
    } finally {
      await server.stop();
      service.server.close();
    }
  });
}

test("both directions full at once: 24 MiB each way through an echo service whose client reads only after writing it all", async () => {
  // More than the relay's pipes (1 MiB each) and the sockets' buffers hold: each direction
  // waits for its writer, in both at once, and the echo comes back whole and in order.
  const service = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  const port = (service.address() as { port: number }).port;
  const server = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tcpforward", "127.0.0.1", String(port)],
    { env },
  );
  try {
    const sent = createHash("sha256");
    const got = createHash("sha256");
    let bytes = 0;
    const client = connect(server.port, "127.0.0.1");
    await once(client, "connect");
    for (let i = 0; i < 24; i++) {
      const chunk = randomBytes(1 << 20);
      sent.update(chunk);
      client.write(chunk);
    }
    client.end();
    // Nothing is read until every write has been queued: both directions fill up meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
    for await (const chunk of client) {
      got.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    assert.equal(bytes, 24 << 20);
    assert.equal(got.digest("hex"), sent.digest("hex"));
  } finally {
    await server.stop();
    service.close();
  }
});

test("a service on a UNIX socket: both directions byte for byte, the half-close passed on, in-process and under djb's tcpserver; a socket that is not there: a reset and one line", async () => {
  const dir = scratchDir("forward");
  const path = join(dir, "service.sock");
  const service: Server = createServer({ allowHalfOpen: true }, (socket) => {
    let input = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => (input += s));
    socket.on("end", () => socket.end(`${input.length} bytes, last ${input.slice(-3)}\n`));
  });
  await new Promise<void>((resolve) => service.listen(path, resolve));
  try {
    for (const tcpserver of [ours("tcpserver"), djb("tcpserver")]) {
      const server = await startServer(
        tcpserver,
        ["-RHl0", "127.0.0.1", "0", ours("tcpforward"), path],
        { env },
      );
      try {
        const input = Buffer.alloc(200_000, "0123456789").toString("latin1");
        assert.equal(await talk(server.port, input), "200000 bytes, last 789\n");
      } finally {
        await server.stop();
      }
    }
    const missing = join(dir, "nothing.sock");
    const server = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tcpforward", missing],
      { env },
    );
    try {
      await assert.rejects(
        talk(server.port, "hello", "127.0.0.1", { halfClose: false }),
        /ECONNRESET/,
      );
      await server.waitForLog(
        new RegExp(
          `^tcpforward: fatal: 127\\.0\\.0\\.1: unable to connect to ${missing.replace(/\./g, "\\.")}: file does not exist$`,
        ),
      );
    } finally {
      await server.stop();
    }
  } finally {
    service.close();
  }
});

test("--proxy: the service's tcpserver --proxy learns the client's address and the one it asked for", async () => {
  const reader = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "--proxy",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      'echo "$TCPREMOTEIP $TCPLOCALIP:$TCPLOCALPORT"',
    ],
    { env },
  );
  const server = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.2", "0", "tcpforward", "--proxy", "127.0.0.1", String(reader.port)],
    { env },
  );
  try {
    const answer = await talk(server.port, "", "127.0.0.2", { localAddress: "127.0.0.3" });
    assert.equal(answer, `127.0.0.3 127.0.0.2:${server.port}\n`);
  } finally {
    await server.stop();
    await reader.stop();
  }
});

test("a refused service: the client's connection is reset, one line names the cause, status 111", async () => {
  const closed = await freePort();
  const server = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "tcpforward", "127.0.0.1", String(closed)],
    { env },
  );
  try {
    await assert.rejects(talk(server.port, "hello"), /ECONNRESET/);
    await server.waitForLog(
      new RegExp(
        `^tcpforward: fatal: 127\\.0\\.0\\.1: unable to connect to 127\\.0\\.0\\.1 port ${closed}: connection refused$`,
      ),
    );
    await server.waitForLog(/^tcpserver: end \d+ status 28416$/);
  } finally {
    await server.stop();
  }
});

test("a service that resets mid-session: the client is reset too, not ended as if all were well", async () => {
  const { server: service, port } = await resettingService();
  const server = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "tcpforward", "127.0.0.1", String(port)],
    { env },
  );
  try {
    await assert.rejects(
      talk(server.port, "go on", "127.0.0.1", { halfClose: false }),
      /ECONNRESET/,
    );
    await server.waitForLog(
      new RegExp(
        `^tcpforward: fatal: 127\\.0\\.0\\.1: the connection to 127\\.0\\.0\\.1 port ${port} broke: connection reset$`,
      ),
    );
  } finally {
    await server.stop();
    service.close();
  }
});

test("a bad command line stops tcpserver at its start, djb's usage exit 100", async () => {
  for (const [args, line] of [
    [
      ["127.0.0.1"],
      /^tcpforward: give a host and a port, a UNIX socket's path, or neither, not '127\.0\.0\.1'$/m,
    ],
    [["--mark", "2", "/run/x.sock"], /^tcpforward: --mark is for TCP, not a UNIX socket$/m],
    [
      ["--transparent", "/run/x.sock"],
      /^tcpforward: --transparent is for TCP, not a UNIX socket$/m,
    ],
    [["--mark", "eleven"], /^tcpforward: --mark needs a number up to 0xffffffff, not 'eleven'$/m],
    [["--transparent", "-i", "127.0.0.1"], /^tcpforward: --transparent and -i both choose/m],
    [
      ["--source-ports", "20000-20001", "127.0.0.1", "25"],
      /^tcpforward: --source-ports is for --transparent: without it the kernel picks the port$/m,
    ],
    [
      ["-i", "127.0.0.1", "--source-ports", "20000-20001"],
      /^tcpforward: --source-ports is for --transparent: without it the kernel picks the port$/m,
    ],
    [["-t", "5", "/run/x.sock"], /^tcpforward: -t is for TCP, not a UNIX socket$/m],
    [["127.0.0.1", "0"], /^tcpforward: port 0 is no service's port$/m],
  ] as const) {
    const r = await run(ours("tcpserver"), ["127.0.0.1", "0", "tcpforward", ...args], { env });
    assert.equal(r.code, 100, r.stderr);
    assert.match(r.stderr, line);
  }
});

test("on its own without a destination: one line, exit 100; --help names the page", async () => {
  const r = await run(ours("tcpforward"), [], {
    env: { PATH: env.PATH ?? "" },
    input: "",
  });
  assert.equal(r.code, 100);
  assert.equal(
    r.stderr,
    "tcpforward: fatal: no destination: give a host and a port, or run under tcpserver (TCPLOCALIP, TCPLOCALPORT)\n",
  );
  const help = await run(ours("tcpforward"), ["--help"], { env });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^tcpforward: connects the client to a TCP service/);
});

test("an empty host: the name that cannot be looked up, in one line of ours, exit 111", async () => {
  // Found by the random command lines (tcpforward "" mysql): Node's lookup took "" and printed
  // its own DeprecationWarning (DEP0118, "(node:PID) ...") after our line.
  for (const port of ["mysql", "25"]) {
    const r = await run(ours("tcpforward"), ["", port], {
      env: { PATH: env.PATH ?? "" },
      input: "",
    });
    assert.deepEqual(
      [r.code, r.stderr],
      [111, "tcpforward: fatal: unable to figure out IP address for \n"],
    );
  }
});

test("no interception and no destination: the connection back to tcpserver itself is seen as a loop, refused at once", async () => {
  const server = await startServer(ours("tcpserver"), ["-vRHl0", "127.0.0.1", "0", "tcpforward"], {
    env,
  });
  try {
    for (let i = 0; i < 3; i++) await assert.rejects(talk(server.port, "hello"), /ECONNRESET/);
    await server.waitForLog(
      /^tcpforward: fatal: 127\.0\.0\.1: a loop: this connection comes from tcpforward itself \(run tcpserver --transparent or --redirected, or give a host and a port\)$/,
      3,
    );
    // Every slot is free again: nothing went on opening connections.
    await server.waitForLog(/^tcpserver: status: 0\/40$/, 4);
  } finally {
    await server.stop();
  }
});

// ---- after tlsd: the client is a TLS session, which has no reset of its own ------------------

/** `tcpserver tlsd tcpforward ...` with a test certificate for localhost. */
async function tlsFront(to: readonly string[]) {
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
  const server = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "tlsd", "tcpforward", ...to],
    { env: { ...env, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  return { server, ca: pki.ca.cert };
}

/** A TLS client that sends `line`, then resets its TCP connection once `resetWhen` holds for
 * what it read (or never), and resolves with what it read and how its session ended. */
function tlsClient(port: number, ca: string, line: string, resetWhen?: (got: string) => boolean) {
  return new Promise<{ got: string; ending: string }>((resolve) => {
    const tcp = connect(port, "127.0.0.1");
    const c = tlsConnect({ socket: tcp, servername: "localhost", ca: [readFileSync(ca)] });
    let got = "";
    let ending = "close";
    c.setEncoding("latin1");
    c.on("data", (d: string) => {
      got += d;
      if (resetWhen?.(got)) tcp.resetAndDestroy();
    });
    c.once("secureConnect", () => c.write(line));
    c.once("error", (error: NodeJS.ErrnoException) => (ending = error.code ?? error.message));
    c.once("close", () => resolve({ got, ending }));
  });
}

test("after tlsd, a refused service: the TLS session ends at once, one line names the cause, status 111, and tcpserver serves on", async () => {
  const closed = await freePort();
  const { server, ca } = await tlsFront(["127.0.0.1", String(closed)]);
  try {
    for (let i = 0; i < 2; i++) {
      const { got } = await tlsClient(server.port, ca, "hello\n");
      assert.equal(got, "");
    }
    await server.waitForLog(
      new RegExp(
        `^tcpforward: fatal: 127\\.0\\.0\\.1: unable to connect to 127\\.0\\.0\\.1 port ${closed}: connection refused$`,
      ),
    );
    await waitFor(() =>
      server.log().match(/^tcpserver: end \d+ status 28416$/gm)?.length === 2 ? true : undefined,
    );
    assert.doesNotMatch(server.log(), /internal error|ERR_INVALID_HANDLE_TYPE/);
  } finally {
    await server.stop();
  }
});

test("after tlsd, a service that resets mid-session: the client gets what came before, then a reset of its connection, as without TLS (it was an end without close_notify); one line, status 111; tcpserver serves on (it used to die of it)", async () => {
  const { server: service, port } = await resettingService();
  const { server, ca } = await tlsFront(["127.0.0.1", String(port)]);
  try {
    for (let i = 0; i < 2; i++) {
      const { got, ending } = await tlsClient(server.port, ca, "go on\n");
      assert.deepEqual([got, ending], ["partial answer\n", "ECONNRESET"]);
    }
    await waitFor(() =>
      server
        .log()
        .match(
          /^tcpforward: fatal: 127\.0\.0\.1: the connection to 127\.0\.0\.1 port \d+ broke: connection reset$/gm,
        )?.length === 2
        ? true
        : undefined,
    );
    // tcpserver's end line may come a poll after tcpforward's (the native engine's end).
    await waitFor(() =>
      server.log().match(/^tcpserver: end \d+ status \d+$/gm)?.length === 2 ? true : undefined,
    );
    assert.equal(server.log().match(/^tcpserver: end \d+ status 28416$/gm)?.length, 2);
  } finally {
    await server.stop();
    service.close();
  }
});

test("after tlsd, a client that resets mid-session, the service on a UNIX socket: the service's connection ends, one line, and tcpserver serves on (it used to die of it)", async () => {
  const dir = scratchDir("forward");
  const path = join(dir, "service.sock");
  const ends: string[] = [];
  const service = createServer((socket) => {
    socket.write("hello from the service\n");
    socket.resume();
    socket.on("error", (error: NodeJS.ErrnoException) => ends.push(error.code ?? "error"));
    socket.on("close", () => ends.push("close"));
  });
  await new Promise<void>((resolve) => service.listen(path, resolve));
  const { server, ca } = await tlsFront([path]);
  try {
    for (let i = 0; i < 2; i++) {
      const { got, ending } = await tlsClient(server.port, ca, "hi\n", (g) => g.includes("\n"));
      assert.deepEqual([got, ending], ["hello from the service\n", "close"]);
    }
    await waitFor(() => (ends.filter((e) => e === "close").length === 2 ? true : undefined));
    await waitFor(() =>
      server
        .log()
        .match(
          /^tcpforward: fatal: 127\.0\.0\.1: the client's connection broke: connection reset$/gm,
        )?.length === 2
        ? true
        : undefined,
    );
  } finally {
    await server.stop();
    service.close();
  }
});

test("after tlsd, clients that go away while the service still answers: every connection to the service is closed, no fd left (a reset once the relay had half-closed it left its fd open)", async () => {
  const service = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => socket.write(d));
    socket.on("end", () => socket.end());
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  const port = (service.address() as { port: number }).port;
  const { server, ca } = await tlsFront(["127.0.0.1", String(port)]);
  const pid = server.child.pid as number;
  const sockets = () => [...openFds(pid).values()].filter((t) => t.startsWith("socket:")).length;
  /** Its line, then gone at once: the service's answer meets a closed client. */
  const goneAtOnce = () =>
    new Promise<void>((resolve) => {
      const tcp = connect(server.port, "127.0.0.1");
      tcp.on("error", () => {});
      tcp.once("close", () => resolve());
      const tls = tlsConnect({ socket: tcp, servername: "localhost", ca: [readFileSync(ca)] });
      tls.on("error", () => {});
      tls.resume();
      tls.once("secureConnect", () => {
        tls.write("hello\n");
        setImmediate(() => tcp.destroy());
      });
    });
  try {
    const settled = async (ends: number) => {
      await server.waitForLog(/^tcpserver: end /, ends, 20_000);
      await waitFor(() => (/tcpserver: status: 0\/\d+\n$/.test(server.log()) ? true : undefined));
    };
    // A first pair makes what lasts (the relay's pools, the TLS context): counted from there.
    await Promise.all([goneAtOnce(), goneAtOnce()]);
    await settled(2);
    const before = sockets();
    const count = 60;
    for (let i = 0; i < count; i += 2) await Promise.all([goneAtOnce(), goneAtOnce()]);
    await settled(2 + count);
    assert.equal(
      sockets(),
      before,
      `sockets of tcpserver: ${before} before, after ${count} clients`,
    );
  } finally {
    await server.stop();
    service.close();
  }
});

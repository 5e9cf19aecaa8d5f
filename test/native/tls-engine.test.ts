// The native TLS engine (src/native/tls-engine.c) driven from a small harness, with real
// clients: openssl s_client and node:tls complete TLS 1.3 and 1.2 handshakes; SNI picks the
// context; TLS 1.1 is refused; 64 MiB each way through the relay with a slow program side;
// half-close both ways; a garbage ClientHello ends with a cause and leaves no fd behind.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync, readdirSync } from "node:fs";
import { Socket, connect } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import type { ConnectionOptions, TLSSocket } from "node:tls";
import { GROUPS, TLS12_CIPHERS } from "../../src/tls/protocol.ts";
import { ACCEPT_NODELAY, builtFile, native } from "../../src/ucspi/native.ts";
import type { TlsContext, TlsFacts, TlsSession } from "../../src/ucspi/native.ts";
import { makePki } from "../helpers/certs.ts";
import type { Pair } from "../helpers/certs.ts";

const n = native();
const pki = makePki();
const pairA = pki.server("a", ["a.test", "localhost"]);
const pairB = pki.server("b", ["b.test"]);

function context(pair: Pair, alpn?: string[]): TlsContext {
  return n.tlsContext(readFileSync(pair.cert), readFileSync(pair.key), {
    ciphers: TLS12_CIPHERS,
    groups: GROUPS,
    ...(alpn ? { alpn } : {}),
  });
}

/** What the harness saw of one session. */
interface Served {
  facts?: TlsFacts;
  session: TlsSession;
  /** The cause onEnd gave, once the session's fds and the program's socket are closed. */
  ended: Promise<string | undefined>;
  /** The same at once: the program's socket may still be open. */
  cause: Promise<string | undefined>;
}

interface Options {
  onHello?: (name: string | undefined) => TlsContext | null | undefined;
  /** The program: gets its end of the socketpair as a stream (half-open allowed). */
  program?: (plain: Socket, facts: TlsFacts) => void;
  closeNotify?: boolean;
  /** Called with the session at once (before the handshake): tlsClose from a timer. */
  started?: (session: TlsSession) => void;
}

/** A listening socket whose connections the engine serves with `context`. */
function serve(ctx: TlsContext, options: Options = {}) {
  const listenFd = n.listen("127.0.0.1", 0, 64, false);
  const [, port] = n.localAddress(listenFd);
  const sessions: Served[] = [];
  const waiting: ((s: Served) => void)[] = [];
  const acceptor = n.accept(listenFd, ACCEPT_NODELAY, (fd) => {
    if (fd < 0) return;
    let ours = -1;
    let endSession: (cause: string | undefined) => void = () => {};
    let programClosed: Promise<unknown> = Promise.resolve();
    const served = {} as Served;
    served.cause = new Promise<string | undefined>((resolve) => (endSession = resolve));
    served.ended = served.cause.then(async (cause) => {
      await programClosed;
      return cause;
    });
    served.session = n.tlsServe(fd, ctx, {
      ...(options.onHello ? { onHello: options.onHello } : {}),
      ...(options.closeNotify !== undefined ? { closeNotify: options.closeNotify } : {}),
      onHandshake: (facts) => {
        served.facts = facts;
        const [a, b] = n.socketPair();
        ours = a;
        n.tlsRelay(served.session, a);
        const plain = new Socket({ fd: b, readable: true, writable: true, allowHalfOpen: true });
        plain.on("error", () => {});
        programClosed = once(plain, "close");
        (options.program ?? ((s) => s.end("hello\n")))(plain, facts);
      },
      onEnd: (cause) => {
        n.close(fd);
        if (ours >= 0) n.close(ours);
        endSession(cause);
      },
    });
    options.started?.(served.session);
    sessions.push(served);
    waiting.shift()?.(served);
  });
  return {
    port,
    /** The next session, or the one already there. */
    session: (k: number) =>
      sessions[k]
        ? Promise.resolve(sessions[k])
        : new Promise<Served>((resolve) => waiting.push(resolve)),
    close: () => {
      acceptor.close();
      n.close(listenFd);
    },
  };
}

/** openssl s_client to the port: its stdout, and its exit code. */
async function sClient(port: number, args: string[]): Promise<[string, number]> {
  const child = spawn(
    "openssl",
    ["s_client", "-connect", `127.0.0.1:${port}`, "-quiet", "-CAfile", pki.ca.cert, ...args],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  child.stdin.end();
  let out = "";
  child.stdout.setEncoding("latin1").on("data", (s: string) => (out += s));
  child.stderr.resume();
  const [code] = (await once(child, "exit")) as [number];
  return [out, code];
}

function nodeClient(port: number, opts: ConnectionOptions = {}): TLSSocket {
  return tlsConnect({
    host: "127.0.0.1",
    port,
    ca: readFileSync(pki.ca.cert),
    servername: "a.test",
    ...opts,
  });
}

async function readAll(socket: TLSSocket | Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  await once(socket, "end");
  return Buffer.concat(chunks);
}

const openFdCount = (): number => readdirSync("/proc/self/fd").length;

test("openssl s_client completes TLS 1.3 and TLS 1.2 handshakes and reads the program", async () => {
  const server = serve(context(pairA));
  try {
    for (const [k, version] of [
      [0, "1_3"],
      [1, "1_2"],
    ] as const) {
      const [out, code] = await sClient(server.port, [
        `-tls${version}`,
        "-servername",
        "a.test",
        "-verify_return_error",
      ]);
      assert.equal(out, "hello\n");
      assert.equal(code, 0);
      const served = await server.session(k);
      assert.equal(await served.ended, undefined);
      assert.equal(served.facts?.version, `TLSv${version.replace("_", ".")}`);
      assert.equal(served.facts?.servername, "a.test");
      assert.match(served.facts?.cipher ?? "", version === "1_3" ? /^TLS_/ : /^ECDHE-ECDSA-/);
    }
  } finally {
    server.close();
  }
});

test("node:tls completes TLS 1.3 and TLS 1.2 handshakes, with ALPN", async () => {
  const server = serve(context(pairA, ["h2", "http/1.1"]));
  try {
    for (const [k, version] of [
      [0, "TLSv1.3"],
      [1, "TLSv1.2"],
    ] as const) {
      const client = nodeClient(server.port, {
        minVersion: version,
        maxVersion: version,
        ALPNProtocols: ["http/1.1", "h2"],
      });
      assert.equal((await readAll(client)).toString(), "hello\n");
      assert.equal(client.getProtocol(), version);
      assert.equal(client.alpnProtocol, "h2");
      const served = await server.session(k);
      assert.equal(await served.ended, undefined);
      assert.equal(served.facts?.version, version);
      assert.equal(served.facts?.alpn, "h2");
      assert.equal(served.facts?.peerCertificateDer, undefined);
    }
  } finally {
    server.close();
  }
});

test("SNI: onHello picks the context by name, keeps the default, or refuses with a cause", async () => {
  const ctxB = context(pairB);
  const names: (string | undefined)[] = [];
  const server = serve(context(pairA), {
    onHello: (name) => {
      names.push(name);
      if (name === "b.test") return ctxB;
      if (name === "unknown.test") return null;
      if (name === "throws.test") throw new Error("refused by policy");
      return undefined;
    },
  });
  try {
    for (const [k, name, cn] of [
      [0, "b.test", "b.test"],
      [1, "a.test", "a.test"],
    ] as const) {
      const client = nodeClient(server.port, { servername: name });
      assert.equal((await readAll(client)).toString(), "hello\n");
      assert.equal(client.getPeerCertificate().subject.CN, cn);
      assert.equal((await server.session(k)).facts?.servername, name);
    }
    for (const [k, name, cause] of [
      [2, "unknown.test", "TLS handshake failed: no certificate for unknown.test"],
      [3, "throws.test", "TLS handshake failed: Error: refused by policy"],
    ] as const) {
      const client = nodeClient(server.port, { servername: name });
      const [error] = (await once(client, "error")) as [Error & { code?: string }];
      assert.equal(error.code, "ERR_SSL_TLSV1_UNRECOGNIZED_NAME");
      assert.equal(await (await server.session(k)).ended, cause);
    }
    assert.deepEqual(names, ["b.test", "a.test", "unknown.test", "throws.test"]);
  } finally {
    server.close();
  }
});

test("TLS 1.1 is refused with a cause", async () => {
  const server = serve(context(pairA));
  try {
    const [out, code] = await sClient(server.port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert.equal(out, "");
    assert.notEqual(code, 0);
    const served = await server.session(0);
    assert.equal(await served.ended, "TLS handshake failed: unsupported protocol");
    assert.equal(served.facts, undefined);
  } finally {
    server.close();
  }
});

/** 64 MiB each way: the client sends its bytes and reads all, the program hashes what it reads
 * slowly (every chunk waits for a timer) and sends its own; both arrive whole. With pings, that
 * many exchanges come first, one by one, each after 200 ms in which nothing moves; the program's
 * 64 MiB then goes when the client's first bytes come. */
async function bothWays(pings: number): Promise<void> {
  const size = 64 << 20;
  const up = randomBytes(size);
  const down = randomBytes(size);
  let programGot: Promise<string> | undefined;
  const server = serve(context(pairA), {
    program: (plain) => {
      const hash = createHash("sha256");
      const bulk = (chunk: Buffer) => {
        hash.update(chunk);
        plain.pause();
        setTimeout(() => plain.resume(), 1);
      };
      const start = () => {
        plain.on("data", bulk);
        plain.end(down);
      };
      let answered = 0;
      const ping = (chunk: Buffer) => {
        assert.equal(chunk.toString(), "ping");
        plain.write("pong");
        if (++answered < pings) return;
        plain.off("data", ping);
        plain.once("data", (first: Buffer) => {
          start();
          bulk(first);
        });
      };
      if (pings > 0) plain.on("data", ping);
      else start();
      programGot = once(plain, "end").then(() => hash.digest("hex"));
    },
  });
  try {
    const client = nodeClient(server.port);
    await once(client, "secureConnect");
    for (let i = 0; i < pings; i++) {
      await new Promise((r) => setTimeout(r, 200));
      client.write("ping");
      const [pong] = (await once(client, "data")) as [Buffer];
      assert.equal(pong.toString(), "pong");
    }
    if (pings > 0) await new Promise((r) => setTimeout(r, 200));
    client.end(up);
    const got = await readAll(client);
    const served = await server.session(0);
    assert.equal(await served.ended, undefined);
    assert.equal(sha256(got), sha256(down));
    assert.equal(await programGot, sha256(up));
  } finally {
    server.close();
  }
}

test("64 MiB each way through the relay, the program side reading slowly", () => bothWays(0));

// Idle, nothing is in the relay's buffers, and it frees them: they come back when bytes do.
test("a connection idle between exchanges relays 64 MiB each way when it is busy again", () =>
  bothWays(3));

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

test("half-close: the client's close_notify is the program's EOF, and its answer still goes out", async () => {
  for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
    const server = serve(context(pairA), {
      program: (plain) => {
        void readAll(plain).then((input) => plain.end(`got ${input.toString()}`));
      },
    });
    try {
      const client = nodeClient(server.port, { minVersion: version, maxVersion: version });
      await once(client, "secureConnect");
      client.end("question");
      assert.equal((await readAll(client)).toString(), "got question", version);
      assert.equal(await (await server.session(0)).ended, undefined);
    } finally {
      server.close();
    }
  }
});

test("the program's end is a close_notify then FIN (closeNotify), or a bare FIN", async () => {
  for (const closeNotify of [true, false]) {
    const server = serve(context(pairA), { closeNotify });
    try {
      const [out, code] = await sClient(server.port, ["-tls1_3"]);
      assert.equal(out, "hello\n");
      const cause = await (await server.session(0)).ended;
      if (closeNotify) {
        assert.equal(code, 0);
        assert.equal(cause, undefined);
      } else {
        // OpenSSL 3's s_client takes an end without close_notify for a truncation: it fails,
        // with an alert that ends the session.
        assert.notEqual(code, 0);
        assert.match(cause ?? "", /^TLS: tlsv1 alert /);
      }
    } finally {
      server.close();
    }
  }
});

test("tlsClose after the plaintext side: what the program wrote before still goes out, then the end without close_notify", async () => {
  let session: TlsSession | undefined;
  const server = serve(context(pairA), {
    started: (s) => (session = s),
    // The stage behind lost its peer (a reset) right after its last words: both at once, in
    // the same tick, so the engine has not read the words yet when it is told.
    program: (plain) => {
      plain.write("last words\n");
      n.tlsClose(session as TlsSession, "reset", true);
      plain.destroy();
    },
  });
  try {
    const [out, code] = await sClient(server.port, ["-tls1_3"]);
    assert.equal(out, "last words\n");
    // No close_notify: OpenSSL 3's s_client takes the end for a truncation.
    assert.notEqual(code, 0);
    assert.equal(await (await server.session(0)).ended, "reset");
  } finally {
    server.close();
  }
});

test("a garbage ClientHello ends the session with a cause, and no fd is left open", async () => {
  const server = serve(context(pairA));
  try {
    // One whole session first: the engine's epoll set and the like are open from then on.
    const first = nodeClient(server.port);
    await readAll(first);
    await (
      await server.session(0)
    ).ended;
    if (!first.closed) await once(first, "close");
    const before = openFdCount();
    const garbage = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]), randomBytes(64)]);
    const client = connect(server.port, "127.0.0.1", () => client.end(garbage));
    client.on("error", () => {});
    client.resume();
    const cause = await (await server.session(1)).ended;
    assert.match(cause ?? "", /^TLS handshake failed: \S/);
    await once(client, "close");
    assert.equal(openFdCount(), before);
  } finally {
    server.close();
  }
});

test("tlsClose ends a handshake that does not come (a timeout run by a timer)", async () => {
  let timer: NodeJS.Timeout | undefined;
  const server = serve(context(pairA), {
    started: (session) => (timer = setTimeout(() => n.tlsClose(session, "timed out"), 50)),
  });
  try {
    const client = connect(server.port, "127.0.0.1");
    client.on("error", () => {});
    client.resume();
    assert.equal(await (await server.session(0)).ended, "timed out");
    await once(client, "close");
  } finally {
    clearTimeout(timer);
    server.close();
  }
});

/** python3's ssl client: reads the program's "ready", sends until it blocks (`flood`), then
 * closes without unwrap and with SO_LINGER 0, so that the socket sends a reset. */
async function resettingClient(port: number, flood: boolean): Promise<void> {
  const script = [
    "import socket, ssl, struct, sys",
    "ctx = ssl.create_default_context(cafile=sys.argv[2])",
    "raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
    "s = ctx.wrap_socket(raw, server_hostname='a.test')",
    "assert s.recv(6) == b'ready\\n'",
    "s.settimeout(1)",
    "try:",
    "    while sys.argv[3] == 'flood': s.send(b'x' * 65536)",
    "except TimeoutError: pass",
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))",
    "s.close()",
  ].join("\n");
  const args = ["-c", script, String(port), pki.ca.cert, flood ? "flood" : "no"];
  const child = spawn("python3", args, { stdio: ["ignore", "inherit", "inherit"] });
  const [code] = (await once(child, "exit")) as [number];
  assert.equal(code, 0);
}

test("a reset from the client ends the session at once with a cause", async () => {
  const server = serve(context(pairA), {
    // Says it is there, then waits: only the reset can end the session.
    program: (plain) => {
      plain.on("end", () => plain.destroy()).resume();
      plain.write("ready\n");
    },
  });
  try {
    await resettingClient(server.port, false);
    assert.equal(await (await server.session(0)).ended, "client: Connection reset by peer");
  } finally {
    server.close();
  }
});

test("a reset while the program reads nothing ends the session at once", async () => {
  let program: Socket | undefined;
  const server = serve(context(pairA), {
    program: (plain) => {
      program = plain.pause();
      plain.write("ready\n");
    },
  });
  try {
    // The client sends until the engine has stopped reading it (its buffer for the program is
    // full, the socket buffers too), then resets: the engine is not reading, and learns it
    // from the error alone.
    await resettingClient(server.port, true);
    const served = await server.session(0);
    assert.equal(await served.cause, "client: Connection reset by peer");
    program?.destroy();
    await served.ended;
  } finally {
    server.close();
  }
});

test("tlsContext refuses a bad certificate, a bad key and a key that does not match", () => {
  const key = readFileSync(pairA.key);
  const cert = readFileSync(pairA.cert);
  assert.throws(() => n.tlsContext(Buffer.from("junk"), key, {}), {
    message: /^cannot use the certificate \(PEM\): /,
  });
  assert.throws(() => n.tlsContext(cert, Buffer.from("junk"), {}), {
    message: /^cannot use the private key \(PEM\): /,
  });
  assert.throws(() => n.tlsContext(cert, readFileSync(pairB.key), {}), {
    message: /private key does not match the certificate|key values mismatch/,
  });
});

test("a throw in onHandshake is an uncaught exception, and the session still ends", async () => {
  // In a process of its own: the test runner takes any uncaught exception for a failure.
  const script = `
    const n = require(process.argv[1]);
    const fs = require("node:fs");
    const tls = require("node:tls");
    const ctx = n.tlsContext(fs.readFileSync(process.argv[2]), fs.readFileSync(process.argv[3]), {});
    const listenFd = n.listen("127.0.0.1", 0, 8, false);
    process.on("uncaughtException", (e) => console.log("uncaught", e.message));
    const acceptor = n.accept(listenFd, 0, (fd) => {
      const session = n.tlsServe(fd, ctx, {
        onHandshake: () => {
          setImmediate(() => n.tlsClose(session, "closed after the throw"));
          throw new Error("boom");
        },
        onEnd: (cause) => {
          console.log("end", cause);
          n.close(fd);
          acceptor.close();
          n.close(listenFd);
        },
      });
    });
    const c = tls.connect({ port: n.localAddress(listenFd)[1], host: "127.0.0.1", ca: fs.readFileSync(process.argv[4]), servername: "a.test" });
    c.on("error", () => {}).on("close", () => console.log("client closed")).resume();
  `;
  const child = spawn(
    process.execPath,
    ["-e", script, builtFile("ucspi_native.node"), pairA.cert, pairA.key, pki.ca.cert],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  const [code] = (await once(child, "exit")) as [number];
  assert.equal(out, "uncaught boom\nend closed after the throw\nclient closed\n");
  assert.equal(code, 0);
});

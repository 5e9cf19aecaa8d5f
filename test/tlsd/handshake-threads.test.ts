// The native engine's handshake threads (src/native/offload.c): a client alone has its handshake
// on the event loop; while another client is in its handshake, a step goes to a thread of its
// own. A step taken there ends as one on the loop would: the reply, the hybrid post-quantum key
// exchange, the failure's line and status (OpenSSL's reason read on the thread), and
// resumption (the ticket keys read there).
// A certificate chosen by name: the policy is asked on the loop, the rest goes to a thread; a
// server name OpenSSL must judge (a zero byte in it) is left to OpenSSL, as on the loop. Under
// tcpserver --workers the processes split the cores, and a process's share may leave no thread.
// -K's bound, reached while a step is on a thread, ends the handshake once the step is back.
// Where the steps ran is tcpserver --metrics' tlsd_handshake_steps_total.
import assert from "node:assert/strict";
import { connect, createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { scrape, value } from "../helpers/scrape.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { sClientSession, sClientVerified, tlsExchange } from "../helpers/tls-client.ts";

const pki = makePki();
const cert = pki.server("localhost", ["localhost"]);
const dir = scratchDir("handshake-threads");
const b = pki.server("b", ["b.test"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: cert.cert, KEYFILE: cert.key };
const byName = { ...env, "CERTFILE:b.test": b.cert, "KEYFILE:b.test": b.key };
const REPLY = ["echo", "hello"];
const STATUS_98 = 98 << 8;
/** The engine keeps no thread on a single core: every step is on the loop there. */
const THREADS = availableParallelism() > 1;
/** Under --workers 2 each process takes half the cores, less its loop's. */
const THREADS_OF_TWO = Math.floor(availableParallelism() / 2) - 1 > 0;

interface Steps {
  loop: number;
  thread: number;
}

/** tlsd_handshake_steps_total, by where the steps ran. */
async function steps(metricsPort: number): Promise<Steps> {
  const { body } = await scrape({ port: metricsPort });
  const on = (where: string) => value(body, "tlsd_handshake_steps_total", { on: where }) ?? NaN;
  return { loop: on("loop"), thread: on("thread") };
}

/** Polls the scrape until `check` holds of it (a bounded wait). */
async function stepsWhen(metricsPort: number, check: (s: Steps) => boolean): Promise<Steps> {
  for (let tries = 0; tries < 500; tries++) {
    const s = await steps(metricsPort);
    if (check(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`tlsd_handshake_steps_total: ${JSON.stringify(await steps(metricsPort))}`);
}

/** A client that stays in its handshake: a TLS record's header and no more of it. */
async function handshakeHeld(port: number): Promise<Socket> {
  const holder = connect(port, "127.0.0.1");
  holder.on("error", () => {});
  await new Promise((resolve) => holder.once("connect", resolve));
  holder.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
  return holder;
}

/** A client in its handshake for as long as the test needs, once the engine has read its
 * header (a step on the loop, the only handshake then). */
async function holdHandshake(s: RunningServer, metricsPort: number): Promise<Socket> {
  const before = await steps(metricsPort);
  const holder = await handshakeHeld(s.port);
  await stepsWhen(metricsPort, (now) => now.loop > before.loop);
  return holder;
}

test("handshakes on the loop alone, on a thread beside another client's: the same replies, failure lines and resumption", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0"],
      ...["tlsd", "--engine", "native", ...REPLY],
    ],
    { env },
  );
  let ends = 0;
  const ended = () => s.waitForLog(/^tcpserver: end /, ++ends);
  try {
    // One client at a time: every step on the loop.
    for (let i = 0; i < 3; i++) {
      assert.equal(await tlsExchange(s.port, pki.ca.cert), "hello\n");
      await ended();
    }
    const alone = await steps(metricsPort);
    assert.equal(alone.thread, 0, JSON.stringify(alone));
    assert.ok(alone.loop >= 3, JSON.stringify(alone)); // one or more a handshake

    // A client held in its handshake: from now on the others' steps go to a thread.
    const holder = await holdHandshake(s, metricsPort);
    const held = await steps(metricsPort);
    for (let i = 0; i < 3; i++) {
      assert.equal(await tlsExchange(s.port, pki.ca.cert), "hello\n");
      await ended();
    }
    // Post-quantum: the hybrid group's key exchange on the thread.
    const hybrid = async () =>
      value((await scrape({ port: metricsPort })).body, "tlsd_handshakes_total", {
        result: "ok",
        version: "TLSv1.3",
        group: "X25519MLKEM768",
        resumed: "false",
      }) ?? 0;
    const hybridBefore = await hybrid();
    const threadBefore = (await steps(metricsPort)).thread;
    const pq = await tlsExchange(s.port, pki.ca.cert, { ecdhCurve: "X25519MLKEM768" });
    assert.equal(pq, "hello\n");
    await ended();
    assert.equal(await hybrid(), hybridBefore + 1);
    if (THREADS) assert.ok((await steps(metricsPort)).thread > threadBefore);
    // A TLS 1.1 client and an HTTP request: the failures read on the thread.
    await run("openssl", ["s_client", "-tls1_1", "-connect", `127.0.0.1:${s.port}`], {
      input: "",
    });
    await ended();
    await run("sh", [
      "-c",
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | python3 -c 'import socket,sys; c=socket.create_connection(("127.0.0.1", ${s.port})); c.sendall(sys.stdin.buffer.read()); c.recv(100)'`,
    ]);
    await ended();
    // Resumption, TLS 1.3 and 1.2: the ticket made on a thread, and opened on one.
    for (const version of ["-tls1_3", "-tls1_2"]) {
      const file = join(dir, `session${version}.pem`);
      const first = await sClientSession(s.port, pki.ca.cert, file, version, false);
      assert.match(first, /^New, TLSv1\.[23]/m, first);
      await ended();
      const again = await sClientSession(s.port, pki.ca.cert, file, version, true);
      assert.match(again, /^Reused, TLSv1\.[23]/m, again);
      await ended();
    }
    const after = await steps(metricsPort);
    if (THREADS) {
      assert.equal(after.loop, held.loop, JSON.stringify({ held, after }));
      // A step or more for each of the 4 + 4 handshakes that worked and the 2 that failed.
      assert.ok(after.thread >= 10, JSON.stringify({ held, after }));
    } else {
      assert.equal(after.thread, 0, JSON.stringify(after));
      assert.ok(after.loop >= held.loop + 10, JSON.stringify({ held, after }));
    }
    const fatal = s.log().match(/^tlsd: fatal: .*$/gm);
    assert.deepEqual(fatal, [
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: unsupported protocol",
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: http request",
    ]);
    assert.equal(s.log().match(new RegExp(`status ${STATUS_98}$`, "gm"))?.length, 2);

    // The held client leaves: its handshake fails as any other's.
    holder.destroy();
    await ended();
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: connection closed$/m,
      s.log(),
    );
  } finally {
    await s.stop();
  }
});

/** The first flight of node:tls's client asking for `name`: its ClientHello record. */
function capturedHello(name: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      let got = Buffer.alloc(0);
      socket.on("data", (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length < 5 || got.length < 5 + got.readUInt16BE(3)) return;
        resolve(got.subarray(0, 5 + got.readUInt16BE(3)));
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      const client = tlsConnect({ port, host: "127.0.0.1", servername: name });
      client.on("error", () => {});
      client.on("close", () => client.destroy());
    });
    server.on("error", reject);
  });
}

/** Sends `hello` and reads until the server closes. */
function sendHello(port: number, hello: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const c = connect(port, "127.0.0.1", () => c.write(hello));
    c.on("data", () => {});
    c.on("error", () => {});
    // Bounded: a server that never ends it fails the test's assertions, not the run's time.
    c.setTimeout(10_000, () => c.destroy());
    c.once("close", () => resolve());
  });
}

test("a certificate chosen by name: the SNI policy on the loop, the rest on a thread; a server name with a zero byte left to OpenSSL, as on the loop", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0"],
      ...["tlsd", "--engine", "native", "-k", "2", ...REPLY],
    ],
    { env: byName },
  );
  let ends = 0;
  const ended = () => s.waitForLog(/^tcpserver: end /, ++ends);
  // A name of the same length as "bad.test", with a zero byte in it (lengths stay right).
  const zeroed = await capturedHello("bad.test");
  const at = zeroed.indexOf("bad.test");
  assert.ok(at > 0);
  zeroed[at + 3] = 0;
  try {
    // Alone, on the loop: the zero byte refused by OpenSSL's parse.
    await sendHello(s.port, zeroed);
    await ended();
    const loopLine = s.log().match(/^tlsd: fatal: .*$/gm)?.[0];
    assert.ok(loopLine, s.log());

    const holder = await holdHandshake(s, metricsPort);
    const held = await steps(metricsPort);
    const r = await sClientVerified(s.port, "b.test", pki.ca.cert);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^hello$/m);
    await ended();
    const refused = await sClientVerified(s.port, "c.test", pki.ca.cert);
    assert.notEqual(refused.code, 0);
    await ended();
    await sendHello(s.port, zeroed);
    await ended();
    const after = await steps(metricsPort);
    if (THREADS) assert.ok(after.thread >= 1, JSON.stringify({ held, after }));
    else assert.equal(after.thread, 0, JSON.stringify(after));
    assert.deepEqual(s.log().match(/^tlsd: fatal: .*$/gm), [
      loopLine,
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: no certificate for c.test",
      loopLine,
    ]);
    holder.destroy();
    await ended();
  } finally {
    await s.stop();
  }
});

test("tcpserver --workers 2: each process takes half the cores for its handshake threads (none of its own on 2 cores)", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "--workers", "2", "--metrics", `127.0.0.1:${metricsPort}`],
      ...["127.0.0.1", "0", "tlsd", "--engine", "native", ...REPLY],
    ],
    { env },
  );
  let ends = 0;
  const ended = () => s.waitForLog(/^tcpserver: end /, ++ends);
  try {
    const holders: Socket[] = [];
    // A client held in its handshake in each process (the kernel spreads the connections).
    for (let i = 0; i < 8; i++) holders.push(await handshakeHeld(s.port));
    await stepsWhen(metricsPort, (now) => now.loop + now.thread >= 8);
    for (let i = 0; i < 6; i++) {
      assert.equal(await tlsExchange(s.port, pki.ca.cert), "hello\n");
      await ended();
    }
    const after = await steps(metricsPort);
    if (!THREADS_OF_TWO) assert.equal(after.thread, 0, JSON.stringify(after));
    assert.ok(after.loop + after.thread >= 8 + 6, JSON.stringify(after));
    for (const holder of holders) holder.destroy();
  } finally {
    await s.stop();
  }
});

test("-K ends a handshake whose step is on a thread once the step is back: the timeout's line and status, nothing left behind", async () => {
  // An RSA-4096 key: the ClientHello's step signs for about 4 ms, twice -K's bound, so the
  // timers of clients that arrive together fire while their steps are on the thread. The
  // clients send their ClientHello and never their Finished: -K ends every one.
  const key = join(dir, "rsa4096.key");
  const crt = join(dir, "rsa4096.crt");
  await run("openssl", [
    ...["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout", key, "-out", crt],
    ...["-subj", "/CN=localhost", "-days", "1"],
  ]);
  const hello = await capturedHello("localhost");
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0"],
      ...["tlsd", "--engine", "native", "-K", "2", ...REPLY],
    ],
    { env: { ...env, CERTFILE: crt, KEYFILE: key } },
  );
  const CLIENTS = 12;
  try {
    let ends = 0;
    // Rounds of clients arriving together, until one of their steps was on a thread.
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: CLIENTS }, () => sendHello(s.port, hello)));
      ends += CLIENTS;
      await s.waitForLog(/^tcpserver: end /, ends);
      if (!THREADS || (await steps(metricsPort)).thread > 0) break;
    }
    const after = await steps(metricsPort);
    if (THREADS) assert.ok(after.thread > 0, JSON.stringify(after));
    else assert.equal(after.thread, 0, JSON.stringify(after));
    // Every handshake ended by -K, in the loop's words and status.
    const fatal = s.log().match(/^tlsd: fatal: .*$/gm) ?? [];
    assert.equal(fatal.length, ends, s.log());
    for (const line of fatal) assert.equal(line, "tlsd: fatal: 127.0.0.1: handshake timed out");
    assert.equal(s.log().match(new RegExp(`status ${STATUS_98}$`, "gm"))?.length, ends);
    // Nothing is left in the process: no connection, and each timeout counted once.
    const { body } = await scrape({ port: metricsPort });
    assert.equal(value(body, "tcpserver_connections_active"), 0, body);
    assert.equal(
      value(body, "tlsd_handshakes_total", { result: "failed", reason: "timeout" }),
      ends,
      body,
    );
  } finally {
    await s.stop();
  }
});

// Limits, signals and churn: -c, SIGTERM, resets; no leaked fd, no zombie.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, ours, djb } from "../helpers/programs.ts";
import { programsOf, spawnersOf } from "../helpers/interop.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: "127.0.0.1" }, () => resolve(s));
    s.on("error", reject);
  });
}

function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (b: Buffer) => {
      text += b.toString("latin1");
      if (text.includes("\n")) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
  });
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

for (const server of [djb("tcpserver"), ours("tcpserver")]) {
  const who = server.startsWith("/usr") ? "djb" : "ours";

  test(`${who}: -c 1 holds the second client in the backlog until the first ends`, async () => {
    const s = await startServer(server, [
      "-v",
      "-c",
      "1",
      "-RHl0",
      "127.0.0.1",
      "0",
      "/bin/sh",
      "-c",
      "echo go; read x; echo got $x",
    ]);
    const sockets: Socket[] = [];
    try {
      const first = await openSocket(s.port);
      sockets.push(first);
      assert.equal(await readLine(first), "go\n");
      const second = await openSocket(s.port);
      sockets.push(second);
      // The log comes through another pipe than the greeting: wait for it to arrive.
      await s.waitForLog(/ ok \d+ /);
      await s.waitForLog(/status: 1\/1/);
      // The second connection is in the kernel's backlog: no process of its own yet.
      assert.equal(
        s
          .log()
          .split("\n")
          .filter((l) => / pid \d+ from /.test(l)).length,
        1,
      );
      const secondGreeting = readLine(second);
      first.end("one\n");
      assert.equal(await secondGreeting, "go\n");
      second.end("two\n");
      await s.waitForLog(/ end /, 2);
    } finally {
      for (const socket of sockets) socket.destroy();
      await s.stop();
    }
  });

  test(`${who}: SIGTERM exits 0 at once and leaves the children running`, async () => {
    const s = await startServer(server, [
      "-RHl0",
      "127.0.0.1",
      "0",
      "/bin/sh",
      "-c",
      "echo go; read x; echo still here $x",
    ]);
    const client = await openSocket(s.port);
    assert.equal(await readLine(client), "go\n");
    const { code, signal } = await s.stop();
    assert.equal(code, 0);
    assert.equal(signal, null);
    const reply = readLine(client);
    client.write("after\n");
    assert.equal(await reply, "still here after\n");
    client.destroy();
  });
}

test("a client that resets mid-stream: the server goes on serving", async () => {
  const s = await startServer(ours("tcpserver"), ["-v", "-RHl0", "127.0.0.1", "0", "/bin/cat"]);
  try {
    const c = await openSocket(s.port);
    c.write("partial data");
    c.resetAndDestroy();
    await s.waitForLog(/ end /);
    assert.equal(await talk(s.port, "hello"), "hello");
    await s.waitForLog(/ end /, 2);
  } finally {
    await s.stop();
  }
});

// A log reader that falls behind (multilog on a busy host): python3 holds tcpserver's stderr, a
// socket pair as Node's own children get, with the least send buffer the kernel keeps (a few
// lines), and reads it a chunk every 20 ms.
const LAGGING_READER = `
import socket, subprocess, sys, threading, time
ours, theirs = socket.socketpair()
theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
server = subprocess.Popen(sys.argv[1:], stderr=theirs)
theirs.close()
def read():
    while data := ours.recv(65536):
        sys.stderr.buffer.write(data)
        sys.stderr.flush()
        time.sleep(0.02)
threading.Thread(target=read, daemon=True).start()
sys.stdin.read()
server.kill()
`;

test("a log reader that falls behind loses no line: tcpserver waits for it, as djb's does", async () => {
  // tlsd in tcpserver's process: the first socket it destroys makes Node open fd 2 non-blocking.
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost"]);
  const reader = spawn(
    "python3",
    [
      "-c",
      LAGGING_READER,
      ours("tcpserver"),
      "-1",
      "-v",
      "-RHl0",
      "-b",
      "200",
      "127.0.0.1",
      "0",
      "tlsd",
      "true",
    ],
    {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key },
    },
  );
  let log = "";
  reader.stderr.setEncoding("latin1");
  reader.stderr.on("data", (s: string) => (log += s));
  try {
    const port = await new Promise<number>((resolve) =>
      reader.stdout.once("data", (b: Buffer) => resolve(Number(b.toString().trim()))),
    );
    // Six lines each, a failed handshake's among them, all at once (-b 200: all in the backlog).
    await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise<void>((resolve) => {
            const c = connect(port, "127.0.0.1", () => c.end("not TLS\r\n"));
            c.on("error", () => {});
            c.resume();
            c.once("close", () => resolve());
          }),
      ),
    );
    const ends = () => log.match(/^tcpserver: end \d+ status 25088$/gm)?.length ?? 0;
    await waitFor(
      () => (ends() === 100 && /tcpserver: status: 0\/\d+\n$/.test(log) ? true : undefined),
      15_000,
      () => `${ends()} end lines of 100:\n${log.slice(-1000)}`,
    );
    assert.equal(log.match(/^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: /gm)?.length, 100);
    assert.doesNotMatch(log, /^(?!tcpserver: |tlsd: fatal: ).+/m, "a line cut");
  } finally {
    reader.stdin.end();
    await new Promise((resolve) => reader.once("close", resolve));
  }
});

test("a program that leaves half a line on the shared stderr: a line of tcpserver's lands in it, and the tests' log reader still finds the end line (ours and djb's)", async () => {
  // As `cat: -` then `: Connection reset by peer` from a cat whose client reset.
  for (const server of [ours("tcpserver"), djb("tcpserver")]) {
    const s = await startServer(server, [
      "-v",
      "-RHl0",
      "127.0.0.1",
      "0",
      "sh",
      "-c",
      "printf 'cat: -' >&2",
    ]);
    try {
      await talk(s.port, "");
      await s.waitForLog(/^tcpserver: end \d+ status 0$/);
      assert.match(s.log(), /^cat: -\ntcpserver: /m);
    } finally {
      await s.stop();
    }
  }
});

test("churn: thousands of connections, then no more fds and no more children than before", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-c",
    "100",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/echo",
    "hi",
  ]);
  try {
    const pid = s.child.pid ?? 0;
    assert.equal(await talk(s.port), "hi\n");
    // The baseline is an idle server: the first child reaped, its pidfd closed.
    await waitFor(() => (programsOf(pid).length === 0 ? true : undefined), 20_000);
    const spawners = spawnersOf(pid);
    assert.ok(spawners.length > 0, "the programs are spawned by ucspi-spawner");
    const spawnerFds = () => spawners.map(fdCount).join(",");
    const fdsBefore = fdCount(pid);
    const spawnerFdsBefore = spawnerFds();
    const total = 2000;
    const parallel = 20;
    let done = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (done < total) {
          done++;
          assert.equal(await talk(s.port), "hi\n");
        }
      }),
    );
    // Children exit on their own; wait for the server to have reaped every one.
    await waitFor(() => (programsOf(pid).length === 0 ? true : undefined), 20_000);
    await waitFor(
      () => (fdCount(pid) === fdsBefore && spawnerFds() === spawnerFdsBefore ? true : undefined),
      5_000,
      () =>
        `fds: ${fdCount(pid)}, before: ${fdsBefore}; ` +
        `spawners' ${spawnerFds()}, before: ${spawnerFdsBefore}`,
    );
    assert.deepEqual(spawnersOf(pid), spawners, "the same spawners served them all");
  } finally {
    await s.stop();
  }
});

test("ucspi-spawner killed: a warning, its programs reported as 111, the next one served", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-vRHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    "echo $PPID; read x; echo $x",
  ]);
  const client = await openSocket(s.port);
  try {
    const pid = s.child.pid ?? 0;
    const spawner = Number(await readLine(client));
    assert.ok(spawnersOf(pid).includes(spawner), "a spawner runs the program");
    process.kill(spawner, "SIGKILL");
    await s.waitForLog(/^tcpserver: warning: ucspi-spawner exited; /m);
    await s.waitForLog(/^tcpserver: end \d+ status 28416$/m);
    // The orphaned program still serves its client; a new spawner serves the next one.
    const reply = readLine(client);
    client.write("still\n");
    assert.equal(await reply, "still\n");
    const next = await openSocket(s.port);
    const second = Number(await readLine(next));
    assert.ok(spawnersOf(pid).includes(second) && second !== spawner, "another spawner");
    next.end("bye\n");
    await s.waitForLog(/^tcpserver: end \d+ status 0$/m);
    next.destroy();
  } finally {
    client.destroy();
    await s.stop();
  }
});

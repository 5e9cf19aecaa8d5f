// tcpforward --if-plain { prog }: a TLS client goes to a service that speaks TLS itself as it
// is (the service's own certificate, checked against the service's own CA), and to prog (tlsd:
// our certificate) when the service answers its ClientHello in plaintext, or not at all. The
// verdict is asked once per service and kept; a plaintext client is relayed as it is.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { readFileSync } from "node:fs";
import { before, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import type { Pair, TestPki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

/** The service's own CA and certificate, and ours (tlsd's), from CAs that know nothing of each
 * other: a client that verifies against one of them tells who made its TLS. */
let theirs: TestPki;
let ours_: TestPki;
let theirPair: Pair;
let ourPair: Pair;

before(() => {
  theirs = makePki();
  ours_ = makePki();
  theirPair = theirs.server("localhost", ["localhost", "127.0.0.1"]);
  ourPair = ours_.server("localhost", ["localhost", "127.0.0.1"]);
});

/** tcpserver → tcpforward --if-plain { tlsd tcpforward } to 127.0.0.1:port. */
function front(port: number): Promise<RunningServer> {
  const to = ["127.0.0.1", String(port)];
  return startServer(
    ours("tcpserver"),
    [
      ...["-RHl0", "127.0.0.1", "0"],
      ...["tcpforward", "-v2", "--if-plain", "{", "tlsd", "tcpforward", ...to, "}", ...to],
    ],
    {
      env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: ourPair.cert, KEYFILE: ourPair.key },
    },
  );
}

/** A TLS client that trusts `ca` only: what it got after sending `request` (and, with `end`,
 * its end), until the connection closed. */
function tlsClient(port: number, ca: string, request: string, end = false) {
  return new Promise<string>((resolve, reject) => {
    const trusted = [readFileSync(ca)];
    const socket = tlsConnect(
      { port, host: "127.0.0.1", servername: "localhost", ca: trusted },
      () => {
        if (end) socket.end(request);
        else socket.write(request);
      },
    );
    let answer = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => (answer += s));
    socket.on("error", reject);
    socket.on("close", () => resolve(answer));
  });
}

interface Seen {
  first: Buffer;
  ended: string;
}

/** A plaintext service: `greeting` on connect (none: it never says anything); it records each
 * connection's first bytes and how the connection ended. */
async function plainService(greeting: string | undefined) {
  const seen: Seen[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    const record: Seen = { first: Buffer.alloc(0), ended: "" };
    seen.push(record);
    if (greeting !== undefined) socket.write(greeting);
    socket.on("data", (b: Buffer) => {
      if (record.first.length === 0) record.first = b;
    });
    socket.on("end", () => {
      record.ended ||= "end";
      socket.end();
    });
    socket.on("error", (e: NodeJS.ErrnoException) => (record.ended = e.code ?? "error"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port, seen };
}

test("a service that speaks TLS itself (openssl s_server): its clients' TLS reaches it as it is, its own certificate; asked once", async () => {
  const port = await freePort();
  const service = spawn(
    "openssl",
    [
      "s_server",
      "-quiet",
      "-www",
      "-accept",
      String(port),
      "-cert",
      theirPair.cert,
      "-key",
      theirPair.key,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const server = await front(port);
  try {
    await waitFor(async () => {
      const r = await run("openssl", ["s_client", "-connect", `127.0.0.1:${port}`], { input: "" });
      return r.code === 0 ? true : undefined;
    });
    for (let n = 1; n <= 2; n++) {
      const answer = await tlsClient(server.port, theirs.ca.cert, `GET /${n} HTTP/1.0\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.0 200 ok/);
    }
    const lines = await server.waitForLog(/speaks TLS itself/);
    assert.equal(lines.length, 1, server.log());
    assert.match(
      lines[0] ?? "",
      /127\.0\.0\.1 port \d+ speaks TLS itself: its TLS clients go to it as they are \(for 300 s\)$/,
    );
    // Our certificate is nowhere: a client that trusts only our CA is refused by the service's.
    await assert.rejects(tlsClient(server.port, ours_.ca.cert, ""), /certificate/);
  } finally {
    await server.stop();
    service.kill();
  }
});

for (const [what, greeting, why] of [
  ["greets first (an SMTP daemon)", "220 plain.example ESMTP\r\n", "a plaintext answer"],
  ["says nothing to a ClientHello (it waits for a line)", undefined, "no answer"],
] as const) {
  test(`a plaintext service that ${what}: its TLS clients get TLS from tlsd and it gets plaintext; the probe is reset; asked once`, async () => {
    const service = await plainService(greeting);
    const server = await front(service.port);
    try {
      for (const n of [1, 2]) {
        const answer = await tlsClient(server.port, ours_.ca.cert, `line ${n}\n`, true);
        if (greeting !== undefined) assert.match(answer, /^220 plain\.example ESMTP\r\n/);
        else assert.equal(answer, "");
      }
      const lines = await server.waitForLog(/does not speak TLS/);
      assert.equal(lines.length, 1, server.log());
      assert.match(
        lines[0] ?? "",
        new RegExp(`does not speak TLS \\(${why}\\): its TLS clients go to tlsd \\(for 300 s\\)$`),
      );
      // Three connections: the probe (a ClientHello, then a reset), then each client's plaintext.
      await waitFor(() => (service.seen.filter((s) => s.ended).length === 3 ? true : undefined));
      const [probe, ...clients] = service.seen;
      assert.deepEqual([...(probe?.first.subarray(0, 2) ?? [])], [0x16, 0x03]);
      assert.equal(probe?.ended, "ECONNRESET");
      assert.deepEqual(
        clients.map((c) => c.first.toString("latin1")),
        ["line 1\n", "line 2\n"],
      );
    } finally {
      await server.stop();
      service.server.close();
    }
  });
}

test("five TLS clients at once of a service not asked yet: one asks, the others wait for its answer", async () => {
  const service = await plainService(undefined);
  const server = await front(service.port);
  try {
    const clients = [1, 2, 3, 4, 5].map((n) =>
      tlsClient(server.port, ours_.ca.cert, `line ${n}\n`, true),
    );
    assert.deepEqual(await Promise.all(clients), ["", "", "", "", ""]);
    await waitFor(() => (service.seen.filter((s) => s.ended).length === 6 ? true : undefined));
    const hellos = service.seen.filter((s) => s.first[0] === 0x16 && s.first[1] === 0x03);
    assert.equal(hellos.length, 1);
    assert.equal((await server.waitForLog(/does not speak TLS/)).length, 1, server.log());
  } finally {
    await server.stop();
    service.server.close();
  }
});

test("a plaintext client: relayed to the service as it is, nothing asked", async () => {
  const service = await plainService("220 plain.example ESMTP\r\n");
  const server = await front(service.port);
  try {
    assert.match(await talk(server.port, "HELO me\r\n"), /^220 plain\.example ESMTP\r\n/);
    await waitFor(() => (service.seen[0]?.ended ? true : undefined));
    assert.equal(service.seen.length, 1);
    assert.equal(service.seen[0]?.first.toString("latin1"), "HELO me\r\n");
    assert.doesNotMatch(server.log(), /speak TLS/);
  } finally {
    await server.stop();
    service.server.close();
  }
});

test("--if-plain: bad command lines, one line and exit 100", async () => {
  for (const [args, line] of [
    [["--if-plain", "tlsd", "cat"], /^tcpforward: --if-plain: expected '\{ prog\.\.\. \}'$/m],
    [["--if-plain", "{", "tlsd", "cat"], /^tcpforward: --if-plain: '\{' without its '\}'$/m],
    [
      ["--if-plain", "{", "tlsd", "cat", "}", "/run/x.sock"],
      /^tcpforward: --if-plain is for TCP, not a UNIX socket$/m,
    ],
  ] as const) {
    const r = await run(ours("tcpforward"), [...args], { input: "" });
    assert.equal(r.code, 100, r.stderr);
    assert.match(r.stderr, line);
  }
});

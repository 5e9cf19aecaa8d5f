// tcpserver --proxy: the real client's addresses from a PROXY v1/v2 header, only from trusted
// sources; rules apply to the real client; not a byte of the application's stream is lost.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { encodeProxyV2 } from "../../src/proxy/index.ts";
import { ROOT, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const PROGRAM = [
  "/bin/sh",
  "-c",
  'echo "$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT $PROTO ${X-}"; head -c 5',
];

/** Sends `parts` (each written separately, in order) and reads until EOF. A reset counts as
 * the end too: a server that closes with unread bytes makes the kernel send one. */
function exchange(port: number, parts: (string | Buffer)[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => (text += s));
    socket.on("end", () => resolve(text));
    socket.on("error", (error: NodeJS.ErrnoException) =>
      error.code === "ECONNRESET" ? resolve(text) : reject(error),
    );
    socket.on("connect", async () => {
      for (const part of parts) {
        socket.write(part);
        await new Promise((r) => setTimeout(r, 30));
      }
    });
  });
}

test("a v1 header from a trusted source sets the TCP variables; the rest reaches the program", async () => {
  const s = await startServer(ours("tcpserver"), [
    "--proxy",
    "-v",
    "-RHl0",
    "127.0.0.1",
    "0",
    ...PROGRAM,
  ]);
  try {
    const out = await exchange(s.port, ["PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nhello"]);
    assert.equal(out, "192.0.2.7 40000 198.51.100.1 25 TCP \nhello");
    const [from] = await s.waitForLog(/ pid \d+ from /);
    assert.match(from ?? "", /from 192\.0\.2\.7$/);
  } finally {
    await s.stop();
  }
});

test("a v2 header split across segments, IPv6 addresses, bytes right behind it", async () => {
  const s = await startServer(ours("tcpserver"), [
    "--proxy",
    "-RHl0",
    "127.0.0.1",
    "0",
    ...PROGRAM,
  ]);
  try {
    const header = encodeProxyV2({
      command: "proxy",
      family: "tcp6",
      source: { ip: "2001:db8::7", port: 40001 },
      destination: { ip: "2001:db8::1", port: 587 },
    });
    const out = await exchange(s.port, [
      header.subarray(0, 7),
      Buffer.concat([header.subarray(7), Buffer.from("world")]),
    ]);
    assert.equal(out, "2001:db8::7 40001 2001:db8::1 587 TCP6 \nworld");
  } finally {
    await s.stop();
  }
});

test("rules apply to the real client, never to the proxy's address", async () => {
  const dir = scratchDir("proxy-rules");
  const cdb = join(dir, "rules.cdb");
  writeFileSync(
    join(dir, "rules.txt"),
    '192.0.2.7:allow,X="real"\n127.0.0.1:allow,X="proxy"\n:deny\n',
  );
  execFileSync(join(ROOT, "bin/tcprules"), [cdb, join(dir, "rules.tmp")], {
    input: '192.0.2.7:allow,X="real"\n127.0.0.1:allow,X="proxy"\n:deny\n',
  });
  const s = await startServer(ours("tcpserver"), [
    "--proxy",
    "-v",
    "-x",
    cdb,
    "-RHl0",
    "127.0.0.1",
    "0",
    ...PROGRAM,
  ]);
  try {
    const allowed = await exchange(s.port, ["PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nabcde"]);
    assert.equal(allowed, "192.0.2.7 40000 198.51.100.1 25 TCP real\nabcde");
    const denied = await exchange(s.port, ["PROXY TCP4 192.0.2.8 198.51.100.1 40000 25\r\nabcde"]);
    assert.equal(denied, "");
    await s.waitForLog(/^tcpserver: deny \d+ 0:198\.51\.100\.1:25 :192\.0\.2\.8::40000$/);
  } finally {
    await s.stop();
  }
});

test("an untrusted source is served as it is: its header is just data", async () => {
  const s = await startServer(ours("tcpserver"), [
    "--proxy",
    "--proxy-from",
    "10.0.0.0/8",
    "-RHl0",
    "127.0.0.1",
    "0",
    ...PROGRAM,
  ]);
  try {
    const out = await exchange(s.port, ["PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"]);
    assert.match(out, /^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+ TCP \nPROXY$/);
  } finally {
    await s.stop();
  }
});

test("a bad header drops the connection with one warning line", async () => {
  const s = await startServer(ours("tcpserver"), [
    "--proxy",
    "-v",
    "-RHl0",
    "127.0.0.1",
    "0",
    ...PROGRAM,
  ]);
  try {
    assert.equal(await exchange(s.port, ["EHLO example.org\r\n"]), "");
    const [warning] = await s.waitForLog(
      /warning: dropping connection from 127\.0\.0\.1: bad PROXY header: not a PROXY protocol header$/,
    );
    assert.ok(warning);
    await s.waitForLog(/ end \d+ status 28416$/);
    // A TLS client straight to a --proxy port (no proxy in front): said so.
    assert.equal(await exchange(s.port, [Buffer.from("160301", "hex")]), "");
    await s.waitForLog(
      /warning: dropping connection from 127\.0\.0\.1: bad PROXY header: a TLS handshake came in its place \(a client that is not a proxy, or a proxy that sends none\)$/,
    );
    await s.waitForLog(/ end \d+ status 28416$/, 2);
  } finally {
    await s.stop();
  }
});

test("a bad --proxy-from is a usage error", async () => {
  const { run } = await import("../helpers/programs.ts");
  const r = await run(ours("tcpserver"), [
    "--proxy",
    "--proxy-from",
    "10.0.0.0/99",
    "-RH",
    "127.0.0.1",
    "0",
    "true",
  ]);
  assert.equal(r.code, 100);
  assert.match(r.stderr, /^tcpserver: --proxy-from: not an address or prefix: '10\.0\.0\.0\/99'\n/);
});

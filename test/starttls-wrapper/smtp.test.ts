// starttls-wrapper with SMTP, byte for byte: advertising, the hand-over to
// `tcpserver --proxy ... tlsd` (and local mode), and the attack classes of
// reference/starttls-attacks.md with their exact bytes and segment boundaries. The server on
// both sides is test/fixtures/fake-smtp, which logs every command it receives, so "never
// reaches either server" is checked on what each one actually got.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import type { Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import type { TLSSocket } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import { freePort, openFds, programsOf } from "../helpers/interop.ts";
import { BIN, ROOT, djb, ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("wrapper");
const cert = pki.server("localhost", ["localhost"]);
const FAKE = join(ROOT, "test", "fixtures", "fake-smtp");
const PATH = `${BIN}:/usr/bin:/bin`;
let serial = 0;

const sockets = (pid: number) =>
  [...openFds(pid).values()].filter((t) => t.startsWith("socket:")).length;

interface Pair {
  port: number;
  wrapper: RunningServer;
  service: RunningServer | undefined;
  plainLog: () => string;
  tlsLog: () => string;
  stop(): Promise<void>;
}

/** The wrapper on a port of its own in front of fake-smtp, handing clients to a
 * `tcpserver --proxy ... tlsd fake-smtp` (or, with `local`, doing TLS itself). */
async function pair(
  flags: string[] = [],
  options: {
    local?: boolean;
    serviceDown?: boolean;
    /** The TLS service's tcpserver without --proxy (a mistake the docs warn of). */
    serviceWithoutProxy?: boolean;
    djb?: boolean;
    program?: string;
    /** More environment for fake-smtp, on both sides. */
    fakeEnv?: Record<string, string>;
  } = {},
) {
  const n = ++serial;
  const plain = join(dir, `plain-${n}.log`);
  const tls = join(dir, `tls-${n}.log`);
  const tlsEnv = {
    PATH,
    CERTFILE: cert.cert,
    KEYFILE: cert.key,
    FAKE_LOG: tls,
    ...options.fakeEnv,
  };
  let service: RunningServer | undefined;
  let servicePort = await freePort();
  if (!options.local && !options.serviceDown) {
    service = await startServer(
      ours("tcpserver"),
      [
        "-v",
        ...(options.serviceWithoutProxy ? [] : ["--proxy"]),
        "-RHl0",
        "127.0.0.1",
        "0",
        "tlsd",
        FAKE,
      ],
      { env: tlsEnv },
    );
    servicePort = service.port;
  }
  const target = options.local ? [] : ["127.0.0.1", String(servicePort)];
  const wrapper = await startServer(
    options.djb ? djb("tcpserver") : ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", ...flags, ...target],
      options.program ?? FAKE,
    ],
    // The plaintext server logs to its own file; in local mode the TLS side's server is run
    // by the wrapper's own tlsd, with the same environment (so the same log).
    {
      env: options.local
        ? { ...tlsEnv, FAKE_LOG: plain }
        : { PATH, FAKE_LOG: plain, ...options.fakeEnv },
    },
  );
  const read = (f: string) => () => {
    try {
      return readFileSync(f, "latin1");
    } catch {
      return "";
    }
  };
  return {
    port: wrapper.port,
    wrapper,
    service,
    plainLog: read(plain),
    tlsLog: read(options.local ? plain : tls),
    async stop() {
      await wrapper.stop();
      await service?.stop();
    },
  } satisfies Pair;
}

/** A client that writes exactly the bytes given (one write each) and reads by pattern. */
class Client {
  private socket: Socket | TLSSocket;
  private buffer = "";
  private ended = false;
  private waiters: (() => void)[] = [];

  constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  static open(port: number, localAddress = "127.0.0.1"): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ port, host: "127.0.0.1", localAddress }, () =>
        resolve(new Client(socket)),
      );
      socket.once("error", reject);
    });
  }

  private attach(s: Socket | TLSSocket) {
    s.on("data", (b: Buffer) => {
      this.buffer += b.toString("latin1");
      this.wake();
    });
    s.on("end", () => {
      this.ended = true;
      this.wake();
    });
    s.on("close", () => {
      this.ended = true;
      this.wake();
    });
    s.on("error", () => {});
  }

  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  /** Everything read up to and including the first match of `pattern`. */
  async until(pattern: RegExp): Promise<string> {
    for (let i = 0; i < 400; i++) {
      const m = pattern.exec(this.buffer);
      if (m) {
        const upTo = m.index + m[0].length;
        const got = this.buffer.slice(0, upTo);
        this.buffer = this.buffer.slice(upTo);
        return got;
      }
      if (this.ended) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    throw new Error(`never read ${pattern}; got ${JSON.stringify(this.buffer)}`);
  }

  /** Everything until the server closes. */
  async rest(): Promise<string> {
    for (let i = 0; i < 400 && !this.ended; i++) await new Promise((r) => setTimeout(r, 25));
    const got = this.buffer;
    this.buffer = "";
    return got;
  }

  /** The TLS handshake on the same connection (verifying the server). */
  startTls(): Promise<void> {
    return new Promise((resolve, reject) => {
      const raw = this.socket as Socket;
      raw.removeAllListeners("data");
      raw.removeAllListeners("end");
      raw.removeAllListeners("close");
      this.ended = false;
      this.buffer = "";
      const tls = tlsConnect(
        { socket: raw, servername: "localhost", ca: readFileSync(pki.ca.cert) },
        () => resolve(),
      );
      tls.once("error", reject);
      tls.once("close", () => reject(new Error("closed during the handshake")));
      this.socket = tls;
      this.attach(tls);
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Half-closes: no more bytes from us. */
  end(): void {
    this.socket.end();
  }
}

/** A client inside TLS after EHLO and STARTTLS, whatever the server's EHLO reply. */
async function inTls(p: Pair): Promise<Client> {
  const c = await greeted(p);
  c.write("EHLO a\r\n");
  await c.until(/^250 .*\r\n/m);
  c.write("STARTTLS\r\n");
  assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
  await c.startTls();
  return c;
}

const EHLO_REPLY =
  "250-fake.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n";

/** A client that has read the greeting. */
async function greeted(p: Pair): Promise<Client> {
  const c = await Client.open(p.port);
  assert.equal(await c.until(/\r\n/), "220 fake.example ESMTP\r\n");
  return c;
}

async function upgraded(p: Pair, localAddress = "127.0.0.1"): Promise<Client> {
  const c = await Client.open(p.port, localAddress);
  assert.equal(await c.until(/\r\n/), "220 fake.example ESMTP\r\n");
  c.write("EHLO client.example\r\n");
  assert.equal(await c.until(/^250 .*\r\n/m), EHLO_REPLY);
  c.write("STARTTLS\r\n");
  assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
  await c.startTls();
  return c;
}

for (const [mode, local, underDjb] of [
  ["handed to tcpserver --proxy tlsd", false, false],
  ["local mode", true, false],
  ["under djb's tcpserver, handed over", false, true],
  ["under djb's tcpserver, local mode", true, true],
] as const) {
  test(`${mode}: STARTTLS advertised, upgraded, the server behind TLS greets nothing and sees the real client`, async () => {
    const p = await pair([], { local, djb: underDjb });
    try {
      const c = await upgraded(p, "127.0.0.2");
      c.write("EHLO client.example\r\n");
      // The first thing inside TLS is the answer to our EHLO: the greeting was swallowed,
      // and the server behind TLS never advertises STARTTLS.
      assert.equal(
        await c.until(/^250 .*\r\n/m),
        "250-fake.example\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
      );
      c.write("MAIL FROM:<a@example.org>\r\n");
      assert.equal(await c.until(/\r\n/), "250 ok MAIL FROM:<a@example.org>\r\n");
      c.write("QUIT\r\n");
      assert.equal(await c.rest(), "221 fake.example bye\r\n");
      // What each server got: plaintext EHLO only, then the TLS side the rest, from the
      // client's own address (127.0.0.2), never the wrapper's 127.0.0.1.
      const plainLines = local ? p.plainLog().split("\n").slice(0, 1) : p.plainLog().split("\n");
      assert.deepEqual(plainLines.filter(Boolean), ["127.0.0.2 EHLO client.example"]);
      assert.match(p.tlsLog(), /^127\.0\.0\.2 MAIL FROM:<a@example\.org>$/m);
      assert.doesNotMatch(p.tlsLog(), /^127\.0\.0\.1 /m);
      assert.doesNotMatch(p.plainLog() + p.tlsLog(), /STARTTLS/i);
      await p.wrapper.waitForLog(/^tcpserver: end \d+ status 0$/);
    } finally {
      await p.stop();
    }
  });
}

test("A1: STARTTLS and RSET in one segment: refused (554) and closed, RSET reaches nobody", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("EHLO tester\r\n");
    await c.until(/^250 .*\r\n/m);
    c.write("STARTTLS\r\nRSET\r\n");
    assert.equal(await c.rest(), "554 5.5.1 Error: command pipelined after STARTTLS\r\n");
    await p.wrapper.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: command pipelined after STARTTLS$/,
    );
    assert.doesNotMatch(p.plainLog() + p.tlsLog(), /RSET/);
  } finally {
    await p.stop();
  }
});

test("A2/A3: EHLO, STARTTLS, NOOP pipelined: the whole EHLO reply, then the refusal", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("EHLO a\r\nSTARTTLS\r\nNOOP\r\n");
    assert.equal(
      await c.rest(),
      `${EHLO_REPLY}554 5.5.1 Error: command pipelined after STARTTLS\r\n`,
    );
    assert.doesNotMatch(p.plainLog() + p.tlsLog(), /NOOP/);
  } finally {
    await p.stop();
  }
});

test("A4: RSET in a later segment, after the go-ahead: the handshake fails, RSET reaches nobody", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("EHLO a\r\n");
    await c.until(/^250 .*\r\n/m);
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
    c.write("RSET\r\n");
    await assert.rejects(c.startTls());
    assert.doesNotMatch(p.plainLog() + p.tlsLog(), /RSET/);
  } finally {
    await p.stop();
  }
});

/** A real ClientHello, as Node's TLS client would send it first. */
function clientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const capture = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        resolve(chunk);
        done();
      },
    });
    const tls = tlsConnect({ socket: capture as unknown as Socket, servername: "localhost" });
    tls.on("error", () => {});
    setImmediate(() => tls.destroy());
  });
}

test("A5: RSET glued in front of the ClientHello: the handshake fails, RSET reaches nobody", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
    c.write(Buffer.concat([Buffer.from("RSET\r\n"), await clientHello()]));
    // No SMTP reply ever: the TLS side answers with an alert, or just closes.
    assert.doesNotMatch(await c.rest(), /250|flushed/);
    assert.doesNotMatch(p.plainLog() + p.tlsLog(), /RSET/);
  } finally {
    await p.stop();
  }
});

test("no second STARTTLS: inside TLS the wrapper is gone, the command is the server's", async () => {
  const p = await pair();
  try {
    const c = await upgraded(p);
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "250 ok STARTTLS\r\n");
    c.write("QUIT\r\n");
    assert.equal(await c.rest(), "221 fake.example bye\r\n");
  } finally {
    await p.stop();
  }
});

for (const local of [false, true]) {
  test(`${local ? "local" : "remote"} mode: a server with STARTTLS of its own does not offer it again inside TLS`, async () => {
    const p = await pair([], { local, fakeEnv: { FAKE_STARTTLS: "1" } });
    try {
      const c = await greeted(p);
      c.write("EHLO a\r\n");
      assert.equal(
        await c.until(/^250 .*\r\n/m),
        "250-fake.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
      );
      c.write("STARTTLS\r\n");
      assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
      await c.startTls();
      c.write("EHLO a\r\n");
      assert.equal(
        await c.until(/^250 .*\r\n/m),
        "250-fake.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
      );
      c.write("QUIT\r\n");
      assert.equal(await c.rest(), "221 fake.example bye\r\n");
    } finally {
      await p.stop();
    }
  });
}

test("local mode: a server with no STARTTLS of its own needs no filter inside TLS, and the engine relays to it directly: a session holds 2 sockets in tcpserver (the client's, the pair's end), more through the filter", async () => {
  for (const [fakeEnv, reply, direct] of [
    [{}, "250-fake.example\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n", true],
    [{ FAKE_STARTTLS: "1" }, "250-fake.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n", false],
  ] as const) {
    const p = await pair([], { local: true, fakeEnv });
    try {
      const pid = p.wrapper.child.pid as number;
      const c = await inTls(p);
      c.write("EHLO a\r\n");
      assert.equal(await c.until(/^250 .*\r\n/m), reply);
      const during = sockets(pid);
      c.write("QUIT\r\n");
      assert.equal(await c.rest(), "221 fake.example bye\r\n");
      await p.wrapper.waitForLog(/^tcpserver: end \d+ status 0$/);
      await waitFor(() =>
        /tcpserver: status: 0\/\d+\n$/.test(p.wrapper.log()) ? true : undefined,
      );
      const held = during - sockets(pid);
      if (direct) assert.equal(held, 2, "sockets of a direct session");
      else assert.ok(held > 2, `sockets of a filtered session: ${held}`);
    } finally {
      await p.stop();
    }
  }
});

test("-k, local mode: the server that answered in plaintext goes on behind TLS, one server a session, told nothing of TLS (on the engine and on node:tls); one with STARTTLS of its own gets a fresh server behind tlsd, as without -k", async () => {
  const plainReply = "250-fake.example\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n";
  for (const [fakeEnv, same] of [
    [{ FAKE_WHO: "1" }, true],
    [{ FAKE_WHO: "1", UCSPI_TLS_ENGINE: "node" }, true],
    [{ FAKE_WHO: "1", FAKE_STARTTLS: "1" }, false],
  ] as const) {
    const p = await pair(["-k"], { local: true, fakeEnv });
    try {
      const c = await inTls(p);
      c.write("EHLO b\r\n");
      assert.equal(
        await c.until(/^250 .*\r\n/m),
        same ? plainReply : "250-fake.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
      );
      const during = sockets(p.wrapper.child.pid as number);
      c.write("MAIL FROM:<a@example.org>\r\n");
      assert.equal(await c.until(/\r\n/), "250 ok MAIL FROM:<a@example.org>\r\n");
      c.write("QUIT\r\n");
      assert.equal(await c.rest(), "221 fake.example bye\r\n");
      await p.wrapper.waitForLog(/^tcpserver: end \d+ status 0$/);
      // On the engine the session holds the client's socket and the server's pair, no more: the
      // engine relays between them.
      if (same && !("UCSPI_TLS_ENGINE" in fakeEnv)) {
        await waitFor(() =>
          /tcpserver: status: 0\/\d+\n$/.test(p.wrapper.log()) ? true : undefined,
        );
        assert.equal(during - sockets(p.wrapper.child.pid as number), 2, "sockets of a session");
      }
      // Each line: the server's pid, its SSL_PROTOCOL, the client, the command.
      const lines = p
        .plainLog()
        .trim()
        .split("\n")
        .map((l) => l.split(" "));
      const told = same ? "plain" : "TLSv1.3";
      assert.deepEqual(
        lines.map((l) => `${l[1]} ${l.slice(3).join(" ")}`),
        ["plain EHLO a", `${told} EHLO b`, `${told} MAIL FROM:<a@example.org>`, `${told} QUIT`],
        JSON.stringify(fakeEnv),
      );
      assert.equal(new Set(lines.map((l) => l[0])).size, same ? 1 : 2, JSON.stringify(fakeEnv));
    } finally {
      await p.stop();
    }
  }
});

test("-k: a client that resets inside TLS ends the session, and the server that went on is let go: no child left", async () => {
  const p = await pair(["-k"], { local: true, fakeEnv: { FAKE_WHO: "1" } });
  try {
    const c = await upgraded(p);
    c.write("EHLO b\r\n");
    await c.until(/^250 .*\r\n/m);
    c.destroy();
    await p.wrapper.waitForLog(/^tcpserver: end \d+ status \d+$/);
    await waitFor(() =>
      programsOf(p.wrapper.child.pid as number).length === 0 ? true : undefined,
    );
  } finally {
    await p.stop();
  }
});

test("-k is refused with a TLS service (host port) and for a protocol whose server cannot go on", async () => {
  for (const [args, why] of [
    [["-k", "127.0.0.1", "465", "cat"], "-k: local mode only (no host and port)"],
    [["-k", "-p", "sieve", "cat"], "-k: not for sieve (smtp, lmtp, imap, pop3 only)"],
  ] as const) {
    const r = await run(ours("starttls-wrapper"), [...args], { timeoutMs: 20_000 });
    assert.equal(r.code, 100);
    assert.equal(r.stderr.split("\n")[0], `starttls-wrapper: ${why}`);
  }
});

test("a client that half-closes after QUIT gets the server's answer, then the end", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("EHLO a\r\nQUIT\r\n");
    c.end();
    assert.equal(await c.rest(), `${EHLO_REPLY}221 fake.example bye\r\n`);
    await p.wrapper.waitForLog(/^tcpserver: end \d+ status 0$/);
    assert.deepEqual(programsOf(p.wrapper.child.pid ?? 0), []);
  } finally {
    await p.stop();
  }
});

test("A16: a large tail after STARTTLS is refused and never buffered whole", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write(`STARTTLS\r\n${"NOOP\r\n".repeat(20000)}`);
    assert.match(await c.rest(), /^554 5\.5\.1 Error: command pipelined after STARTTLS\r\n$/);
    assert.doesNotMatch(p.plainLog() + p.tlsLog(), /NOOP/);
  } finally {
    await p.stop();
  }
});

test("STARTTLS with an argument is refused (501), and the session goes on", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("STARTTLS now\r\n");
    assert.equal(await c.until(/\r\n/), "501 5.5.4 Syntax error (no parameters allowed)\r\n");
    c.write("NOOP\r\n");
    assert.equal(await c.until(/\r\n/), "250 ok NOOP\r\n");
    // Our tcpserver lets in-process connections finish before it exits on SIGTERM.
    c.destroy();
  } finally {
    await p.stop();
  }
});

test("after MAIL (plaintext chosen) STARTTLS is the server's business: no go-ahead", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("MAIL FROM:<a@example.org>\r\n");
    assert.equal(await c.until(/\r\n/), "250 ok MAIL FROM:<a@example.org>\r\n");
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "250 ok STARTTLS\r\n");
    c.write("QUIT\r\n");
    assert.equal(await c.rest(), "221 fake.example bye\r\n");
  } finally {
    await p.stop();
  }
});

test("-r: only EHLO, NOOP, RSET, QUIT and STARTTLS before TLS; AUTH hidden and refused", async () => {
  const p = await pair(["-r"]);
  try {
    const c = await greeted(p);
    c.write("EHLO a\r\n");
    assert.equal(
      await c.until(/^250 .*\r\n/m),
      "250-fake.example\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    );
    c.write("MAIL FROM:<a@example.org>\r\nAUTH PLAIN AGEAYg==\r\nHELO a\r\nNOOP\r\n");
    assert.equal(
      await c.until(/^250 ok NOOP\r\n/m),
      "530 5.7.0 Must issue a STARTTLS command first\r\n" +
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n" +
        "530 5.7.0 Must issue a STARTTLS command first\r\n" +
        "250 ok NOOP\r\n",
    );
    assert.doesNotMatch(p.plainLog(), /MAIL|AUTH|HELO/);
    c.destroy();
  } finally {
    await p.stop();
  }
});

test("-r with a pre-TLS time limit: 421 and the end when it runs out", async () => {
  const p = await pair(["-r", "-t", "1"]);
  try {
    const c = await Client.open(p.port);
    assert.equal(await c.rest(), "220 fake.example ESMTP\r\n421 4.7.0 no STARTTLS within 1 s\r\n");
  } finally {
    await p.stop();
  }
});

test("a TLS service that is down: 454 and a log line, and the session goes on in plaintext", async () => {
  const p = await pair(["-T", "2"], { serviceDown: true });
  try {
    const c = await greeted(p);
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "454 4.7.0 TLS not available due to temporary reason\r\n");
    await p.wrapper.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: TLS service unavailable: unable to connect to 127\.0\.0\.1 port \d+: connection refused$/,
    );
    c.write("QUIT\r\n");
    assert.equal(await c.rest(), "221 fake.example bye\r\n");
  } finally {
    await p.stop();
  }
});

test("a TLS service whose tcpserver lacks --proxy: its tlsd names the PROXY header it got", async () => {
  const p = await pair([], { serviceWithoutProxy: true });
  try {
    const c = await greeted(p);
    c.write("EHLO client.example\r\n");
    await c.until(/^250 .*\r\n/m);
    c.write("STARTTLS\r\n");
    assert.equal(await c.until(/\r\n/), "220 2.0.0 Ready to start TLS\r\n");
    await assert.rejects(c.startTls());
    await p.service?.waitForLog(/ end \d+ status 25088$/);
    assert.deepEqual(p.service?.log().match(/^tlsd: .*$/gm), [
      "tlsd: fatal: 127.0.0.1: got a PROXY protocol header: run tcpserver with --proxy",
    ]);
    assert.equal(p.tlsLog(), "");
  } finally {
    await p.stop();
  }
});

test("-r framing: a bare LF, a NUL or an over-long line is refused and closed", async () => {
  const p = await pair(["-r"]);
  try {
    for (const [bytes, reply] of [
      ["EHLO a\n", "500 5.5.2 bare LF in a command line\r\n"],
      ["EHLO a\0\r\n", "500 5.5.2 NUL in a command line\r\n"],
      ["EHLO a\rb\r\n", "500 5.5.2 bare CR in a command line\r\n"],
      [`EHLO ${"a".repeat(3000)}\r\n`, "500 5.5.2 line too long\r\n"],
    ] as const) {
      const c = await Client.open(p.port);
      await c.until(/\r\n/);
      c.write(bytes);
      assert.equal(await c.rest(), reply, JSON.stringify(bytes.slice(0, 12)));
    }
    assert.equal(p.plainLog(), "");
  } finally {
    await p.stop();
  }
});

test("opportunistic framing: a bare-LF EHLO goes to the server as it is (it answers it), no STARTTLS after", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("EHLO a\nSTARTTLS\r\nQUIT\r\n");
    assert.equal(
      await c.rest(),
      "250-fake.example\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n" +
        "250 ok STARTTLS\r\n221 fake.example bye\r\n",
    );
    assert.equal(p.plainLog(), "127.0.0.1 EHLO a\n127.0.0.1 STARTTLS\n127.0.0.1 QUIT\n");
  } finally {
    await p.stop();
  }
});

test("the server's exit status is passed on; a client that resets leaves no child behind", async () => {
  const p = await pair();
  try {
    const c = await greeted(p);
    c.write("MAIL FROM:<a@example.org>\r\nEXIT 3\r\n");
    assert.equal(await c.rest(), "250 ok MAIL FROM:<a@example.org>\r\n");
    await p.wrapper.waitForLog(/^tcpserver: end \d+ status 768$/);
    const r = await Client.open(p.port);
    await r.until(/\r\n/);
    r.write("EHLO a\r\n");
    await r.until(/^250 /m);
    r.destroy();
    await p.wrapper.waitForLog(/^tcpserver: end /, 2);
    const pid = p.wrapper.child.pid ?? 0;
    assert.deepEqual(programsOf(pid), []);
  } finally {
    await p.stop();
  }
});

test("a server that cannot be run: one line, the client closed, status 111", async () => {
  for (const underDjb of [false, true]) {
    const p = await pair([], { djb: underDjb, program: "/nonexistent/server" });
    try {
      const c = await Client.open(p.port);
      assert.equal(await c.rest(), "");
      await p.wrapper.waitForLog(/^tcpserver: end /);
      assert.match(
        p.wrapper.log(),
        /^starttls-wrapper: fatal: unable to run \/nonexistent\/server: file does not exist$/m,
      );
      assert.match(p.wrapper.log(), /^tcpserver: end \d+ status 28416$/m);
    } finally {
      await p.stop();
    }
  }
});

for (const local of [false, true]) {
  test(`${local ? "local" : "remote"} mode: clients that close right after STARTTLS end their sessions and the hand-over; the next client is served`, async () => {
    const p = await pair([], { local });
    try {
      for (let i = 0; i < 5; i++) {
        const c = await greeted(p);
        c.write("EHLO x\r\nSTARTTLS\r\n");
        c.end();
        await c.rest();
      }
      await p.wrapper.waitForLog(/^tcpserver: end /, 5);
      const c = await upgraded(p);
      c.write("QUIT\r\n");
      assert.equal(await c.rest(), "221 fake.example bye\r\n");
    } finally {
      await p.stop();
    }
  });
}

test("the server's last reply before it exits (221 to QUIT) reaches every client: 200 sessions, 4 at once (its exit used to be told before its last bytes were read, and 1 in 20 lost them)", async () => {
  const p = await pair([], { local: true });
  /** EHLO, then QUIT: everything read until the connection closed. */
  const session = () =>
    new Promise<string>((resolve) => {
      const s = tcpConnect(p.port, "127.0.0.1");
      let got = "";
      let step = 0;
      s.setEncoding("latin1");
      s.on("error", () => {});
      s.on("data", (d: string) => {
        got += d;
        if (step === 0 && /^220 .*\r\n/.test(got)) {
          step = 1;
          s.write("EHLO client.example\r\n");
        } else if (step === 1 && /250 [^\r]*\r\n$/.test(got)) {
          step = 2;
          s.write("QUIT\r\n");
        }
      });
      s.on("close", () => resolve(got));
    });
  try {
    const lost: string[] = [];
    for (let i = 0; i < 200; i += 4) {
      for (const got of await Promise.all([session(), session(), session(), session()]))
        if (!got.endsWith("221 fake.example bye\r\n")) lost.push(got);
    }
    assert.deepEqual(lost, []);
  } finally {
    await p.stop();
  }
});

/** EHLO, then STARTTLS and the client's end in one TCP segment (corked): the wrapper reads
 * both before its hand-over can connect. What the client read, until the close. */
function starttlsAndGone(port: number) {
  const script = `
import re, socket
s = socket.create_connection(("127.0.0.1", ${port}))
got = b""
def until(pattern):
    global got
    while not re.search(pattern, got):
        chunk = s.recv(4096)
        if not chunk:
            return
        got += chunk
until(rb"^220 .*\\r\\n")
s.sendall(b"EHLO client.example\\r\\n")
until(rb"\\r\\n250 [^\\r]*\\r\\n$")
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
s.sendall(b"STARTTLS\\r\\n")
s.shutdown(socket.SHUT_WR)
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print(got.decode("latin1"), end="")
`;
  return run("python3", ["-c", script]);
}

test("a client that leaves right after STARTTLS, before its go-ahead: the session ends, with no internal error (it used to end in 'internal error: not handed over', status 111)", async () => {
  const p = await pair(["-v", "2"]);
  try {
    for (let i = 0; i < 3; i++) {
      const r = await starttlsAndGone(p.port);
      assert.equal(r.code, 0, r.stderr);
    }
    await p.wrapper.waitForLog(/client left after STARTTLS, before the go-ahead$/, 3);
    await p.wrapper.waitForLog(/^tcpserver: end \d+ status \d+$/, 3);
    assert.doesNotMatch(p.wrapper.log(), /internal error|status 28416/);
  } finally {
    await p.stop();
  }
});

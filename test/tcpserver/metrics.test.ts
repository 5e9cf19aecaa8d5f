// tcpserver --metrics: real servers and clients, then the scrape, over TCP and over a UNIX
// socket, read counter by counter and checked whole by promtool (Debian's `prometheus`).
//   A: tcpserver -C 1 -x rules --metrics host:port ... tls-sniff --plain { starttls-wrapper -r }
//      --alpn h2 { tlsd (a program that does not exist) } tlsd prog: full, post-quantum,
//      resumed and TLS 1.2 handshakes, a TLS 1.1 client, a denied and a refused client, an
//      SMTP client refused under -r, a program that cannot be run;
//   B: tcpserver --metrics /path.sock ... starttls-wrapper (local mode): swaks upgrades,
//      python's smtplib declines;
//   C: tcpserver --workers 2 --metrics: one scrape adds up both processes' counts.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { join } from "node:path";
import { before, test } from "node:test";
import { createServer as createTlsServer, connect as tlsConnect } from "node:tls";
import type { ConnectionOptions } from "node:tls";
import "../../src/metrics/catalog.ts";
import { FAMILIES } from "../../src/metrics/family.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { scrape, value } from "../helpers/scrape.ts";

const pki = makePki();
const cert = pki.server("localhost", ["localhost"]);
const dir = scratchDir("metrics");
const FAKE = join(ROOT, "test", "fixtures", "fake-smtp");
const PATH = `${BIN}:/usr/bin:/bin`;
const env = { PATH, CERTFILE: cert.cert, KEYFILE: cert.key, FAKE_LOG: "/dev/null" };
/** One line in, one line out, then the end: the program behind tlsd. */
const REPLY = ["sh", "-c", 'read line; echo "got $line"'];
const notAfter = Math.floor(
  new X509Certificate(readFileSync(cert.cert)).validToDate.getTime() / 1000,
);
const rules = join(dir, "rules.cdb");

before(async () => {
  const r = await run(ours("tcprules"), [rules, join(dir, "rules.tmp")], {
    input: "127.0.0.2:deny\n:allow\n",
  });
  assert.equal(r.code, 0, r.stderr);
});

/** promtool's verdict on a whole scrape: format and naming conventions. */
async function promtool(text: string): Promise<void> {
  const r = await run("promtool", ["check", "metrics"], { input: text });
  assert.equal(r.code, 0, `promtool check metrics: ${r.stdout}${r.stderr}`);
}

interface TlsResult {
  reply: string;
  resumed: boolean;
  session: Buffer | undefined;
}

/** A TLS client that verifies the server, sends one line and reads to the end. */
function tlsClient(port: number, options: ConnectionOptions = {}): Promise<TlsResult> {
  return new Promise((resolve, reject) => {
    const c = tlsConnect({
      port,
      host: "127.0.0.1",
      servername: "localhost",
      ca: [readFileSync(pki.ca.cert)],
      ...options,
    });
    let reply = "";
    let session: Buffer | undefined;
    let resumed = false;
    c.setEncoding("latin1");
    c.on("session", (s: Buffer) => (session = s));
    c.on("data", (d: string) => (reply += d));
    c.once("secureConnect", () => {
      resumed = c.isSessionReused();
      c.write("hi\n");
    });
    c.on("end", () => c.end());
    c.once("close", () => resolve({ reply, resumed, session }));
    c.once("error", reject);
  });
}

/** Connects (from `localAddress`), sends `input` and reads to the end. */
function rawClient(port: number, localAddress: string, input = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ port, host: "127.0.0.1", localAddress }, () => c.end(input));
    let got = "";
    c.setEncoding("latin1");
    c.on("data", (d: string) => (got += d));
    c.once("close", () => resolve(got));
    c.once("error", reject);
  });
}

/** An SMTP exchange: each step waits for a reply line matching `until`, then sends `send`. */
function smtpClient(port: number, steps: { until: RegExp; send?: string }[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c: Socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    let step = 0;
    c.setEncoding("latin1");
    c.on("data", (d: string) => {
      got += d;
      for (;;) {
        const s = steps[step];
        if (!s || !s.until.test(got)) break;
        step++;
        if (s.send !== undefined) c.write(s.send);
        else c.end();
      }
    });
    c.once("close", () => resolve(got));
    c.once("error", reject);
  });
}

test("tcpserver --metrics host:port: connections, rules, limits, exits, handshakes, tls-sniff, STARTTLS refusals; promtool agrees", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "-C", "1", "-x", rules, "--metrics", `127.0.0.1:${metricsPort}`],
      ...["127.0.0.1", "0", "tls-sniff", "-t", "300"],
      ...["--plain", "{", "starttls-wrapper", "-r", FAKE, "}"],
      ...["--alpn", "h2", "{", "tlsd", "--alpn", "h2", "/nonexistent/program", "}"],
      ...["tlsd", ...REPLY],
    ],
    { env },
  );
  let ends = 0;
  const ended = () => s.waitForLog(/^tcpserver: end /, ++ends);
  try {
    // Post-quantum, then the same client resuming its session with X25519 only.
    const pq = await tlsClient(s.port, { ecdhCurve: "X25519MLKEM768" });
    assert.equal(pq.reply, "got hi\n");
    await ended();
    const again = await tlsClient(s.port, { ecdhCurve: "X25519", session: pq.session });
    assert.equal(again.resumed, true);
    await ended();
    // openssl's client, TLS 1.2.
    const openssl = await run(
      "openssl",
      [
        ...["s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", "localhost"],
        ...["-CAfile", pki.ca.cert, "-verify_return_error", "-tls1_2"],
        ...["-quiet", "-ign_eof"],
      ],
      { input: "hi\n" },
    );
    assert.match(openssl.stdout, /^got hi$/m, openssl.stderr + s.log());
    await ended();
    // TLS 1.1: tls-sniff sees TLS, tlsd refuses the version.
    const old = await run(
      "openssl",
      ["s_client", "-connect", `127.0.0.1:${s.port}`, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
      { input: "" },
    );
    assert.notEqual(old.code, 0);
    await ended();
    // ALPN h2: routed by tls-sniff, the handshake works, the program cannot be run.
    const h2 = await tlsClient(s.port, { ALPNProtocols: ["h2"], ecdhCurve: "X25519" });
    assert.equal(h2.reply, "");
    await ended();
    // A plaintext SMTP client (silent first) behind starttls-wrapper -r: MAIL before STARTTLS.
    const smtp = await smtpClient(s.port, [
      { until: /^220 /m, send: "EHLO client.test\r\n" },
      { until: /^250 /m, send: "MAIL FROM:<a@client.test>\r\n" },
      { until: /^530 /m, send: "QUIT\r\n" },
      { until: /^221 /m },
    ]);
    assert.match(smtp, /^530 5\.7\.0 Must issue a STARTTLS command first\r$/m);
    await ended();
    // Denied by the rules.
    assert.equal(await rawClient(s.port, "127.0.0.2"), "");
    await ended();
    // -C 1: a second connection from 127.0.0.3 while its first one is open.
    const holder = tlsConnect({
      socket: connect({ port: s.port, host: "127.0.0.1", localAddress: "127.0.0.3" }),
      servername: "localhost",
      ca: [readFileSync(pki.ca.cert)],
      ecdhCurve: "X25519",
    });
    let held = "";
    holder.setEncoding("latin1");
    holder.on("data", (d: string) => (held += d));
    const holderClosed = new Promise((resolve) => holder.once("close", resolve));
    await new Promise((resolve, reject) => {
      holder.once("secureConnect", resolve);
      holder.once("error", reject);
    });
    assert.equal(await rawClient(s.port, "127.0.0.3"), "");
    await s.waitForLog(/^tcpserver: reject 127\.0\.0\.3 count 1\/1$/);
    holder.on("end", () => holder.end());
    holder.write("hi\n");
    await holderClosed;
    assert.equal(held, "got hi\n");
    await ended();

    const r = await scrape({ port: metricsPort });
    assert.equal(r.status, 200);
    assert.equal(r.contentType, "text/plain; version=0.0.4; charset=utf-8");
    const m = r.body;
    assert.equal(value(m, "tcpserver_connections_accepted_total"), 9, m);
    assert.equal(value(m, "tcpserver_connections_denied_total"), 1);
    assert.equal(value(m, "tcpserver_connections_refused_total"), 1);
    assert.equal(value(m, "tcpserver_connections_active"), 0);
    assert.equal(value(m, "tcpserver_connections_limit"), 40);
    assert.equal(value(m, "tcpserver_spawn_failures_total"), 1);
    // pq, resumed, openssl, smtp, holder; the TLS 1.1 client; the program not found (tlsd 111).
    assert.equal(value(m, "tcpserver_program_exits_total", { status: "0" }), 5);
    assert.equal(value(m, "tcpserver_program_exits_total", { status: "98" }), 1);
    assert.equal(value(m, "tcpserver_program_exits_total", { status: "111" }), 1);
    const ok = (version: string, group: string, resumed: string) =>
      value(m, "tlsd_handshakes_total", { result: "ok", version, group, resumed });
    assert.equal(ok("TLSv1.3", "X25519MLKEM768", "false"), 1);
    assert.equal(ok("TLSv1.3", "X25519", "true"), 1);
    assert.equal(ok("TLSv1.2", "X25519", "false"), 1);
    // h2 and the holder.
    assert.equal(ok("TLSv1.3", "X25519", "false"), 2);
    assert.equal(
      value(m, "tlsd_handshakes_total", { result: "failed", reason: "protocol_version" }),
      1,
    );
    assert.equal(
      value(m, "tlsd_certificate_expiry_timestamp_seconds", { name: "default", file: cert.cert }),
      notAfter,
    );
    const sniffed = (verdict: string, route: string) =>
      value(m, "tls_sniff_connections_total", { verdict, route });
    assert.equal(sniffed("tls", "default"), 5);
    assert.equal(sniffed("tls", "alpn:h2"), 1);
    assert.equal(sniffed("silent", "plain"), 1);
    assert.equal(value(m, "starttls_wrapper_refusals_total", { protocol: "smtp" }), 1);
    assert.equal(value(m, "starttls_wrapper_upgrades_total", { protocol: "smtp" }), undefined);
    assert.ok((value(m, "process_open_fds") ?? 0) > 0);
    await promtool(m);
    // Nothing but GET (or HEAD) /metrics.
    assert.equal((await scrape({ port: metricsPort }, "/")).status, 404);
  } finally {
    await s.stop();
  }
});

test("tcpserver --metrics /path.sock: starttls-wrapper upgrades (swaks) and declines (smtplib), scraped over the UNIX socket, which goes with tcpserver", async () => {
  const socketPath = join(dir, "metrics.sock");
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "--metrics", socketPath, "127.0.0.1", "0", "starttls-wrapper", FAKE],
    { env },
  );
  try {
    const swaks = await run("swaks", [
      ...["--server", "127.0.0.1", "--port", String(s.port), "--quit-after", "RCPT"],
      ...["--tls", "--tls-verify", "--tls-ca-path", pki.ca.cert, "--tls-sni", "localhost"],
      ...["--helo", "swaks.test", "--from", "a@swaks.test", "--to", "b@example.org"],
    ]);
    assert.equal(swaks.code, 0, swaks.stdout + swaks.stderr);
    assert.match(swaks.stdout, /^<- {2}220 2\.0\.0 Ready to start TLS/m);
    await s.waitForLog(/^tcpserver: end /, 1);
    const python = await run("python3", [
      "-c",
      [
        "import smtplib, sys",
        `c = smtplib.SMTP("127.0.0.1", ${s.port})`,
        "c.ehlo('plain.test')",
        "assert c.has_extn('starttls')",
        "print(c.mail('a@plain.test')[0])",
        "c.quit()",
      ].join("\n"),
    ]);
    assert.equal(python.stdout, "250\n", python.stderr);
    await s.waitForLog(/^tcpserver: end /, 2);

    const r = await scrape({ socketPath });
    assert.equal(r.status, 200);
    const m = r.body;
    assert.equal(value(m, "starttls_wrapper_upgrades_total", { protocol: "smtp" }), 1, m);
    assert.equal(value(m, "starttls_wrapper_declines_total", { protocol: "smtp" }), 1);
    assert.equal(value(m, "starttls_wrapper_refusals_total", { protocol: "smtp" }), undefined);
    assert.equal(
      value(m, "tlsd_handshakes_total", {
        result: "ok",
        version: "TLSv1.3",
        group: "X25519",
        resumed: "false",
      }),
      1,
    );
    assert.equal(value(m, "tcpserver_connections_accepted_total"), 2);
    assert.equal(value(m, "tcpserver_program_exits_total", { status: "0" }), 2);
    await promtool(m);
    assert.equal(listeningSockets(s.child.pid ?? 0), 2);
  } finally {
    await s.stop();
  }
  assert.throws(() => readlinkSync(socketPath), /ENOENT/);
});

test("tcpserver --workers 2 --metrics: one scrape adds up every process's connections", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "-c", "10", "--workers", "2", "--metrics", `127.0.0.1:${metricsPort}`],
      ...["127.0.0.1", "0", "echo", "hi"],
    ],
    { env },
  );
  try {
    // Both processes listen once both have said their status line.
    await s.waitForLog(/^tcpserver: status: 0\/5$/, 2);
    for (let i = 0; i < 8; i++) assert.equal(await rawClient(s.port, "127.0.0.1"), "hi\n");
    await s.waitForLog(/^tcpserver: end /, 8);
    const m = (await scrape({ port: metricsPort })).body;
    assert.equal(value(m, "tcpserver_connections_accepted_total"), 8, m);
    assert.equal(value(m, "tcpserver_program_exits_total", { status: "0" }), 8);
    assert.equal(value(m, "tcpserver_connections_limit"), 10);
    await promtool(m);
  } finally {
    await s.stop();
  }
});

test("tcpserver --metrics with certificates on demand from pebble: an order issued, one failed (its name points where nothing listens), one refused by ACME_RATE", async () => {
  const metricsPort = await freePort();
  const port = await freePort();
  const pebble = await startPebble({ tlsPort: port });
  const cache = mkdtempSync(join(dir, "acme-"));
  const rootFile = join(dir, "pebble-root.pem");
  try {
    writeFileSync(rootFile, await pebble.root());
    // pebble validates bad.test on 127.0.0.2, where nothing listens: the order fails.
    await pebble.addA("bad.test", ["127.0.0.2"]);
    const s = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", String(port)],
        ...["tlsd", ...REPLY],
      ],
      {
        env: {
          ...env,
          CERTDIR: cache,
          ACME_DIRECTORY: pebble.directory,
          ACME_CAFILE: pebble.listenerCa,
          ACME_NAMES: "a.test bad.test b.test",
          ACME_RATE: "2",
        },
      },
    );
    // openssl's client asking for `name`, verifying pebble's certificate for it.
    const client = (name: string) =>
      run(
        "openssl",
        [
          ...["s_client", "-connect", `127.0.0.1:${port}`, "-servername", name],
          ...["-CAfile", rootFile, "-verify_hostname", name, "-verify_return_error"],
          ...["-quiet", "-ign_eof"],
        ],
        { input: "hi\n", timeoutMs: 30_000 },
      );
    try {
      const before = (await scrape({ port: metricsPort })).body;
      assert.match(before, /^# TYPE tlsd_acme_orders_total counter$/m);
      assert.doesNotMatch(before, /^tlsd_acme_orders_total\{/m);

      const issued = await client("a.test");
      assert.equal(issued.code, 0, issued.stderr + s.log() + pebble.log());
      assert.equal(issued.stdout, "got hi\n");
      assert.notEqual((await client("bad.test")).code, 0);
      await s.waitForLog(/^tlsd: warning: acme: bad\.test: order failed: /);
      // Two orders made this hour: b.test's is not.
      assert.notEqual((await client("b.test")).code, 0);
      await s.waitForLog(/^tlsd: warning: acme: b\.test: not ordered: ACME_RATE \(2 an hour\)/);

      const m = (await scrape({ port: metricsPort })).body;
      const orders = (result: string) => value(m, "tlsd_acme_orders_total", { result });
      assert.equal(orders("issued"), 1, m);
      assert.equal(orders("failed"), 1);
      assert.equal(orders("rate_limited"), 1);
      assert.equal(
        m.split("\n").filter((line) => line.startsWith("tlsd_acme_orders_total")).length,
        3,
        m,
      );
      // The certificate issued is served from the cache: its expiry is there too.
      const leaf = new X509Certificate(readFileSync(join(cache, "a.test", "fullchain.pem")));
      assert.equal(
        value(m, "tlsd_certificate_expiry_timestamp_seconds", {
          name: "a.test",
          file: join(cache, "a.test", "fullchain.pem"),
        }),
        Math.floor(leaf.validToDate.getTime() / 1000),
        m,
      );
      await promtool(m);
    } finally {
      await s.stop();
    }
  } finally {
    pebble.stop();
    rmSync(cache, { recursive: true, force: true });
  }
});

test("tcpserver --metrics with tcpforward: connections made and refused, a loop, relays each side broke, and --if-plain's TLS clients and probes by the services' answers", async () => {
  // A service with TLS of its own (its own certificate), and a plaintext one that greets.
  const own = pki.server("service.test", ["service.test"]);
  const tlsService = createTlsServer(
    { cert: readFileSync(own.cert), key: readFileSync(own.key) },
    (c) => {
      c.on("error", () => {});
      c.write("from the service\n");
      c.on("data", () => c.end());
    },
  );
  const plainService = createServer((c) => {
    c.on("error", () => {});
    c.write("220 plain\r\n");
    c.on("data", () => c.end());
  });
  const listen = (server: Server) =>
    new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
    );
  const [tlsPort, plainPort, closed, metricsPort] = [
    await listen(tlsService),
    await listen(plainService),
    await freePort(),
    await freePort(),
  ];
  const to = (port: number) => ["127.0.0.1", String(port)];
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0", "tls-sniff"],
      ...["--sni", "tls.test", "{", "tcpforward", "--if-plain", "{", "tlsd", "cat", "}"],
      ...[...to(tlsPort), "}"],
      ...["--sni", "plain.test", "{", "tcpforward", "--if-plain", "{", "tlsd", "tcpforward"],
      ...[...to(plainPort), "}", ...to(plainPort), "}"],
      ...["--sni", "loop.test", "{", "tcpforward", "}"],
      ...["--plain", "{", "tcpforward", ...to(plainPort), "}"],
      ...["tcpforward", ...to(closed)],
    ],
    { env },
  );
  try {
    // Two TLS clients of a service that speaks TLS: asked once, both get its own certificate.
    for (let i = 0; i < 2; i++) {
      const hello = await tlsHello(s.port, "tls.test");
      assert.equal(hello.subject, "service.test");
      assert.equal(hello.reply, "from the service\n");
    }
    // Two of the plaintext service: asked once, both get TLS from tlsd and its greeting.
    for (let i = 0; i < 2; i++) {
      const hello = await tlsHello(s.port, "plain.test");
      assert.equal(hello.subject, "localhost");
      assert.equal(hello.reply, "220 plain\r\n");
    }
    // A TLS client of the default route, whose service is not there: reset, as the
    // service's host would have.
    const refused = await tlsHello(s.port, "other.test").catch(
      (error: unknown) => (error as { code?: string }).code,
    );
    assert.equal(refused, "ECONNRESET");
    await s.waitForLog(
      /tcpforward: fatal: .*unable to connect to 127\.0\.0\.1 port \d+: connection refused$/,
    );
    // A plaintext client that resets once the relay has brought it the greeting.
    await resetAfterGreeting(s.port);
    await s.waitForLog(/tcpforward: fatal: .*the client's connection broke: connection reset/);
    // tcpforward without interception or a destination: the address asked for is tcpserver's
    // own, so the connection it makes comes back as a client. That one is a loop, refused, and
    // the first sees its service break.
    const looped = await tlsHello(s.port, "loop.test").catch(
      (error: unknown) => (error as { code?: string }).code,
    );
    assert.equal(looped, "ECONNRESET");
    await s.waitForLog(/tcpforward: fatal: .*a loop: this connection comes from tcpforward itself/);
    await s.waitForLog(/^tcpserver: end /, 8);

    const m = (await scrape({ port: metricsPort })).body;
    // tls.test: the probe, then the second client's own; plain.test: the probe, then tlsd's
    // two; the client that reset; the loop's first.
    assert.equal(value(m, "tcpforward_connections_total", { result: "ok" }), 7, m);
    assert.equal(value(m, "tcpforward_connections_total", { result: "loop" }), 1);
    assert.equal(value(m, "tcpforward_connections_total", { result: "refused" }), 1);
    assert.equal(value(m, "tcpforward_relays_broken_total", { side: "client" }), 1);
    assert.equal(value(m, "tcpforward_relays_broken_total", { side: "service" }), 1);
    assert.equal(value(m, "tcpforward_if_plain_clients_total", { to: "service" }), 2);
    assert.equal(value(m, "tcpforward_if_plain_clients_total", { to: "program" }), 2);
    assert.equal(value(m, "tcpforward_if_plain_probes_total", { answer: "tls" }), 1);
    assert.equal(value(m, "tcpforward_if_plain_probes_total", { answer: "plain" }), 1);
    await promtool(m);
  } finally {
    await s.stop();
    tlsService.close();
    plainService.close();
  }
});

/** A TLS client asking for `servername` (any certificate): whose certificate it got, and all
 * the server said. */
function tlsHello(port: number, servername: string): Promise<{ subject: string; reply: string }> {
  return new Promise((resolve, reject) => {
    const c = tlsConnect({ port, host: "127.0.0.1", servername, rejectUnauthorized: false });
    let reply = "";
    let subject = "";
    c.setEncoding("latin1");
    c.once("secureConnect", () => (subject = String(c.getPeerCertificate().subject.CN)));
    c.on("data", (d: string) => {
      reply += d;
      if (reply.endsWith("\n")) c.end("bye\n");
    });
    c.once("close", () => resolve({ subject, reply }));
    c.once("error", reject);
  });
}

/** A plaintext client that sends a line, and resets its connection once a greeting came. */
function resetAfterGreeting(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = connect({ port, host: "127.0.0.1" }, () => c.write("hello\r\n"));
    c.once("data", () => c.resetAndDestroy());
    c.once("close", () => resolve());
    c.once("error", reject);
  });
}

test("tcpserver: no metrics listener without --metrics; a bad --metrics is a usage error, a busy one exit 111", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "echo", "hi"], {
    env,
  });
  try {
    assert.equal(listeningSockets(s.child.pid ?? 0), 1);
  } finally {
    await s.stop();
  }
  const bad = await run(ours("tcpserver"), ["--metrics", "9100", "127.0.0.1", "0", "echo"], {
    env,
  });
  assert.equal(bad.code, 100);
  assert.match(bad.stderr, /^tcpserver: --metrics needs host:port, .* not '9100'\n/);
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
  const port = (busy.address() as { port: number }).port;
  try {
    const r = await run(
      ours("tcpserver"),
      ["--metrics", `127.0.0.1:${port}`, "127.0.0.1", "0", "echo"],
      { env },
    );
    assert.equal(r.code, 111);
    assert.equal(
      r.stderr,
      `tcpserver: fatal: unable to bind metrics address 127.0.0.1:${port}: address already used\n`,
    );
  } finally {
    busy.close();
  }
});

/** How many listening sockets (TCP or UNIX) process `pid` holds, per /proc. */
function listeningSockets(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  let listening = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"])
    for (const line of readFileSync(table, "latin1").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === "0A" && inodes.has(f[9] ?? "")) listening++;
    }
  // Num RefCount Protocol Flags Type St Inode Path: Flags 00010000 is a listener.
  for (const line of readFileSync("/proc/net/unix", "latin1").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === "00010000" && inodes.has(f[6] ?? "")) listening++;
  }
  return listening;
}

test("docs/tcpserver.md lists every metric the stages count, and no other of ours", () => {
  const names = FAMILIES.map((f) => f.spec.name);
  const page = readFileSync(join(ROOT, "docs", "tcpserver.md"), "utf8");
  const listed = [...page.matchAll(/^\| `([a-z_]+)` \| (?:counter|gauge) \|/gm)].map((m) => m[1]);
  assert.deepEqual(
    listed.filter((name) => !name?.startsWith("process_") && !name?.startsWith("nodejs_")).sort(),
    [...names].sort(),
  );
});

test("tcpserver --metrics: clients that connect and send nothing, or half a request, cannot shut the scraper out", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0", "echo", "hi"],
    { env },
  );
  const holders: Socket[] = [];
  try {
    // Twice the endpoint's 16 connections: half silent, half stuck in their request's head.
    for (let i = 0; i < 32; i++) {
      const socket = connect({ port: metricsPort, host: "127.0.0.1" });
      socket.on("error", () => {});
      holders.push(socket);
      await new Promise((resolve) => socket.once("connect", resolve));
      if (i % 2) socket.write("GET /metrics HTTP/1.1\r\nHost: localhost\r\n");
    }
    for (let i = 0; i < 3; i++) {
      const m = await scrape({ port: metricsPort });
      assert.equal(m.status, 200);
      assert.equal(value(m.body, "tcpserver_connections_accepted_total"), 0);
    }
  } finally {
    for (const socket of holders) socket.destroy();
    await s.stop();
  }
});

// A session that -r ends at a pre-TLS limit is a refusal, as the line protocols count theirs;
// the client-first protocols, MySQL and XMPP counted none.
test("starttls-wrapper -r -t: a session ended at the pre-TLS limit counts as a refusal, for every protocol", async () => {
  for (const protocol of ["postgres", "ldap", "mysql", "xmpp", "smtp"]) {
    const socketPath = join(dir, `refusal-${protocol}.sock`);
    const s = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "--metrics", socketPath, "127.0.0.1", "0"],
        ...["starttls-wrapper", "-r", "-t", "1", "-p", protocol, "cat"],
      ],
      { env },
    );
    try {
      const client = connect(s.port, "127.0.0.1");
      client.on("data", () => {});
      await new Promise((resolve) => client.once("close", resolve));
      await s.waitForLog(/^tcpserver: end /);
      const m = (await scrape({ socketPath })).body;
      assert.equal(
        value(m, "starttls_wrapper_refusals_total", { protocol }),
        1,
        `${protocol}\n${m}`,
      );
    } finally {
      await s.stop();
    }
  }
});

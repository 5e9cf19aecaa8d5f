// Certificates on demand, fully offline: Debian's pebble as the ACME CA (pebble-challtestsrv
// answering its DNS), validating tls-alpn-01 on the very port where our tcpserver runs tlsd.
// openssl s_client and python3 ssl verify what tlsd serves against pebble's root.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { createServer as createHttpServer } from "node:http";
import type { ServerResponse } from "node:http";
import { createServer as createHttpsServer, get as httpsGet } from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { WITH_BYTES, escaped } from "../helpers/bytes.ts";
import { acmeSite, serveAcmeTlsd } from "../helpers/acme-tlsd.ts";
import type { AcmeSite } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { expiredPem } from "../helpers/expired-cert.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import { PATH_WITH_BIN, ROOT, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

type Site = AcmeSite;

/** A tcpserver running tlsd (default certificate: localhost) with CERTDIR `cache`; `wrap`
 * runs it (WITH_BYTES and env(1), for variables that are not UTF-8). */
const serveTlsd = (
  server: string,
  port: number,
  cache: string,
  env: Record<string, string>,
  wrap?: readonly string[],
) => serveAcmeTlsd(server, port, cache, env, { fallback, wrap });

/** `tcpserver` running tlsd on a free port, with a CERTDIR of its own; stop() removes it. */
async function tlsdWithCache(tcpserver: string, env: Record<string, string>) {
  const port = await freePort();
  const cache = scratchDir("acme");
  const server = await serveTlsd(tcpserver, port, cache, env);
  return {
    port,
    server,
    stop: async () => {
      await server.stop();
    },
  };
}

/** pebble, and our tcpserver + tlsd on the port pebble validates on; `wrap` as serveTlsd's. */
const site = (
  env: Record<string, string>,
  validitySeconds?: number,
  tcpserver = ours("tcpserver"),
  wrap?: readonly string[],
): Promise<Site> =>
  acmeSite(
    tcpserver,
    { ACME_NAMES: "a.test b.test *.w.test", ...env },
    { fallback, validitySeconds, wrap },
  );

/** openssl s_client asking for `name`, verifying against `ca` (a failure fails the run). */
async function sClient(port: number, name: string, ca: string) {
  const r = await sClientVerified(port, name, ca, { showcerts: true });
  const pem = servedPem(r.stdout);
  return { ...r, leaf: pem ? new X509Certificate(pem) : undefined };
}

const orders = (s: Site, name: string) =>
  s.server
    .log()
    .split("\n")
    .filter((l) => l === `tlsd: info: acme: ordering a certificate for ${name}`).length;

describe("on demand from pebble", () => {
  let s: Site;
  before(async () => {
    s = await site({});
  });
  after(() => s.stop());

  test("the first handshake for a listed name waits for its certificate, which verifies", async () => {
    const first = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log() + s.pebble.log());
    assert.match(first.stdout, /^hello a\.test$/m);
    // No ACME_* variable reaches the program.
    assert.match(first.stdout, /^0$/m);
    assert.match(first.leaf?.subjectAltName ?? "", /DNS:a\.test/);
    // Cached: the next connection is served from CERTDIR, with no second order.
    const again = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.leaf?.serialNumber, first.leaf?.serialNumber);
    assert.equal(orders(s, "a.test"), 1);
    // certbot's layout; the keys 0600.
    assert.equal(statSync(join(s.cache, "a.test", "privkey.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(join(s.cache, ".acme", "account.key")).mode & 0o777, 0o600);
    const verify = await run("openssl", [
      "verify",
      "-CAfile",
      s.rootFile,
      "-untrusted",
      join(s.cache, "a.test", "fullchain.pem"),
      join(s.cache, "a.test", "fullchain.pem"),
    ]);
    assert.match(verify.stdout, /: OK$/m, verify.stderr);
  });

  test("two names at once, each asked for twice: two orders, four verified handshakes", async () => {
    const results = await Promise.all(
      ["b.test", "x.w.test", "b.test", "x.w.test"].map((name) => sClient(s.port, name, s.rootFile)),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr + s.server.log());
    assert.equal(orders(s, "b.test"), 1);
    assert.equal(orders(s, "x.w.test"), 1);
    // python3's ssl too.
    const py = await run("python3", [
      "-c",
      [
        "import socket, ssl, sys",
        "ctx = ssl.create_default_context(cafile=sys.argv[2])",
        "raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
        "s = ctx.wrap_socket(raw, server_hostname='x.w.test')",
        "print(s.recv(100).decode().split()[1])",
      ].join("\n"),
      String(s.port),
      s.rootFile,
    ]);
    assert.equal(py.stdout.trim(), "x.w.test", py.stderr);
  });

  test("a name outside ACME_NAMES: no order, the default certificate", async () => {
    const r = await sClient(s.port, "evil.test", fallback.cert);
    // The default certificate is for localhost: verification against evil.test fails.
    assert.notEqual(r.code, 0);
    assert.equal(r.leaf?.subject.trim(), "CN=localhost");
    assert.equal(orders(s, "evil.test"), 0);
    // Nor did the CA hear of it: pebble's orders are the three listed names'.
    assert.equal(s.pebble.log().match(/^Pebble .* POST \/order-plz /gm)?.length, 3);
    assert.deepEqual(
      readdirSync(s.cache)
        .filter((e) => !e.startsWith("."))
        .sort(),
      ["a.test", "b.test", "x.w.test"],
    );
  });
});

test("djb's tcpserver, a tlsd per connection: one order for two first clients, the validator answered by a third tlsd", async () => {
  const s = await site({}, undefined, djb("tcpserver"));
  try {
    const [first, second] = await Promise.all([
      sClient(s.port, "a.test", s.rootFile),
      sClient(s.port, "a.test", s.rootFile),
    ]);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    assert.equal(second.code, 0, second.stderr + s.server.log());
    assert.match(first.stdout, /^hello a\.test$/m);
    assert.equal(first.leaf?.serialNumber, second.leaf?.serialNumber);
    // The CERTDIR ledger: one tlsd orders; the other waits for its certificate (or, if it
    // came late, finds it written).
    assert.equal(orders(s, "a.test"), 1);
    await s.server.waitForLog(/^tlsd: info: acme: tls-alpn-01 for a\.test: answered$/);
    // The challenge file is gone with the order; the certificate is served by the next process.
    assert.deepEqual(readdirSync(join(s.cache, ".acme", "tls-alpn-01")), []);
    assert.deepEqual(readdirSync(join(s.cache, ".acme", "orders")), []);
    const again = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(again.leaf?.serialNumber, first.leaf?.serialNumber, again.stderr);
  } finally {
    await s.stop();
  }
});

test("ACME_RATE: an order past the limit is not made, and that handshake is refused", async () => {
  const s = await site({ ACME_RATE: "1" });
  try {
    assert.equal((await sClient(s.port, "a.test", s.rootFile)).code, 0, s.server.log());
    const refused = await sClient(s.port, "b.test", s.rootFile);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.leaf, undefined);
    await s.server.waitForLog(
      /^tlsd: warning: acme: b\.test: not ordered: ACME_RATE \(1 an hour\) reached$/,
    );
    assert.equal(orders(s, "b.test"), 0);
  } finally {
    await s.stop();
  }
});

test("jfe's one port: tls-sniff in front, plaintext to the web page, TLS with certificates on demand", async () => {
  const port = await freePort();
  const pebble = await startPebble({ tlsPort: port });
  const cache = scratchDir("acme");
  const server = await startServer(
    ours("tcpserver"),
    [
      "-vRHl0",
      "127.0.0.1",
      String(port),
      "tls-sniff",
      "--plain",
      "{",
      "ucspi-demo",
      "http",
      "}",
      "tlsd",
      "ucspi-demo",
      "http",
    ],
    {
      env: {
        ...process.env,
        PATH: PATH_WITH_BIN,
        CERTFILE: fallback.cert,
        KEYFILE: fallback.key,
        CERTDIR: cache,
        ACME_DIRECTORY: pebble.directory,
        ACME_CAFILE: pebble.listenerCa,
        ACME_NAMES: "site.test",
      },
    },
  );
  try {
    const rootFile = join(cache, ".pebble-root.pem");
    writeFileSync(rootFile, await pebble.root());
    // The CA's validator (ALPN acme-tls/1) goes through tls-sniff's TLS route to tlsd.
    const tls = await run("curl", [
      "-sS",
      "--cacert",
      rootFile,
      "--resolve",
      `site.test:${port}:127.0.0.1`,
      `https://site.test:${port}/secure`,
    ]);
    assert.equal(tls.code, 0, tls.stderr + server.log() + pebble.log());
    assert.match(tls.stdout, /^tls: TLSv1\.3 /m);
    assert.match(tls.stdout, /^sni: site\.test$/m);
    const plain = await run("curl", ["-sS", `http://127.0.0.1:${port}/plain`]);
    assert.match(plain.stdout, /^tls: none \(plaintext\)$/m, plain.stderr);
  } finally {
    await server.stop();
    pebble.stop();
  }
});

test("renewal: a certificate near its end is replaced in the background", async () => {
  // Pebble's certificates live 8 s here; renewal is due 6 s before the end, so at once.
  const s = await site({ ACME_RENEW_BEFORE: "6" }, 8);
  try {
    const first = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    await new Promise((resolve) => setTimeout(resolve, 2100));
    // Served the old one, which starts the renewal.
    const during = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(during.code, 0, during.stderr);
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/, 2, 30_000);
    const after = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(after.code, 0, after.stderr);
    assert.notEqual(after.leaf?.serialNumber, first.leaf?.serialNumber);
    assert.match(s.server.log(), /^tlsd: info: acme: renewing a\.test /m);
  } finally {
    await s.stop();
  }
});

test("an expired certificate (nobody came while it was due): its client waits for a new one", async () => {
  // Certificates live 3 s, and renewal is not due before they expire.
  const s = await site({ ACME_RENEW_BEFORE: "0" }, 3);
  try {
    const first = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    await new Promise((resolve) => setTimeout(resolve, 3500));
    // -verify_return_error: the expired one would fail the handshake.
    const later = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(later.code, 0, later.stderr + s.server.log());
    assert.notEqual(later.leaf?.serialNumber, first.leaf?.serialNumber);
    assert.equal(orders(s, "a.test"), 2);
  } finally {
    await s.stop();
  }
});

test("an expired certificate in the cache is never served: a name the policy no longer allows, or whose new order failed under ACME_FALLBACK=default, gets the default certificate", async () => {
  const expired = await expiredPem("a.test");
  const closed = await freePort();
  const cases: Record<string, string>[] = [
    { ACME_NAMES: "b.test" },
    { ACME_NAMES: "a.test", ACME_FALLBACK: "default" },
  ];
  for (const env of cases) {
    const port = await freePort();
    const cache = scratchDir("acme");
    mkdirSync(join(cache, "a.test"));
    writeFileSync(join(cache, "a.test", "fullchain.pem"), expired.cert);
    writeFileSync(join(cache, "a.test", "privkey.pem"), expired.key, { mode: 0o600 });
    const server = await serveTlsd(ours("tcpserver"), port, cache, {
      ACME_DIRECTORY: `https://127.0.0.1:${closed}/dir`,
      ...env,
    });
    try {
      const r = await run(
        "openssl",
        ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "a.test", "-showcerts"],
        { input: "", timeoutMs: 30_000 },
      );
      const pem = servedPem(r.stdout);
      assert.ok(pem, r.stderr + server.log());
      assert.equal(new X509Certificate(pem).subject.trim(), "CN=localhost", server.log());
    } finally {
      await server.stop();
    }
  }
});

test("the CA unreachable: a clean failure after the order fails, or the default certificate", async () => {
  const closed = await freePort();
  for (const fallbackToDefault of [false, true]) {
    const { port, server, stop } = await tlsdWithCache(ours("tcpserver"), {
      ACME_DIRECTORY: `https://127.0.0.1:${closed}/dir`,
      ACME_NAMES: "a.test",
      ACME_WAIT: "20000",
      ...(fallbackToDefault ? { ACME_FALLBACK: "default" } : {}),
    });
    try {
      let settled = false;
      const waiting = sClient(port, "a.test", fallback.cert).finally(() => (settled = true));
      await server.waitForLog(/^tlsd: info: acme: ordering a certificate for a\.test$/);
      // While a.test waits for its order, other connections go on.
      const other = await sClient(port, "localhost", pki.ca.cert);
      assert.equal(other.code, 0, other.stderr);
      assert.equal(settled, false, "a.test still waits");
      const r = await waiting;
      const failed = await server.waitForLog(/^tlsd: warning: acme: a\.test: order failed: /);
      // It was acme-client's own TypeError ("Cannot read properties of undefined").
      assert.equal(
        failed[0],
        "tlsd: warning: acme: a.test: order failed: the CA cannot be reached: connection refused",
      );
      assert.notEqual(r.code, 0);
      if (fallbackToDefault) {
        assert.equal(r.leaf?.subject.trim(), "CN=localhost", r.stderr);
      } else {
        assert.equal(r.leaf, undefined, "no certificate at all");
        await server.waitForLog(/^tlsd: fatal: .*no certificate for a\.test yet/);
      }
    } finally {
      await stop();
    }
  }
});

for (const [how, cause] of [
  ["never answers", "no answer from the CA in 10 s"],
  ["answers a byte a second, for ever", "no answer from the CA in 10 s"],
  // It was held in memory, at the speed of the network, for the 10 s.
  ["answers without end, as fast as it can", "the CA's answer is over 1 MB"],
  // acme-client sat out any Retry-After: the order, and the name's lock, held for a day.
  [
    "asks to wait a day (503, Retry-After: 86400)",
    "the CA asks to wait 86400 s before trying again (HTTP 503)",
  ],
] as const) {
  test(`a CA that ${how}: the order ends (one line) within a bound, and the next client's order is made anew`, async () => {
    const port = await freePort();
    const pebble = await startPebble({ tlsPort: port });
    // In front of pebble's directory (whose other URLs are pebble's own): the first request
    // hangs (a CA that takes the connection and goes silent, or trickles its answer); the
    // next ones get pebble's directory.
    const directory = await new Promise<string>((resolve, reject) => {
      httpsGet(pebble.directory, { ca: readFileSync(pebble.listenerCa) }, (res) => {
        let body = "";
        res.setEncoding("latin1");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
    const frontCert = pki.server("127.0.0.1", ["127.0.0.1"]);
    const held: ServerResponse[] = [];
    const trickles: NodeJS.Timeout[] = [];
    const front = createHttpsServer(
      { cert: readFileSync(frontCert.cert), key: readFileSync(frontCert.key) },
      (_req, res) => {
        if (held.length > 0) {
          res.setHeader("Content-Type", "application/json");
          res.end(directory);
          return;
        }
        held.push(res);
        if (how === "never answers") return;
        if (how === "asks to wait a day (503, Retry-After: 86400)") {
          res.writeHead(503, {
            "Content-Type": "application/problem+json",
            "Retry-After": "86400",
          });
          res.end('{"type":"urn:ietf:params:acme:error:serverInternal","detail":"busy"}');
          return;
        }
        if (how === "answers without end, as fast as it can") {
          res.writeHead(200, { "Content-Type": "application/json" });
          const block = Buffer.alloc(64 * 1024, " ");
          const flood = () => {
            while (!res.destroyed && res.write(block));
          };
          res.on("drain", flood);
          res.on("error", () => {});
          flood();
          return;
        }
        res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "100000" });
        trickles.push(setInterval(() => res.write(" "), 1000));
      },
    );
    await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
    const frontPort = (front.address() as { port: number }).port;
    const cache = scratchDir("acme");
    const cas = join(cache, ".cas.pem");
    writeFileSync(
      cas,
      readFileSync(pebble.listenerCa, "latin1") + readFileSync(pki.ca.cert, "latin1"),
    );
    const server = await serveTlsd(ours("tcpserver"), port, cache, {
      ACME_DIRECTORY: `https://127.0.0.1:${frontPort}/dir`,
      ACME_CAFILE: cas,
      ACME_NAMES: "a.test",
      ACME_WAIT: "20000",
    });
    try {
      const first = await sClient(port, "a.test", fallback.cert);
      assert.notEqual(first.code, 0);
      assert.equal(held.length, 1, "the CA was asked");
      // It was a hang for good: the order never ended, and a.test (every name) waited on it.
      const failed = await server.waitForLog(
        /^tlsd: warning: acme: a\.test: order failed: /,
        1,
        60_000,
      );
      assert.equal(failed[0], `tlsd: warning: acme: a.test: order failed: ${cause}`);
      const rootFile = join(cache, ".pebble-root.pem");
      writeFileSync(rootFile, await pebble.root());
      const second = await sClient(port, "a.test", rootFile);
      assert.equal(second.code, 0, second.stderr + server.log());
      assert.equal(orders({ server } as Site, "a.test"), 2);
    } finally {
      for (const timer of trickles) clearInterval(timer);
      for (const res of held) res.destroy();
      front.close();
      await server.stop();
      pebble.stop();
    }
  });
}

for (const [kind, identifier, token, victim, cause] of [
  [
    "http-01",
    "a.test",
    "../../victim",
    "victim",
    "the CA sent a challenge token that is not base64url",
  ],
  [
    "tls-alpn-01",
    "../../../victim",
    "tok",
    "victim.pem",
    "the CA's authorization is not for a.test",
  ],
] as const) {
  test(`a hostile CA: a path in its ${kind} ${kind === "http-01" ? "token" : "identifier"} is never a file name of ours (written, then removed); the order fails, one line`, async () => {
    const ca = await startServer(join(ROOT, "test", "fixtures", "hostile-acme-ca"), [
      identifier,
      kind,
      token,
    ]);
    const top = scratchDir("acme");
    const cache = join(top, "certs");
    mkdirSync(cache);
    // Where the CA's path leads, from CERTDIR/.acme-http-01 or CERTDIR/.acme/tls-alpn-01.
    writeFileSync(join(top, victim), "precious\n");
    const port = await freePort();
    const server = await serveTlsd(ours("tcpserver"), port, cache, {
      ACME_DIRECTORY: `http://127.0.0.1:${ca.port}/dir`,
      ACME_NAMES: "a.test",
      ACME_CHALLENGE: kind,
    });
    try {
      const r = await sClient(port, "a.test", fallback.cert);
      assert.notEqual(r.code, 0);
      const failed = await server.waitForLog(/^tlsd: warning: acme: a\.test: order failed: /);
      assert.match(ca.log(), /^POST \/authz\/1$/m);
      // It was overwritten with the key authorization, then removed.
      assert.equal(readFileSync(join(top, victim), "latin1"), "precious\n");
      assert.equal(failed[0], `tlsd: warning: acme: a.test: order failed: ${cause}`);
    } finally {
      await server.stop();
      await ca.stop();
    }
  });
}

test("a CA that offers no challenge of ACME_CHALLENGE's kind (dns-01 only, where http-01 is asked for): nothing is written, the order fails, one line", async () => {
  const ca = await startServer(join(ROOT, "test", "fixtures", "hostile-acme-ca"), [
    "a.test",
    "dns-01",
    "tok",
  ]);
  const cache = scratchDir("acme");
  const port = await freePort();
  const server = await serveTlsd(ours("tcpserver"), port, cache, {
    ACME_DIRECTORY: `http://127.0.0.1:${ca.port}/dir`,
    ACME_NAMES: "a.test",
    ACME_CHALLENGE: "http-01",
  });
  try {
    const r = await sClient(port, "a.test", fallback.cert);
    assert.notEqual(r.code, 0);
    const [line] = await server.waitForLog(/^tlsd: warning: acme: a\.test: order failed: /);
    assert.equal(
      line,
      "tlsd: warning: acme: a.test: order failed: the CA offers no http-01 challenge for a.test",
    );
    assert.equal(existsSync(join(cache, ".acme-http-01")), false);
  } finally {
    await server.stop();
    await ca.stop();
  }
});

test("a CA that issues a certificate for the name with another key: nothing installed, the order fails, one line", async () => {
  const other = pki.server("a.test", ["a.test"]);
  const ca = await startServer(join(ROOT, "test", "fixtures", "hostile-acme-ca"), [
    "a.test",
    "tls-alpn-01",
    "tok",
    other.cert,
  ]);
  const cache = scratchDir("acme");
  const port = await freePort();
  const server = await serveTlsd(ours("tcpserver"), port, cache, {
    ACME_DIRECTORY: `http://127.0.0.1:${ca.port}/dir`,
    ACME_NAMES: "a.test",
  });
  try {
    await sClient(port, "a.test", fallback.cert);
    const failed = await server.waitForLog(/^tlsd: warning: acme: a\.test: order failed: /);
    assert.equal(
      failed[0],
      "tlsd: warning: acme: a.test: order failed: the CA's certificate does not go with the key ordered",
    );
    // It was installed and said "issued", and every later handshake for a.test failed on it
    // (until that certificate's renewal time).
    assert.equal(existsSync(join(cache, "a.test")), false);
  } finally {
    await server.stop();
    await ca.stop();
  }
});

test("certificates on demand: their peek names a PROXY header; a client that ends inside its ClientHello ends alone", async () => {
  const closed = await freePort();
  const port = await freePort();
  const cache = scratchDir("acme");
  const server = await serveTlsd(ours("tcpserver"), port, cache, {
    ACME_DIRECTORY: `https://127.0.0.1:${closed}/dir`,
    ACME_NAMES: "a.test",
  });
  const send = (bytes: Buffer) =>
    new Promise<void>((resolve) => {
      const c = connect({ port, host: "127.0.0.1" }, () => c.end(bytes));
      c.on("close", () => resolve());
      c.on("error", () => {});
      c.resume();
    });
  try {
    // A record header that promises 512 bytes, and 3 of them, then the end.
    await send(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]));
    await server.waitForLog(/^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: /);
    await send(Buffer.from("PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n"));
    await server.waitForLog(
      /^tlsd: fatal: 127\.0\.0\.1: got a PROXY protocol header: run tcpserver with --proxy$/,
    );
    const after = await sClient(port, "localhost", pki.ca.cert);
    assert.equal(after.code, 0, after.stderr);
    assert.doesNotMatch(server.log(), /internal error/);
  } finally {
    await server.stop();
  }
});

test("http-01: acme-challenge on the port-80 stand-in answers, every other request reaches the web server", async () => {
  const cache = scratchDir("acme");
  const env = {
    ...process.env,
    PATH: PATH_WITH_BIN,
    CERTDIR: cache,
  };
  // Ports the servers bind themselves (0), never one picked and let go before: under the
  // test runner's concurrency another test could take it in between.
  const web = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "acme-challenge", "-v2", "ucspi-demo", "http"],
    { env },
  );
  const httpPort = web.port;
  const pebble = await startPebble({ tlsPort: await freePort(), httpPort });
  const tls = await serveTlsd(ours("tcpserver"), 0, cache, {
    ACME_DIRECTORY: pebble.directory,
    ACME_CAFILE: pebble.listenerCa,
    ACME_NAMES: "a.test",
    ACME_CHALLENGE: "http-01",
  });
  try {
    const rootFile = join(cache, ".pebble-root.pem");
    writeFileSync(rootFile, await pebble.root());
    const r = await sClient(tls.port, "a.test", rootFile);
    assert.equal(r.code, 0, r.stderr + tls.log() + web.log() + pebble.log());
    assert.match(r.stdout, /^hello a\.test$/m);
    await web.waitForLog(/^acme-challenge: info: 127\.0\.0\.1: answered [A-Za-z0-9_-]+$/);
    // The token files go with the order.
    assert.deepEqual(readdirSync(join(cache, ".acme-http-01")), []);
    // Anything else, an unknown token included, is the web server's.
    for (const path of ["/", "/.well-known/acme-challenge/unknown"]) {
      const page = await run("curl", ["-sS", `http://127.0.0.1:${httpPort}${path}`]);
      assert.match(
        page.stdout,
        new RegExp(`^hello from ucspi-tls: GET ${path}$`, "m"),
        page.stderr,
      );
    }
  } finally {
    await tls.stop();
    await web.stop();
    pebble.stop();
  }
});

test("acme-challenge alone: 404 for what is not a challenge; CERTDIR required", async () => {
  const cache = scratchDir("acme");
  const env = { ...process.env, PATH: PATH_WITH_BIN };
  const web = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "acme-challenge"], {
    env: { ...env, CERTDIR: cache },
  });
  try {
    mkdirSync(join(cache, ".acme-http-01"));
    writeFileSync(join(cache, ".acme-http-01", "tok-1"), "tok-1.thumbprint");
    const hit = await run("curl", [
      "-sS",
      "-i",
      `http://127.0.0.1:${web.port}/.well-known/acme-challenge/tok-1`,
    ]);
    assert.match(hit.stdout, /^HTTP\/1\.1 200 OK\r$/m);
    assert.match(hit.stdout, /\r\n\r\ntok-1\.thumbprint$/);
    const miss = await run("curl", ["-sS", "-i", `http://127.0.0.1:${web.port}/index.html`]);
    assert.match(miss.stdout, /^HTTP\/1\.1 404 Not Found\r$/m);
  } finally {
    await web.stop();
  }
  const r = await run(ours("acme-challenge"), [], { env, input: "" });
  assert.equal(r.code, 100);
  assert.match(r.stderr, /^acme-challenge: fatal: CERTDIR not set/);
});

describe("name policies besides the list: ACME_RESOLVE and ACME_ASK", () => {
  test("ACME_RESOLVE: a name that resolves to this host is ordered, one that points elsewhere never is", async () => {
    const s = await site({});
    try {
      await s.server.stop();
      // The same site, its names judged by where DNS (pebble-challtestsrv) points them.
      const server = await serveTlsd(ours("tcpserver"), s.port, s.cache, {
        ACME_DIRECTORY: s.pebble.directory,
        ACME_CAFILE: s.pebble.listenerCa,
        ACME_RESOLVE: "yes",
        ACME_RESOLVER: s.pebble.dns,
      });
      try {
        await s.pebble.addA("far.test", ["192.0.2.7"]);
        const here = await sClient(s.port, "here.test", s.rootFile);
        assert.equal(here.code, 0, here.stderr + server.log());
        const far = await sClient(s.port, "far.test", s.rootFile);
        assert.notEqual(far.code, 0);
        assert.equal(far.leaf?.subject.trim(), "CN=localhost");
        await server.waitForLog(
          /^tlsd: warning: acme: far\.test: not ordered: ACME_RESOLVE: it resolves to 192\.0\.2\.7, not to this host$/,
        );
        const log = server.log();
        assert.equal(
          log.split("\n").filter((l) => l.endsWith("ordering a certificate for here.test")).length,
          1,
        );
        assert.doesNotMatch(log, /ordering a certificate for far\.test/);
      } finally {
        await server.stop();
      }
    } finally {
      await s.stop();
    }
  });

  test("ACME_ASK: the site's own program says yes or no, asked once per name while its verdict is kept; one that cannot be run says no", async () => {
    const dir = scratchDir("ask");
    const asked = join(dir, "asked");
    const ask = join(dir, "ask");
    writeFileSync(
      ask,
      `#!/bin/sh\necho "$1 $ACME_NAME" >> ${asked}\ncase "$1" in yes*) exit 0 ;; esac\nexit 1\n`,
      { mode: 0o755 },
    );
    const s = await site({ ACME_NAMES: "", ACME_ASK: ask });
    try {
      const yes = await sClient(s.port, "yes.test", s.rootFile);
      assert.equal(yes.code, 0, yes.stderr + s.server.log());
      for (let i = 0; i < 2; i++) {
        const no = await sClient(s.port, "no.test", s.rootFile);
        assert.notEqual(no.code, 0);
        assert.equal(no.leaf?.subject.trim(), "CN=localhost");
      }
      await s.server.waitForLog(
        /^tlsd: warning: acme: no\.test: not ordered: ACME_ASK said no \(exit 1\)$/,
      );
      assert.equal(orders(s, "yes.test"), 1);
      assert.equal(orders(s, "no.test"), 0);
      assert.equal(readFileSync(asked, "latin1"), "yes.test yes.test\nno.test no.test\n");
      // A program that cannot be run says no, in our words.
      rmSync(ask);
      const gone = await sClient(s.port, "gone.test", s.rootFile);
      assert.notEqual(gone.code, 0);
      await s.server.waitForLog(
        /^tlsd: warning: acme: gone\.test: not ordered: ACME_ASK could not run: file does not exist$/,
      );
      assert.equal(orders(s, "gone.test"), 0);
    } finally {
      await s.stop();
    }
  });
});

/** An ACME_ASK program that allows the names beginning with "yes". */
const ASK_YES = '#!/bin/sh\ncase "$1" in yes*) exit 0 ;; esac\nexit 1\n';

test("ACME_ASK named with a byte ff: that very program is asked (through Node's spawn it named another file, and every name was refused)", async () => {
  const dir = scratchDir("ask");
  const ask = join(dir, "ask");
  writeFileSync(Buffer.concat([Buffer.from(ask), Buffer.of(0xff)]), ASK_YES, { mode: 0o755 });
  const s = await site({ ACME_NAMES: "" }, undefined, ours("tcpserver"), [
    ...WITH_BYTES,
    "env",
    `ACME_ASK=${ask}\\xff`,
  ]);
  try {
    const yes = await sClient(s.port, "yes.test", s.rootFile);
    assert.equal(yes.code, 0, yes.stderr + s.server.log());
    assert.equal(orders(s, "yes.test"), 1);
  } finally {
    await s.stop();
  }
});

test("a CERTDIR not there yet is made by the first order; without ACME, one that is not there is refused at start", async () => {
  const parent = scratchDir("acme-new");
  const dir = join(parent, "tlsd", "live");
  const s = await site({ CERTDIR: dir });
  try {
    assert.equal(existsSync(dir), false);
    const first = await sClient(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    assert.match(first.leaf?.subjectAltName ?? "", /DNS:a\.test/);
    assert.equal(statSync(join(dir, "a.test", "privkey.pem")).mode & 0o777, 0o600);
  } finally {
    await s.stop();
  }
  const nowhere = join(parent, "nowhere");
  const r = await run(ours("tcpserver"), ["127.0.0.1", "0", "tlsd", "true"], {
    env: {
      ...process.env,
      PATH: PATH_WITH_BIN,
      CERTFILE: fallback.cert,
      KEYFILE: fallback.key,
      CERTDIR: nowhere,
    },
    input: "",
  });
  assert.equal(r.code, 111);
  assert.equal(r.stderr, `tlsd: fatal: unable to read CERTDIR ${nowhere}: file does not exist\n`);
});

/** A name under `parent` ending in `bytes`: as node:fs takes it, and as WITH_BYTES writes it. */
function byteNamed(parent: string, name: string, bytes: Buffer) {
  const path = Buffer.concat([Buffer.from(join(parent, name)), bytes]);
  return {
    path,
    word: `${join(parent, name)}${escaped(bytes)}`,
    sub: (...p: string[]) => Buffer.concat([path, Buffer.from(`/${p.join("/")}`)]),
  };
}

/** The entries of `dir` as hex (names that are not UTF-8 too), sorted. */
const entriesHex = (dir: string) =>
  readdirSync(dir, { encoding: "buffer" })
    .map((e) => e.toString("hex"))
    .sort();

// The name as the environment has it, whether or not it is UTF-8: ff, and é (c3 a9) which
// tlsd wrote to c3 83 c2 a9 (each byte taken for a character and written as UTF-8).
for (const [what, bytes] of [
  ["a byte ff", Buffer.of(0xff)],
  ["é (UTF-8)", Buffer.of(0xc3, 0xa9)],
] as const) {
  test(`CERTDIR and ACME_CAFILE named with ${what}: the account, the order and the certificate go there, and it serves`, async () => {
    const port = await freePort();
    const pebble = await startPebble({ tlsPort: port });
    const parent = scratchDir("acme-bytes");
    try {
      const cache = byteNamed(parent, "live", bytes);
      mkdirSync(cache.path);
      const ca = byteNamed(parent, "ca.pem", bytes);
      writeFileSync(ca.path, readFileSync(pebble.listenerCa));
      const rootFile = join(parent, "root.pem");
      writeFileSync(rootFile, await pebble.root());
      const server = await serveTlsd(
        ours("tcpserver"),
        port,
        "", // CERTDIR: env(1)'s
        { ACME_DIRECTORY: pebble.directory, ACME_NAMES: "a.test" },
        [...WITH_BYTES, "env", `CERTDIR=${cache.word}`, `ACME_CAFILE=${ca.word}`],
      );
      try {
        const first = await sClient(port, "a.test", rootFile);
        assert.equal(first.code, 0, first.stderr + server.log() + pebble.log());
        assert.match(first.leaf?.subjectAltName ?? "", /DNS:a\.test/);
        assert.equal(statSync(cache.sub("a.test", "privkey.pem")).mode & 0o777, 0o600);
        assert.equal(statSync(cache.sub(".acme", "account.key")).mode & 0o777, 0o600);
        assert.match(server.log(), /^tlsd: info: acme: a\.test: issued in \d+ ms$/m);
      } finally {
        await server.stop();
      }
      // Nothing written under any other name.
      assert.deepEqual(
        entriesHex(parent),
        [ca.path, cache.path, Buffer.from(rootFile)]
          .map((p) => p.subarray(parent.length + 1).toString("hex"))
          .sort(),
      );
    } finally {
      pebble.stop();
    }
  });
}

test("acme-challenge: a CERTDIR named with a byte ff, or with é (UTF-8), is where it reads the key authorizations", async () => {
  const parent = scratchDir("acme-bytes");
  for (const bytes of [Buffer.of(0xff), Buffer.of(0xc3, 0xa9)]) {
    const cache = byteNamed(parent, "live", bytes);
    mkdirSync(cache.sub(".acme-http-01"), { recursive: true });
    writeFileSync(cache.sub(".acme-http-01", "tok-1"), "tok-1.thumbprint");
    const web = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "acme-challenge"],
      {
        env: { ...process.env, PATH: PATH_WITH_BIN },
        wrap: [...WITH_BYTES, "env", `CERTDIR=${cache.word}`],
      },
    );
    try {
      const hit = await run("curl", [
        "-sS",
        "-i",
        `http://127.0.0.1:${web.port}/.well-known/acme-challenge/tok-1`,
      ]);
      assert.match(hit.stdout, /^HTTP\/1\.1 200 OK\r$/m, hit.stderr + web.log());
      assert.match(hit.stdout, /\r\n\r\ntok-1\.thumbprint$/);
    } finally {
      await web.stop();
    }
  }
});

test("configuration errors: one line, exit 100", async () => {
  const base = {
    ...process.env,
    CERTFILE: fallback.cert,
    KEYFILE: fallback.key,
    ACME_DIRECTORY: "https://127.0.0.1:1/dir",
  };
  for (const [env, message] of [
    [
      { CERTDIR: "/tmp" },
      /ACME_DIRECTORY needs a name policy: ACME_NAMES .*, ACME_RESOLVE or ACME_ASK/,
    ],
    [{ CERTDIR: "/tmp", ACME_RESOLVE: "maybe" }, /ACME_RESOLVE: yes or no, not 'maybe'/],
    [
      { CERTDIR: "/tmp", ACME_RESOLVE: "yes", ACME_RESOLVER: "127.0.0.1:53,dns.example" },
      /ACME_RESOLVER: IP addresses \(and :port\), not 'dns\.example'/,
    ],
    [{ ACME_NAMES: "a.test" }, /ACME_DIRECTORY needs CERTDIR/],
    [{ CERTDIR: "/tmp", ACME_NAMES: "a.test bad_name!" }, /ACME_NAMES: not a host name/],
    [{ CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_WAIT: "soon" }, /ACME_WAIT needs a number/],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_CHALLENGE: "dns-02" },
      /ACME_CHALLENGE: tls-alpn-01, http-01, dns-01, not 'dns-02'/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_CHALLENGE: "dns-01" },
      /ACME_CHALLENGE=dns-01 needs ACME_DNS_HOOK \(the program that publishes the TXT record\)/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_CHALLENGE: "http-01", ACME_DNS_HOOK: "hook" },
      /ACME_DNS_HOOK is for dns-01, not ACME_CHALLENGE=http-01/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_DNS_WAIT: "30" },
      /ACME_DNS_WAIT is for dns-01, not ACME_CHALLENGE=tls-alpn-01/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "*.w.test", ACME_WILDCARD: "yes" },
      /ACME_WILDCARD needs dns-01 \(ACME_DNS_HOOK\): a CA validates a wildcard name by DNS only/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_WILDCARD: "yes", ACME_DNS_HOOK: "hook" },
      /ACME_WILDCARD needs a \*\.name in ACME_NAMES/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_PROFILE: "short lived" },
      /ACME_PROFILE: a profile's name, not 'short lived'/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_KEY_TYPE: "ed25519" },
      /ACME_KEY_TYPE: p256, p384, rsa2048, rsa3072, rsa4096, not 'ed25519'/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test 2001:DB8::7", ACME_DNS_HOOK: "hook" },
      /ACME_NAMES: an IP address \(2001:db8::7\) is validated by http-01 or tls-alpn-01, not dns-01/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test 2001:db8::zz" },
      /ACME_NAMES: not a host name, \*\.name or IP address: '2001:db8::zz'/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_EAB_KID: "kid-1" },
      /ACME_EAB_KID and ACME_EAB_KEYFILE go together/,
    ],
    [
      { CERTDIR: "/tmp", ACME_NAMES: "a.test", ACME_EAB_KEYFILE: "/tmp/eab.key" },
      /ACME_EAB_KID and ACME_EAB_KEYFILE go together/,
    ],
  ] as const) {
    const r = await run(ours("tlsd"), ["true"], { env: { ...base, ...env }, input: "" });
    assert.equal(r.code, 100, r.stderr);
    assert.match(r.stderr, /^tlsd: fatal: /);
    assert.match(r.stderr, message);
  }
});

test("djb's tcpserver: a tlsd that waited on another's order that failed (a CA that never answers) says why, as the one that ordered", async () => {
  const held: ServerResponse[] = [];
  const ca = createHttpServer((_req, res) => held.push(res));
  await new Promise<void>((resolve) => ca.listen(0, "127.0.0.1", resolve));
  const caPort = (ca.address() as { port: number }).port;
  const { port, server, stop } = await tlsdWithCache(djb("tcpserver"), {
    ACME_DIRECTORY: `http://127.0.0.1:${caPort}/dir`,
    ACME_NAMES: "a.test",
    ACME_WAIT: "30000",
  });
  try {
    const clients = await Promise.all([0, 1].map(() => sClient(port, "a.test", fallback.cert)));
    for (const r of clients) assert.notEqual(r.code, 0);
    await server.waitForLog(/^tlsd: info: acme: a\.test: being ordered by another tlsd/);
    const cause = "no answer from the CA in 10 s";
    // The waiting tlsd's client was refused with no cause in its log at all.
    await server.waitForLog(
      new RegExp(`^tlsd: warning: acme: a\\.test: the other tlsd's order failed: ${cause}$`),
    );
    await server.waitForLog(new RegExp(`^tlsd: warning: acme: a\\.test: order failed: ${cause}$`));
  } finally {
    for (const res of held) res.destroy();
    ca.close();
    await stop();
  }
});

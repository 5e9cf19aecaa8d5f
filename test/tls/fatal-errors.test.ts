// The TLS layer's error paths and defaults with real peers (issue 11, items 1, 2, 4 and 6): a
// TLS error after the handshake ends the session at once with a log line and status 98, in
// tlsd and tlsc alike; no renegotiation; the server's preference for suites and groups; a
// handshake time limit by default.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { connect as netConnect } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { makePki } from "../helpers/certs.ts";
import { PY_BIO, pyTlsServer } from "../helpers/py-bio.ts";
import { tlsExchange } from "../helpers/tls-client.ts";
import { parseTlsdArgs } from "../../src/tlsd/options.ts";
import { parseTlscArgs } from "../../src/tlsc/options.ts";

const pki = makePki();
const other = makePki();
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const env = (extra: Record<string, string> = {}) => ({
  PATH,
  CERTFILE: server.cert,
  KEYFILE: server.key,
  ...extra,
});
/** 98, as wait() reports it. */
const TLS_FAILED = `status ${98 << 8}`;

/** A python3 ssl client on memory BIOs: a TLS 1.3 handshake, one record each way, then a
 * forged application-data record; prints what the raw socket saw next: EOF, RESET or TIMEOUT. */
function forgedRecordClient(port: number) {
  const script = `${PY_BIO}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
raw = socket.create_connection(("127.0.0.1", ${port}))
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
handshake()
flush()
tls.write(b"hello\\n")
flush()
read_line()
forge()
try:
    while raw.recv(65536):
        pass
    print("EOF")
except socket.timeout:
    print("TIMEOUT")
except ConnectionResetError:
    print("RESET")
`;
  return run("python3", ["-c", script], { timeoutMs: 45_000 });
}

/** Our tcpclient + tlsc to a test server on `port`: the program writes one line and reads. */
function tlscSaysHi(port: string, options: string[], extraEnv: Record<string, string>) {
  return run(
    ours("tcpclient"),
    [
      "-RHl0",
      "127.0.0.1",
      port,
      "tlsc",
      ...options,
      "-k",
      "localhost",
      "sh",
      "-c",
      "printf 'hi\\n' >&7; cat <&6",
    ],
    { env: { PATH, CAFILE: pki.ca.cert, ...extraEnv }, timeoutMs: 30_000 },
  );
}

for (const [who, tcpserver] of [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const) {
  test(`${who}: a forged record after the handshake ends the session at once, logged, status 98`, async () => {
    const s = await startServer(tcpserver, ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
      env: env(),
    });
    try {
      const r = await forgedRecordClient(s.port);
      assert.equal(r.stderr, "");
      assert.match(r.stdout, /^(EOF|RESET)\n$/, "the connection is closed, not left open");
      const [line] = await s.waitForLog(/^tlsd: fatal: 127\.0\.0\.1: TLS session failed: /);
      assert.match(line ?? "", /decryption failed or bad record mac|bad record mac/i);
      await s.waitForLog(new RegExp(`^tcpserver: end \\d+ ${TLS_FAILED}$`));
    } finally {
      await s.stop();
    }
  });
}

test("tlsc: a TLS 1.3 server that refuses our certificate after the handshake is a failure (98), never a success", async () => {
  const client = pki.client("someone");
  const srv = spawn(
    "openssl",
    [
      "s_server",
      "-accept",
      "0",
      "-naccept",
      "1",
      "-tls1_3",
      "-cert",
      server.cert,
      "-key",
      server.key,
      "-Verify",
      "1",
      "-verify_return_error",
      "-CAfile",
      other.ca.cert,
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  try {
    let out = "";
    srv.stdout.setEncoding("latin1");
    srv.stdout.on("data", (s: string) => (out += s));
    while (!/ACCEPT/.test(out)) await once(srv.stdout, "data");
    const port = /ACCEPT\s+\S*:(\d+)/.exec(out)?.[1] ?? "";
    const r = await tlscSaysHi(port, ["-y"], {
      CERTFILE: client.cert,
      KEYFILE: client.key,
    });
    assert.equal(r.code, 98, r.stderr);
    assert.match(
      r.stderr,
      /^tlsc: fatal: TLS session failed: .*(unknown ca|certificate required)$/m,
    );
  } finally {
    srv.kill();
  }
});

test("tlsc: a server's forged record after the handshake ends tlsc with 98 and a log line", async () => {
  // The server side of the forgery: python3 ssl on memory BIOs, answering one line, then
  // writing a record no key made.
  const script = `${pyTlsServer(server)}
tls.write(read_line())
flush()
forge()
try:
    while raw.recv(65536):
        pass
except OSError:
    pass
`;
  const srv = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const [first] = (await once(srv.stdout, "data")) as [Buffer];
    const port = first.toString().trim();
    const r = await tlscSaysHi(port, [], {});
    assert.equal(r.code, 98, r.stderr);
    assert.match(r.stderr, /^tlsc: fatal: TLS session failed: /m);
  } finally {
    srv.kill();
  }
});

/** openssl s_client (TLS 1.2, `connect`: where and by what name) asks for a renegotiation: it
 * does on a line "R", and the line after it would be echoed if the session went on. */
async function renegotiationRefused(connect: string[]): Promise<void> {
  const r = await run("openssl", ["s_client", "-tls1_2", ...connect, "-CAfile", pki.ca.cert], {
    input: "R\nafter\n",
    timeoutMs: 20_000,
  });
  const all = r.stdout + r.stderr;
  assert.match(all, /RENEGOTIATING/);
  assert.match(all, /no renegotiation|alert/i);
  assert.doesNotMatch(r.stdout, /^after$/m, "no data after a refused renegotiation");
}

test("tlsd: a TLS 1.2 client's renegotiation is refused; the session had one handshake", async () => {
  const s = await startServer(ours("tcpserver"), ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: env(),
  });
  try {
    await renegotiationRefused(["-connect", `127.0.0.1:${s.port}`]);
  } finally {
    await s.stop();
  }
});

for (const [who, tcpclient] of [
  ["our tcpclient, tlsc in-process", ours("tcpclient")],
  ["djb's tcpclient spawning tlsc", djb("tcpclient")],
] as const) {
  test(`${who}: a TLS 1.2 server's renegotiation is refused: 98 and one line`, async () => {
    // openssl s_server renegotiates on a line "R" on its stdin, written once the program's
    // "hi" has reached it; tlsc's no_renegotiation alert makes s_server end the session.
    const srv = spawn(
      "openssl",
      [
        ...["s_server", "-accept", "0", "-naccept", "1", "-tls1_2"],
        ...["-cert", server.cert, "-key", server.key],
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    try {
      let out = "";
      srv.stdout.setEncoding("latin1");
      srv.stdout.on("data", (s: string) => (out += s));
      srv.stderr.setEncoding("latin1");
      srv.stderr.on("data", (s: string) => (out += s));
      while (!/ACCEPT/.test(out)) await once(srv.stdout, "data");
      const port = /ACCEPT\s+\S*:(\d+)/.exec(out)?.[1] ?? "";
      const client = run(
        tcpclient,
        [
          ...["-RHl0", "127.0.0.1", port, "tlsc", "-k", "localhost", "sh", "-c"],
          "printf 'hi\\n' >&7; cat <&6",
        ],
        { env: { PATH, CAFILE: pki.ca.cert }, timeoutMs: 30_000 },
      );
      while (!/^hi$/m.test(out)) await once(srv.stdout, "data");
      srv.stdin.write("R\n");
      const r = await client;
      assert.equal(r.stderr, "tlsc: fatal: TLS session failed: ssl/tls alert handshake failure\n");
      assert.equal(r.code, 98);
      if (srv.exitCode === null) await once(srv, "exit");
      assert.match(out, /no renegotiation/, "s_server got our no_renegotiation alert");
    } finally {
      srv.kill();
    }
  });
}

/** The TLS 1.2 suite openssl s_client gets offering `ciphers` (and sending `name`, if any),
 * or "none". */
async function cipherOf(port: number, ciphers: string, name?: string): Promise<string> {
  const r = await run(
    "openssl",
    ["s_client", "-tls1_2", "-cipher", ciphers, "-connect", `127.0.0.1:${port}`].concat(
      name === undefined ? [] : ["-servername", name],
    ),
    { input: "", timeoutMs: 20_000 },
  );
  // A refused handshake prints "Cipher : 0000" (or "(NONE)").
  const cipher = /^\s*Cipher\s*:\s*(\S+)/m.exec(r.stdout)?.[1] ?? "0000";
  return /^(0000|\(NONE\))$/.test(cipher) ? "none" : cipher;
}

test("tlsd: the server's preference: ECDHE + AEAD with an RSA certificate in TLS 1.2, no static RSA unless CIPHERS says", async () => {
  const dir = pki.dir;
  const key = join(dir, "rsa.key");
  const cert = join(dir, "rsa.pem");
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=localhost",
  ]);
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH, CERTFILE: cert, KEYFILE: key },
  });
  try {
    assert.equal(
      await cipherOf(s.port, "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"),
      "ECDHE-RSA-AES256-GCM-SHA384",
      "the server's order, not the client's",
    );
    assert.equal(await cipherOf(s.port, "AES128-SHA"), "none", "static RSA refused");
    assert.equal(await cipherOf(s.port, "ECDHE-RSA-AES128-SHA"), "none", "CBC refused");
  } finally {
    await s.stop();
  }
  const legacy = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH, CERTFILE: cert, KEYFILE: key, CIPHERS: "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA" },
  });
  try {
    assert.equal(await cipherOf(legacy.port, "AES128-SHA"), "AES128-SHA", "CIPHERS widens it");
  } finally {
    await legacy.stop();
  }
});

// Where there is no default pair (-k 2), node:tls began on a context of Node's own, whose
// TLS 1.2 suites were Node's: a CBC suite was served.
for (const engine of ["node", "native"]) {
  test(`tlsd --engine ${engine} -k 2: the TLS 1.2 suites of a default pair, CBC refused unless CIPHERS says`, async () => {
    const named = { "CERTFILE:localhost": server.cert, "KEYFILE:localhost": server.key };
    const serve = (more: Record<string, string>) =>
      startServer(
        ours("tcpserver"),
        ["-RHl0", "127.0.0.1", "0", "tlsd", "--engine", engine, "-k", "2", "cat"],
        { env: { PATH, ...named, ...more } },
      );
    const suite = (port: number, ciphers: string) => cipherOf(port, ciphers, "localhost");
    const cbc = "ECDHE-ECDSA-AES128-SHA";
    const s = await serve({});
    try {
      const gcm = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384";
      assert.equal(await suite(s.port, gcm), "ECDHE-ECDSA-AES256-GCM-SHA384", "the server's order");
      assert.equal(await suite(s.port, cbc), "none", "CBC refused");
    } finally {
      await s.stop();
    }
    const legacy = await serve({ CIPHERS: `ECDHE-ECDSA-AES128-GCM-SHA256:${cbc}` });
    try {
      assert.equal(await suite(legacy.port, cbc), cbc, "CIPHERS widens it");
    } finally {
      await legacy.stop();
    }
  });
}

// The same start context (-k 2) holds the hello's groups and options: Node's own offered the
// groups OpenSSL offers (P-521, the finite-field ones) and let a TLS 1.2 client renegotiate.
for (const engine of ["node", "native"]) {
  test(`tlsd --engine ${engine} -k 2: our groups only, and a TLS 1.2 client's renegotiation refused`, async () => {
    const named = { "CERTFILE:localhost": server.cert, "KEYFILE:localhost": server.key };
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "--engine", engine, "-k", "2", "cat"],
      { env: { PATH, ...named } },
    );
    try {
      const connect = ["-connect", `127.0.0.1:${s.port}`, "-servername", "localhost"];
      const hello = (version: string, group: string) =>
        run("openssl", ["s_client", version, "-groups", group, ...connect], {
          input: "",
          timeoutMs: 20_000,
        });
      for (const version of ["-tls1_3", "-tls1_2"]) {
        // "New, TLSv1.3, Cipher is ...", or "New, (NONE), Cipher is (NONE)" when refused.
        const agreed = await hello(version, "P-256");
        assert.match(agreed.stdout, /Cipher is (?!\(NONE\))/, `${version} P-256`);
        for (const group of ["P-521", "ffdhe2048"]) {
          const r = await hello(version, group);
          assert.match(r.stdout, /Cipher is \(NONE\)/, `${version} ${group}`);
        }
      }
      await renegotiationRefused(connect);
    } finally {
      await s.stop();
    }
  });
}

test("tlsd: the post-quantum hybrid wins when the client sends both key shares, X25519 first", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: env(),
  });
  try {
    const group = await new Promise<string>((resolve, reject) => {
      const c = tlsConnect({
        port: s.port,
        host: "127.0.0.1",
        servername: "localhost",
        ca: [execFileSync("cat", [pki.ca.cert])],
        ecdhCurve: "*X25519:*X25519MLKEM768",
      });
      c.once("secureConnect", () => {
        resolve((c.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? "");
        c.destroy();
      });
      c.once("error", reject);
    });
    assert.equal(group, "X25519MLKEM768");
  } finally {
    await s.stop();
  }
});

test("tlsd and tlsc: a handshake has 60 s by default; -K 0 means none", () => {
  assert.equal(parseTlsdArgs(["cat"]).handshakeTimeoutMs, 60_000);
  assert.equal(parseTlscArgs(["cat"]).handshakeTimeoutMs, 60_000);
  assert.equal(parseTlsdArgs(["-K", "0", "cat"]).handshakeTimeoutMs, 0);
});

test("tlsd -K: a silent client cannot hold tcpserver's only slot; the next client is served", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-c", "1", "-RHl0", "127.0.0.1", "0", "tlsd", "-K", "500", "cat"],
    { env: env() },
  );
  const silent = netConnect(s.port, "127.0.0.1");
  silent.on("error", () => {});
  silent.resume(); // reading, so that the server's close is seen
  const closed = once(silent, "close");
  try {
    await once(silent, "connect");
    await s.waitForLog(/^tlsd: fatal: 127\.0\.0\.1: handshake timed out$/);
    await closed;
    const echoed = await tlsExchange(s.port, pki.ca.cert, {
      send: "served\n",
      enough: (got) => got.includes("\n"),
    });
    assert.equal(echoed, "served\n");
  } finally {
    silent.destroy();
    await s.stop();
  }
});

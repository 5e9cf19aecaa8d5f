// tlsd --engine native (src/tlsd/native-session.ts): the handshake and the relay in the addon,
// the policy of the node:tls path, with real clients (python3's ssl, openssl s_client, curl):
// the certificate by SNI, the environment, the log lines and statuses of a failed handshake,
// -K, the half-closes, the TLS 1.2 close_notify rule, -J, client certificates (-Y, -y),
// --mod-ssl, -n, and node:tls for what the engine cannot do yet (TICKETFILE), said at -v 2.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, createServer } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { test } from "node:test";
import { encodeProxyV2, resumeTlv } from "../../src/proxy/index.ts";
import { makePki } from "../helpers/certs.ts";
import { PY_BIO, READ_TO_END } from "../helpers/py-bio.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { spawnersOf } from "../helpers/interop.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { tlsExchange } from "../helpers/tls-client.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const a = pki.server("a", ["a.test", "localhost"]);
const b = pki.server("b", ["b.test"]);
const wild = pki.server("wild", ["*.w.test"]);
const env = {
  PATH: `${BIN}:/usr/bin:/bin`,
  CERTFILE: a.cert,
  KEYFILE: a.key,
  "CERTFILE:b.test": b.cert,
  "KEYFILE:b.test": b.key,
  "CERTFILE:*.w.test": wild.cert,
  "KEYFILE:*.w.test": wild.key,
};
const STATUS_98 = 98 << 8;

async function withTlsd(
  flags: readonly string[],
  program: readonly string[],
  check: (s: RunningServer) => Promise<void>,
) {
  const s = await startServer(
    ours("tcpserver"),
    [
      "-v",
      "-RHl0",
      "127.0.0.1",
      "0",
      "tlsd",
      "--engine",
      "native",
      "-v",
      "2",
      ...flags,
      ...program,
    ],
    { env },
  );
  try {
    await check(s);
  } finally {
    await s.stop();
  }
}

/** python3: a client for `name` in `version` with `alpn`, that sends a line, half-closes TCP
 * (or sends close_notify alone, `notify`), and prints what it read and how that ended. */
function pyClient(
  port: number,
  name: string,
  options: {
    version?: "TLSv1_2" | "TLSv1_3";
    alpn?: string[];
    end?: "fin" | "notify";
    /** Read the program's first line before ending our side. */
    readFirst?: boolean;
  } = {},
) {
  const script = `${PY_BIO}${READ_TO_END}
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
${options.version ? `ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${options.version}` : ""}
${options.alpn ? `ctx.set_alpn_protocols(${JSON.stringify(options.alpn)})` : ""}
raw = socket.create_connection(("127.0.0.1", ${port}))
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_hostname=${JSON.stringify(name)})
handshake()
tls.write(b"hello\\n")
flush()
first = ${options.readFirst ? "read_line()" : 'b""'}
if ${JSON.stringify(options.end ?? "fin")} == "fin":
    raw.shutdown(socket.SHUT_WR)
else:
    send_close_notify()
got, how = read_to_end()
sys.stdout.write((first + got).decode() + "end: " + how + "\\n")
`;
  return run("python3", ["-c", script], { timeoutMs: 40_000 });
}

const SHOW_ENV = [
  "sh",
  "-c",
  'read line; echo "got $line"; env | grep -E "^(SSL_|CERTFILE|UCSPI_TLS_ENGINE)" | sort',
];

test("the engine serves: SNI picks the pair (name, wildcard, default), the program's environment is node:tls's", async () => {
  await withTlsd(["-k", "1", "--alpn", "h2,http/1.1"], SHOW_ENV, async (s) => {
    const named = await pyClient(s.port, "b.test", { alpn: ["http/1.1"] });
    assert.equal(named.stderr, "");
    assert.equal(
      named.stdout,
      [
        "got hello",
        "SSL_ALPN_PROTOCOL=http/1.1",
        "SSL_CIPHER=TLS_AES_256_GCM_SHA384",
        "SSL_PROTOCOL=TLSv1.3",
        "SSL_TLS_SNI_SERVERNAME=b.test",
        "end: close_notify",
        "",
      ].join("\n"),
    );
    // The client checks the name against the certificate: each got its own.
    const wildcard = await pyClient(s.port, "x.w.test", { version: "TLSv1_2" });
    assert.match(wildcard.stdout, /^SSL_CIPHER=ECDHE-ECDSA-AES256-GCM-SHA384$/m);
    assert.match(wildcard.stdout, /^SSL_PROTOCOL=TLSv1\.2$/m);
    assert.match(wildcard.stdout, /^SSL_TLS_SNI_SERVERNAME=x\.w\.test$/m);
    const fallback = await pyClient(s.port, "localhost");
    assert.match(fallback.stdout, /^got hello$/m);
    assert.doesNotMatch(fallback.stdout, /ALPN/);
    await s.waitForLog(/^tcpserver: end /, 3);
    assert.equal(s.log().match(/^tlsd: info: native TLS engine$/gm)?.length, 3);
    assert.doesNotMatch(s.log(), /node:tls|fatal/);
  });
});

test("curl over the engine: an HTTP exchange, and -k 2 refuses a name it has no pair for", async () => {
  const http = [
    "sh",
    "-c",
    'read request; printf "HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"',
  ];
  await withTlsd(["-k", "2"], http, async (s) => {
    const ok = await run("curl", [
      ...["-sS", "--cacert", pki.ca.cert, "--resolve", `b.test:${s.port}:127.0.0.1`],
      `https://b.test:${s.port}/`,
    ]);
    assert.equal(ok.stdout, "ok\n");
    const refused = await run("curl", [
      ...["-sS", "-k", "--resolve", `c.test:${s.port}:127.0.0.1`],
      `https://c.test:${s.port}/`,
    ]);
    assert.notEqual(refused.code, 0);
    await s.waitForLog(/^tcpserver: end /, 2);
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: no certificate for c\.test$/m,
    );
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
  });
});

test("a failed handshake: node:tls's line and status 98 (not TLS, TLS 1.1, a client that leaves)", async () => {
  await withTlsd([], ["cat"], async (s) => {
    await run("sh", [
      "-c",
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | python3 -c 'import socket,sys; c=socket.create_connection(("127.0.0.1", ${s.port})); c.sendall(sys.stdin.buffer.read()); c.recv(100)'`,
    ]);
    await run("openssl", ["s_client", "-tls1_1", "-connect", `127.0.0.1:${s.port}`], {
      input: "",
    });
    const leaving = connect(s.port, "127.0.0.1");
    leaving.on("connect", () => leaving.end());
    await new Promise((resolve) => leaving.on("close", resolve));
    await s.waitForLog(/^tcpserver: end /, 3);
    const fatal = s.log().match(/^tlsd: fatal: .*$/gm);
    assert.deepEqual(fatal, [
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: http request",
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: unsupported protocol",
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: connection closed",
    ]);
    assert.equal(s.log().match(new RegExp(`status ${STATUS_98}$`, "gm"))?.length, 3);
  });
});

test("-K: a client that says nothing is cut off after the handshake timeout, status 98", async () => {
  await withTlsd(["-K", "300"], ["cat"], async (s) => {
    const silent = connect(s.port, "127.0.0.1");
    silent.on("error", () => {});
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(s.log(), /^tlsd: fatal: 127\.0\.0\.1: handshake timed out$/m);
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
    silent.destroy();
  });
});

const REPLY_AFTER_EOF = ["sh", "-c", "cat; echo reply-after-eof; exit 3"];

test("half-closes: the client's FIN (1.2, 1.3) or close_notify (1.3) is the program's EOF; its reply still goes out, and its status is the connection's", async () => {
  await withTlsd([], REPLY_AFTER_EOF, async (s) => {
    for (const [version, end] of [
      ["TLSv1_2", "fin"],
      ["TLSv1_3", "fin"],
      ["TLSv1_3", "notify"],
    ] as const) {
      const r = await pyClient(s.port, "localhost", { version, end });
      assert.equal(r.stdout, "hello\nreply-after-eof\nend: close_notify\n", `${version} ${end}`);
    }
    await s.waitForLog(/^tcpserver: end /, 3);
    assert.equal(s.log().match(new RegExp(`status ${3 << 8}$`, "gm"))?.length, 3);
    assert.doesNotMatch(s.log(), /fatal/);
  });
});

test("TLS 1.2: the client's close_notify ends the whole session; -s still answers it with one", async () => {
  for (const flags of [[], ["-s"]]) {
    await withTlsd(flags, REPLY_AFTER_EOF, async (s) => {
      // The echo is read before the close_notify: what the program writes after it is
      // dropped, and its echo would race a close_notify sent at once.
      const r = await pyClient(s.port, "localhost", {
        version: "TLSv1_2",
        end: "notify",
        readFirst: true,
      });
      assert.equal(r.stdout, "hello\nend: close_notify\n");
      await s.waitForLog(/^tcpserver: end /, 1);
      assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${3 << 8}$`, "m"));
      assert.doesNotMatch(s.log(), /fatal/);
    });
  }
});

test("-J: a client's FIN without close_notify is fatal (98), its close_notify is not", async () => {
  await withTlsd(["-J"], REPLY_AFTER_EOF, async (s) => {
    await pyClient(s.port, "localhost", { end: "fin" });
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: remote closed connection without a close_notify$/m,
    );
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
    const r = await pyClient(s.port, "localhost", { end: "notify" });
    assert.equal(r.stdout, "hello\nreply-after-eof\nend: close_notify\n");
    await s.waitForLog(/^tcpserver: end /, 2);
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${3 << 8}$`, "m"));
  });
});

// Client certificates (src/native/tls-verify.c): a trusted one, one of another CA, a
// self-signed one, one revoked by CRLFILE, a UTF-8 subject, none.
const trusted = pki.client("trusted");
const stranger = pki.selfSigned("stranger");
const utf8 = pki.withSubject("utf8", "/C=FR/O=Société Générale/CN=Jürgen Ünïcødé ✓");
const otherPki = makePki("Other CA");
const foreign = otherPki.client("foreign");
const revoked = pki.client("revoked");
const CRL = revocationList(revoked.cert);
type Pair = { cert: string; key: string } | undefined;

/** The CA's list with `cert` revoked (openssl ca's database, as test/tls/revocation.test.ts). */
function revocationList(cert: string): string {
  const conf = join(pki.dir, "ca.cnf");
  writeFileSync(join(pki.dir, "index.txt"), "");
  writeFileSync(join(pki.dir, "crlnumber"), "01\n");
  writeFileSync(
    conf,
    `[ca]\ndefault_ca = t\n[t]\ndatabase = ${pki.dir}/index.txt\ncrlnumber = ${pki.dir}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = ${pki.ca.cert}\nprivate_key = ${pki.ca.key}\n`,
  );
  const file = join(pki.dir, "crl.pem");
  execFileSync("openssl", ["ca", "-config", conf, "-revoke", cert], { stdio: "ignore" });
  execFileSync("openssl", ["ca", "-config", conf, "-gencrl", "-out", file], { stdio: "ignore" });
  return file;
}

/** tlsd on `engine` with CAFILE and CRLFILE, asking for client certificates with `flags`. */
async function withClientCerts(
  engine: "node" | "native",
  flags: readonly string[],
  program: readonly string[],
  check: (s: RunningServer) => Promise<void>,
) {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "--engine", engine, "-v", "2", ...flags, ...program],
    { env: { ...env, CAFILE: pki.ca.cert, CRLFILE: CRL } },
  );
  try {
    await check(s);
  } finally {
    await s.stop();
  }
}

/** openssl s_client in `version` for `name` with this certificate (or none): what the program
 * printed, and s_client's stderr (an alert is named there). */
const sClient = (port: number, pair: Pair, version = "-tls1_3", name = "localhost") =>
  run(
    "openssl",
    [
      ...["s_client", version, "-quiet", "-connect", `127.0.0.1:${port}`],
      ...["-servername", name, "-CAfile", pki.ca.cert],
      ...(pair ? ["-cert", pair.cert, "-key", pair.key] : []),
    ],
    { input: "" },
  );

const IDENTITY = ["sh", "-c", 'env | grep -E "^SSL_" | sort'];

test("-y on the engine: a chain it refuses gets OpenSSL's alert in the handshake (unknown_ca, certificate_revoked, certificate_required), node:tls's line and status 98; a trusted one is served", async () => {
  await withClientCerts("native", ["-y"], IDENTITY, async (s) => {
    const lines: string[] = [];
    for (const version of ["-tls1_3", "-tls1_2"]) {
      const cases: [Pair, RegExp, string][] = [
        [
          foreign,
          /alert unknown ca/,
          "client certificate refused: unable to verify the first certificate",
        ],
        // Every error is looked at, the last one told, as node:tls does: this one has no CRL.
        [stranger, /alert unknown ca/, "client certificate refused: unable to get certificate CRL"],
        [revoked, /alert certificate revoked/, "client certificate refused: certificate revoked"],
        [
          undefined,
          version === "-tls1_3" ? /alert certificate required/ : /alert handshake failure/,
          "TLS handshake failed: peer did not return a certificate",
        ],
      ];
      for (const [pair, alert, line] of cases) {
        const r = await sClient(s.port, pair, version);
        assert.equal(r.stdout, "", version);
        assert.match(r.stderr, alert, version);
        lines.push(`tlsd: fatal: 127.0.0.1: ${line}`);
      }
      const ok = await sClient(s.port, trusted, version);
      assert.match(ok.stdout, /^SSL_PEER_CERT_SUBJECT=C=FR, O=Test Org, CN=trusted$/m);
    }
    await s.waitForLog(/^tcpserver: end /, 10);
    assert.deepEqual(s.log().match(/^tlsd: fatal: .*$/gm), lines);
    assert.equal(s.log().match(new RegExp(`status ${STATUS_98}$`, "gm"))?.length, 8);
    assert.doesNotMatch(s.log(), /node:tls/);
  });
});

test("-y on the engine: a TLS 1.3 client whose certificate is refused, and that writes only later, reads the alert, not a reset (the rest of its flight was read before the close)", async () => {
  await withClientCerts("native", ["-y"], IDENTITY, async (s) => {
    // Its handshake is over on its side at once; it writes after a pause, as a client that
    // prepares its request would: by then the server has refused and closed.
    const r = await run("python3", [
      "-c",
      `
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(${JSON.stringify(foreign.cert)}, ${JSON.stringify(foreign.key)})
tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ${s.port})), server_hostname="localhost")
tls.settimeout(30)
time.sleep(0.3)
try:
    tls.sendall(b"hello\\n")
    while tls.recv(4096): pass
    how = "eof"
except ssl.SSLError as e:
    how = e.reason or e.__class__.__name__
except OSError as e:
    how = e.__class__.__name__
print("end:", how)
`,
    ]);
    assert.equal(r.stdout, "end: TLSV1_ALERT_UNKNOWN_CA\n", r.stderr);
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(s.log(), /^tlsd: fatal: 127\.0\.0\.1: client certificate refused: /m);
  });
});

test("-Y and -y on the engine: the program's environment is node:tls's, byte for byte (a UTF-8 subject, a chain that does not verify, none)", async () => {
  const seen = new Map<string, string>();
  for (const engine of ["node", "native"] as const) {
    for (const flag of ["-Y", "-y"]) {
      await withClientCerts(engine, [flag], IDENTITY, async (s) => {
        const pairs =
          flag === "-Y" ? [trusted, utf8, stranger, revoked, undefined] : [trusted, utf8];
        for (const [i, pair] of pairs.entries()) {
          const { stdout } = await sClient(s.port, pair);
          const key = `${flag} ${i}`;
          if (engine === "node") seen.set(key, stdout);
          else assert.equal(stdout, seen.get(key), key);
        }
        await s.waitForLog(/^tcpserver: end /, pairs.length);
        if (engine === "native") assert.doesNotMatch(s.log(), /node:tls, not the native engine/);
      });
    }
  }
  // The subject is UTF-8 in the environment (the run's output is read as latin1: bytes).
  const subject = Buffer.from("C=FR, O=Société Générale, CN=Jürgen Ünïcødé ✓").toString("latin1");
  assert.match(seen.get("-Y 1") ?? "", new RegExp(`^SSL_PEER_CERT_SUBJECT=${subject}$`, "m"));
  assert.match(seen.get("-Y 1") ?? "", /^SSL_PEER_CERT_HASH=SHA256:[0-9a-f]{64}$/m);
  for (const unknown of ["-Y 2", "-Y 3", "-Y 4"])
    assert.doesNotMatch(seen.get(unknown) ?? "", /SSL_PEER_CERT/, unknown);
});

test("--mod-ssl on the engine: SSL_CLIENT_* and SSL_SERVER_* are node:tls's, byte for byte (-Y, -y, the chain, a UTF-8 subject, the certificate SNI chose)", async () => {
  // Whole values (the certificates' PEM), but the ports, which differ from run to run.
  const program = [
    "sh",
    "-c",
    "env -0 | grep -zE '^SSL' | grep -zvE '^SSL(REMOTE|LOCAL)PORT=' | sort -z | tr '\\0' '\\n'",
  ];
  const seen = new Map<string, string>();
  for (const engine of ["node", "native"] as const) {
    for (const flag of ["-Y", "-y"]) {
      await withClientCerts(engine, [flag, "-k", "1", "--mod-ssl"], program, async (s) => {
        const all: [Pair, string][] = [
          [trusted, "localhost"],
          [utf8, "b.test"],
          [stranger, "localhost"],
          [undefined, "b.test"],
        ];
        // -y refuses the last two (the test above).
        const runs = flag === "-Y" ? all : all.slice(0, 2);
        for (const [i, [pair, name]] of runs.entries()) {
          const { stdout } = await sClient(s.port, pair, "-tls1_3", name);
          const key = `${flag} ${i}`;
          if (engine === "node") seen.set(key, stdout);
          else assert.equal(stdout, seen.get(key), key);
        }
        await s.waitForLog(/^tcpserver: end /, runs.length);
        if (engine === "native") assert.doesNotMatch(s.log(), /node:tls, not the native engine/);
      });
    }
  }
  const trustedOut = seen.get("-y 0") ?? "";
  assert.match(trustedOut, /^SSL_CLIENT_VERIFY=SUCCESS$/m);
  assert.match(trustedOut, /^SSL_CLIENT_S_DN=\/C=FR\/O=Test Org\/CN=trusted$/m);
  assert.match(trustedOut, /^SSL_CLIENT_CERT_CHAIN_0=-----BEGIN CERTIFICATE-----$/m);
  assert.match(trustedOut, /^SSL_SERVER_S_DN_CN=a\.test$/m);
  const cn = Buffer.from("Jürgen Ünïcødé ✓").toString("latin1");
  assert.match(seen.get("-y 1") ?? "", new RegExp(`^SSL_CLIENT_S_DN_CN=${cn}$`, "m"));
  assert.match(seen.get("-y 1") ?? "", /^SSL_SERVER_S_DN_CN=b\.test$/m);
  assert.match(seen.get("-Y 2") ?? "", /^SSL_CLIENT_VERIFY=FAILED:unable to get certificate CRL$/m);
  assert.doesNotMatch(seen.get("-Y 2") ?? "", /^SSL_CLIENT_S_DN/m);
  assert.match(seen.get("-Y 3") ?? "", /^SSL_CLIENT_VERIFY=NONE$/m);
});

// -n: a program that says 220, takes STARTTLS, asks for TLS with `Y`, then writes the
// session's block (sorted) and what it read through TLS.
const STARTTLS_APP = `
import os, sys
ctl, rd, wr = (int(os.environ[n]) for n in ("SSLCTLFD", "SSLREADFD", "SSLWRITEFD"))
def line(fd):
    got = b""
    while not got.endswith(b"\\n"):
        b = os.read(fd, 1)
        if not b: break
        got += b
    return got
os.write(1, b"220 ready\\r\\n")
line(0)
os.write(1, b"220 go\\r\\n")
os.write(ctl, b"Y")
block = b""
while not block.endswith(b"\\0\\0"):
    b = os.read(ctl, 4096)
    if not b: sys.exit(3)
    block += b
os.write(wr, b"\\n".join(sorted(block.rstrip(b"\\0").split(b"\\0"))) + b"\\ngot " + line(rd))
`;

/** python3: STARTTLS, then TLS with this certificate (or none), then `hello` unless `quiet`:
 * what it read, and how it ended (an alert by its name). A refused client is quiet: in TLS 1.3
 * its handshake is over before the server has looked at its certificate, and a write of its
 * own can meet the reset of the server's close (its Finished unread) before the alert is read
 * (a writing client may see either; the alert is what this test is about). */
const startTlsClient = (port: number, pair: Pair, quiet = false) =>
  run("python3", [
    "-c",
    `
import socket, ssl, sys
raw = socket.create_connection(("127.0.0.1", ${port}))
raw.settimeout(30)
def line():
    got = b""
    while not got.endswith(b"\\n"): got += raw.recv(1)
line(); raw.sendall(b"STARTTLS\\r\\n"); line()
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
${pair ? `ctx.load_cert_chain(${JSON.stringify(pair.cert)}, ${JSON.stringify(pair.key)})` : ""}
tls = ctx.wrap_socket(raw, server_hostname="localhost")
out, how = b"", "eof"
# In TLS 1.3 a refusal of our certificate may come before our first write is out.
try:
    if not ${quiet ? "True" : "False"}: tls.sendall(b"hello\\n")
    while True:
        b = tls.recv(4096)
        if not b: break
        out += b
except ssl.SSLError as e:
    how = e.reason or e.__class__.__name__
except OSError as e:
    how = e.__class__.__name__
sys.stdout.buffer.write(out + b"end: " + how.encode() + b"\\n")
`,
  ]);

test("-n on the engine: STARTTLS, then the session's block (Y, -y) and TLS, as node:tls's; a refused client certificate gets its alert and the program goes on", async () => {
  const got = new Map<string, string>();
  for (const engine of ["node", "native"] as const) {
    await withClientCerts(engine, ["-n", "-y"], ["python3", "-c", STARTTLS_APP], async (s) => {
      const ok = await startTlsClient(s.port, utf8);
      if (engine === "node") got.set("ok", ok.stdout);
      else assert.equal(ok.stdout, got.get("ok"));
      const refused = await startTlsClient(s.port, foreign, true);
      // A client that failed otherwise says how in the assertion below.
      got.set(engine, refused.stdout || `exit ${refused.code}: ${refused.stderr}`);
      await s.waitForLog(/^tcpserver: end /, 2);
      assert.match(
        s.log(),
        /^tlsd: warning: client certificate refused: unable to verify the first certificate$/m,
      );
      // The program's status is tlsd's: it found no block (3).
      assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${3 << 8}$`, "m"));
      const line = engine === "native" ? "native TLS engine" : undefined;
      if (line) assert.match(s.log(), new RegExp(`^tlsd: info: ${line}$`, "m"));
    });
  }
  const subject = Buffer.from("C=FR, O=Société Générale, CN=Jürgen Ünïcødé ✓").toString("latin1");
  assert.match(got.get("ok") ?? "", new RegExp(`^SSL_PEER_CERT_SUBJECT=${subject}$`, "m"));
  assert.match(got.get("ok") ?? "", /^got hello\nend: eof\n$/m);
  // node:tls completes the handshake, then closes; the engine refuses in it.
  assert.equal(got.get("node"), "end: eof\n");
  assert.equal(got.get("native"), "end: TLSV1_ALERT_UNKNOWN_CA\n");
});

test("UCSPI_TLS_ENGINE=native in tlsd's environment chooses the engine; --engine node wins over it, and the program never sees it", async () => {
  for (const [flags, line] of [
    [[], "tlsd: info: native TLS engine"],
    [["--engine", "node"], undefined],
  ] as const) {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-v", "2", ...flags, ...SHOW_ENV],
      { env: { ...env, UCSPI_TLS_ENGINE: "native" } },
    );
    try {
      const r = await pyClient(s.port, "localhost");
      assert.match(r.stdout, /^got hello$/m);
      assert.doesNotMatch(r.stdout, /UCSPI_TLS_ENGINE|CERTFILE/);
      await s.waitForLog(/^tcpserver: end /, 1);
      if (line) assert.ok(s.log().includes(`${line}\n`), s.log());
      else assert.doesNotMatch(s.log(), /engine/);
    } finally {
      await s.stop();
    }
  }
});

test("the engine serves by default, -v 2 says nothing of it; UCSPI_TLS_ENGINE=node or --engine node gives node:tls; another value is warned about at start", async () => {
  // -y with a chain from another CA tells them apart: the engine refuses it in the handshake
  // with OpenSSL's alert, node:tls after it, with none.
  const cases: [string, readonly string[], string | undefined, boolean][] = [
    ["default", [], undefined, true],
    ["UCSPI_TLS_ENGINE=node", [], "node", false],
    ["--engine node", ["--engine", "node"], undefined, false],
    ["UCSPI_TLS_ENGINE=openssl", [], "openssl", true],
  ];
  for (const [name, flags, variable, native] of cases) {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-v", "2", "-y", ...flags, ...IDENTITY],
      // Named even when unset: the test run's own UCSPI_TLS_ENGINE must not reach this tlsd.
      { env: { ...env, CAFILE: pki.ca.cert, UCSPI_TLS_ENGINE: variable } },
    );
    try {
      const refused = await sClient(s.port, foreign);
      assert.equal(refused.stdout, "", name);
      if (native) assert.match(refused.stderr, /alert unknown ca/, name);
      else assert.doesNotMatch(refused.stderr, /alert/, name);
      const ok = await sClient(s.port, trusted);
      assert.match(ok.stdout, /^SSL_PEER_CERT_SUBJECT=C=FR, O=Test Org, CN=trusted$/m, name);
      await s.waitForLog(/^tcpserver: end /, 2);
      const warning =
        /^tlsd: warning: UCSPI_TLS_ENGINE is node or native, not 'openssl': the native engine serves$/m;
      if (variable === "openssl") assert.match(s.log(), warning, name);
      else assert.doesNotMatch(s.log(), /UCSPI_TLS_ENGINE/, name);
      // Named (the variable's bad value too): -v 2 says which engine served; else no line.
      if (variable === "openssl") assert.match(s.log(), /^tlsd: info: native TLS engine$/m, name);
      else assert.doesNotMatch(s.log(), /^tlsd: info: .*engine/m, name);
    } finally {
      await s.stop();
    }
  }
});

test("--engine takes node or native, nothing else", async () => {
  const r = await run(ours("tlsd"), ["--engine", "openssl", "cat"], { env });
  assert.equal(r.code, 100);
  assert.match(r.stderr, /^tlsd: --engine is node or native, not 'openssl'$/m);
});

test("a program that answers without reading what the client sent: its output, then close_notify", async () => {
  await withTlsd([], ["echo", "hi"], async (s) => {
    for (let i = 0; i < 5; i++) {
      const r = await pyClient(s.port, "localhost", { end: "notify" });
      assert.equal(r.stdout, "hi\nend: close_notify\n");
    }
    await s.waitForLog(/^tcpserver: end /, 5);
    assert.doesNotMatch(s.log(), /fatal/);
  });
});

test("the look at a first connection's bytes: a PROXY header cut inside its signature is named", async () => {
  await withTlsd([], ["cat"], async (s) => {
    const c = connect(s.port, "127.0.0.1");
    c.on("error", () => {});
    await new Promise((resolve) => c.on("connect", resolve));
    c.write("PRO");
    await new Promise((resolve) => setTimeout(resolve, 100));
    c.end("XY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n");
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: got a PROXY protocol header: run tcpserver with --proxy$/m,
    );
    c.destroy();
  });
});

test("a client that leaves while the program writes: one line, status 98, and the program learns it (EPIPE)", async () => {
  for (let i = 0; i < 3; i++) {
    await withTlsd([], ["sh", "-c", "yes; echo yes-ended >&2"], async (s) => {
      const client = tlsConnect({
        port: s.port,
        host: "127.0.0.1",
        ca: readFileSync(pki.ca.cert),
        servername: "localhost",
      });
      client.on("error", () => {});
      let got = 0;
      await new Promise<void>((resolve, reject) => {
        client.on("data", (bytes: Buffer) => {
          got += bytes.length;
          if (got > 100_000) resolve();
        });
        client.on("close", () => reject(new Error(`closed after ${got} bytes:\n${s.log()}`)));
      });
      // Gone with bytes unread: the kernel resets the connection.
      client.destroy();
      await s.waitForLog(/^tcpserver: end /, 1);
      assert.match(
        s.log(),
        /^tlsd: fatal: 127\.0\.0\.1: connection lost before the program was done: (connection reset|broken pipe)$/m,
      );
      assert.match(s.log(), /^yes-ended$/m);
      assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
    });
  }
});

/** A TLS client on a TCP socket of its own, which the test can reset (resetAndDestroy). */
function resettableClient(port: number) {
  const tcp = connect(port, "127.0.0.1");
  const client = tlsConnect({
    socket: tcp,
    servername: "localhost",
    ca: [readFileSync(pki.ca.cert)],
  });
  client.on("error", () => {});
  return { tcp, client };
}

/** Whether a spawn request waits, unread, at one of `spawners`: its socket's Recv-Q (ss). */
function requestWaiting(spawners: readonly number[]): boolean {
  const sockets = execFileSync("ss", ["-xpn"], { encoding: "latin1" }).split("\n");
  return sockets.some(
    (line) =>
      spawners.some((pid) => line.includes(`pid=${pid},`)) && Number(line.split(/\s+/)[2]) > 0,
  );
}

test("a client lost before the spawner has said that the program runs: still a program's loss (one line, status 98), and tcpserver goes on", async () => {
  await withTlsd([], ["sh", "-c", "echo late; echo again"], async (s) => {
    const pid = s.child.pid ?? 0;
    // A first connection starts the spawners (they start on tcpserver's first spawn).
    assert.equal(await tlsExchange(s.port, pki.ca.cert), "late\nagain\n");
    await s.waitForLog(/^tcpserver: end /, 1);
    const spawners = spawnersOf(pid);
    assert.ok(spawners.length > 0, "tcpserver has its spawners");
    // Stopped, they leave the next spawn request unanswered: the program runs only later, and
    // the client is gone (a reset) before the session learns that it was spawned.
    for (const spawner of spawners) process.kill(spawner, "SIGSTOP");
    try {
      const { tcp, client } = resettableClient(s.port);
      await new Promise((resolve) => client.once("secureConnect", resolve));
      // Once the spawn request waits at a spawner, unread.
      await waitFor(
        () => (requestWaiting(spawners) ? true : undefined),
        15_000,
        () => `no spawn request reached the stopped spawners:\n${s.log()}`,
      );
      tcp.resetAndDestroy();
    } finally {
      for (const spawner of spawners) process.kill(spawner, "SIGCONT");
    }
    await s.waitForLog(/^tcpserver: end /, 2);
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: connection lost before the program was done: connection reset$/m,
    );
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
    // Its loop was never stuck: it serves the next client.
    assert.equal(await tlsExchange(s.port, pki.ca.cert), "late\nagain\n");
  });
});

test("a forged record after the handshake: OpenSSL's first reason (node:tls's words), status 98", async () => {
  await withTlsd([], ["cat"], async (s) => {
    const script = `${PY_BIO}
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
raw = socket.create_connection(("127.0.0.1", ${s.port}))
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
handshake()
flush()
forge()
try:
    while raw.recv(65536):
        pass
except ConnectionResetError:
    pass
`;
    await run("python3", ["-c", script], { timeoutMs: 40_000 });
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(
      s.log(),
      /^tlsd: fatal: 127\.0\.0\.1: TLS session failed: decryption failed or bad record mac$/m,
    );
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
  });
});

test("tcpforward after the engine: a client's reset reaches the service's connection (tcpforward says so, the service's connection ends)", async () => {
  const ends: string[] = [];
  const service = createServer((socket) => {
    socket.write("hello from the service\n");
    socket.resume();
    socket.on("error", () => ends.push("error"));
    socket.on("close", () => ends.push("close"));
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  const servicePort = String((service.address() as { port: number }).port);
  try {
    await withTlsd([], ["tcpforward", "127.0.0.1", servicePort], async (s) => {
      const { tcp, client } = resettableClient(s.port);
      await new Promise((resolve) => client.once("data", resolve));
      tcp.resetAndDestroy();
      await s.waitForLog(
        /^tcpforward: fatal: 127\.0\.0\.1: the client's connection broke: connection reset$/,
      );
      await s.waitForLog(/^tcpserver: end /, 1);
      while (!ends.includes("close")) await new Promise((resolve) => setTimeout(resolve, 20));
    });
  } finally {
    service.close();
  }
});

/** A plaintext SMTP server that, like exim, offers STARTTLS itself, and says in its MAIL
 * reply which client it sees. */
const FAKE_SMTP = [
  "python3",
  "-c",
  `import os, sys
out = sys.stdout.buffer
def say(s):
    out.write(s.encode()); out.flush()
say("220 fake ESMTP\\r\\n")
data = False
for raw in sys.stdin.buffer:
    line = raw.decode("latin1").rstrip("\\r\\n")
    if data:
        if line == ".":
            data = False
            say("250 queued\\r\\n")
        continue
    verb = line.split(" ")[0].upper()
    if verb == "EHLO":
        say("250-fake\\r\\n250-STARTTLS\\r\\n250 8BITMIME\\r\\n")
    elif verb == "MAIL":
        say("250 from " + os.environ.get("TCPREMOTEIP", "?") + "\\r\\n")
    elif verb == "DATA":
        data = True
        say("354 go\\r\\n")
    elif verb == "QUIT":
        say("221 bye\\r\\n")
        break
    else:
        say("250 ok\\r\\n")
`,
];

/** python3's smtplib through a STARTTLS session on `port`: what it learnt, as JSON. */
async function smtplibSession(port: number) {
  const script = `import json, smtplib, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
s = smtplib.SMTP("localhost", ${port}, local_hostname="client.test", timeout=20)
s.ehlo()
offered = s.has_extn("starttls")
s.starttls(context=ctx)
code, _ = s.ehlo()
inside = s.has_extn("starttls")
mail = s.mail("a@client.test")
s.rcpt("b@example.test")
sent = s.data("Subject: hi\\r\\n\\r\\nhello\\r\\n")
s.quit()
print(json.dumps({"offered": offered, "ehlo": code, "inside": inside, "mail": [mail[0], mail[1].decode()], "data": sent[0]}))
`;
  const r = await run("python3", ["-c", script], { timeoutMs: 40_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const RESUMED = { offered: true, ehlo: 250, inside: false, data: 250 };

test("a resume record on the engine: starttls-wrapper hands python3's smtplib over, the fresh server's greeting is swallowed and its STARTTLS taken out", async () => {
  const service = await startServer(
    ours("tcpserver"),
    ["-v", "--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", "--engine", "native", "-v", "2"].concat(
      FAKE_SMTP,
    ),
    { env },
  );
  try {
    const wrapper = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "127.0.0.1", String(service.port)].concat(
        FAKE_SMTP,
      ),
      { env },
    );
    try {
      for (let i = 0; i < 3; i++)
        assert.deepEqual(await smtplibSession(wrapper.port), {
          ...RESUMED,
          mail: [250, "from 127.0.0.1"],
        });
      await service.waitForLog(/^tcpserver: end /, 3);
      assert.equal(service.log().match(/^tlsd: info: native TLS engine$/gm)?.length, 3);
      assert.doesNotMatch(service.log(), /fatal|node:tls/);
    } finally {
      await wrapper.stop();
    }
  } finally {
    await service.stop();
  }
});

test("starttls-wrapper's local mode on the engine: the client's socket goes to it after the go-ahead (smtplib, swaks, openssl s_client), -v 2 says so", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v", "2"].concat(FAKE_SMTP),
    { env: { ...env, UCSPI_TLS_ENGINE: "native" } },
  );
  try {
    assert.deepEqual(await smtplibSession(s.port), {
      ...RESUMED,
      mail: [250, "from 127.0.0.1"],
    });
    const swaks = await run(
      "swaks",
      ["--server", `localhost:${s.port}`, "-tls", "--tls-ca-path", pki.ca.cert].concat([
        "--to",
        "b@example.test",
        "--from",
        "a@client.test",
      ]),
      { timeoutMs: 40_000 },
    );
    assert.equal(swaks.code, 0, swaks.stdout);
    assert.match(swaks.stdout, /<~ {2}250 queued/);
    const sClient = await run(
      "openssl",
      ["s_client", "-starttls", "smtp", "-connect", `127.0.0.1:${s.port}`, "-quiet"],
      { input: "EHLO me\r\nQUIT\r\n", timeoutMs: 40_000 },
    );
    assert.equal(sClient.stdout, "250-fake\r\n250 8BITMIME\r\n221 bye\r\n");
    await s.waitForLog(/^tcpserver: end /, 3);
    assert.equal(s.log().match(/^tlsd: info: native TLS engine$/gm)?.length, 3);
    assert.doesNotMatch(s.log(), /fatal|node:tls/);
  } finally {
    await s.stop();
  }
});

test("starttls-wrapper -p postgres's local TLS runs on the engine too (it hands tlsd the connection as it got it), and -v 2 says so", async () => {
  // The server behind is cat: what the client sends inside TLS comes back.
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v", "2", "-p", "postgres", "cat"],
    { env: { ...env, UCSPI_TLS_ENGINE: "native" } },
  );
  try {
    const r = await run("python3", [
      "-c",
      `
import socket, ssl, struct, sys
raw = socket.create_connection(("127.0.0.1", ${s.port}))
raw.settimeout(30)
raw.sendall(struct.pack("!II", 8, 80877103))
assert raw.recv(1) == b"S"
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
tls = ctx.wrap_socket(raw, server_hostname="a.test")
startup = struct.pack("!I", 9) + b"hello"
tls.sendall(startup)
got = b""
while len(got) < len(startup):
    got += tls.recv(100)
sys.stdout.write("echoed" if got == startup else repr(got))
`,
    ]);
    assert.equal(r.stdout, "echoed", r.stderr + s.log());
    await s.waitForLog(/^tlsd: info: native TLS engine$/);
    assert.doesNotMatch(s.log(), /node:tls/);
  } finally {
    await s.stop();
  }
});

test("a resumed session on the engine whose client leaves while the program writes: one line, status 98, the program learns it (EPIPE)", async () => {
  const program = ["sh", "-c", "printf '220 hi\\r\\n'; yes; echo yes-ended >&2"];
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", "--engine", "native", "-v", "2"].concat(
      program,
    ),
    { env },
  );
  try {
    const raw = connect(s.port, "127.0.0.1");
    raw.on("error", () => {});
    await new Promise((resolve) => raw.once("connect", resolve));
    raw.write(
      encodeProxyV2({
        command: "proxy",
        family: "tcp4",
        source: { ip: "192.0.2.7", port: 40000 },
        destination: { ip: "192.0.2.25", port: 25 },
        tlvs: [resumeTlv({ protocol: "smtp", swallow: "greeting" })],
      }),
    );
    const client = tlsConnect({
      socket: raw,
      servername: "localhost",
      ca: readFileSync(pki.ca.cert),
    });
    client.on("error", () => {});
    let got = "";
    await new Promise<void>((resolve) =>
      client.on("data", (bytes: Buffer) => {
        got += bytes.length < 100 ? bytes.toString() : "";
        if (got.length > 0 || bytes.length >= 100) resolve();
      }),
    );
    assert.doesNotMatch(got, /220/);
    client.destroy();
    await s.waitForLog(/^tcpserver: end /, 1);
    assert.match(
      s.log(),
      /^tlsd: fatal: 192\.0\.2\.7: connection lost before the program was done: (connection reset|broken pipe)$/m,
    );
    assert.match(s.log(), /^yes-ended$/m);
    assert.match(s.log(), /^tlsd: info: native TLS engine$/m);
    assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${STATUS_98}$`, "m"));
  } finally {
    await s.stop();
  }
});

// Both ways, 8 MiB a round, each side slow to read (the other's writes wait on EPOLLOUT, with
// records gathered and not out), then idle (the relay's buffers go), then a round again: every
// byte, in order (sha256 of each).
const BULK = 8 << 20;
const SLOW_PROGRAM = `
import hashlib, os, sys, time
for seed in (1, 2):
    h, left = hashlib.sha256(), ${BULK}
    while left:
        b = os.read(0, min(left, 65536))
        if not b: sys.exit(1)
        h.update(b)
        left -= len(b)
        time.sleep(0.002)
    os.write(1, h.hexdigest().encode() + b"\\n")
    data = memoryview(hashlib.shake_256(b"%d" % (100 + seed)).digest(${BULK}))
    # In bursts: a pass of the engine ends with one, at times with the socket full and
    # records gathered, and after the last nothing but EPOLLOUT wakes it.
    while data:
        burst = data[:100000]
        while burst:
            burst = burst[os.write(1, burst):]
        data = data[100000:]
        time.sleep(0.001)
`;
const SLOW_CLIENT = (port: number) => `
import hashlib, socket, ssl, time
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
raw = socket.socket()
# A small window: the engine's socket fills, and a pass ends with gathered records not out.
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.settimeout(30)
raw.connect(("127.0.0.1", ${port}))
tls = ctx.wrap_socket(raw, server_hostname="localhost")
for seed in (1, 2):
    sent = hashlib.shake_256(b"%d" % seed).digest(${BULK})
    tls.sendall(sent)
    line = b""
    while not line.endswith(b"\\n"): line += tls.recv(1)
    h, left = hashlib.sha256(), ${BULK}
    while left:
        b = tls.recv(min(left, 16384))
        if not b: break
        h.update(b)
        left -= len(b)
        time.sleep(0.0005)
    want = hashlib.sha256(hashlib.shake_256(b"%d" % (100 + seed)).digest(${BULK})).hexdigest()
    print(seed, line.decode().strip() == hashlib.sha256(sent).hexdigest(), h.hexdigest() == want)
    time.sleep(0.5)
tls.unwrap()
print("end")
`;

test("8 MiB each way twice, each side reading slowly, idle between: every byte through the engine, in order", async () => {
  await withTlsd([], ["python3", "-c", SLOW_PROGRAM], async (s) => {
    const r = await run("python3", ["-c", SLOW_CLIENT(s.port)], { timeoutMs: 60_000 });
    assert.equal(r.stdout, "1 True True\n2 True True\nend\n", r.stderr);
    await s.waitForLog(/^tcpserver: end \d+ status 0$/m);
  });
});

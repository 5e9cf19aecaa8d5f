// tlsd with third-party TLS clients: stunnel4 (client mode, verifying the chain), openssl
// s_client, curl and python3 ssl on certificates made by our tls-keygen (a CA and its leaf;
// Ed25519 and RSA self-signed pairs), over IPv6 (an IP SAN), with ALPN, and 256 MiB each way.
import assert from "node:assert/strict";
import { createCipheriv, createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { before, test } from "node:test";
import { startStunnel } from "../helpers/interop.ts";
import { keygenOk, workDir } from "../helpers/keygen.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { PY_STRICT_EOF } from "../helpers/py-bio.ts";

const PATH = `${BIN}:/usr/bin:/bin`;
const CLIENT_IO = `${ROOT}/test/fixtures/client-io`;
const scratch = workDir("tlsd-interop");

// Made by our tls-keygen: a CA and a leaf for localhost, 127.0.0.1 and ::1 (the default names);
// a leaf without ::1; a second CA that trusts nothing of ours; Ed25519 and RSA self-signed pairs.
const ca = { cert: scratch.path("ca.pem"), key: scratch.path("ca.key") };
const leaf = { cert: scratch.path("leaf.pem"), key: scratch.path("leaf.key") };
const v4only = { cert: scratch.path("v4.pem"), key: scratch.path("v4.key") };
const otherCa = { cert: scratch.path("other-ca.pem"), key: scratch.path("other-ca.key") };
const ed25519 = { cert: scratch.path("ed.pem"), key: scratch.path("ed.key") };
const rsa = { cert: scratch.path("rsa.pem"), key: scratch.path("rsa.key") };

before(async () => {
  await keygenOk(["ca", "-n", "Interop CA", ca.cert, ca.key]);
  await keygenOk(["leaf", "-C", ca.cert, "-K", ca.key, leaf.cert, leaf.key]);
  const v4names = ["-s", "localhost,127.0.0.1"];
  await keygenOk(["leaf", "-C", ca.cert, "-K", ca.key, ...v4names, v4only.cert, v4only.key]);
  await keygenOk(["ca", "-n", "Other CA", otherCa.cert, otherCa.key]);
  await keygenOk(["self-signed", "-t", "ed25519", ed25519.cert, ed25519.key]);
  await keygenOk(["self-signed", "-t", "rsa", rsa.cert, rsa.key]);
});

function tlsdEnv(pair: { cert: string; key: string }) {
  return { PATH, CERTFILE: pair.cert, KEYFILE: pair.key };
}

/** An HTTP/1.0 responder that reads the whole request (to its empty line) and answers with what
 * tlsd told it about the session. */
const HTTP = [
  "/bin/sh",
  "-c",
  'cr=$(printf "\\r"); while read -r line; do case $line in "$cr" | "") break ;; esac; done; ' +
    'printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n" ' +
    '"$SSL_PROTOCOL alpn=${SSL_ALPN_PROTOCOL-unset} sni=${SSL_TLS_SNI_SERVERNAME-unset} ip=$TCPREMOTEIP"',
];

async function tlsd(
  host: string,
  pair: { cert: string; key: string },
  program: readonly string[],
): Promise<RunningServer> {
  return startServer(ours("tcpserver"), ["-v", "-RHl0", host, "0", "tlsd", ...program], {
    env: tlsdEnv(pair),
  });
}

function curl(args: readonly string[]) {
  return run("curl", ["-sS", ...args], { env: { PATH: "/usr/bin:/bin" } });
}

test("stunnel4 as a client in front of tcpserver + tlsd: verifies the chain, a plaintext client gets the answer", async () => {
  const s = await tlsd("127.0.0.1", leaf, [
    "/bin/sh",
    "-c",
    'echo "$SSL_PROTOCOL sni=$SSL_TLS_SNI_SERVERNAME"; cat',
  ]);
  const trusting = await startStunnel(scratch.dir, "trusting", {
    client: "yes",
    connect: `127.0.0.1:${s.port}`,
    verifyChain: "yes",
    CAfile: ca.cert,
    checkHost: "localhost",
    sni: "localhost",
  });
  const distrusting = await startStunnel(scratch.dir, "distrusting", {
    client: "yes",
    connect: `127.0.0.1:${s.port}`,
    verifyChain: "yes",
    CAfile: otherCa.cert,
    checkHost: "localhost",
    sni: "localhost",
  });
  try {
    // The plaintext client sends and half-closes; the half-close travels through stunnel and
    // tlsd to the program (cat ends), whose answer and end travel back.
    assert.equal(
      await talk(trusting.port, "hello through stunnel\n"),
      "TLSv1.3 sni=localhost\nhello through stunnel\n",
    );
    assert.equal(await talk(trusting.port, "again\n"), "TLSv1.3 sni=localhost\nagain\n");
    await s.waitForLog(/^tcpserver: end \d+ status 0$/, 2);
    // A stunnel that does not trust our CA refuses the chain: the plaintext client gets nothing.
    const refused = await talk(distrusting.port, "hello\n").catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNRESET") return "";
        throw error;
      },
    );
    assert.equal(refused, "");
    await s.waitForLog(/^tcpserver: end \d+ status 25088$/, 1);
    assert.match(
      distrusting.log(),
      /certificate verify failed|Verification error|unable to get local issuer/i,
    );
    assert.doesNotMatch(trusting.log(), /LOG[0-3]\[\d+\]/, "no error on the trusting side");
  } finally {
    await trusting.stop();
    await distrusting.stop();
    await s.stop();
  }
});

test("tls-keygen ca + leaf served by tlsd: openssl s_client -verify_return_error and curl --cacert verify it", async () => {
  const s = await tlsd("127.0.0.1", leaf, HTTP);
  try {
    const o = await run(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${s.port}`,
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-CAfile",
        ca.cert,
        "-verify_return_error",
        "-brief",
        "-ign_eof",
      ],
      { input: "GET / HTTP/1.0\r\n\r\n" },
    );
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stderr, /Verification: OK/);
    assert.match(o.stderr, /Verified peername: localhost/);
    assert.match(o.stdout, /^TLSv1\.3 alpn=unset sni=localhost ip=127\.0\.0\.1$/m);
    for (const [host, sni] of [
      ["localhost", "localhost"],
      ["127.0.0.1", "unset"], // an address is verified (IP SAN) but not sent as SNI
    ]) {
      const c = await curl(["--cacert", ca.cert, `https://${host}:${s.port}/`]);
      assert.equal(c.stderr, "", host);
      assert.equal(c.stdout, `TLSv1.3 alpn=unset sni=${sni} ip=127.0.0.1\n`);
    }
    // The same checks against a CA that did not sign it fail, so the ones above mean something.
    const refused = await run(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${s.port}`,
        "-servername",
        "localhost",
        "-CAfile",
        otherCa.cert,
        "-verify_return_error",
        "-brief",
      ],
      { input: "" },
    );
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /unable to get local issuer certificate/);
    const c = await curl(["--cacert", otherCa.cert, `https://localhost:${s.port}/`]);
    assert.equal(c.code, 60);
  } finally {
    await s.stop();
  }
});

/** python3's ssl trusting only `cafile`, checking the name: what it saw and what it read (to a
 * close_notify: an EOF without one is an error). */
function pythonClient(port: number, cafile: string) {
  const script = `
import hashlib, socket, ssl, sys
ctx = ssl.create_default_context(cafile=${JSON.stringify(cafile)})
${PY_STRICT_EOF}
ctx.check_hostname = True
raw = socket.create_connection(("127.0.0.1", ${port}))
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
der = s.getpeercert(binary_form=True)
print(s.version(), hashlib.sha256(der).hexdigest())
out = b""
while True:
    try:
        chunk = s.recv(65536)
    except ssl.SSLZeroReturnError:
        break
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode("latin1"))
`;
  return run("python3", ["-c", script]);
}

for (const [type, pair] of [
  ["Ed25519", ed25519],
  ["RSA", rsa],
] as const) {
  test(`a tls-keygen ${type} self-signed pair served by tlsd, verified by python3 ssl`, async () => {
    const s = await tlsd("127.0.0.1", pair, ["/bin/sh", "-c", 'echo "served $SSL_CIPHER"']);
    try {
      const x509 = new X509Certificate(readFileSync(pair.cert));
      assert.equal(x509.publicKey.asymmetricKeyType, type === "RSA" ? "rsa" : "ed25519");
      const r = await pythonClient(s.port, pair.cert);
      assert.equal(r.stderr, "");
      const fingerprint = createHash("sha256").update(x509.raw).digest("hex");
      assert.match(r.stdout, new RegExp(`^TLSv1\\.3 ${fingerprint}\\nserved TLS_\\w+\\n$`));
      // Trusting another certificate instead: python refuses.
      const refused = await pythonClient(s.port, ca.cert);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /CERTIFICATE_VERIFY_FAILED/);
    } finally {
      await s.stop();
    }
  });
}

test("IPv6: tcpserver on ::1 + tlsd, curl -6 verifies the IP SAN ::1 (and refuses a leaf without it)", async () => {
  const s = await tlsd("::1", leaf, HTTP);
  const bad = await tlsd("::1", v4only, HTTP);
  try {
    const c = await curl(["-6", "--cacert", ca.cert, `https://[::1]:${s.port}/`]);
    assert.equal(c.stderr, "");
    // An address is not sent as SNI.
    assert.equal(c.stdout, "TLSv1.3 alpn=unset sni=unset ip=::1\n");
    const refused = await curl(["-6", "--cacert", ca.cert, `https://[::1]:${bad.port}/`]);
    assert.equal(refused.code, 60);
    assert.match(refused.stderr, /no alternative certificate subject name matches/);
  } finally {
    await s.stop();
    await bad.stop();
  }
});

test("ALPN: tlsd --alpn h2,http/1.1 exports the protocol chosen with curl and openssl s_client", async () => {
  const s = await tlsd("127.0.0.1", leaf, ["--alpn", "h2,http/1.1", ...HTTP]);
  try {
    const c = await curl(["--http1.1", "--cacert", ca.cert, `https://localhost:${s.port}/`]);
    assert.equal(c.stderr, "");
    assert.equal(c.stdout, "TLSv1.3 alpn=http/1.1 sni=localhost ip=127.0.0.1\n");
    const sClient = (alpn: string[]) =>
      run(
        "openssl",
        [
          "s_client",
          "-connect",
          `127.0.0.1:${s.port}`,
          "-servername",
          "localhost",
          "-CAfile",
          ca.cert,
          "-verify_return_error",
          ...alpn,
          "-ign_eof",
        ],
        { input: "GET / HTTP/1.0\r\n\r\n" },
      );
    const h2 = await sClient(["-alpn", "h2"]);
    assert.match(h2.stdout, /^ALPN protocol: h2$/m);
    assert.match(h2.stdout, /^TLSv1\.3 alpn=h2 sni=localhost ip=127\.0\.0\.1$/m);
    // Both in common: tlsd's order decides (its first protocol that the client offers too).
    const both = await sClient(["-alpn", "http/1.1,h2"]);
    assert.match(both.stdout, /^TLSv1\.3 alpn=h2 /m);
    // No ALPN offered: none chosen, the variable unset.
    const none = await sClient([]);
    assert.match(none.stdout, /^TLSv1\.3 alpn=unset sni=localhost/m);
    // Nothing in common: RFC 7301's no_application_protocol alert, the program never runs.
    const foreign = await sClient(["-alpn", "imap"]);
    assert.notEqual(foreign.code, 0);
    assert.match(foreign.stderr, /no application protocol/);
    assert.doesNotMatch(foreign.stdout, /alpn=/);
    await s.waitForLog(/^tcpserver: end \d+ status 25088$/, 1);
  } finally {
    await s.stop();
  }
});

test("without --alpn, a stale SSL_ALPN_PROTOCOL in tlsd's environment does not reach the program", async () => {
  // tlsd.md: "an absent fact unsets the variable so nothing stale leaks through".
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/sh", "-c", 'echo "alpn=${SSL_ALPN_PROTOCOL-unset}"'],
    { env: { ...tlsdEnv(leaf), SSL_ALPN_PROTOCOL: "stale" } },
  );
  try {
    // The client offers ALPN, tlsd (without --alpn) chooses none.
    const o = await run(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${s.port}`,
        "-alpn",
        "http/1.1",
        "-quiet",
        "-ign_eof",
        "-CAfile",
        ca.cert,
      ],
      { input: "" },
    );
    assert.match(o.stdout, /^alpn=unset$/m);
  } finally {
    await s.stop();
  }
});

test("a handshake failure with a long OpenSSL error (ALPN mismatch) is one log line, no blank line after it", async () => {
  const s = await tlsd("127.0.0.1", leaf, ["--alpn", "h2", "/bin/echo", "hi"]);
  try {
    await run("openssl", ["s_client", "-connect", `127.0.0.1:${s.port}`, "-alpn", "imap"], {
      input: "",
    });
    await s.waitForLog(/^tcpserver: end \d+ status 25088$/, 1);
    const fatal = /^tlsd: fatal: .*$/m.exec(s.log());
    assert.ok(fatal, s.log());
    // The line after the fatal one is tcpserver's end line, not an empty one.
    const rest = s.log().slice((fatal.index ?? 0) + fatal[0].length);
    assert.match(rest, /^\ntcpserver: end /, JSON.stringify(fatal[0] + rest.slice(0, 40)));
  } finally {
    await s.stop();
  }
});

test("a program that exits without reading all its input: its output and close_notify still reach the client", async () => {
  // tlsd's Notes: "tlsd always sends close_notify when the program ends". A program that
  // answers without reading what the client sent (a banner, an error, `echo`) is common.
  const s = await tlsd("127.0.0.1", leaf, ["/bin/echo", "hi"]);
  try {
    const script = `
import socket, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(ca.cert)})
${PY_STRICT_EOF}
for i in range(10):
    raw = socket.create_connection(("127.0.0.1", ${s.port}))
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    s.sendall(b"input the program never reads\\n")
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        end = "close_notify"
    except ssl.SSLEOFError:
        end = "EOF without close_notify"
    except OSError as e:
        end = type(e).__name__
    print(repr(out), end)
    s.close()
`;
    const r = await run("python3", ["-c", script]);
    assert.equal(r.stderr, "");
    assert.deepEqual(r.stdout.split("\n").slice(0, -1), Array(10).fill("b'hi\\n' close_notify"));
  } finally {
    await s.stop();
  }
});

// 256 MiB each way, as a deterministic stream that never repeats (AES-128-CTR of zeros). 1 GiB
// took 5 s up on an idle 2-core machine but over 40 s on a loaded CI machine; 256 MiB still
// crosses every buffer and back-pressure path many times.
const SIZE = 1 << 28;
const STREAM_KEY = "000102030405060708090a0b0c0d0e0f";
const GENERATE =
  `openssl enc -aes-128-ctr -K ${STREAM_KEY} -iv 00000000000000000000000000000000 -nosalt ` +
  `-in /dev/zero 2>/dev/null | head -c ${SIZE}`;

let expected: string | undefined;
/** sha256 of the first SIZE bytes of the stream, computed here. */
function expectedSha256(): string {
  if (expected === undefined) {
    const cipher = createCipheriv("aes-128-ctr", Buffer.from(STREAM_KEY, "hex"), Buffer.alloc(16));
    const hash = createHash("sha256");
    const zeros = Buffer.alloc(1 << 20);
    for (let done = 0; done < SIZE; done += zeros.length) hash.update(cipher.update(zeros));
    expected = hash.digest("hex");
  }
  return expected;
}

// TLS 1.2 too: the program's stream is then a front on the session (the close_notify rule), and
// the shared read buffer is handed through it uncopied whenever the session takes it at once.
for (const version of ["TLSv1_3", "TLSv1_2"])
  test(`256 MiB down, ${version}: the program's output reaches python3 ssl whole (byte count and sha256)`, async () => {
    const s = await tlsd("127.0.0.1", leaf, ["/bin/sh", "-c", GENERATE]);
    try {
      const script = `
import hashlib, socket, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(ca.cert)})
${PY_STRICT_EOF}
ctx.maximum_version = ssl.TLSVersion.${version}
raw = socket.create_connection(("127.0.0.1", ${s.port}))
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
assert s.version() == "${version.replace("_", ".")}", s.version()
h = hashlib.sha256()
n = 0
while True:
    try:
        chunk = s.recv(1 << 20)
    except ssl.SSLZeroReturnError:
        break
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
print(n, h.hexdigest())
`;
      const r = await run("python3", ["-c", script], { timeoutMs: 40_000 });
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, `${SIZE} ${expectedSha256()}\n`);
      await s.waitForLog(/^tcpserver: end \d+ status 0$/, 1);
    } finally {
      await s.stop();
    }
  });

test("256 MiB up: tcpclient + tlsc send it and half-close, sha256sum behind tlsd answers after EOF", async () => {
  const s = await tlsd("127.0.0.1", leaf, ["sha256sum"]);
  try {
    const r = await run(
      "/bin/sh",
      ["-c", `${GENERATE} | tcpclient -RH 127.0.0.1 ${s.port} tlsc -k localhost ${CLIENT_IO}`],
      { env: { PATH, CAFILE: ca.cert }, timeoutMs: 40_000 },
    );
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${expectedSha256()}  -\n`);
    await s.waitForLog(/^tcpserver: end \d+ status 0$/, 1);
  } finally {
    await s.stop();
  }
});

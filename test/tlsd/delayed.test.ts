// tlsd -n (UCSPI-TLS delayed mode) with real processes: test/fixtures/starttls-app, a tiny
// SMTP-like program that talks cleartext and asks for TLS on STARTTLS, driven by openssl
// s_client -starttls smtp and a python3 client; in-process under our tcpserver and as a
// process of its own under djb's tcpserver.
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT, djb, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const APP = join(ROOT, "test", "fixtures", "starttls-app");
const SERVERS = [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const;

let logs = 0;
/** A fresh log file for the app, and the server env that names it. A stale SSL_PROTOCOL is
 * there to show that the program never inherits one before its handshake. */
function appSetup(extra: Record<string, string> = {}) {
  const log = join(pki.dir, `app-${++logs}.log`);
  const env = {
    PATH,
    CERTFILE: server.cert,
    KEYFILE: server.key,
    SSL_PROTOCOL: "stale",
    APP_LOG: log,
    ...extra,
  };
  return { env, log: () => (existsSync(log) ? readFileSync(log, "latin1") : "") };
}

interface ClientScript {
  /** Cleartext lines sent (one SMTP answer read each) before the STARTTLS line. */
  clear?: string[];
  /** The STARTTLS line, and whatever is pipelined with it in the same write. */
  starttls?: string;
  /** Plaintext sent after the 220 instead of a handshake; then read until EOF. */
  plaintextAfter?: string;
  /** Closes the connection after the answer to STARTTLS. */
  hangUp?: boolean;
  /** Lines sent after the handshake (or in cleartext when STARTTLS was refused). */
  then?: string[];
  cert?: string;
  key?: string;
}

/** python3: a cleartext SMTP-like exchange read a byte at a time (nothing past an answer is
 * taken from the socket), STARTTLS, then TLS with ssl.wrap_socket (SNI localhost); prints the transcript. */
function client(port: number, script: ClientScript) {
  const py = `
import socket, ssl, sys
out = []
raw = socket.create_connection(("127.0.0.1", ${port}))
raw.settimeout(10)
def line():
    b = b""
    while not b.endswith(b"\\n"):
        c = raw.recv(1)
        if not c:
            break
        b += c
    return b.decode("latin1")
def reply():
    last = text = line()
    while last[3:4] == "-":
        last = line()
        text += last
    return text
def rest(sock):
    data = b""
    while True:
        try:
            d = sock.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        except OSError as e:
            out.append("[%s]" % type(e).__name__)
            break
        if not d:
            break
        data += d
    return data.decode("latin1")
out.append(line())
for l in ${JSON.stringify(script.clear ?? [])}:
    raw.sendall(l.encode())
    out.append(reply())
raw.sendall(${JSON.stringify(script.starttls ?? "STARTTLS\r\n")}.encode())
answer = reply()
out.append(answer)
after = ${script.plaintextAfter === undefined ? "None" : JSON.stringify(script.plaintextAfter)}
if ${script.hangUp ? "True" : "False"}:
    raw.close()
elif after is not None:
    raw.sendall(after.encode())
    out.append(rest(raw))
elif answer.startswith("220"):
    ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
    ${script.cert ? `ctx.load_cert_chain(${JSON.stringify(script.cert)}, ${JSON.stringify(script.key)})` : "pass"}
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    out.append("[TLS %s]\\n" % s.version())
    for l in ${JSON.stringify(script.then ?? [])}:
        s.sendall(l.encode())
    out.append(rest(s))
else:
    for l in ${JSON.stringify(script.then ?? [])}:
        raw.sendall(l.encode())
    out.append(rest(raw))
sys.stdout.write("".join(out))
`;
  return run("python3", ["-c", py]);
}

const SESSION =
  /SSL_PROTOCOL=TLSv1\.3 SSL_CIPHER=TLS_AES_(128|256)_GCM_SHA(256|384) SSL_TLS_SNI_SERVERNAME=localhost/;

for (const [who, tcpserver] of SERVERS) {
  test(`${who}: Y: cleartext on the socket, STARTTLS, then the session block and TLS`, async () => {
    const app = appSetup();
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "Y", "7"],
      { env: app.env },
    );
    try {
      const r = await client(s.port, {
        clear: ["EHLO client.example\r\n", "NOOP\r\n"],
        then: ["PING\r\n", "QUIT\r\n"],
      });
      assert.equal(r.stderr, "");
      const [greeting, ehlo1, ehlo2, noop, go, tls, ...secure] = r.stdout.split(/(?<=\n)/);
      assert.deepEqual(
        [greeting, ehlo1, ehlo2, noop, go, tls],
        [
          "220 ready\r\n",
          "250-localhost\r\n",
          "250 STARTTLS\r\n",
          "250 clear NOOP\r\n",
          "220 go ahead\r\n",
          "[TLS TLSv1.3]\n",
        ],
      );
      assert.match(secure[0] ?? "", new RegExp(`^250 ${SESSION.source} \\| PING\\r\\n$`));
      assert.equal(secure[1], "221 bye\r\n");
      // The program's exit status is tlsd's (and so tcpserver's).
      await s.waitForLog(/ end \d+ status 1792$/);
      assert.doesNotMatch(s.log(), /tlsd:/);
      const seen = app.log();
      // fds 0/1: the TCP socket itself; three more fds of their own numbers.
      assert.match(seen, /^fd0 AF_INET fd1 same=True$/m);
      assert.match(seen, /^fds distinct=True$/m);
      // No key paths, no stale session facts; the three UCSPI-TLS variables.
      assert.match(seen, /^env SSLCTLFD SSLREADFD SSLWRITEFD$/m);
      assert.match(seen, /^block ok=True$/m);
      const hex = /^block ([0-9a-f]+)$/m.exec(seen)?.[1] ?? "";
      const block = Buffer.from(hex, "hex").toString("latin1");
      assert.match(block, new RegExp(`^${SESSION.source.replaceAll(" ", "\\0")}\\0\\0$`));
      assert.match(seen, /clear: EHLO client\.example\nclear: NOOP\nclear: STARTTLS\n/);
      assert.match(seen, /tls: PING\ntls: QUIT\n$/);
    } finally {
      await s.stop();
    }
  });

  test(`${who}: openssl s_client -starttls smtp`, async () => {
    const app = appSetup();
    const s = await startServer(tcpserver, ["-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "Y"], {
      env: app.env,
    });
    try {
      const o = await run(
        "openssl",
        [
          "s_client",
          "-connect",
          `127.0.0.1:${s.port}`,
          "-starttls",
          "smtp",
          "-servername",
          "localhost",
          "-CAfile",
          pki.ca.cert,
          "-verify_return_error",
          "-quiet",
          "-ign_eof",
          "-crlf",
        ],
        { input: "PING\nQUIT\n" },
      );
      assert.equal(o.code, 0, o.stderr);
      assert.match(o.stdout, new RegExp(`^250 ${SESSION.source} \\| PING\\r\\n221 bye\\r\\n$`));
      assert.match(app.log(), /clear: EHLO .*\nclear: STARTTLS\n[^]*tls: PING\ntls: QUIT\n$/);
    } finally {
      await s.stop();
    }
  });

  test(`${who}: plaintext after STARTTLS, pipelined or not, never reaches the program`, async () => {
    const app = appSetup();
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "Y"],
      { env: app.env },
    );
    try {
      // In the same segment as STARTTLS: the program reads up to its line, tlsd gets the rest.
      const pipelined = await client(s.port, {
        starttls: "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n",
        plaintextAfter: "",
      });
      assert.match(pipelined.stdout, /^220 ready\r\n220 go ahead\r\n/);
      // A plaintext client that goes on after the 220.
      const plain = await client(s.port, { plaintextAfter: "MAIL FROM:<evil@example.org>\r\n" });
      assert.match(plain.stdout, /^220 ready\r\n220 go ahead\r\n/);
      // And one that leaves after the 220.
      const gone = await client(s.port, { hangUp: true });
      assert.equal(gone.stdout, "220 ready\r\n220 go ahead\r\n");
      // Every handshake fails; the program gets EOF instead of a block and exits 3.
      await s.waitForLog(/ end \d+ status 768$/, 3);
      assert.deepEqual(s.log().match(/^tlsd: .*$/gm), [
        "tlsd: warning: TLS handshake failed: wrong version number",
        "tlsd: warning: TLS handshake failed: wrong version number",
        "tlsd: warning: TLS handshake failed: connection closed",
      ]);
      const seen = app.log();
      assert.doesNotMatch(seen, /evil|MAIL/);
      assert.equal(seen.match(/^block $/gm)?.length, 3);
      assert.equal(seen.match(/^no TLS$/gm)?.length, 3);
    } finally {
      await s.stop();
    }
  });
}

test("y: TLS without a block; bytes written to SSLWRITEFD before the handshake wait for it", async () => {
  const app = appSetup();
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "y"],
    { env: app.env },
  );
  try {
    const r = await client(s.port, { then: ["PING\r\n", "QUIT\r\n"] });
    assert.equal(
      r.stdout,
      "220 ready\r\n220 go ahead\r\n[TLS TLSv1.3]\n250 early\r\n250  | PING\r\n221 bye\r\n",
    );
    await s.waitForLog(/ end \d+ status 0$/);
    assert.doesNotMatch(s.log(), /tlsd:/);
    assert.doesNotMatch(app.log(), /block/);
    assert.match(app.log(), /tls: PING\ntls: QUIT\n$/);
  } finally {
    await s.stop();
  }
});

test("Y with -y: the block carries the client certificate's hash and subject", async () => {
  const alice = pki.client("alice");
  const app = appSetup({ CAFILE: pki.ca.cert });
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-n", "-y", APP, "Y"],
    { env: app.env },
  );
  try {
    const r = await client(s.port, { then: ["QUIT\r\n"], cert: alice.cert, key: alice.key });
    assert.match(r.stdout, /\[TLS TLSv1\.3\]\n221 bye\r\n$/);
    const hex = /^block ([0-9a-f]+)$/m.exec(app.log())?.[1] ?? "";
    const entries = Buffer.from(hex, "hex").toString("latin1").split("\0");
    const der = new X509Certificate(readFileSync(alice.cert)).raw;
    assert.ok(
      entries.includes(
        `SSL_PEER_CERT_HASH=SHA256:${createHash("sha256").update(der).digest("hex")}`,
      ),
    );
    assert.ok(entries.includes("SSL_PEER_CERT_SUBJECT=C=FR, O=Test Org, CN=alice"));
    assert.deepEqual(entries.slice(-2), ["", ""]);
    assert.doesNotMatch(app.log(), /CAFILE/);
  } finally {
    await s.stop();
  }
});

test("decline: EOF on SSLCTLFD before a command; the program goes on in cleartext", async () => {
  const app = appSetup();
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", "-v", "2", APP, "decline", "5"],
    { env: app.env },
  );
  try {
    const r = await client(s.port, { then: ["PING\r\n", "QUIT\r\n"] });
    assert.equal(r.stdout, "220 ready\r\n454 TLS not available\r\n250 clear PING\r\n221 bye\r\n");
    await s.waitForLog(/ end \d+ status 1280$/);
    assert.deepEqual(s.log().match(/^tlsd: .*$/gm), ["tlsd: info: the program declined TLS"]);
    assert.match(app.log(), /clear: STARTTLS\nclear: PING\nclear: QUIT\n$/);
  } finally {
    await s.stop();
  }
  // A program that knows nothing of UCSPI-TLS (its exit closes SSLCTLFD), and one of our own
  // stages run in-process after tlsd -n (it never gets the fds): both talk cleartext.
  for (const [program, input, expected, status] of [
    [["/bin/sh", "-c", 'echo "hi $SSLCTLFD"; exit 4'], "", /^hi \d+\n$/, 1024],
    [["ucspi-demo"], "hello\r\nquit\r\n", /\r\necho: hello\r\n$/, 0],
  ] as const) {
    const t = await startServer(
      ours("tcpserver"),
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", ...program],
      { env: appSetup().env },
    );
    try {
      assert.match(await talk(t.port, input), expected);
      await t.waitForLog(new RegExp(` end \\d+ status ${status}$`));
      assert.doesNotMatch(t.log(), /tlsd:/);
    } finally {
      await t.stop();
    }
  }
});

test("a control byte other than y or Y: one log line, no TLS, the program goes on", async () => {
  const app = appSetup();
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "bad"],
    { env: app.env },
  );
  try {
    const r = await client(s.port, { then: ["PING\r\n", "QUIT\r\n"] });
    assert.equal(r.stdout, "220 ready\r\n454 TLS not available\r\n250 clear PING\r\n221 bye\r\n");
    await s.waitForLog(/ end \d+ status 0$/);
    assert.deepEqual(s.log().match(/^tlsd: .*$/gm), [
      "tlsd: warning: unrecognized command 0x78 on control socket, no TLS",
    ]);
  } finally {
    await s.stop();
  }
});

test("tlsd -n: the usage line shows it; a configuration error comes before the program", async () => {
  const usage = await run(ours("tlsd"), ["-Q", "x"], { env: { PATH } });
  assert.match(usage.stderr, /usage: tlsd .*\[ -n \]/);
  const r = await run(ours("tlsd"), ["--delayed", "/bin/echo", "ran"], { env: { PATH } });
  assert.equal(r.code, 100);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "tlsd: fatal: CERTFILE not set\n");
});

test("tlsd -n --mod-ssl: the program has ucspi-ssl's address set from its start, before any TLS", async () => {
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-RHl0", "127.0.0.1", "0", "tlsd", "-n", "--mod-ssl"],
      ...["/bin/sh", "-c", 'echo "$SSLREMOTEIP $SSLLOCALIP $SSLLOCALPORT ${SSL_PROTOCOL-none}"'],
    ],
    { env: appSetup().env },
  );
  try {
    assert.equal(await talk(s.port, ""), `127.0.0.1 127.0.0.1 ${s.port} none\n`);
  } finally {
    await s.stop();
  }
});

// tlsc with third-party TLS servers: stunnel4 in server mode (exec'ing a plaintext program,
// asking for a client certificate), openssl s_server with ALPN, python3 ssl; and our tcpserver +
// tlsd on ::1, verified by its IP SAN. Certificates made by our tls-keygen.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { before, test } from "node:test";
import { startStunnel } from "../helpers/interop.ts";
import { keygenOk, workDir } from "../helpers/keygen.ts";
import { BIN, ROOT, djb, ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { sServer as sServerOf } from "../helpers/s-server.ts";
import { PY_STRICT_EOF } from "../helpers/py-bio.ts";

const PATH = `${BIN}:/usr/bin:/bin`;
const CLIENT_IO = `${ROOT}/test/fixtures/client-io`;
const scratch = workDir("tlsc-interop");

const ca = { cert: scratch.path("ca.pem"), key: scratch.path("ca.key") };
const leaf = { cert: scratch.path("leaf.pem"), key: scratch.path("leaf.key") };
const v4only = { cert: scratch.path("v4.pem"), key: scratch.path("v4.key") };
const alice = { cert: scratch.path("alice.pem"), key: scratch.path("alice.key") };

before(async () => {
  await keygenOk(["ca", "-n", "Interop CA", ca.cert, ca.key]);
  const sign = (...args: string[]) => keygenOk(["leaf", "-C", ca.cert, "-K", ca.key, ...args]);
  await sign(leaf.cert, leaf.key); // the default names: localhost, 127.0.0.1 and ::1
  await sign("-s", "localhost,127.0.0.1", v4only.cert, v4only.key);
  await sign("--client", "-n", "alice", alice.cert, alice.key);
});

/** What the client program prints first: the session as tlsc exported it. */
const SHOW_SESSION =
  'echo "$SSL_PROTOCOL sni=${SSL_TLS_SNI_SERVERNAME-unset} alpn=${SSL_ALPN_PROTOCOL-unset} ' +
  'peer=$SSL_PEER_CERT_SUBJECT ${CAFILE-nocafile}"';

for (const [who, tcpclient] of [
  ["our tcpclient, tlsc in-process", ours("tcpclient")],
  ["djb's tcpclient spawning tlsc", djb("tcpclient")],
] as const) {
  test(`stunnel4 as a server (exec rev): ${who} verifies it, sends, half-closes, reads the answer`, async () => {
    const st = await startStunnel(scratch.dir, "rev", {
      cert: leaf.cert,
      key: leaf.key,
      exec: "/usr/bin/rev",
    });
    try {
      const r = await run(
        tcpclient,
        [
          "-RH",
          "127.0.0.1",
          String(st.port),
          "tlsc",
          "-k",
          "localhost",
          "/bin/sh",
          "-c",
          `${SHOW_SESSION}; exec ${CLIENT_IO}`,
        ],
        { env: { PATH, CAFILE: ca.cert }, input: "hello\nworld\n" },
      );
      assert.equal(r.stderr, "");
      assert.equal(r.code, 0);
      // rev answers only at EOF (stdio buffers): the half-close went through tlsc and stunnel.
      assert.equal(
        r.stdout,
        "TLSv1.3 sni=localhost alpn=unset peer=CN=localhost nocafile\nolleh\ndlrow\n",
      );
      // A name the certificate does not have: exit 98, the program never runs.
      const wrong = await run(
        tcpclient,
        ["-RH", "127.0.0.1", String(st.port), "tlsc", "-k", "other.test", "/bin/echo", "RAN"],
        { env: { PATH, CAFILE: ca.cert } },
      );
      assert.equal(wrong.code, 98);
      assert.equal(wrong.stdout, "");
      assert.match(
        wrong.stderr,
        /^tlsc: fatal: the server certificate is not for other\.test: it is for DNS:localhost, .*\n$/,
      );
    } finally {
      await st.stop();
    }
  });
}

test("stunnel4 as a server requiring a client certificate: tlsc -y with a tls-keygen --client leaf", async () => {
  const st = await startStunnel(scratch.dir, "mtls", {
    cert: leaf.cert,
    key: leaf.key,
    exec: "/usr/bin/rev",
    verifyChain: "yes",
    requireCert: "yes",
    CAfile: ca.cert,
  });
  try {
    const r = await run(
      ours("tcpclient"),
      ["-RH", "127.0.0.1", String(st.port), "tlsc", "-y", "-k", "localhost", CLIENT_IO],
      {
        env: { PATH, CAFILE: ca.cert, CERTFILE: alice.cert, KEYFILE: alice.key },
        input: "mutual\n",
      },
    );
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "lautum\n");
    // Without -y no certificate is sent and stunnel refuses: nothing comes back.
    const refused = await run(
      ours("tcpclient"),
      ["-RH", "127.0.0.1", String(st.port), "tlsc", "-k", "localhost", CLIENT_IO],
      { env: { PATH, CAFILE: ca.cert }, input: "mutual\n" },
    );
    assert.doesNotMatch(refused.stdout, /lautum/);
    await waitFor(
      () =>
        /peer did not return a certificate|certificate required/i.test(st.log()) ? true : undefined,
      5_000,
      () => `stunnel log:\n${st.log()}`,
    );
  } finally {
    await st.stop();
  }
});

test("IPv6: tcpclient + tlsc to ::1 without -k verify the IP SAN ::1 (and refuse a leaf without it)", async () => {
  const good = await startServer(
    ours("tcpserver"),
    ["-RHl0", "::1", "0", "tlsd", "/bin/sh", "-c", 'echo "served $TCPREMOTEIP"'],
    { env: { PATH, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  const bad = await startServer(
    ours("tcpserver"),
    ["-RHl0", "::1", "0", "tlsd", "/bin/echo", "served"],
    { env: { PATH, CERTFILE: v4only.cert, KEYFILE: v4only.key } },
  );
  try {
    const ok = await run(
      ours("tcpclient"),
      ["-RH", "::1", String(good.port), "tlsc", "/bin/sh", "-c", `${SHOW_SESSION}; cat <&6`],
      { env: { PATH, CAFILE: ca.cert } },
    );
    assert.equal(ok.stderr, "");
    // An address is verified but not sent as SNI.
    assert.equal(
      ok.stdout,
      "TLSv1.3 sni=unset alpn=unset peer=CN=localhost nocafile\nserved ::1\n",
    );
    const refused = await run(
      ours("tcpclient"),
      ["-RH", "::1", String(bad.port), "tlsc", "/bin/sh", "-c", "cat <&6"],
      { env: { PATH, CAFILE: ca.cert } },
    );
    assert.equal(refused.code, 98);
    assert.equal(refused.stdout, "");
    assert.match(
      refused.stderr,
      /^tlsc: fatal: the server certificate is not for ::1: it is for DNS:localhost, IP Address:127\.0\.0\.1\n$/,
    );
  } finally {
    await good.stop();
    await bad.stop();
  }
});

/** openssl s_server -rev for one connection, serving `leaf`, with these extra arguments. */
const sServer = (extra: readonly string[]) => sServerOf(leaf.cert, leaf.key, extra);

test("ALPN: tlsc --alpn against openssl s_server -alpn exports the protocol the server chose", async () => {
  for (const [serverList, clientList, expected] of [
    ["h2", "http/1.1,h2", "h2"],
    ["http/1.1", "h2,http/1.1", "http/1.1"],
    ["imap,h2", "h2", "h2"],
  ] as const) {
    const s = await sServer(["-alpn", serverList]);
    try {
      const r = await run(
        ours("tcpclient"),
        [
          "-RH",
          "127.0.0.1",
          String(s.port),
          "tlsc",
          "-k",
          "localhost",
          "--alpn",
          clientList,
          "/bin/sh",
          "-c",
          `${SHOW_SESSION}; echo ping >&7; head -c 5 <&6`,
        ],
        { env: { PATH, CAFILE: ca.cert } },
      );
      assert.equal(r.stderr, "", `${serverList} / ${clientList}`);
      assert.equal(
        r.stdout,
        `TLSv1.3 sni=localhost alpn=${expected} peer=CN=localhost nocafile\ngnip\n`,
        `${serverList} / ${clientList}`,
      );
    } finally {
      s.child.kill();
    }
  }
  // Nothing in common: s_server (OpenSSL 3) sends no_application_protocol; one line, exit 98.
  const s = await sServer(["-alpn", "imap"]);
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "-k",
        "localhost",
        "--alpn",
        "h2",
        "/bin/echo",
        "RAN",
      ],
      { env: { PATH, CAFILE: ca.cert } },
    );
    assert.equal(r.code, 98);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^tlsc: fatal: TLS handshake failed: [^\n]*no application protocol\n$/);
  } finally {
    s.child.kill();
  }
});

test("ALPN with nothing in common with tlsd --alpn: tlsc fails in one line, exit 98", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "--alpn", "h2", "/bin/echo", "served"],
    { env: { PATH, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "-k",
        "localhost",
        "--alpn",
        "imap",
        "/bin/echo",
        "RAN",
      ],
      { env: { PATH, CAFILE: ca.cert } },
    );
    assert.equal(r.code, 98);
    assert.equal(r.stdout, "");
    // tlsc.md: "a failure is one line and exit 98".
    assert.match(
      r.stderr,
      /^tlsc: fatal: TLS handshake failed: [^\n]*no application protocol[^\n]*\n$/,
    );
  } finally {
    await s.stop();
  }
});

test("without --alpn, a stale SSL_ALPN_PROTOCOL in tlsc's environment does not reach the program", async () => {
  // The same promise as tlsd's: an absent fact unsets the variable, nothing stale leaks through.
  const s = await sServer(["-alpn", "h2"]);
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "-k",
        "localhost",
        "/bin/sh",
        "-c",
        SHOW_SESSION,
      ],
      { env: { PATH, CAFILE: ca.cert, SSL_ALPN_PROTOCOL: "stale" } },
    );
    assert.equal(r.stdout, "TLSv1.3 sni=localhost alpn=unset peer=CN=localhost nocafile\n");
  } finally {
    s.child.kill();
  }
});

test("a program that exits without reading the server's data: its output and close_notify still reach the server", async () => {
  // A python3 ssl server that greets, then reads to the end and says how the stream ended.
  const script = `
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
${PY_STRICT_EOF}
ctx.load_cert_chain(${JSON.stringify(leaf.cert)}, ${JSON.stringify(leaf.key)})
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(5)
print(ls.getsockname()[1], flush=True)
for i in range(5):
    c, _ = ls.accept()
    s = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
    s.sendall(b"greeting the client never reads\\n")
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
    print(repr(out), end, flush=True)
    s.close()
`;
  const server = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  server.stdout.setEncoding("latin1");
  server.stdout.on("data", (s: string) => (out += s));
  try {
    const port = await waitFor(
      () => /^(\d+)\n/.exec(out)?.[1],
      10_000,
      () => `python server: ${out}`,
    );
    for (let i = 0; i < 5; i++) {
      // The program waits until the greeting is surely in its socket, answers, and exits.
      await run(
        ours("tcpclient"),
        [
          "-RH",
          "127.0.0.1",
          port,
          "tlsc",
          "-k",
          "localhost",
          "/bin/sh",
          "-c",
          "sleep 0.1; echo answer >&7",
        ],
        { env: { PATH, CAFILE: ca.cert } },
      );
    }
    const lines = await waitFor(
      () => {
        const l = out.split("\n").slice(1, -1);
        return l.length === 5 ? l : undefined;
      },
      10_000,
      () => `python server: ${out}`,
    );
    assert.deepEqual(lines, Array(5).fill("b'answer\\n' close_notify"));
  } finally {
    server.kill();
  }
});

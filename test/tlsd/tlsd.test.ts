// tlsd with real peers: openssl s_client, curl, python3 ssl; in-process under our tcpserver and
// as a process of its own under djb's tcpserver.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { X509Certificate } from "node:crypto";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { servedPem } from "../helpers/tls-client.ts";
import { makePki } from "../helpers/certs.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const ENV_DUMP = [
  "/bin/sh",
  "-c",
  'env | grep -E "^(SSL_|CERTFILE|KEYFILE|CAFILE|PROTO|TCPREMOTEIP)" | sort; cat',
];

function serverEnv(extra: Record<string, string> = {}) {
  return { PATH, CERTFILE: server.cert, KEYFILE: server.key, ...extra };
}

/** python3's ssl client: sends `input`, reads until EOF; prints what it read. */
function pythonClient(
  port: number,
  options: { sni?: string; ca?: string; cert?: string; key?: string; input?: string } = {},
) {
  const script = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=${JSON.stringify(options.ca ?? pki.ca.cert)})
ctx.check_hostname = ${options.sni ? "True" : "False"}
${options.cert ? `ctx.load_cert_chain(${JSON.stringify(options.cert)}, ${JSON.stringify(options.key)})` : ""}
raw = socket.create_connection(("127.0.0.1", ${port}))
s = ctx.wrap_socket(raw, server_hostname=${options.sni ? JSON.stringify(options.sni) : "None"})
s.sendall(${JSON.stringify(options.input ?? "")}.encode())
out = b""
while True:
    try:
        chunk = s.recv(65536)
    except ssl.SSLZeroReturnError:
        break
    if not chunk:
        break
    out += chunk
    if b"END" in out:
        break
sys.stdout.write(out.decode("latin1"))
`;
  return run("python3", ["-c", script]);
}

for (const [who, tcpserver] of [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const) {
  test(`${who}: python3 ssl gets the program's answer and the program gets the session`, async () => {
    const s = await startServer(tcpserver, ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", ...ENV_DUMP], {
      env: serverEnv(),
    });
    try {
      const r = await pythonClient(s.port, { sni: "localhost", input: "hello END\n" });
      assert.equal(r.stderr, "");
      assert.match(r.stdout, /^PROTO=TCP$/m);
      assert.match(r.stdout, /^SSL_PROTOCOL=TLSv1\.3$/m);
      assert.match(r.stdout, /^SSL_CIPHER=TLS_AES_(128|256)_GCM_SHA(256|384)$/m);
      assert.match(r.stdout, /^SSL_TLS_SNI_SERVERNAME=localhost$/m);
      assert.match(r.stdout, /^TCPREMOTEIP=127\.0\.0\.1$/m);
      assert.doesNotMatch(r.stdout, /CERTFILE|KEYFILE/, "key paths never reach the program");
      assert.doesNotMatch(r.stdout, /SSL_PEER_CERT/);
      assert.match(r.stdout, /hello END\n$/);
    } finally {
      await s.stop();
    }
  });
}

test("openssl s_client and curl --cacert, TLS 1.2 and 1.3", async () => {
  const http = [
    "/bin/sh",
    "-c",
    'read line; printf "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhi from $SSL_PROTOCOL\\n"',
  ];
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", ...http], {
    env: serverEnv(),
  });
  try {
    for (const version of ["1.2", "1.3"]) {
      const r = await run(
        "curl",
        [
          "-sS",
          "--cacert",
          pki.ca.cert,
          `--tlsv${version}`,
          "--tls-max",
          version,
          `https://localhost:${s.port}/`,
        ],
        {
          env: { PATH: "/usr/bin:/bin" },
        },
      );
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, `hi from TLSv${version}\n`);
    }
    const o = await run(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${s.port}`,
        "-servername",
        "localhost",
        "-CAfile",
        pki.ca.cert,
        "-verify_return_error",
        "-quiet",
        "-ign_eof",
      ],
      { input: "GET / HTTP/1.0\r\n\r\n" },
    );
    assert.match(o.stdout, /hi from TLSv1\.3/);
    // TLS 1.1 and below are refused.
    const old = await run(
      "openssl",
      ["s_client", "-connect", `127.0.0.1:${s.port}`, "-tls1_1", "-quiet"],
      { input: "" },
    );
    assert.notEqual(old.code, 0);
  } finally {
    await s.stop();
  }
});

test("the TLS configuration never reaches the program, unless -Z; the rest of the environment does", async () => {
  const a = pki.server("a", ["a.test"]);
  const env = serverEnv({
    "CERTFILE:a.test": a.cert,
    "KEYFILE:a.test": a.key,
    CIPHERS: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    CADIR: pki.dir,
    ACME_EMAIL: "admin@example.org",
    KEEP_ME: "kept",
  });
  // env itself, not a shell: dash drops names that are not identifiers (CERTFILE:a.test).
  const dump = ["/usr/bin/env"];
  for (const keep of [false, true]) {
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", "1", ...(keep ? ["-Z"] : []), ...dump],
      { env },
    );
    try {
      const r = await pythonClient(s.port, { sni: "a.test" });
      const names = r.stdout
        .split("\n")
        .map((line) => line.slice(0, line.indexOf("=")))
        .filter((name) => /^(CERTFILE|KEYFILE|CIPHERS|CADIR|ACME_|KEEP_ME)/.test(name))
        .sort();
      assert.deepEqual(
        names,
        keep
          ? [
              "ACME_EMAIL",
              "CADIR",
              "CERTFILE",
              "CERTFILE:a.test",
              "CIPHERS",
              "KEEP_ME",
              "KEYFILE",
              "KEYFILE:a.test",
            ]
          : ["KEEP_ME"],
        keep ? "-Z keeps them" : "only what is not TLS configuration",
      );
    } finally {
      await s.stop();
    }
  }
});

test("certificates by SNI: exact name, one-label wildcard, default; -k 2 refuses unknown names", async () => {
  const a = pki.server("a", ["a.test"]);
  const wild = pki.server("wild", ["*.b.test"]);
  const env = serverEnv({
    "CERTFILE:a.test": a.cert,
    "KEYFILE:a.test": a.key,
    "CERTFILE:*.b.test": wild.cert,
    "KEYFILE:*.b.test": wild.key,
  });
  const subjectOf = (pem: string) => new X509Certificate(readFileSync(pem)).subject.trim();
  for (const level of ["1", "2"]) {
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", level, "/bin/echo", "END"],
      { env },
    );
    try {
      for (const [sni, cert] of [
        ["a.test", a.cert],
        ["x.b.test", wild.cert],
      ] as const) {
        const r = await run(
          "openssl",
          ["s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", sni, "-showcerts"],
          { input: "" },
        );
        const shown = servedPem(r.stdout) ?? "";
        assert.equal(
          new X509Certificate(shown).subject.trim(),
          subjectOf(cert),
          `SNI ${sni} at -k ${level}`,
        );
      }
      const unknown = await run(
        "openssl",
        ["s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", "other.test"],
        { input: "" },
      );
      if (level === "1") assert.match(unknown.stdout, /CN ?= ?localhost/);
      else assert.notEqual(unknown.code, 0);
    } finally {
      await s.stop();
    }
  }
});

test("client certificates: -y requires one from CAFILE, exports its hash and subject", async () => {
  const alice = pki.client("alice");
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-y", ...ENV_DUMP],
    {
      env: serverEnv({ CAFILE: pki.ca.cert }),
    },
  );
  try {
    const r = await pythonClient(s.port, { cert: alice.cert, key: alice.key, input: "END\n" });
    const der = new X509Certificate(readFileSync(alice.cert)).raw;
    assert.match(
      r.stdout,
      new RegExp(
        `^SSL_PEER_CERT_HASH=SHA256:${createHash("sha256").update(der).digest("hex")}$`,
        "m",
      ),
    );
    assert.match(r.stdout, /^SSL_PEER_CERT_SUBJECT=C=FR, O=Test Org, CN=alice$/m);
    assert.doesNotMatch(r.stdout, /CAFILE/);
    const refused = await pythonClient(s.port, { input: "END\n" });
    assert.doesNotMatch(refused.stdout, /END/);
    const stranger = pki.selfSigned("mallory");
    const refused2 = await pythonClient(s.port, {
      cert: stranger.cert,
      key: stranger.key,
      input: "END\n",
    });
    assert.doesNotMatch(refused2.stdout, /END/);
    await s.waitForLog(/ end \d+ status 25088$/, 2);
  } finally {
    await s.stop();
  }
});

test("garbage and plaintext clients: the handshake fails, status 98, the server goes on", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-K", "2000", "/bin/echo", "END"],
    { env: serverEnv() },
  );
  try {
    for (const bytes of [
      Buffer.from("EHLO example.org\r\n"),
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
      Buffer.alloc(0),
    ]) {
      await new Promise<void>((resolve) => {
        const c = connect({ port: s.port, host: "127.0.0.1" }, () => c.write(bytes));
        c.on("close", () => resolve());
        c.on("error", () => {});
        c.resume();
      });
    }
    await s.waitForLog(/ end \d+ status 25088$/, 3);
    assert.match(s.log(), /tlsd: fatal: 127\.0\.0\.1: (TLS handshake failed|handshake timed out)/);
    const ok = await pythonClient(s.port, { sni: "localhost" });
    assert.equal(ok.stdout, "END\n");
  } finally {
    await s.stop();
  }
});

/** A client that writes `writes`, 50 ms apart, and reads until the server closes. */
function rawClient(port: number, writes: Buffer[]): Promise<void> {
  return new Promise<void>((resolve) => {
    const c = connect({ port, host: "127.0.0.1" }, async () => {
      for (const bytes of writes) {
        c.write(bytes);
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    c.on("close", () => resolve());
    c.on("error", () => {});
    c.resume();
  });
}

const NAMED = "tlsd: fatal: 127.0.0.1: got a PROXY protocol header: run tcpserver with --proxy";
const NOT_TLS = "tlsd: fatal: 127.0.0.1: TLS handshake failed: wrong version number";

for (const [who, tcpserver, firstProxy] of [
  // In-process, the look before the handshake is for a process's first connection and for an
  // address whose last handshake was not TLS: a proxy's first header gets OpenSSL's words.
  ["our tcpserver, tlsd in-process", ours("tcpserver"), NOT_TLS],
  // A tlsd of its own serves one connection, its first: every one gets the look.
  ["djb's tcpserver spawning our tlsd", djb("tcpserver"), NAMED],
] as const) {
  test(`${who}: a PROXY header in place of a ClientHello is named, not "wrong version number"`, async () => {
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-K", "20000", "/bin/echo", "END"],
      { env: serverEnv() },
    );
    try {
      const v1 = Buffer.from("PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n");
      const v2 = Buffer.concat([
        Buffer.from("0d0a0d0a000d0a515549540a2111000c", "hex"),
        Buffer.from([192, 0, 2, 7, 127, 0, 0, 1, 0x15, 0xb3, 0x01, 0xbb]),
      ]);
      // The first connection is a TLS client: looked at, and its session is served.
      assert.equal((await pythonClient(s.port, { sni: "localhost" })).stdout, "END\n");
      // Whole, and cut inside the signature (tlsd waits for the rest of it).
      for (const writes of [
        [v1],
        [v1],
        [v2],
        [v1.subarray(0, 3), v1.subarray(3)],
        [v2.subarray(0, 7), v2.subarray(7)],
      ])
        await rawClient(s.port, writes);
      await s.waitForLog(/ end \d+ status 25088$/, 5);
      // A ClientHello from the suspect address still gets its session; "PROXI" is no PROXY
      // header.
      assert.equal((await pythonClient(s.port, { sni: "localhost" })).stdout, "END\n");
      await rawClient(s.port, [Buffer.from("PROXIMA\r\n")]);
      await s.waitForLog(/ end \d+ status 25088$/, 6);
      assert.deepEqual(s.log().match(/^tlsd: .*$/gm), [
        firstProxy,
        ...Array<string>(4).fill(NAMED),
        NOT_TLS,
      ]);
    } finally {
      await s.stop();
    }
  });
}

test("configuration errors: one line and the documented exit code", async () => {
  const cases: [Record<string, string>, number, RegExp][] = [
    [{}, 100, /^tlsd: fatal: CERTFILE not set\n$/],
    [{ CERTFILE: server.cert }, 100, /^tlsd: fatal: KEYFILE not set\n$/],
    [
      { CERTFILE: "/no/such.pem", KEYFILE: server.key },
      111,
      /^tlsd: fatal: unable to read certificate \/no\/such\.pem: file does not exist\n$/,
    ],
    [
      { CERTFILE: server.cert, KEYFILE: pki.ca.key },
      96,
      /^tlsd: fatal: unable to use certificate .* with key .*\n$/,
    ],
  ];
  for (const [env, code, message] of cases) {
    const r = await run(ours("tlsd"), ["/bin/true"], { env: { PATH, ...env } });
    assert.equal(r.code, code, r.stderr);
    assert.match(r.stderr, message);
  }
  const usage = await run(ours("tlsd"), ["-Q", "x"], { env: { PATH } });
  assert.equal(usage.code, 100);
  assert.match(usage.stderr, /^tlsd: illegal option -- Q\ntlsd: usage: tlsd /);
});

test("a configuration error ends tlsd even when its client side is a pipe that stays open", async (t) => {
  // `tls-sniff | tlsd prog`: fd 0 a pipe (its writer alive), fd 1 a socket. The two handles
  // made for them must not keep tlsd, and the client, waiting after the fatal line. (If they
  // did, the test times out, and its signal kills the child.)
  const child = spawn(ours("tlsd"), ["/bin/true"], {
    env: { PATH },
    stdio: ["pipe", "pipe", "pipe"],
    signal: t.signal,
  });
  child.on("error", () => {});
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  child.stdin.end();
  assert.equal(code, 100);
  assert.match(stderr, /^tlsd: fatal: CERTFILE not set\n$/);
});

test("a certificate replaced on disk is used for new connections; running ones go on", async () => {
  const { copyFileSync, renameSync } = await import("node:fs");
  const { join } = await import("node:path");
  const first = pki.server("first", ["localhost"]);
  const second = pki.server("second", ["localhost"]);
  const cert = join(pki.dir, "live.pem");
  const key = join(pki.dir, "live.key");
  copyFileSync(first.cert, cert);
  copyFileSync(first.key, key);
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/sh", "-c", "read x; echo got $x"],
    {
      env: { PATH, CERTFILE: cert, KEYFILE: key },
    },
  );
  const serial = async () => {
    const r = await run(
      "openssl",
      ["s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", "localhost"],
      { input: "" },
    );
    const shown = servedPem(r.stdout) ?? "";
    return new X509Certificate(shown).serialNumber;
  };
  try {
    const serialOf = (pem: string) => new X509Certificate(readFileSync(pem)).serialNumber;
    assert.equal(await serial(), serialOf(first.cert));
    // A connection that stays open across the change.
    const { connect: tlsConnect } = await import("node:tls");
    const held = tlsConnect({
      port: s.port,
      host: "127.0.0.1",
      servername: "localhost",
      ca: readFileSync(pki.ca.cert),
    });
    await new Promise<void>((resolve) => held.once("secureConnect", () => resolve()));
    // Atomic replace, as certbot and tls-keygen do: key first, then the certificate.
    copyFileSync(second.key, `${key}.new`);
    renameSync(`${key}.new`, key);
    copyFileSync(second.cert, `${cert}.new`);
    renameSync(`${cert}.new`, cert);
    const deadline = Date.now() + 15_000;
    let seen = await serial();
    while (seen !== serialOf(second.cert) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await serial();
    }
    assert.equal(seen, serialOf(second.cert));
    const answer = new Promise<string>((resolve) => {
      let text = "";
      held.setEncoding("latin1");
      held.on("data", (d: string) => (text += d));
      held.on("end", () => resolve(text));
    });
    held.write("still here\n");
    assert.equal(await answer, "got still here\n");
    held.destroy();
  } finally {
    await s.stop();
  }
});

test("--mod-ssl: the mod_ssl / ucspi-ssl variables qmail-family programs read", async () => {
  const alice = pki.client("alice-modssl");
  const s = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      "tlsd",
      "-y",
      "--mod-ssl",
      "/bin/sh",
      "-c",
      "env | grep -E '^SSL_(CLIENT|SERVER)_(S|I)_DN' | sort; echo END",
    ],
    { env: serverEnv({ CAFILE: pki.ca.cert }) },
  );
  try {
    const r = await pythonClient(s.port, { cert: alice.cert, key: alice.key });
    assert.match(r.stdout, /^SSL_CLIENT_S_DN=\/C=FR\/O=Test Org\/CN=alice-modssl$/m);
    assert.match(r.stdout, /^SSL_CLIENT_S_DN_CN=alice-modssl$/m);
    assert.match(r.stdout, /^SSL_CLIENT_S_DN_O=Test Org$/m);
    assert.match(r.stdout, /^SSL_CLIENT_I_DN_CN=Test CA$/m);
    assert.match(r.stdout, /^SSL_SERVER_S_DN_CN=localhost$/m);
  } finally {
    await s.stop();
  }
});

for (const [who, tcpserver] of [
  ["our tcpserver", ours("tcpserver")],
  ["djb's tcpserver", djb("tcpserver")],
] as const) {
  test(`${who}: a program tlsd cannot run is one line, the session cut, status 111`, async () => {
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "/nonexistent/prog"],
      {
        env: serverEnv(),
      },
    );
    try {
      const r = await pythonClient(s.port, { sni: "localhost" });
      assert.equal(r.stdout, "");
      await s.waitForLog(/^tcpserver: end /);
      assert.match(
        s.log(),
        /^tlsd: fatal: unable to run \/nonexistent\/prog: file does not exist$/m,
      );
      assert.match(s.log(), /^tcpserver: end \d+ status 28416$/m);
    } finally {
      await s.stop();
    }
  });
}

// tlsd under our tcpserver is prepared at start-up (issue 11, item 7): a configuration that can
// never serve is one line and an exit before tcpserver listens for clients; one that will serve
// badly gets a warning; keys are read before tcpserver drops privileges, so a key only root can
// read still serves after -u/-g.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { expiredPem } from "../helpers/expired-cert.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { tlsExchange } from "../helpers/tls-client.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const PATH = `${BIN}:/usr/bin:/bin`;

/** tcpserver with `env` that is expected to stop at start: its exit code, output and log. */
function refused(env: Record<string, string>, tlsdArgs: string[] = []) {
  return run(ours("tcpserver"), ["-1", "127.0.0.1", "0", "tlsd", ...tlsdArgs, "cat"], {
    env: { PATH, ...env },
    timeoutMs: 15_000,
  });
}

test("a configuration that can never serve: one line, an exit, no port", async () => {
  const csr = join(pki.dir, "request.csr");
  execFileSync("openssl", [
    ...["req", "-new", "-key", server.key, "-subj", "/CN=localhost", "-out", csr],
  ]);
  const other = pki.server("other", ["other.test"]);
  // An RSA certificate (the test PKI's keys are EC): with an EC key, OpenSSL takes the pair at
  // start and fails every handshake after.
  const rsaCert = join(pki.dir, "rsa.pem");
  const rsaKey = join(pki.dir, "rsa.key");
  execFileSync("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"],
    ...["-keyout", rsaKey, "-out", rsaCert, "-days", "2"],
  ]);
  const use = (cert: string, key: string, why: string) =>
    new RegExp(
      `^tlsd: fatal: unable to use certificate ${cert} with key ${key}: ${why.replace(/[()#]/g, "\\$&")}\n$`,
    );
  for (const [env, code, line] of [
    [{}, 100, /^tlsd: fatal: CERTFILE not set\n$/],
    [{ CERTFILE: server.cert }, 100, /^tlsd: fatal: KEYFILE not set\n$/],
    [
      { CERTFILE: "/no/such.pem", KEYFILE: server.key },
      111,
      /^tlsd: fatal: unable to read certificate \/no\/such\.pem: file does not exist\n$/,
    ],
    [
      { CERTFILE: pki.dir, KEYFILE: server.key },
      111,
      /^tlsd: fatal: unable to read certificate .*: is a directory\n$/,
    ],
    [
      { CERTFILE: csr, KEYFILE: server.key },
      111,
      use(csr, server.key, "the certificate file holds no PEM certificate"),
    ],
    [
      { CERTFILE: server.cert, KEYFILE: other.key },
      111,
      use(server.cert, other.key, "the key does not belong to the certificate"),
    ],
    [
      { CERTFILE: rsaCert, KEYFILE: server.key },
      111,
      use(rsaCert, server.key, "the key (ec) does not belong to the certificate (rsa)"),
    ],
    [
      { CERTFILE: server.cert, KEYFILE: server.cert },
      111,
      use(server.cert, server.cert, "the key file holds a certificate, not a private key"),
    ],
    [
      { CERTFILE: server.cert, KEYFILE: csr },
      111,
      use(server.cert, csr, "the key file holds no private key: want PEM (PKCS#8, SEC1 or PKCS#1)"),
    ],
  ] as const) {
    const r = await refused(env);
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stdout, "", "never listened for clients");
    assert.match(r.stderr, line);
  }
  const usage = await refused({ CERTFILE: server.cert, KEYFILE: server.key }, ["-Q"]);
  assert.equal(usage.code, 100);
  assert.match(usage.stderr, /^tlsd: illegal option -- Q\ntlsd: usage: tlsd /);
});

test("warnings at start: an expired certificate, one not for its CERTFILE:name, a key others can read", async () => {
  const expired = await expiredPem("localhost");
  const cert = join(pki.dir, "expired.pem");
  const key = join(pki.dir, "expired.key");
  writeFileSync(cert, expired.cert);
  writeFileSync(key, expired.key, { mode: 0o644 });
  chmodSync(key, 0o644);
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", "1", "cat"],
    {
      env: {
        PATH,
        CERTFILE: cert,
        KEYFILE: key,
        "CERTFILE:b.test": server.cert,
        "KEYFILE:b.test": server.key,
      },
    },
  );
  try {
    const log = s.log();
    assert.match(
      log,
      /^tlsd: warning: certificate .*expired\.pem expired on Feb {2}1 00:00:00 2020 GMT$/m,
    );
    assert.match(
      log,
      /^tlsd: warning: key .*expired\.key can be read by anyone \(mode 644\): chmod 600$/m,
    );
    assert.match(log, /^tlsd: warning: certificate .* is not for b\.test \(CERTFILE:b\.test\)$/m);
    assert.doesNotMatch(log, new RegExp(`key ${server.key}`), "a 0600 key is not warned about");
  } finally {
    await s.stop();
  }
});

test("-k 1 with no named pair (a CERTFILE:name that a shell dropped): one warning at start; none with a pair", async () => {
  const withNone = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", "1", "cat"],
    // As a run script through sh leaves it: the CERTFILE:name pair is gone.
    { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key } },
  );
  try {
    assert.match(
      withNone.log(),
      /^tlsd: warning: -k 1 finds no named pair \(no CERTFILE:name variable, no CERTDIR\): every client gets CERTFILE\. A shell drops CERTFILE:name: set it with env, or use CERTDIR$/m,
    );
  } finally {
    await withNone.stop();
  }
  const withPair = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", "1", "cat"],
    {
      env: {
        PATH,
        CERTFILE: server.cert,
        KEYFILE: server.key,
        "CERTFILE:localhost": server.cert,
        "KEYFILE:localhost": server.key,
      },
    },
  );
  try {
    assert.doesNotMatch(withPair.log(), /finds no named pair/);
  } finally {
    await withPair.stop();
  }
});

/** The server's pair, its key readable by root only (mode 0600), in a directory anyone can
 * enter. */
function rootOnlyPair() {
  const cert = join(pki.dir, "root-only.pem");
  const key = join(pki.dir, "root-only.key");
  copyFileSync(server.cert, cert);
  copyFileSync(server.key, key);
  chmodSync(key, 0o600);
  chmodSync(pki.dir, 0o755);
  return { cert, key };
}

for (const [where, program] of [
  ["tlsd", ["tlsd", "sh", "-c", "id -u"]],
  ["tlsd behind tls-sniff", ["tls-sniff", "tlsd", "sh", "-c", "id -u"]],
  [
    "tlsd in a route of tls-sniff",
    ["tls-sniff", "--sni", "localhost", "{", "tlsd", "sh", "-c", "id -u", "}", "true"],
  ],
] as const) {
  test(`a key only root can read serves after tcpserver -u/-g (${where}): it was read at start, as root`, async () => {
    assert.equal(process.getuid?.(), 0, "this test needs root, as CI runs it");
    const { cert, key } = rootOnlyPair();
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "-u", "65534", "-g", "65534", "-RHl0", "127.0.0.1", "0", ...program],
      { env: { PATH, CERTFILE: cert, KEYFILE: key } },
    );
    try {
      const said = await tlsExchange(s.port, pki.ca.cert);
      assert.equal(said, "65534\n", s.log());
    } finally {
      await s.stop();
    }
  });
}

test("a key only root can read serves after tcpserver -u/-g behind starttls-wrapper (local mode): it was read at start, as root", async () => {
  const { cert, key } = rootOnlyPair();
  const smtp = join(ROOT, "test", "fixtures", "fake-smtp");
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-u", "65534", "-g", "65534", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", smtp],
    { env: { PATH, CERTFILE: cert, KEYFILE: key } },
  );
  try {
    const r = await run(
      ours("tcpclient"),
      [
        ...["-RH", "127.0.0.1", String(s.port), "tlsc", "--starttls", "smtp", "-k", "localhost"],
        ...["sh", "-c", 'echo "TLS=$SSL_PROTOCOL"; head -1 <&6'],
      ],
      { env: { PATH, CAFILE: pki.ca.cert }, input: "" },
    );
    assert.equal(r.code, 0, r.stderr + s.log());
    assert.match(r.stdout, /^TLS=TLSv1\.3\n220 /, s.log());
  } finally {
    await s.stop();
  }
});

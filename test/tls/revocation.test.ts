// tlsd's CRLFILE: client certificates their CA has revoked are refused (-y) or not taken as an
// identity (-Y), as with stunnel's CRLfile and nginx's ssl_crl; the lists are re-read when the
// file changes, a file without one stops tlsd at start, and one set where no client
// certificate is asked for is named. The CA and its lists are openssl's own (`openssl ca`).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const server = pki.server("localhost", ["localhost"]);
const kept = pki.client("kept");
const revoked = pki.client("revoked");
const later = pki.client("later");

/** openssl ca's database for the test CA, so that it can revoke and sign lists. */
const CONFIG = join(pki.dir, "ca.cnf");
writeFileSync(join(pki.dir, "index.txt"), "");
writeFileSync(join(pki.dir, "crlnumber"), "01\n");
writeFileSync(
  CONFIG,
  [
    "[ca]",
    "default_ca = test",
    "[test]",
    `database = ${join(pki.dir, "index.txt")}`,
    `crlnumber = ${join(pki.dir, "crlnumber")}`,
    "default_md = sha256",
    "default_crl_days = 30",
    `certificate = ${pki.ca.cert}`,
    `private_key = ${pki.ca.key}`,
    "",
  ].join("\n"),
);

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** The CA's list now, written as tlsd's CRLFILE is rotated: a new file renamed into place. */
function publishList(file: string): void {
  openssl(["ca", "-config", CONFIG, "-gencrl", "-out", `${file}.new`]);
  renameSync(`${file}.new`, file);
}

const CRL = join(pki.dir, "crl.pem");
openssl(["ca", "-config", CONFIG, "-revoke", revoked.cert]);
publishList(CRL);

const REPORT =
  'echo "verify=${SSL_CLIENT_VERIFY-unset} subject=${SSL_PEER_CERT_SUBJECT-unset} crl=${CRLFILE-unset}"';

/** What the program printed for a client with this certificate (or none). */
const connectWith = (port: number, pair: { cert: string; key: string } | undefined) =>
  answerWithCertificate(port, pki.ca.cert, pair);

const env = {
  PATH,
  CERTFILE: server.cert,
  KEYFILE: server.key,
  CAFILE: pki.ca.cert,
  CRLFILE: CRL,
};

for (const [who, tcpserver] of [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const) {
  test(`${who}: -y refuses a revoked client certificate, one line naming the cause; another of the same CA is served`, async () => {
    const s = await startServer(
      tcpserver,
      ["-RHl0", "127.0.0.1", "0", "tlsd", "-v", "1", "-y", "--mod-ssl", "sh", "-c", REPORT],
      { env },
    );
    try {
      assert.equal(
        await connectWith(s.port, kept),
        "verify=SUCCESS subject=C=FR, O=Test Org, CN=kept crl=unset\n",
      );
      assert.equal(await connectWith(s.port, revoked), "");
      await s.waitForLog(
        /^tlsd: fatal: 127\.0\.0\.1: client certificate refused: certificate revoked$/,
      );
    } finally {
      await s.stop();
    }
  });
}

test("-Y: a revoked certificate is no identity (mod_ssl's SSL_CLIENT_VERIFY says why)", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-Y", "--mod-ssl", "sh", "-c", REPORT],
    { env },
  );
  try {
    assert.equal(
      await connectWith(s.port, revoked),
      "verify=FAILED:certificate revoked subject=unset crl=unset\n",
    );
  } finally {
    await s.stop();
  }
});

test("a new list on disk is used for the next clients, without a restart", async () => {
  const file = join(pki.dir, "rotated-crl.pem");
  publishList(file);
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-y", "sh", "-c", REPORT],
    { env: { ...env, CRLFILE: file } },
  );
  try {
    assert.equal(
      await connectWith(s.port, later),
      "verify=unset subject=C=FR, O=Test Org, CN=later crl=unset\n",
    );
    openssl(["ca", "-config", CONFIG, "-revoke", later.cert]);
    publishList(file);
    // tlsd looks at its files at most once a second: bounded tries, no timing asserted.
    let answer = "served";
    for (let i = 0; i < 50 && answer !== ""; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      answer = await connectWith(s.port, later);
    }
    assert.equal(answer, "");
    assert.equal(
      await connectWith(s.port, kept),
      "verify=unset subject=C=FR, O=Test Org, CN=kept crl=unset\n",
    );
  } finally {
    await s.stop();
  }
});

test("a CRLFILE with no list in it, or empty, stops tlsd at start with one line; one set without -Y or -y is named", async () => {
  const bad = join(pki.dir, "not-a-crl.pem");
  writeFileSync(bad, "hello\n");
  const r = await run(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "-y", "cat"], {
    env: { ...env, CRLFILE: bad },
  });
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr, `tlsd: fatal: unable to use revocation lists ${bad}: no X509 CRL in it\n`);
  // Set but empty (CRLFILE=$LIST, $LIST unset by mistake): revocation was not checked, silently.
  const empty = await run(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "-y", "cat"], {
    env: { ...env, CRLFILE: "" },
  });
  assert.deepEqual(
    [empty.code, empty.stderr],
    [111, "tlsd: fatal: unable to read revocation lists : file does not exist\n"],
  );
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env,
  });
  try {
    await s.waitForLog(
      /^tlsd: warning: CRLFILE is set, but no client certificate is asked for \(-Y or -y\): it is not used$/,
    );
  } finally {
    await s.stop();
  }
});

test("tlsc with CRLFILE: a server whose certificate its CA revoked is refused (exit 98, one line), the program never run; another is served", async () => {
  const revokedServer = pki.withSubject("revoked-server", "/CN=localhost");
  openssl(["ca", "-config", CONFIG, "-revoke", revokedServer.cert]);
  const lists = join(pki.dir, "client-side-crl.pem");
  publishList(lists);
  const serve = (pair: { cert: string; key: string }) =>
    startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "echo", "served"], {
      env: { PATH, CERTFILE: pair.cert, KEYFILE: pair.key },
    });
  const client = (port: number) =>
    run(
      ours("tcpclient"),
      ["-RH", "127.0.0.1", String(port), "tlsc", "-k", "localhost", "sh", "-c", "cat <&6"],
      { env: { PATH, CAFILE: pki.ca.cert, CRLFILE: lists } },
    );
  const good = await serve(server);
  const bad = await serve(revokedServer);
  try {
    const served = await client(good.port);
    assert.deepEqual([served.code, served.stdout, served.stderr], [0, "served\n", ""]);
    const refused = await client(bad.port);
    assert.deepEqual(
      [refused.code, refused.stdout, refused.stderr],
      [
        98,
        "",
        `tlsc: fatal: unable to verify the server certificate: certificate revoked (checked against CAFILE ${pki.ca.cert})\n`,
      ],
    );
  } finally {
    await good.stop();
    await bad.stop();
  }
});

// tlsd's client certificate policies with openssl s_client (issue 11, item 8): -Y takes any
// certificate, as s6-tlsd does, and tells only a verified one as an identity (mod_ssl's
// SSL_CLIENT_VERIFY says why not); -y refuses one that does not verify.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const server = pki.server("localhost", ["localhost"]);
const trusted = pki.client("trusted");
const stranger = pki.selfSigned("stranger");

const REPORT =
  'echo "verify=${SSL_CLIENT_VERIFY-unset} subject=${SSL_PEER_CERT_SUBJECT-unset} hash=${SSL_PEER_CERT_HASH+set} dn=${SSL_CLIENT_S_DN-unset} cn=${SSL_CLIENT_S_DN_CN-unset}"';

/** What the program printed for a client with this certificate (or none). */
const connectWith = (port: number, pair: { cert: string; key: string } | undefined) =>
  answerWithCertificate(port, pki.ca.cert, pair);

for (const [who, tcpserver] of [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const) {
  test(`${who}: -Y accepts any client certificate and exports only a verified one`, async () => {
    const s = await startServer(
      tcpserver,
      ["-RHl0", "127.0.0.1", "0", "tlsd", "-Y", "--mod-ssl", "sh", "-c", REPORT],
      {
        env: {
          PATH,
          CERTFILE: server.cert,
          KEYFILE: server.key,
          CAFILE: pki.ca.cert,
          // Inherited values must never pass for the client's.
          SSL_CLIENT_S_DN: "/CN=stale",
          SSL_PEER_CERT_SUBJECT: "CN=stale",
        },
      },
    );
    try {
      assert.equal(
        await connectWith(s.port, stranger),
        "verify=FAILED:self-signed certificate subject=unset hash= dn=unset cn=unset\n",
      );
      assert.equal(
        await connectWith(s.port, trusted),
        "verify=SUCCESS subject=C=FR, O=Test Org, CN=trusted hash=set dn=/C=FR/O=Test Org/CN=trusted cn=trusted\n",
      );
      assert.equal(
        await connectWith(s.port, undefined),
        "verify=NONE subject=unset hash= dn=unset cn=unset\n",
      );
    } finally {
      await s.stop();
    }
  });

  test(`${who}: -y refuses a certificate that does not verify, and a client without one`, async () => {
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-y", "--mod-ssl", "sh", "-c", REPORT],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, CAFILE: pki.ca.cert } },
    );
    try {
      assert.equal(await connectWith(s.port, stranger), "");
      await s.waitForLog(
        /^tlsd: fatal: 127\.0\.0\.1: client certificate refused: self-signed certificate$/,
      );
      assert.equal(await connectWith(s.port, undefined), "");
      assert.equal(
        await connectWith(s.port, trusted),
        "verify=SUCCESS subject=C=FR, O=Test Org, CN=trusted hash=set dn=/C=FR/O=Test Org/CN=trusted cn=trusted\n",
      );
    } finally {
      await s.stop();
    }
  });
}

test("--mod-ssl: the serial as mod_ssl and openssl print it, the key and signature algorithms, the chain, sslserver's address names", async () => {
  const serial = execFileSync("openssl", ["x509", "-noout", "-serial", "-in", trusted.cert])
    .toString()
    .trim();
  const s = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      "tlsd",
      "-y",
      "--mod-ssl",
      "sh",
      "-c",
      'echo "serial=$SSL_CLIENT_M_SERIAL key=$SSL_CLIENT_A_KEY sig=$SSL_CLIENT_A_SIG ip=$SSLREMOTEIP port=$SSLLOCALPORT/$TCPLOCALPORT"; printf %s "$SSL_CLIENT_CERT_CHAIN_0" | openssl x509 -noout -subject',
    ],
    { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, CAFILE: pki.ca.cert } },
  );
  try {
    const out = await connectWith(s.port, trusted);
    assert.equal(
      out,
      `${serial} key=id-ecPublicKey sig=ecdsa-with-SHA256 ip=127.0.0.1 port=${s.port}/${s.port}\nsubject=CN = Test CA\n`,
    );
  } finally {
    await s.stop();
  }
});

// Node skips what it cannot read as a certificate, silently: tcpserver started, and every
// client's certificate was refused as "self-signed" (tlsc: every server's).
test("trust anchors with no certificate, or one that cannot be read: tlsd and tlsc stop at start, one line", async () => {
  const damaged = join(pki.dir, "damaged-ca.pem");
  writeFileSync(damaged, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  const cases = [
    [pki.ca.key, "no certificate in it"],
    [damaged, "certificate 1 of the 1 in it cannot be read"],
  ] as const;
  for (const [file, problem] of cases) {
    const env = { PATH, CERTFILE: server.cert, KEYFILE: server.key, CAFILE: file };
    const d = await run(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "-y", "cat"], {
      env,
    });
    const line = `fatal: unable to use trust anchors CAFILE ${file}: ${problem}\n`;
    // tcpserver ends 111 for any refusal of its in-process tlsd but a usage one.
    assert.deepEqual([d.code, d.stderr], [111, `tlsd: ${line}`]);
    const c = await run("/bin/sh", ["-c", `exec 6<&0 7>&1; exec ${ours("tlsc")} true`], { env });
    assert.deepEqual([c.code, c.stderr], [96, `tlsc: ${line}`]);
  }
});

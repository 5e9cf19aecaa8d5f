// tlsd's files named in the environment by names that are not UTF-8 (CERTFILE, KEYFILE,
// CAFILE, CRLFILE, TICKETFILE with a byte ff): opened by those very bytes, as s6-tlsd opens
// them, and named readably (`\xff`) when they cannot be. The environment is given bytes by
// env(1) under WITH_BYTES; the client is openssl s_client with a certificate of the test CA.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { WITH_BYTES } from "../helpers/bytes.ts";
import { makePki } from "../helpers/certs.ts";
import { BIN, TLSD_UNDER, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate, tlsExchange } from "../helpers/tls-client.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const kept = pki.client("kept");
const revoked = pki.client("revoked");

/** A CRL of the test CA that revokes `revoked`, made by openssl ca. */
function revocationList(): Buffer {
  const config = join(pki.dir, "ca.cnf");
  writeFileSync(join(pki.dir, "index.txt"), "");
  writeFileSync(join(pki.dir, "crlnumber"), "01\n");
  writeFileSync(
    config,
    `[ca]\ndefault_ca = test\n[test]\ndatabase = ${join(pki.dir, "index.txt")}\n` +
      `crlnumber = ${join(pki.dir, "crlnumber")}\ndefault_md = sha256\n` +
      `default_crl_days = 30\ncertificate = ${pki.ca.cert}\nprivate_key = ${pki.ca.key}\n`,
  );
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl(["ca", "-config", config, "-revoke", revoked.cert]);
  openssl(["ca", "-config", config, "-gencrl", "-out", join(pki.dir, "crl.pem")]);
  return readFileSync(join(pki.dir, "crl.pem"));
}

/** Writes `data` to the file `pki.dir/<name>\xff` (mode 0600): the name for WITH_BYTES. */
function byteNamed(name: string, data: Buffer): string {
  const file = join(pki.dir, name);
  writeFileSync(Buffer.concat([Buffer.from(file), Buffer.of(0xff)]), data, { mode: 0o600 });
  return `${file}\\xff`;
}

const files = {
  CERTFILE: byteNamed("cert", readFileSync(server.cert)),
  KEYFILE: byteNamed("key", readFileSync(server.key)),
  CAFILE: byteNamed("ca", readFileSync(pki.ca.cert)),
  CRLFILE: byteNamed("crl", revocationList()),
  TICKETFILE: byteNamed("tickets", Buffer.from(`${"A".repeat(64)}\n${"B".repeat(64)}\n`)),
};
/** env(1) setting the variables to those names, bytes and all. */
const ENV_BYTES = [
  ...WITH_BYTES,
  "env",
  `PATH=${BIN}:/usr/bin:/bin`,
  ...Object.entries(files).map(([name, file]) => `${name}=${file}`),
];

for (const [who, tcpserver] of TLSD_UNDER) {
  test(`tlsd (${who}): CERTFILE, KEYFILE, CAFILE, CRLFILE and TICKETFILE named with a byte ff are read`, async () => {
    const s = await startServer(
      tcpserver,
      ["127.0.0.1", "0", "tlsd", "-y", "--mod-ssl", "sh", "-c", 'echo "verify=$SSL_CLIENT_VERIFY"'],
      { env: {}, wrap: ENV_BYTES },
    );
    try {
      assert.equal(await answerWithCertificate(s.port, pki.ca.cert, kept), "verify=SUCCESS\n");
      // Refused: the CRL was read.
      assert.equal(await answerWithCertificate(s.port, pki.ca.cert, revoked), "");
    } finally {
      await s.stop();
    }
  });
}

test("tlsd: a CERTFILE with a byte ff that names nothing is named readably", async () => {
  const [python = "", ...head] = WITH_BYTES;
  const missing = `${join(pki.dir, "none")}\\xff`;
  const r = await run(python, [
    ...head,
    ...ENV_BYTES.slice(WITH_BYTES.length),
    `CERTFILE=${missing}`,
    ours("tcpserver"),
    "127.0.0.1",
    "0",
    "tlsd",
    "true",
  ]);
  assert.equal(r.code, 111);
  assert.equal(
    r.stderr,
    `tlsd: fatal: unable to read certificate ${missing}: file does not exist\n`,
  );
});

test("tlsd: a CERTDIR named with a byte ff serves the certificates in it", async () => {
  // Each NAME/ was resolved with Node's realpathSync, which took the name's bytes for UTF-8
  // and found nothing: no certificate served.
  const live = join(pki.dir, "live");
  const dir = Buffer.concat([Buffer.from(live), Buffer.of(0xff), Buffer.from("/localhost")]);
  mkdirSync(dir, { recursive: true });
  writeFileSync(Buffer.concat([dir, Buffer.from("/fullchain.pem")]), readFileSync(server.cert));
  writeFileSync(Buffer.concat([dir, Buffer.from("/privkey.pem")]), readFileSync(server.key), {
    mode: 0o600,
  });
  const s = await startServer(ours("tcpserver"), ["127.0.0.1", "0", "tlsd", "echo", "hello"], {
    env: {},
    wrap: [...WITH_BYTES, "env", `PATH=${BIN}:/usr/bin:/bin`, `CERTDIR=${live}\\xff`],
  });
  try {
    assert.equal(await tlsExchange(s.port, pki.ca.cert), "hello\n", s.log());
  } finally {
    await s.stop();
  }
});

// tls-keygen csr: requests that `openssl req -verify` accepts, with the names as a requested
// SAN extension; with a new key (0600) or the key already there (any PEM form openssl writes).
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { test } from "node:test";
import { keygen, keygenOk, openssl, workDir } from "../helpers/keygen.ts";

const work = workDir("keygen-csr");
const umask = process.umask();

for (const type of ["ecdsa", "ed25519", "rsa"] as const) {
  test(`csr ${type}: a signed request for the names, and its new key`, async () => {
    const csr = work.path(`${type}.csr`);
    const key = work.path(`${type}.key`);
    await keygenOk(["csr", "-t", type, "-s", "example.org,www.example.org", csr, key]);
    const result = await openssl(["req", "-in", csr, "-verify", "-noout", "-text"]);
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /verify OK/);
    assert.match(result.out, /Subject: CN = example.org\n/);
    assert.match(
      result.out,
      /Requested Extensions:\s+X509v3 Subject Alternative Name: \s+DNS:example.org, DNS:www.example.org\n/,
    );
    assert.equal(statSync(key).mode & 0o777, 0o600 & ~umask);
    const fromCsr = await openssl(["req", "-in", csr, "-pubkey", "-noout"]);
    const fromKey = await openssl(["pkey", "-in", key, "-pubout"]);
    assert.equal(fromCsr.out, fromKey.out);
  });
}

test("csr --reuse-key: the request is for the key already there (SEC1 from openssl), untouched", async () => {
  const key = work.path("existing.key");
  const made = await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
  assert.equal(made.code, 0, made.out);
  assert.match(readFileSync(key, "latin1"), /^-----BEGIN EC PRIVATE KEY-----/);
  const keyBefore = readFileSync(key);
  const csr = work.path("existing.csr");
  await keygenOk(["csr", "--reuse-key", "-n", "Example Org", "-s", "example.org", csr, key]);
  assert.deepEqual(readFileSync(key), keyBefore);
  const fromCsr = await openssl(["req", "-in", csr, "-pubkey", "-noout"]);
  const fromKey = await openssl(["pkey", "-in", key, "-pubout"]);
  assert.equal(fromCsr.out, fromKey.out);
  const text = await openssl(["req", "-in", csr, "-verify", "-noout", "-subject"]);
  assert.match(text.out, /verify OK/);
  assert.match(text.out, /subject=CN = Example Org\n/);
});

test("csr --reuse-key with an encrypted key: refused, no passphrase asked for", async () => {
  const key = work.path("locked.key");
  const made = await openssl([
    "genpkey",
    "-algorithm",
    "ed25519",
    "-aes-128-cbc",
    "-pass",
    "pass:secret",
    "-out",
    key,
  ]);
  assert.equal(made.code, 0, made.out);
  const result = await keygen(["csr", "-r", "-s", "example.org", work.path("locked.csr"), key]);
  assert.deepEqual(
    [result.code, result.stderr],
    [100, `tls-keygen: fatal: key ${key} is encrypted: give an unencrypted key\n`],
  );
});

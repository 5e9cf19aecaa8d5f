// tls-keygen self-signed, for each key type: what openssl sees in the certificate and the key,
// the files' modes, and a Node tls handshake with a client that trusts the certificate.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { test } from "node:test";
import { certText, handshake, keygenOk, openssl, workDir } from "../helpers/keygen.ts";

const work = workDir("keygen-self");
const umask = process.umask();

const ALGORITHMS = {
  ecdsa:
    /Public Key Algorithm: id-ecPublicKey[\s\S]*NIST CURVE: P-256[\s\S]*Signature Algorithm: ecdsa-with-SHA256/,
  ed25519: /Public Key Algorithm: ED25519[\s\S]*Signature Algorithm: ED25519/,
  rsa: /Public Key Algorithm: rsaEncryption\s+Public-Key: \(2048 bit\)[\s\S]*Signature Algorithm: sha256WithRSAEncryption/,
};

for (const type of ["ecdsa", "ed25519", "rsa"] as const) {
  test(`self-signed ${type}: openssl reads a valid pair, modes 0600/0644, a TLS client trusts it`, async () => {
    const cert = work.path(`${type}.pem`);
    const key = work.path(`${type}.key`);
    const before = Date.now();
    await keygenOk(["self-signed", "-t", type, "-s", "localhost,127.0.0.1,::1", cert, key]);

    const text = await certText(cert);
    assert.match(text, ALGORITHMS[type]);
    assert.match(text, /Issuer: CN = localhost\n/);
    assert.match(text, /Subject: CN = localhost\n/);
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE\n/);
    const usages = type === "rsa" ? "Digital Signature, Key Encipherment" : "Digital Signature";
    assert.match(text, new RegExp(`X509v3 Key Usage: critical\\s+${usages}\\n`));
    assert.match(text, /X509v3 Extended Key Usage: \s+TLS Web Server Authentication\n/);
    assert.match(
      text,
      /X509v3 Subject Alternative Name: \s+DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n/,
    );
    const ski = /Subject Key Identifier: \s+([0-9A-F:]+)/.exec(text)?.[1];
    const aki = /Authority Key Identifier: \s+(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
    assert.ok(ski && ski === aki, "authorityKeyIdentifier = subjectKeyIdentifier");
    const serial = /Serial Number:\s+([0-9a-f:]+)/.exec(text)?.[1] ?? "";
    assert.equal(serial.split(":").length, 16, "a 128-bit random serial");

    const x509 = new X509Certificate(readFileSync(cert));
    const from = Date.parse(x509.validFrom);
    assert.ok(Math.abs(from - (before - 5 * 60_000)) < 60_000, "valid from five minutes ago");
    const days = (Date.parse(x509.validTo) - from) / 86_400_000;
    assert.ok(Math.abs(days - 365) < 0.01, `365 days, not ${days}`);

    const check = await openssl(["pkey", "-in", key, "-check", "-noout"]);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /Key is valid/);
    assert.match(
      readFileSync(key, "latin1"),
      /^-----BEGIN PRIVATE KEY-----\n[^]*\n-----END PRIVATE KEY-----\n$/,
    );
    assert.equal(statSync(key).mode & 0o777, 0o600 & ~umask);
    assert.equal(statSync(cert).mode & 0o777, 0o644 & ~umask);
    const verify = await openssl(["verify", "-CAfile", cert, cert]);
    assert.equal(verify.out, `${cert}: OK\n`);

    for (const servername of ["localhost", undefined]) {
      const result = await handshake({ cert, key }, cert, servername);
      assert.equal(result.authorized, true);
      assert.equal(result.protocol, "TLSv1.3");
    }
  });
}

test("self-signed defaults: ECDSA P-256, localhost's names, CN = the first DNS name", async () => {
  const cert = work.path("default.pem");
  await keygenOk(["self-signed", cert, work.path("default.key")]);
  const text = await certText(cert);
  assert.match(text, ALGORITHMS.ecdsa);
  assert.match(text, /Subject: CN = localhost\n/);
  assert.match(text, /DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n/);
});

test("self-signed --client --server -n -d: both usages, the CN given, the days given", async () => {
  const cert = work.path("both.pem");
  await keygenOk([
    "self-signed",
    "--client",
    "--server",
    "-n",
    "My Service",
    "-d",
    "30",
    "--san",
    "*.example.org",
    "--san=example.org,[::1],BÜCHER.example",
    cert,
    work.path("both.key"),
  ]);
  const text = await certText(cert);
  assert.match(text, /Subject: CN = My Service\n/);
  assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication\n/);
  assert.match(
    text,
    /DNS:\*\.example\.org, DNS:example\.org, IP Address:0:0:0:0:0:0:0:1, DNS:xn--bcher-kva\.example\n/,
  );
  const x509 = new X509Certificate(readFileSync(cert));
  const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
  assert.ok(Math.abs(days - 30) < 0.01);
});

test("self-signed --client only: clientAuth, and a name is needed", async () => {
  const cert = work.path("client.pem");
  await keygenOk(["self-signed", "--client", "-n", "alice", cert, work.path("client.key")]);
  const text = await certText(cert);
  assert.match(text, /Extended Key Usage: \s+TLS Web Client Authentication\n/);
  assert.doesNotMatch(text, /Subject Alternative Name/);
});

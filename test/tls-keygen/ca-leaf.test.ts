// tls-keygen ca and leaf: the CA's extensions, leaves that `openssl verify` accepts for their
// purpose, mutual TLS with Node, name constraints, a CA made by openssl, validity cut to the CA's.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { certText, handshake, keygen, keygenOk, openssl, workDir } from "../helpers/keygen.ts";

const work = workDir("keygen-ca");
const ca = { cert: work.path("ca.pem"), key: work.path("ca.key") };
const rsaCa = { cert: work.path("rsa-ca.pem"), key: work.path("rsa-ca.key") };

before(async () => {
  await Promise.all([
    keygenOk(["ca", ca.cert, ca.key]),
    keygenOk(["ca", "-t", "rsa", "-n", "RSA Test CA", rsaCa.cert, rsaCa.key]),
  ]);
});

const keyId = (text: string, which: "Subject" | "Authority") =>
  new RegExp(`${which} Key Identifier: \\s+(?:keyid:)?([0-9A-F:]+)`).exec(text)?.[1];

async function verify(caFile: string, leaf: string, purpose: string) {
  return openssl(["verify", "-purpose", purpose, "-CAfile", caFile, leaf]);
}

test("ca: CA:TRUE pathlen 0, keyCertSign and cRLSign (critical), self-signed, ten years", async () => {
  const text = await certText(ca.cert);
  assert.match(text, /Issuer: CN = tls-keygen CA\n/);
  assert.match(text, /Subject: CN = tls-keygen CA\n/);
  assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0\n/);
  assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
  assert.doesNotMatch(text, /Extended Key Usage|Subject Alternative Name|Name Constraints/);
  assert.equal(keyId(text, "Subject"), keyId(text, "Authority"));
  const x509 = new X509Certificate(readFileSync(ca.cert));
  const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
  assert.ok(Math.abs(days - 3650) < 0.01);
  assert.equal((await openssl(["verify", "-CAfile", ca.cert, ca.cert])).code, 0);
});

test("leaf: a server certificate the CA signs, for its purpose only", async () => {
  const leaf = work.path("server.pem");
  await keygenOk([
    "leaf",
    "-C",
    ca.cert,
    "-K",
    ca.key,
    "-s",
    "localhost,127.0.0.1",
    leaf,
    work.path("server.key"),
  ]);
  const text = await certText(leaf);
  assert.match(text, /Issuer: CN = tls-keygen CA\n/);
  assert.match(text, /Subject: CN = localhost\n/);
  assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE\n/);
  assert.match(text, /Extended Key Usage: \s+TLS Web Server Authentication\n/);
  assert.match(text, /DNS:localhost, IP Address:127.0.0.1\n/);
  assert.equal(keyId(text, "Authority"), keyId(await certText(ca.cert), "Subject"));
  assert.notEqual(keyId(text, "Subject"), keyId(text, "Authority"));
  assert.equal((await verify(ca.cert, leaf, "sslserver")).out, `${leaf}: OK\n`);
  assert.notEqual((await verify(ca.cert, leaf, "sslclient")).code, 0);
});

test("leaf --client: a client certificate; mutual TLS with Node's tls, both ends trusting the CA", async () => {
  const server = { cert: work.path("mtls-server.pem"), key: work.path("mtls-server.key") };
  const client = { cert: work.path("alice.pem"), key: work.path("alice.key") };
  await Promise.all([
    keygenOk(["leaf", "-C", ca.cert, "-K", ca.key, "-t", "ed25519", server.cert, server.key]),
    keygenOk([
      "leaf",
      "-C",
      ca.cert,
      "-K",
      ca.key,
      "--client",
      "-n",
      "alice",
      client.cert,
      client.key,
    ]),
  ]);
  const text = await certText(client.cert);
  assert.match(text, /Subject: CN = alice\n/);
  assert.match(text, /Extended Key Usage: \s+TLS Web Client Authentication\n/);
  assert.equal((await verify(ca.cert, client.cert, "sslclient")).code, 0);
  assert.notEqual((await verify(ca.cert, client.cert, "sslserver")).code, 0);
  const result = await handshake(server, ca.cert, "localhost", client);
  assert.deepEqual(result, { authorized: true, protocol: "TLSv1.3", peerCN: "alice" });
});

test("an RSA CA signs ECDSA, Ed25519 and RSA leaves (sha256WithRSAEncryption)", async () => {
  for (const type of ["ecdsa", "ed25519", "rsa"]) {
    const leaf = work.path(`rsa-signed-${type}.pem`);
    await keygenOk([
      "leaf",
      "-C",
      rsaCa.cert,
      "-K",
      rsaCa.key,
      "-t",
      type,
      "-s",
      "example.test",
      leaf,
      work.path(`rsa-signed-${type}.key`),
    ]);
    assert.match(await certText(leaf), /Signature Algorithm: sha256WithRSAEncryption/);
    assert.equal((await verify(rsaCa.cert, leaf, "sslserver")).code, 0, type);
  }
});

test("leaf signed by a CA that openssl made (its own subject encoding and key identifiers)", async () => {
  const pki = makePki();
  const leaf = work.path("openssl-ca-leaf.pem");
  await keygenOk([
    "leaf",
    "-C",
    pki.ca.cert,
    "-K",
    pki.ca.key,
    "-d",
    "1",
    "-s",
    "localhost",
    leaf,
    work.path("openssl-ca-leaf.key"),
  ]);
  assert.equal((await verify(pki.ca.cert, leaf, "sslserver")).out, `${leaf}: OK\n`);
  const result = await handshake(
    { cert: leaf, key: work.path("openssl-ca-leaf.key") },
    pki.ca.cert,
    "localhost",
  );
  assert.equal(result.authorized, true);
});

test("ca --permit: nameConstraints that openssl enforces; leaf refuses names outside them", async () => {
  const limited = { cert: work.path("limited.pem"), key: work.path("limited.key") };
  await keygenOk(["ca", "--permit", "example.org,10.0.0.0/8", limited.cert, limited.key]);
  const text = await certText(limited.cert);
  assert.match(
    text,
    /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:example.org\s+IP:10.0.0.0\/255.0.0.0\n/,
  );
  const good = work.path("in.pem");
  await keygenOk([
    "leaf",
    "-C",
    limited.cert,
    "-K",
    limited.key,
    "-s",
    "www.example.org,10.1.2.3",
    good,
    work.path("in.key"),
  ]);
  assert.equal((await verify(limited.cert, good, "sslserver")).code, 0);
  for (const name of ["www.example.com", "192.168.1.1"]) {
    const result = await keygen([
      "leaf",
      "-C",
      limited.cert,
      "-K",
      limited.key,
      "-s",
      name,
      work.path("out.pem"),
      work.path("out.key"),
    ]);
    assert.deepEqual(
      [result.code, result.stderr],
      [
        100,
        `tls-keygen: fatal: the CA ${limited.cert} may not sign for ${name} (name constraints)\n`,
      ],
    );
  }
});

test("ca --permit with one name type excludes the other; an IP-only leaf has an empty subject", async () => {
  const dnsOnly = { cert: work.path("dns-only.pem"), key: work.path("dns-only.key") };
  const ipOnly = { cert: work.path("ip-only.pem"), key: work.path("ip-only.key") };
  await Promise.all([
    keygenOk(["ca", "-p", "example.org", dnsOnly.cert, dnsOnly.key]),
    keygenOk(["ca", "-p", "127.0.0.0/8,::1", ipOnly.cert, ipOnly.key]),
  ]);
  assert.match(
    await certText(dnsOnly.cert),
    /Excluded:\s+IP:0.0.0.0\/0.0.0.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0\n/,
  );
  const refused = await keygen([
    "leaf",
    "-C",
    dnsOnly.cert,
    "-K",
    dnsOnly.key,
    "-s",
    "a.example.org,127.0.0.1",
    work.path("x.pem"),
    work.path("x.key"),
  ]);
  assert.equal(
    refused.stderr,
    `tls-keygen: fatal: the CA ${dnsOnly.cert} may not sign for 127.0.0.1 (name constraints)\n`,
  );
  const leaf = work.path("ip-leaf.pem");
  await keygenOk([
    "leaf",
    "-C",
    ipOnly.cert,
    "-K",
    ipOnly.key,
    "-s",
    "127.0.0.1,::1",
    leaf,
    work.path("ip-leaf.key"),
  ]);
  const text = await certText(leaf);
  assert.match(text, /Subject: \n/);
  assert.match(
    text,
    /X509v3 Subject Alternative Name: critical\s+IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n/,
  );
  assert.equal((await verify(ipOnly.cert, leaf, "sslserver")).code, 0);
  const result = await handshake(
    { cert: leaf, key: work.path("ip-leaf.key") },
    ipOnly.cert,
    undefined,
  );
  assert.equal(result.authorized, true);
});

test("a leaf never outlives its CA: its end is cut to the CA's, with a warning", async () => {
  const short = { cert: work.path("short.pem"), key: work.path("short.key") };
  await keygenOk(["ca", "-d", "10", short.cert, short.key]);
  const leaf = work.path("cut.pem");
  const result = await keygen([
    "leaf",
    "-C",
    short.cert,
    "-K",
    short.key,
    leaf,
    work.path("cut.key"),
  ]);
  const caEnd = new Date(new X509Certificate(readFileSync(short.cert)).validTo).toISOString();
  assert.deepEqual(
    [result.code, result.stderr],
    [0, `tls-keygen: warning: validity cut to the CA's end, ${caEnd}\n`],
  );
  assert.equal(
    new X509Certificate(readFileSync(leaf)).validTo,
    new X509Certificate(readFileSync(short.cert)).validTo,
  );
});

test("leaf --reuse-key: a new certificate for the key already there, which stays as it was", async () => {
  const cert = work.path("renew.pem");
  const key = work.path("renew.key");
  await keygenOk(["leaf", "-C", ca.cert, "-K", ca.key, cert, key]);
  const keyBefore = readFileSync(key);
  const first = new X509Certificate(readFileSync(cert));
  await keygenOk([
    "leaf",
    "-C",
    ca.cert,
    "-K",
    ca.key,
    "-r",
    "-f",
    "-s",
    "renewed.test",
    cert,
    key,
  ]);
  const second = new X509Certificate(readFileSync(cert));
  assert.deepEqual(readFileSync(key), keyBefore);
  assert.notEqual(second.serialNumber, first.serialNumber);
  assert.equal(second.subject, "CN=renewed.test");
  assert.ok(second.publicKey.equals(first.publicKey));
  assert.equal(second.checkIssued(new X509Certificate(readFileSync(ca.cert))), true);
});

// What tls-keygen does to files: never replaces one without --force (and then whole, with no
// trailing bytes, keys still 0600), names a missing directory, leaves no temp file, and
// `ensure` makes a pair once and then leaves it alone, even when several run at once.
import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { keygen, keygenOk, openssl, workDir } from "../helpers/keygen.ts";

const work = workDir("keygen-files");
const umask = process.umask();
let serial = 0;
const freshDir = () => {
  const dir = work.path(String(serial++));
  mkdirSync(dir);
  return dir;
};

/** True when the certificate is for the key (same public key). */
function matches(certFile: string, keyFile: string): boolean {
  const cert = new X509Certificate(readFileSync(certFile));
  const key = createPublicKey(createPrivateKey(readFileSync(keyFile)));
  return cert.publicKey.equals(key);
}

test("an existing certificate or key is not replaced without --force, and nothing is written", async () => {
  const dir = freshDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  writeFileSync(cert, "precious certificate\n");
  const result = await keygen(["self-signed", cert, key]);
  assert.deepEqual(
    [result.code, result.stdout, result.stderr],
    [100, "", `tls-keygen: fatal: ${cert} exists: use --force to replace it\n`],
  );
  assert.equal(readFileSync(cert, "utf8"), "precious certificate\n");
  assert.deepEqual(readdirSync(dir), ["cert.pem"]);

  const other = freshDir();
  writeFileSync(join(other, "key.pem"), "precious key\n");
  const second = await keygen(["ca", join(other, "ca.pem"), join(other, "key.pem")]);
  assert.equal(
    second.stderr,
    `tls-keygen: fatal: ${join(other, "key.pem")} exists: use --force to replace it\n`,
  );
  assert.deepEqual(readdirSync(other), ["key.pem"]);
});

test("--force replaces big old files with exactly the new key and certificate (no trailing bytes)", async () => {
  const dir = freshDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  writeFileSync(cert, Buffer.alloc(1 << 20, "C"));
  writeFileSync(key, Buffer.alloc(1 << 20, "K"));
  chmodSync(key, 0o644);
  await keygenOk(["self-signed", "--force", "-t", "ed25519", cert, key]);
  const keyText = readFileSync(key, "latin1");
  assert.match(
    keyText,
    /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=]{64}\n-----END PRIVATE KEY-----\n$/,
  );
  assert.equal(statSync(key).size, Buffer.byteLength(keyText));
  assert.match(
    readFileSync(cert, "latin1"),
    /^-----BEGIN CERTIFICATE-----\n[^-]+\n-----END CERTIFICATE-----\n$/,
  );
  assert.equal(
    statSync(key).mode & 0o777,
    0o600 & ~umask,
    "the new key is 0600, whatever the old file was",
  );
  assert.ok(matches(cert, key));
  assert.equal((await openssl(["pkey", "-in", key, "-check", "-noout"])).code, 0);
  assert.deepEqual(readdirSync(dir).sort(), ["cert.pem", "key.pem"], "no temp file left");
});

test("a missing directory, or a directory where the file should be, is named", async () => {
  const dir = freshDir();
  const missing = join(dir, "nope");
  const result = await keygen(["self-signed", join(dir, "cert.pem"), join(missing, "key.pem")]);
  assert.deepEqual(
    [result.code, result.stderr],
    [
      100,
      `tls-keygen: fatal: unable to create ${missing}/key.pem: directory ${missing} does not exist\n`,
    ],
  );
  mkdirSync(join(dir, "sub"));
  const isDir = await keygen(["self-signed", "--force", join(dir, "sub"), join(dir, "key.pem")]);
  assert.equal(
    isDir.stderr,
    `tls-keygen: fatal: unable to create ${join(dir, "sub")}: is a directory\n`,
  );
  assert.deepEqual(readdirSync(dir), ["sub"]);
});

test("-v says what was written (never key material)", async () => {
  const dir = freshDir();
  const result = await keygen(["self-signed", "-v", "-s", "v.test", "cert.pem", "key.pem"], dir);
  assert.equal(result.code, 0);
  const lines = result.stderr.split("\n");
  assert.equal(lines[0], "tls-keygen: info: wrote key.pem (ECDSA P-256 key)");
  const fingerprint = new X509Certificate(readFileSync(join(dir, "cert.pem"))).fingerprint256;
  assert.match(
    lines[1] ?? "",
    new RegExp(
      `^tls-keygen: info: wrote cert\\.pem \\(CN=v\\.test, until \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z, SHA-256 ${fingerprint}\\)$`,
    ),
  );
  assert.equal(lines.length, 3);
  assert.doesNotMatch(result.stderr, /PRIVATE|BEGIN/);
});

test("ensure: makes the pair once, then leaves it exactly as it is", async () => {
  const dir = freshDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await keygenOk(["ensure", cert, key]);
  assert.ok(matches(cert, key));
  assert.equal(statSync(key).mode & 0o777, 0o600 & ~umask);
  const before = [readFileSync(cert), readFileSync(key), statSync(cert).ino, statSync(key).ino];
  await keygenOk(["ensure", "-t", "rsa", cert, key]);
  const verbose = await keygen(["ensure", "-v", cert, key]);
  assert.equal(verbose.stderr, `tls-keygen: info: kept ${cert} and ${key}\n`);
  assert.deepEqual(
    [readFileSync(cert), readFileSync(key), statSync(cert).ino, statSync(key).ino],
    before,
  );
});

test("ensure: half a pair is an error naming both files; nothing is written", async () => {
  const dir = freshDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  writeFileSync(cert, "lonely\n");
  const result = await keygen(["ensure", cert, key]);
  assert.deepEqual(
    [result.code, result.stderr],
    [
      100,
      `tls-keygen: fatal: ${cert} exists but ${key} does not: remove it, or make a new pair with self-signed --force\n`,
    ],
  );
  assert.deepEqual(readdirSync(dir), ["cert.pem"]);
});

test("ensure: a symlink to nothing or a directory in place of a file is an error, not kept", async () => {
  const dir = freshDir();
  await keygenOk(["ensure", "cert.pem", "key.pem"], dir);
  symlinkSync("gone.pem", join(dir, "dangling.pem"));
  mkdirSync(join(dir, "dir.key"));
  symlinkSync("cert.pem", join(dir, "link.pem"));
  const before = readdirSync(dir).sort();
  for (const [args, line] of [
    [
      ["dangling.pem", "key.pem"],
      "dangling.pem is a symbolic link to nothing: remove it, or make a new pair",
    ],
    [["cert.pem", "dir.key"], "dir.key is not a file"],
  ] as const) {
    const result = await keygen(["ensure", ...args], dir);
    assert.deepEqual([result.code, result.stderr], [100, `tls-keygen: fatal: ${line}\n`]);
  }
  // A symlink to a file is that file: kept.
  const kept = await keygen(["ensure", "-v", "link.pem", "key.pem"], dir);
  assert.deepEqual([kept.code, kept.stderr], [0, "tls-keygen: info: kept link.pem and key.pem\n"]);
  assert.deepEqual(readdirSync(dir).sort(), before);
});

test("ensure: four at once on a fresh directory all succeed and leave one matching pair", async () => {
  const dir = freshDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const results = await Promise.all([1, 2, 3, 4].map(() => keygen(["ensure", cert, key])));
  for (const result of results) assert.deepEqual([result.code, result.stderr], [0, ""]);
  assert.ok(matches(cert, key));
  assert.deepEqual(readdirSync(dir).sort(), ["cert.pem", "key.pem"]);
});

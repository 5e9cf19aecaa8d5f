// Certificates on demand are written as versions and switched with one rename: a reader in
// another process, resolving the name once as tlsd does, never meets a key beside another
// version's chain, while the writer replaces the certificate again and again.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { installCertificate } from "../../src/acme/cert-versions.ts";
import { makePki } from "../helpers/certs.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const pairs = ["one", "two", "three"].map((n) => pki.server(n, [`${n}.test`, "x.test"]));
const read = (p: { cert: string; key: string }) => ({
  cert: readFileSync(p.cert),
  key: readFileSync(p.key),
});

test("NAME is a symlink to the current version; the one before stays, older ones go, a directory of old among them", () => {
  const dir = scratchDir("versions");
  // A CERTDIR/NAME/ directory as an older tlsd (or certbot) left it.
  mkdirSync(join(dir, "x.test"));
  writeFileSync(join(dir, "x.test", "fullchain.pem"), "old");
  let now = 1_000;
  for (const pair of pairs) {
    const { cert, key } = read(pair);
    installCertificate(dir, "x.test", key, cert, now++);
    assert.equal(lstatSync(join(dir, "x.test")).isSymbolicLink(), true);
    const real = realpathSync(join(dir, "x.test"));
    assert.deepEqual(readFileSync(join(real, "fullchain.pem")), cert);
    assert.equal(lstatSync(join(real, "privkey.pem")).mode & 0o777, 0o600);
  }
  const versions = readdirSync(join(dir, ".versions")).sort();
  // The two newest; the old directory, moved aside at the first switch, went with the rest.
  assert.equal(versions.length, 2);
  assert.ok(
    versions.every((v) => /^x\.test\.100[12]\.[0-9a-f]{8}$/.test(v)),
    versions.join(),
  );
  assert.deepEqual(
    readdirSync(dir).filter((e) => !e.startsWith(".")),
    ["x.test"],
  );
});

test("a reader in another process never sees a key with another version's certificate", async () => {
  const dir = scratchDir("versions");
  const first = read(pairs[0] ?? pki.ca);
  installCertificate(dir, "x.test", first.key, first.cert);
  // The reader resolves x.test once per round, then reads both files, as cert-store does.
  const reader = spawn(
    process.execPath,
    [
      "-e",
      `const fs = require("node:fs"), crypto = require("node:crypto");
       let rounds = 0, mismatched = 0;
       const end = Date.now() + 3000;
       while (Date.now() < end) {
         try {
           const real = fs.realpathSync(process.argv[1] + "/x.test");
           const cert = new crypto.X509Certificate(fs.readFileSync(real + "/fullchain.pem"));
           const key = crypto.createPrivateKey(fs.readFileSync(real + "/privkey.pem"));
           if (!cert.checkPrivateKey(key)) mismatched++;
           rounds++;
         } catch (e) { if (e.code !== "ENOENT") throw e; }
       }
       console.log(rounds + " " + mismatched);`,
      dir,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  reader.stdout.on("data", (b: Buffer) => (out += b.toString()));
  const done = new Promise<number | null>((resolve) => reader.on("exit", resolve));
  const all = pairs.map(read);
  for (let i = 0; i < 300; i++) {
    const p = all[i % all.length] ?? first;
    installCertificate(dir, "x.test", p.key, p.cert);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(await done, 0);
  const [rounds, mismatched] = out.trim().split(" ").map(Number);
  assert.ok((rounds ?? 0) > 100, out);
  assert.equal(mismatched, 0);
  // The certificate the reader checks with is a real one of the three.
  const current = new X509Certificate(readFileSync(join(dir, "x.test", "fullchain.pem")));
  assert.ok(
    current.checkPrivateKey(createPrivateKey(readFileSync(join(dir, "x.test", "privkey.pem")))),
  );
});

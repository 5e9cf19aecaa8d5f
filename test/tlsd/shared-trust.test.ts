// tlsd's CAFILE and CRLFILE with several certificates (CERTFILE:name pairs): read once for all
// of them, at start, on a change on disk and on SIGHUP, counted by tlsd_trust_reads_total; and
// every name sees the new trust anchors and lists. Clients are openssl s_client with a client
// certificate; the CAs and their lists are openssl's (`openssl ca`).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import type { Pair, TestPki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const first = makePki();
const second = makePki("Second Test CA");
const dir = scratchDir("shared-trust");
const PATH = `${BIN}:/usr/bin:/bin`;

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** openssl ca's database for a test CA: it revokes, and signs its list. */
function caDatabase(pki: TestPki) {
  const config = join(pki.dir, "ca.cnf");
  writeFileSync(join(pki.dir, "index.txt"), "");
  writeFileSync(join(pki.dir, "crlnumber"), "01\n");
  writeFileSync(
    config,
    `[ca]\ndefault_ca = test\n[test]\ndatabase = ${pki.dir}/index.txt\ncrlnumber = ${pki.dir}/crlnumber\n` +
      `default_md = sha256\ndefault_crl_days = 30\ncertificate = ${pki.ca.cert}\nprivate_key = ${pki.ca.key}\n`,
  );
  const list = join(pki.dir, "crl.pem");
  return {
    revoke: (pair: Pair) => openssl(["ca", "-config", config, "-revoke", pair.cert]),
    list: () => {
      openssl(["ca", "-config", config, "-gencrl", "-out", list]);
      return readFileSync(list, "latin1");
    },
  };
}

const one = first.server("one", ["one.test"]);
const two = first.server("two", ["two.test"]);
const alice = first.client("alice");
const bob = second.client("bob");
const carol = second.client("carol");
const [firstCa, secondCa] = [caDatabase(first), caDatabase(second)];

// Every version of CAFILE has one size (PEM ignores the newlines after the certificate), so
// that one rewritten in place with its mtime put back keeps its stamp: only SIGHUP reads it.
const CAFILE = join(dir, "clients-ca.pem");
const caPems = [first.ca.cert, second.ca.cert].map((f) => readFileSync(f, "latin1"));
const size = Math.max(...caPems.map((p) => p.length)) + 8;
const padded = (pki: TestPki) => readFileSync(pki.ca.cert, "latin1").padEnd(size, "\n");

/** As CAFILE and CRLFILE are rotated: a new file renamed into place. */
function publish(file: string, text: string): void {
  writeFileSync(`${file}.new`, text);
  renameSync(`${file}.new`, file);
}

// Both CAs' lists: OpenSSL checks the list of every CA of a client's chain.
const CRLFILE = join(dir, "crl.pem");
publish(CAFILE, padded(first));
publish(CRLFILE, firstCa.list() + secondCa.list());

const REPORT = 'echo "$SSL_TLS_SNI_SERVERNAME ${SSL_PEER_CERT_SUBJECT-none}"';
const NAMES = ["one.test", "two.test"];

test("two SNI names share one read of CAFILE and CRLFILE: a new CA or a new list on disk, and SIGHUP, reach both names", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0"],
      ...["tlsd", "-y", "-k", "1", "sh", "-c", REPORT],
    ],
    {
      env: {
        PATH,
        CERTFILE: one.cert,
        KEYFILE: one.key,
        "CERTFILE:one.test": one.cert,
        "KEYFILE:one.test": one.key,
        "CERTFILE:two.test": two.cert,
        "KEYFILE:two.test": two.key,
        CAFILE,
        CRLFILE,
      },
    },
  );
  /** What each name answers this client: the name and its subject, or "" when refused. */
  const answers = (pair: Pair) =>
    Promise.all(
      NAMES.map((name) =>
        answerWithCertificate(s.port, first.ca.cert, pair, ["-servername", name]),
      ),
    );
  const served = (cn: string) => NAMES.map((name) => `${name} C=FR, O=Test Org, CN=${cn}\n`);
  const refused = ["", ""];
  /** tlsd looks at its files at most once a second: bounded tries, no timing asserted. */
  const untilRefused = async (pair: Pair) => {
    let answer = "served";
    for (let i = 0; i < 50 && answer !== ""; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      answer = await answerWithCertificate(s.port, first.ca.cert, pair, [
        "-servername",
        "one.test",
      ]);
    }
  };
  /** tlsd_trust_reads_total, CAFILE's and CRLFILE's. */
  const reads = async () => {
    const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const count = (file: string) =>
      Number(
        new RegExp(`^tlsd_trust_reads_total\\{file="${file}"\\} (\\d+)$`, "m").exec(scrape)?.[1],
      );
    return { CAFILE: count("CAFILE"), CRLFILE: count("CRLFILE") };
  };
  try {
    // Three contexts made at start (the default and two names), from one read of each file.
    assert.deepEqual(await answers(alice), served("alice"));
    assert.deepEqual(await answers(bob), refused);
    assert.deepEqual(await reads(), { CAFILE: 1, CRLFILE: 1 });

    // Another CA in CAFILE: alice is refused on both names, bob served.
    publish(CAFILE, padded(second));
    await untilRefused(alice);
    assert.deepEqual(await answers(alice), refused);
    assert.deepEqual(await answers(bob), served("bob"), s.log());
    assert.deepEqual(await reads(), { CAFILE: 2, CRLFILE: 1 });

    // bob's serial in CRLFILE: refused on both names; carol, of the same CA, still served.
    secondCa.revoke(bob);
    publish(CRLFILE, firstCa.list() + secondCa.list());
    await untilRefused(bob);
    assert.deepEqual(await answers(bob), refused);
    assert.deepEqual(await answers(carol), served("carol"));
    assert.deepEqual(await reads(), { CAFILE: 2, CRLFILE: 2 });

    // The first CA back in place, the same inode, size and mtime: the stamp cannot tell, and
    // SIGHUP reads both files again, once each for the three contexts.
    const saved = join(dir, "mtime");
    execFileSync("touch", ["-r", CAFILE, saved]);
    writeFileSync(CAFILE, padded(first));
    execFileSync("touch", ["-r", saved, CAFILE]);
    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/);
    assert.deepEqual(await answers(alice), served("alice"));
    assert.deepEqual(await answers(carol), refused);
    assert.deepEqual(await reads(), { CAFILE: 3, CRLFILE: 3 });
  } finally {
    await s.stop();
  }
});

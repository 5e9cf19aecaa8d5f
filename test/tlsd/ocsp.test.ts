// OCSP stapling: a response beside a certificate's chain file (CHAIN.ocsp, DER) is stapled by
// tlsd when it may be (checked against the chain), on the native engine and on node:tls, read
// again when it changes, and left out with one line saying why when it may not. Responses are
// made by openssl ocsp (a real responder's code, offline) and python3-cryptography; clients are
// openssl s_client -status and curl --cert-status (which verifies what is stapled).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { native } from "../../src/ucspi/native.ts";
import { makePki } from "../helpers/certs.ts";
import { chained, opensslResponse } from "../helpers/ocsp.ts";
import type { Pair } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { BIN, ROOT, TLSD_UNDER, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const HTTP = ["sh", "-c", 'printf "HTTP/1.0 200 OK\\r\\n\\r\\nstapled\\n"'];

/** A leaf for localhost and NAME.test, in its chain file. */
function chainedLeaf(name: string, ext?: string): Pair {
  return chained(pki, pki.server(name, ["localhost", `${name}.test`], ext));
}

/** RFC 7633's "must staple": the TLS Feature extension with status_request. */
const MUST_STAPLE = "tlsfeature=status_request\n";

/** python3-cryptography's response of this kind (test/fixtures/ocsp-response.py). */
function pythonResponse(leaf: Pair, kind: string): Buffer {
  const out = join(pki.dir, `py-${kind}-${Date.now()}.der`);
  execFileSync(
    "python3",
    [join(ROOT, "test/fixtures/ocsp-response.py"), kind, pki.ca.cert, pki.ca.key, leaf.cert, out],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return readFileSync(out);
}

/** Asks until `holds` says yes, for at most 15 s (the files are looked at once a second). */
async function until(holds: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await holds())) {
    if (Date.now() > deadline) throw new Error("the server never changed what it staples");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** As a cron job writes it: whole, by a rename. */
function install(leaf: Pair, der: Buffer): void {
  writeFileSync(`${leaf.cert}.ocsp.new`, der);
  renameSync(`${leaf.cert}.ocsp.new`, `${leaf.cert}.ocsp`);
}

/** What openssl s_client -status printed of a handshake with the server. */
async function statusReport(port: number, name: string, version: string): Promise<string> {
  const r = await run(
    "openssl",
    ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", name, "-status", version],
    { input: "" },
  );
  return r.stdout + r.stderr;
}

/** What openssl s_client -status saw stapled: the certificate's status, or "none". */
async function stapled(port: number, name = "localhost", version = "-tls1_3"): Promise<string> {
  const report = await statusReport(port, name, version);
  if (/OCSP response: no response sent/.test(report)) return "none";
  const status = /Cert Status: (\w+)/.exec(report)?.[1];
  assert.ok(status, `s_client said neither: ${report.slice(0, 800)}`);
  return status;
}

/** curl --cert-status's fetch of the page: it fails unless a good response is stapled. */
function curlCertStatus(port: number) {
  return run("curl", [
    ...["-sS", "--cert-status", "--cacert", pki.ca.cert],
    ...["--resolve", `localhost:${port}:127.0.0.1`, `https://localhost:${port}/`],
  ]);
}

function tlsdServer(
  file: string,
  tlsd: readonly string[],
  env: NodeJS.ProcessEnv,
  before: readonly string[] = [],
) {
  return startServer(file, [...before, "-RHl0", "127.0.0.1", "0", "tlsd", ...tlsd, ...HTTP], {
    env: { PATH, ...env },
  });
}

/** tcpserver --metrics's OCSP gauge: file → value. */
async function ocspGauge(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^tlsd_ocsp_next_update_timestamp_seconds\{file="([^"]*)"\} (\S+)$/gm,
  ))
    out.set(m[1] ?? "", Number(m[2]));
  return out;
}

const good = chainedLeaf("ocsp-good");
install(good, opensslResponse(pki, good, "valid"));

for (const [how, file] of TLSD_UNDER) {
  test(`${how}: a good response beside CERTFILE is stapled on TLS 1.3 and 1.2, and curl --cert-status takes it`, async () => {
    const s = await tlsdServer(file, ["--engine", "native"], {
      CERTFILE: good.cert,
      KEYFILE: good.key,
    });
    try {
      assert.equal(await stapled(s.port), "good");
      assert.equal(await stapled(s.port, "localhost", "-tls1_2"), "good");
      const curl = await run("curl", [
        ...["-sS", "--cert-status", "--cacert", pki.ca.cert],
        ...["--resolve", `localhost:${s.port}:127.0.0.1`, `https://localhost:${s.port}/`],
      ]);
      assert.equal(curl.stdout, "stapled\n", curl.stderr);
      assert.doesNotMatch(s.log(), /OCSP|warning/);
    } finally {
      await s.stop();
    }
  });
}

test("no response file: nothing stapled, nothing said, and curl --cert-status refuses the server", async () => {
  const plain = chainedLeaf("ocsp-none");
  const s = await tlsdServer(ours("tcpserver"), ["--engine", "native"], {
    CERTFILE: plain.cert,
    KEYFILE: plain.key,
  });
  try {
    assert.equal(await stapled(s.port), "none");
    const curl = await curlCertStatus(s.port);
    assert.notEqual(curl.code, 0);
    assert.match(curl.stderr, /OCSP/i);
    assert.doesNotMatch(s.log(), /OCSP/);
  } finally {
    await s.stop();
  }
});

test("responses that may not be stapled are left out, each with one line naming its file and why; the certificates still serve", async () => {
  const other = chainedLeaf("ocsp-other");
  const cases: [string, Pair, Buffer, RegExp][] = [];
  const add = (name: string, der: (leaf: Pair) => Buffer, why: RegExp) => {
    const leaf = chainedLeaf(`ocsp-${name}`);
    cases.push([name, leaf, der(leaf), why]);
  };
  add(
    "revoked",
    (l) => opensslResponse(pki, l, "revoked"),
    /says the certificate is revoked \(since /,
  );
  add(
    "others",
    () => opensslResponse(pki, other, "valid"),
    /holds no status for this certificate$/,
  );
  add(
    "expired",
    (l) => pythonResponse(l, "expired"),
    /expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/,
  );
  add("endless", (l) => pythonResponse(l, "no-next-update"), /has no nextUpdate/);
  add("forged", (l) => pythonResponse(l, "forged"), /signed by a certificate that may not answer/);
  add(
    "tampered",
    (l) => {
      const der = opensslResponse(pki, l, "valid");
      der[der.length - 2] = (der[der.length - 2] ?? 0) ^ 0x55; // inside the signature
      return der;
    },
    /its signature does not verify$/,
  );
  add("junk", () => Buffer.from("not DER at all\n"), /not an OCSP response \(DER\)$/);
  const env: NodeJS.ProcessEnv = { CERTFILE: good.cert, KEYFILE: good.key };
  for (const [name, leaf, der] of cases) {
    install(leaf, der);
    env[`CERTFILE:ocsp-${name}.test`] = leaf.cert;
    env[`KEYFILE:ocsp-${name}.test`] = leaf.key;
  }
  const s = await tlsdServer(ours("tcpserver"), ["-k", "1", "--engine", "native"], env);
  try {
    for (const [name, leaf, , why] of cases) {
      const lines = s
        .log()
        .split("\n")
        .filter((l) => l.includes(`${leaf.cert}.ocsp`));
      assert.equal(lines.length, 1, `${name}: ${s.log()}`);
      const [line = ""] = lines;
      assert.ok(
        line.startsWith(`tlsd: warning: OCSP response ${leaf.cert}.ocsp is not stapled: `),
        line,
      );
      assert.match(line, why, name);
      assert.equal(await stapled(s.port, `ocsp-${name}.test`), "none", name);
    }
    // The default pair's good one is still stapled beside them.
    assert.equal(await stapled(s.port, "nobody.test"), "good");
  } finally {
    await s.stop();
  }
});

test("a response from a responder the issuer delegated, naming the certificate by SHA-256, is stapled; so is each name's own", async () => {
  const delegated = chainedLeaf("ocsp-delegated");
  install(delegated, pythonResponse(delegated, "delegated"));
  const s = await tlsdServer(ours("tcpserver"), ["-k", "1", "--engine", "native"], {
    CERTFILE: good.cert,
    KEYFILE: good.key,
    "CERTFILE:ocsp-delegated.test": delegated.cert,
    "KEYFILE:ocsp-delegated.test": delegated.key,
  });
  try {
    assert.equal(await stapled(s.port, "ocsp-delegated.test"), "good");
    const report = await statusReport(s.port, "ocsp-delegated.test", "-tls1_3");
    assert.match(report, /Hash Algorithm: sha256/);
    assert.match(report, /Subject: CN ?= ?Test OCSP responder/);
    // The default pair's own, beside it.
    assert.equal(await stapled(s.port, "nobody.test"), "good");
    assert.doesNotMatch(
      (
        await run("openssl", ["s_client", "-connect", `127.0.0.1:${s.port}`, "-status"], {
          input: "",
        })
      ).stdout,
      /Test OCSP responder/,
    );
    assert.doesNotMatch(s.log(), /OCSP/);
  } finally {
    await s.stop();
  }
});

test("a response written while the server runs is stapled from the next look at the files, and --metrics says until when; junk written over it leaves it stapled; a revoked one put in its place is not, and is said once", async () => {
  const later = chainedLeaf("ocsp-later");
  const metrics = await freePort();
  const s = await tlsdServer(
    ours("tcpserver"),
    ["--engine", "native"],
    { CERTFILE: later.cert, KEYFILE: later.key },
    ["--metrics", `127.0.0.1:${metrics}`],
  );
  try {
    assert.equal(await stapled(s.port), "none");
    assert.equal((await ocspGauge(metrics)).size, 0);
    const response = opensslResponse(pki, later, "valid");
    install(later, response);
    // tlsd looks at its files again at most once a second, when a client comes.
    await until(async () => (await stapled(s.port)) === "good");
    const { nextUpdate } = native().ocspCheck(response, readFileSync(later.cert));
    assert.deepEqual([...(await ocspGauge(metrics))], [[`${later.cert}.ocsp`, nextUpdate]]);
    // A fetch that went wrong (junk written over it) does not take the good one away.
    install(later, Buffer.from("<html>503 Service Unavailable</html>\n"));
    await until(
      async () => (await stapled(s.port)) === "good" && /not an OCSP response/.test(s.log()),
    );
    assert.match(
      s.log(),
      /^tlsd: warning: OCSP response .*ocsp-later\.chain\.pem\.ocsp is not stapled: not an OCSP response \(DER\); the response read before is stapled until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/m,
    );
    assert.equal(await stapled(s.port), "good");
    assert.deepEqual([...(await ocspGauge(metrics))], [[`${later.cert}.ocsp`, nextUpdate]]);
    install(later, opensslResponse(pki, later, "revoked"));
    await until(async () => (await stapled(s.port)) === "none");
    assert.equal((await ocspGauge(metrics)).size, 0);
    await stapled(s.port);
    const said = s.log().match(/is not stapled: it says the certificate is revoked/g) ?? [];
    assert.equal(said.length, 1, s.log());
    assert.match(
      s.log(),
      /^tlsd: warning: OCSP response .*ocsp-later\.chain\.pem\.ocsp is not stapled/m,
    );
    rmSync(`${later.cert}.ocsp`);
  } finally {
    await s.stop();
  }
});

test("--engine node staples as the engine does: the default pair's response, and a name's own (a delegated responder's); a name without one gets none; nothing is said", async () => {
  const delegated = chainedLeaf("ocsp-node-delegated");
  install(delegated, pythonResponse(delegated, "delegated"));
  const bare = chainedLeaf("ocsp-node-bare");
  const s = await tlsdServer(ours("tcpserver"), ["-k", "1", "--engine", "node"], {
    CERTFILE: good.cert,
    KEYFILE: good.key,
    "CERTFILE:ocsp-node-delegated.test": delegated.cert,
    "KEYFILE:ocsp-node-delegated.test": delegated.key,
    "CERTFILE:ocsp-node-bare.test": bare.cert,
    "KEYFILE:ocsp-node-bare.test": bare.key,
  });
  try {
    assert.equal(await stapled(s.port), "good");
    assert.equal(await stapled(s.port, "localhost", "-tls1_2"), "good");
    assert.equal(await stapled(s.port, "ocsp-node-delegated.test"), "good");
    const report = await statusReport(s.port, "ocsp-node-delegated.test", "-tls1_3");
    assert.match(report, /Subject: CN ?= ?Test OCSP responder/);
    assert.equal(await stapled(s.port, "ocsp-node-bare.test"), "none");
    const curl = await curlCertStatus(s.port);
    assert.equal(curl.stdout, "stapled\n", curl.stderr);
    assert.doesNotMatch(s.log(), /OCSP|warning/);
  } finally {
    await s.stop();
  }
});

test("tls-sniff | tlsd under djb's tcpserver (fd 0 a pipe, so node:tls serves): the response is stapled, and curl --cert-status takes it", async () => {
  const s = await startServer(
    djb("tcpserver"),
    [
      ...["-RHl0", "127.0.0.1", "0", "sh", "-c"],
      `tls-sniff | exec tlsd -v2 --engine native sh -c 'printf "HTTP/1.0 200 OK\\r\\n\\r\\nstapled\\n"'`,
    ],
    { env: { PATH, CERTFILE: good.cert, KEYFILE: good.key } },
  );
  try {
    assert.equal(await stapled(s.port), "good");
    const curl = await curlCertStatus(s.port);
    assert.equal(curl.stdout, "stapled\n", curl.stderr);
    await s.waitForLog(/^tlsd: info: node:tls, not the native engine: /m);
    assert.doesNotMatch(s.log(), /OCSP|warning/);
  } finally {
    await s.stop();
  }
});

test("a response is stapled until its nextUpdate and not after it, on either engine, and its end is said once; a must-staple certificate says what its absence costs", async () => {
  // Must staple (RFC 7633): clients that enforce it refuse a handshake without the response.
  const brief = chainedLeaf("ocsp-brief", MUST_STAPLE);
  assert.equal(native().ocspMustStaple(readFileSync(brief.cert)), true);
  assert.equal(native().ocspMustStaple(readFileSync(good.cert)), false);
  const servers = await Promise.all(
    ["native", "node"].map((engine) =>
      tlsdServer(ours("tcpserver"), ["--engine", engine], {
        CERTFILE: brief.cert,
        KEYFILE: brief.key,
      }),
    ),
  );
  const unmet = (s: { log: () => string }) =>
    s
      .log()
      .split("\n")
      .filter((l) => l.includes("must be served with its OCSP response"));
  try {
    for (const s of servers)
      assert.deepEqual(unmet(s), [
        `tlsd: warning: certificate ${brief.cert} must be served with its OCSP response (TLS Feature status_request), and none is stapled (${brief.cert}.ocsp): clients that enforce that refuse the handshake`,
      ]);
    // Valid for 12 s from now: each server staples it from its next look at the files.
    install(brief, pythonResponse(brief, "brief"));
    const { nextUpdate } = native().ocspCheck(
      readFileSync(`${brief.cert}.ocsp`),
      readFileSync(brief.cert),
    );
    for (const s of servers) await until(async () => (await stapled(s.port)) === "good");
    for (const s of servers) await until(async () => (await stapled(s.port)) === "none");
    assert.ok(Date.now() / 1000 >= nextUpdate, "left out before its nextUpdate");
    for (const s of servers) {
      // Said at the store's next look at the files (at most once a second, when a client comes).
      await until(
        async () => (await stapled(s.port)) === "none" && /no longer stapled/.test(s.log()),
      );
      await stapled(s.port);
      const said = s.log().match(/expired at .*: no longer stapled/g) ?? [];
      assert.equal(said.length, 1, s.log());
      assert.match(
        s.log(),
        /^tlsd: warning: OCSP response .*ocsp-brief\.chain\.pem\.ocsp expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: no longer stapled \(a newer one is read when the file changes\); its certificate must be served with one \(TLS Feature status_request\): clients that enforce that refuse the handshake$/m,
      );
      // The response read while it was valid: nothing more said of its absence meanwhile.
      assert.equal(unmet(s).length, 1, s.log());
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
});

test("ocspCheck reads any bytes without harm: a validity, or an Error in our words", () => {
  const chain = readFileSync(good.cert);
  const sound = readFileSync(`${good.cert}.ocsp`);
  assert.ok(native().ocspCheck(sound, chain).nextUpdate > Date.now() / 1000);
  const ours =
    /^(not an OCSP response \(DER\)|the responder answered ("[a-zA-Z]+"|with code -?\d+) instead of the certificate's status|not a basic OCSP response|it holds no status for this certificate|its signer's certificate is neither in it nor in the chain|it is signed by a certificate that may not answer for the issuer|its signature does not verify|it says the certificate is revoked \(since .*\)|it says the responder does not know the certificate|it has no nextUpdate, so no end to its validity|it expired at .*|it is not valid before .*)$/;
  const judged = (der: Buffer) => {
    try {
      const v = native().ocspCheck(der, chain);
      assert.ok(v.nextUpdate >= v.thisUpdate);
      assert.ok(["good", "revoked", "unknown"].includes(v.status));
    } catch (error) {
      assert.ok(error instanceof Error);
      assert.match(error.message, ours);
    }
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => judged(Buffer.from(bytes))),
    { numRuns: 300 },
  );
  // The sound response with bytes changed, cut short, or grown.
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(sound.length - 1), fc.integer({ min: 1, max: 255 })), {
        maxLength: 4,
      }),
      fc.nat(sound.length),
      fc.uint8Array({ maxLength: 8 }),
      (flips, keep, extra) => {
        const der = Buffer.from(sound);
        for (const [at, x] of flips) der[at] = (der[at] ?? 0) ^ x;
        judged(Buffer.concat([der.subarray(0, keep), extra]));
      },
    ),
    { numRuns: 400 },
  );
  // A response that is only a status: one RFC 6960 names, and one it does not (the fuzz met
  // one, which OpenSSL calls "(UNKNOWN)").
  const statusOnly = (code: number) => Buffer.from([0x30, 0x03, 0x0a, 0x01, code]);
  assert.throws(
    () => native().ocspCheck(statusOnly(3), chain),
    /^Error: the responder answered "trylater" instead of the certificate's status$/,
  );
  assert.throws(
    () => native().ocspCheck(statusOnly(4), chain),
    /^Error: the responder answered with code 4 instead of the certificate's status$/,
  );
  assert.throws(
    () => native().ocspCheck(sound, Buffer.alloc(0)),
    /^Error: no certificate in the chain$/,
  );
  assert.throws(
    () => native().ocspCheck(sound, readFileSync(pki.ca.cert)),
    /the certificate's issuer is not in its chain file/,
  );
});

test("ocspMustStaple reads any bytes without harm: a leaf with status_request or status_request_v2 in its TLS Feature must staple, anything else is false", () => {
  const must = readFileSync(chainedLeaf("ocsp-must", MUST_STAPLE).cert);
  const v2 = readFileSync(chainedLeaf("ocsp-must-v2", "tlsfeature=status_request_v2\n").cert);
  assert.equal(native().ocspMustStaple(must), true);
  assert.equal(native().ocspMustStaple(v2), true);
  assert.equal(native().ocspMustStaple(readFileSync(good.cert)), false);
  assert.equal(native().ocspMustStaple(Buffer.alloc(0)), false);
  const judged = (pem: Buffer) => assert.equal(typeof native().ocspMustStaple(pem), "boolean");
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => judged(Buffer.from(bytes))),
    { numRuns: 300 },
  );
  // The must-staple chain with characters of its base64 changed, or cut short.
  const base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(must.length - 1), fc.nat(base64.length - 1)), { maxLength: 6 }),
      fc.nat(must.length),
      (flips, keep) => {
        const pem = Buffer.from(must);
        for (const [at, c] of flips) if (pem[at] !== 0x0a) pem[at] = base64.charCodeAt(c);
        judged(pem.subarray(0, keep));
      },
    ),
    { numRuns: 300 },
  );
});

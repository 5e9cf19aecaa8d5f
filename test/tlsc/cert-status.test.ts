// tlsc and the server's stapled OCSP response: with --cert-status a good one must come, or the
// session ends before the program runs (exit 98, one line); without it, a response that says
// revoked still ends it, and so does a must-staple certificate served without a good one.
// Servers: our tcpserver + tlsd (which staples only good responses), and openssl s_server
// -status_file, which staples any file it is given (revoked, another certificate's). Responses
// from openssl ocsp, offline.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { chained, opensslResponse } from "../helpers/ocsp.ts";
import { BIN, TLSC_UNDER, ours, run } from "../helpers/programs.ts";
import { sServer } from "../helpers/s-server.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const leaf = pki.server("status", ["localhost"]);
const chain = chained(pki, leaf);
const good = opensslResponse(pki, chain, "valid");
const revoked = opensslResponse(pki, chain, "revoked");
const other = opensslResponse(
  pki,
  chained(pki, pki.server("status-other", ["localhost"])),
  "valid",
);

/** A response in a file of its own, for s_server's -status_file. */
function responseFile(name: string, der: Buffer): string {
  const file = `${pki.dir}/${name}.der`;
  writeFileSync(file, der);
  return file;
}

/** tlsc --cert-status (and `more`) to 127.0.0.1:port, verified against the test CA; its program
 * says a line and reads s_server's reversed answer (or tlsd's program's line). */
function client(how: string, port: number, more: readonly string[] = []) {
  return run(
    how,
    [
      ...["-RH", "127.0.0.1", String(port), "tlsc", "-k", "localhost", ...more],
      ...["sh", "-c", "echo olleh >&7; head -n 1 <&6"],
    ],
    { env: { PATH, CAFILE: pki.ca.cert } },
  );
}

for (const [how, file] of TLSC_UNDER) {
  test(`${how}: a good response stapled by tlsd: the program runs`, async () => {
    writeFileSync(`${chain.cert}.ocsp`, good);
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c", "echo stapled"],
      { env: { PATH, CERTFILE: chain.cert, KEYFILE: chain.key } },
    );
    try {
      const r = await client(file, s.port, ["--cert-status"]);
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "stapled\n", ""]);
    } finally {
      await s.stop();
    }
  });
}

test("a chain sent short (the leaf alone): the issuer from CAFILE checks the response, which s_server staples", async () => {
  const s = await sServer(leaf.cert, leaf.key, ["-status_file", responseFile("good", good)]);
  try {
    const r = await client(ours("tcpclient"), s.port, ["--cert-status"]);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, "hello\n", ""]);
  } finally {
    s.child.kill();
  }
});

test("--cert-status: no response, a revoked one, another certificate's, a tryLater: the session ends before the program runs, exit 98, one line naming why", async () => {
  const cases: [string, string[], RegExp][] = [
    ["none", [], /^tlsc: fatal: the server stapled no OCSP response \(--cert-status\)$/],
    [
      "revoked",
      ["-status_file", responseFile("revoked", revoked)],
      /^tlsc: fatal: the server's stapled OCSP response is refused: it says the certificate is revoked \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$/,
    ],
    [
      "other",
      ["-status_file", responseFile("other", other)],
      /^tlsc: fatal: the server's stapled OCSP response is refused: it holds no status for this certificate$/,
    ],
    [
      // A response that is only a status (s_server staples nothing it cannot read as one).
      "trylater",
      ["-status_file", responseFile("trylater", Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x03]))],
      /^tlsc: fatal: the server's stapled OCSP response is refused: the responder answered "trylater" instead of the certificate's status$/,
    ],
  ];
  for (const [name, extra, why] of cases) {
    const s = await sServer(chain.cert, chain.key, extra);
    try {
      const r = await client(ours("tcpclient"), s.port, ["--cert-status"]);
      assert.equal(r.code, 98, `${name}: ${r.stderr}`);
      assert.equal(r.stdout, "", name);
      assert.match(r.stderr, new RegExp(why.source.replace(/\$$/, "\\n$")), name);
    } finally {
      s.child.kill();
    }
  }
});

test("without --cert-status: a stapled response that says revoked still ends the session; one that is no good is passed over, as none; --no-verify-cert asks for none", async () => {
  const revokedFile = responseFile("revoked-default", revoked);
  const runs: [string, string[], string[], number, RegExp][] = [
    [
      "revoked",
      ["-status_file", revokedFile],
      [],
      98,
      /^tlsc: fatal: the server's stapled OCSP response is refused: it says the certificate is revoked \(since [^)]*\)\n$/,
    ],
    ["other", ["-status_file", responseFile("other-default", other)], [], 0, /^$/],
    ["none", [], [], 0, /^$/],
    ["revoked, unverified", ["-status_file", revokedFile], ["--no-verify-cert"], 0, /^$/],
  ];
  for (const [name, extra, more, code, stderr] of runs) {
    const s = await sServer(chain.cert, chain.key, extra);
    try {
      const r = await client(ours("tcpclient"), s.port, more);
      assert.equal(r.code, code, `${name}: ${r.stderr}`);
      assert.match(r.stderr, stderr, name);
      assert.equal(r.stdout, code === 0 ? "hello\n" : "", name);
    } finally {
      s.child.kill();
    }
  }
});

test("a must-staple certificate (TLS Feature status_request): served without a good response, the session ends even without --cert-status; with one, it runs", async () => {
  const must = chained(pki, pki.server("must", ["localhost"], "tlsfeature=status_request\n"));
  const mustGood = responseFile("must-good", opensslResponse(pki, must, "valid"));
  const runs: [string, string[], number, RegExp][] = [
    [
      "none",
      [],
      98,
      /^tlsc: fatal: the server stapled no OCSP response, and its certificate must be served with one \(TLS Feature status_request\)\n$/,
    ],
    [
      "another certificate's",
      ["-status_file", responseFile("must-other", good)],
      98,
      /^tlsc: fatal: the server's stapled OCSP response is refused: it holds no status for this certificate\n$/,
    ],
    ["good", ["-status_file", mustGood], 0, /^$/],
  ];
  for (const [name, extra, code, stderr] of runs) {
    const s = await sServer(must.cert, must.key, extra);
    try {
      const r = await client(ours("tcpclient"), s.port);
      assert.equal(r.code, code, `${name}: ${r.stderr}`);
      assert.match(r.stderr, stderr, name);
    } finally {
      s.child.kill();
    }
  }
});

test("--cert-status with --no-verify-cert is refused (the response's signer is checked against a verified issuer)", async () => {
  const r = await run(ours("tlsc"), ["--cert-status", "--no-verify-cert", "true"], {
    env: { PATH },
  });
  assert.equal(r.code, 100);
  assert.match(r.stderr, /^tlsc: --cert-status cannot go with --no-verify-cert\ntlsc: usage: /);
});

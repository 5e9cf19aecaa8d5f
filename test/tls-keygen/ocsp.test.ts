// tls-keygen ocsp: the OCSP response for a chain's leaf, asked of a real responder (openssl ocsp
// -port, from its own index) and written beside the chain file, where tlsd staples it. What is
// not a response for this certificate leaves the file as it was.
import assert from "node:assert/strict";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { native } from "../../src/ucspi/native.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { leafChain, ocspResponder } from "../helpers/ocsp.ts";
import { keygen } from "../helpers/keygen.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();

/** An HTTP server that answers every request with this status and body. */
async function answering(status: number, body: Buffer) {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(status, { "content-type": "application/ocsp-response" });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, stop: () => server.close() };
}

test("fetches from the responder its certificate names, writes CHAIN.ocsp (mode 644), and tlsd staples it", async () => {
  const port = await freePort();
  const leaf = leafChain(pki, "fetched", `http://127.0.0.1:${port}/`);
  const ca = await ocspResponder(pki, port, leaf.serial, "V");
  try {
    const r = await keygen(["ocsp", "-v", leaf.chain]);
    assert.equal(r.code, 0, r.stderr);
    const file = `${leaf.chain}.ocsp`;
    assert.match(
      r.stderr,
      new RegExp(
        `^tls-keygen: info: wrote ${file}: good until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\n$`,
      ),
    );
    assert.equal(statSync(file).mode & 0o777, 0o644);
    assert.equal(native().ocspCheck(readFileSync(file), readFileSync(leaf.chain)).status, "good");
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "--engine", "native", "echo", "hi"],
      { env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: leaf.chain, KEYFILE: leaf.key } },
    );
    try {
      const c = await run(
        "openssl",
        ["s_client", "-connect", `127.0.0.1:${s.port}`, "-servername", "localhost", "-status"],
        { input: "" },
      );
      assert.match(c.stdout, /Cert Status: good/);
    } finally {
      await s.stop();
    }
    // Asked again, the same answer replaces it, quietly.
    assert.deepEqual(await keygen(["ocsp", leaf.chain]), {
      code: 0,
      signal: null,
      stdout: "",
      stderr: "",
    });
  } finally {
    ca.stop();
  }
});

test("a revoked answer is kept (tlsd then staples none), exit 100; what is no good response for the certificate leaves the file as it was, exit 111", async () => {
  const leaf = leafChain(pki, "kept", "");
  const other = leafChain(pki, "other", "");
  const file = `${leaf.chain}.ocsp`;
  const good = await freePort();
  const valid = await ocspResponder(pki, good, leaf.serial, "V");
  const otherPort = await freePort();
  const forOther = await ocspResponder(pki, otherPort, other.serial, "V");
  const bad = await freePort();
  const revoked = await ocspResponder(pki, bad, leaf.serial, "R");
  try {
    // No responder named: -u gives one.
    const none = await keygen(["ocsp", leaf.chain]);
    assert.equal(none.code, 100);
    assert.equal(
      none.stderr,
      `tls-keygen: fatal: unable to ask about ${leaf.chain}: its certificate names no OCSP responder (-u names one)\n`,
    );
    assert.equal((await keygen(["ocsp", "-u", `http://127.0.0.1:${good}/`, leaf.chain])).code, 0);
    const before = readFileSync(file);
    const unchanged = async (args: string[], why: RegExp) => {
      const r = await keygen(["ocsp", ...args, leaf.chain]);
      assert.equal(r.code, 111, r.stderr);
      assert.match(r.stderr, why);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.deepEqual(readFileSync(file), before);
    };
    const closed = await freePort();
    await unchanged(
      ["-u", `http://127.0.0.1:${closed}/`],
      /^tls-keygen: fatal: unable to ask http:\/\/127\.0\.0\.1:\d+\/: connection refused$/m,
    );
    const failing = await answering(500, Buffer.from("no"));
    const junk = await answering(200, Buffer.from("not a response"));
    try {
      await unchanged(["-u", failing.url], /: it answered HTTP 500$/m);
      await unchanged(
        ["--url", junk.url],
        /^tls-keygen: fatal: the answer of http:\S+ is not kept: not an OCSP response \(DER\) \(\S+\.ocsp left as it is\)$/m,
      );
    } finally {
      failing.stop();
      junk.stop();
    }
    // A responder that does not know it (openssl ocsp's index holds another certificate).
    await unchanged(
      ["-u", `http://127.0.0.1:${otherPort}/`],
      /is not kept: it says the responder does not know the certificate \(/,
    );
    // Another certificate's good response, as a confused responder might send it.
    assert.equal(
      (await keygen(["ocsp", "-u", `http://127.0.0.1:${otherPort}/`, other.chain])).code,
      0,
    );
    const others = await answering(200, readFileSync(`${other.chain}.ocsp`));
    try {
      await unchanged(
        ["-u", others.url],
        /is not kept: it holds no status for this certificate \(/,
      );
    } finally {
      others.stop();
    }
    const r = await keygen(["ocsp", "-u", `http://127.0.0.1:${bad}/`, leaf.chain]);
    assert.equal(r.code, 100);
    assert.match(
      r.stderr,
      /^tls-keygen: fatal: http:\S+ answered for \S+: it says the certificate is revoked \(since .* UTC\)\. Kept in \S+\.ocsp: tlsd staples none\n$/,
    );
    assert.equal(
      native().ocspCheck(readFileSync(file), readFileSync(leaf.chain)).status,
      "revoked",
    );
  } finally {
    valid.stop();
    forOther.stop();
    revoked.stop();
  }
});

test("refused before asking: no issuer after the leaf, no chain file, a URL that is not http", async () => {
  const leaf = leafChain(pki, "alone", "http://127.0.0.1:9/");
  const alone = join(pki.dir, "alone.pem");
  const r = await keygen(["ocsp", alone]);
  assert.equal(r.code, 100);
  assert.match(
    r.stderr,
    /unable to ask about \S+alone\.pem: the certificate's issuer is not in its chain file/,
  );
  const missing = await keygen(["ocsp", join(pki.dir, "nothing.pem")]);
  assert.equal(missing.code, 100);
  assert.match(
    missing.stderr,
    /^tls-keygen: fatal: unable to read certificate chain \S+nothing\.pem: /,
  );
  const ftp = await keygen(["ocsp", "-u", "ftp://ca.example/", leaf.chain]);
  assert.equal(ftp.code, 100);
  assert.equal(
    ftp.stderr,
    "tls-keygen: fatal: bad --url value ftp://ca.example/: want an http:// or https:// URL\n",
  );
  const usage = await keygen(["ocsp"]);
  assert.equal(usage.code, 100);
  assert.match(usage.stderr, /usage: tls-keygen ocsp \[ -v \] \[ -u url \] chainfile/);
});

test("given a CERTDIR: each NAME/fullchain.pem's response, a failure not stopping the others, a certificate that names no responder passed over; the worst outcome is the status", async () => {
  const [goodPort, revokedPort, downPort] = [await freePort(), await freePort(), await freePort()];
  const dir = join(pki.dir, "certdir");
  /** NAME/fullchain.pem in the directory, as tlsd's CERTDIR and certbot's live/ have it. */
  const inDir = (name: string, url: string) => {
    const leaf = leafChain(pki, `dir-${name}`, url);
    mkdirSync(join(dir, name), { recursive: true });
    const chain = join(dir, name, "fullchain.pem");
    copyFileSync(leaf.chain, chain);
    return { chain, serial: leaf.serial };
  };
  const good = inDir("good.example", `http://127.0.0.1:${goodPort}/`);
  const unnamed = inDir("unnamed.example", "");
  const revoked = inDir("revoked.example", `http://127.0.0.1:${revokedPort}/`);
  const down = inDir("down.example", `http://127.0.0.1:${downPort}/`);
  // What tlsd passes over is passed over here too.
  inDir(".hidden", "");
  writeFileSync(join(dir, "README"), "certbot's\n");
  const goodCa = await ocspResponder(pki, goodPort, good.serial, "V");
  const revokedCa = await ocspResponder(pki, revokedPort, revoked.serial, "R");
  try {
    const r = await keygen(["ocsp", "-v", dir]);
    assert.equal(r.code, 100, r.stderr);
    const lines = r.stderr.split("\n").filter(Boolean);
    assert.equal(lines.length, 4, r.stderr);
    assert.match(
      lines[0] ?? "",
      /^tls-keygen: warning: unable to ask http:\/\/127\.0\.0\.1:\d+\/: /,
    );
    assert.match(
      lines[1] ?? "",
      /^tls-keygen: info: wrote .*\/good\.example\/fullchain\.pem\.ocsp: good until /,
    );
    assert.match(
      lines[2] ?? "",
      /^tls-keygen: warning: http:\/\/127\.0\.0\.1:\d+\/ answered for .*\/revoked\.example\/fullchain\.pem: it says the certificate is revoked/,
    );
    assert.equal(
      lines[3],
      `tls-keygen: info: passed over ${unnamed.chain}: its certificate names no OCSP responder`,
    );
    const status = (chain: string) =>
      native().ocspCheck(readFileSync(`${chain}.ocsp`), readFileSync(chain)).status;
    assert.equal(status(good.chain), "good");
    assert.equal(status(revoked.chain), "revoked");
    for (const none of [unnamed.chain, down.chain, join(dir, ".hidden/fullchain.pem")])
      assert.equal(existsSync(`${none}.ocsp`), false, none);
    // Without the revoked one, the responder that is down is the worst: 111, for a retry; the
    // good response is written again, quietly without -v.
    rmSync(join(dir, "revoked.example"), { recursive: true });
    const retry = await keygen(["ocsp", dir]);
    assert.equal(retry.code, 111, retry.stderr);
    assert.match(
      retry.stderr,
      /^tls-keygen: warning: unable to ask http:\/\/127\.0\.0\.1:\d+\/: [^\n]*\n$/,
    );
    rmSync(join(dir, "down.example"), { recursive: true });
    assert.deepEqual(await keygen(["ocsp", dir]), {
      code: 0,
      signal: null,
      stdout: "",
      stderr: "",
    });
  } finally {
    goodCa.stop();
    revokedCa.stop();
  }
});

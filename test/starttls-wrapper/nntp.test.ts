// starttls-wrapper -p nntp (RFC 4642) with real clients, python3's nntplib and openssl
// s_client -starttls nntp, in front of test/fixtures/fake-nntp: STARTTLS advertised and
// upgraded in local mode and handed over in remote mode; inside TLS the fresh server's own
// STARTTLS is not offered again; -r refuses everything but the short list with 483.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const dir = mkdtempSync(join(tmpdir(), "ucspi-nntp-"));
after(() => {
  rmSync(pki.dir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});
const cert = pki.server("localhost", ["localhost", "127.0.0.1"]);
const FAKE = join(ROOT, "test", "fixtures", "fake-nntp");
const PATH = `${BIN}:/usr/bin:/bin`;
// Both servers have STARTTLS of their own: the plaintext one's is kept once, the one behind
// TLS must not be offered again.
const SERVER_ENV = { PATH, FAKE_STARTTLS: "1" };

/** The wrapper in front of fake-nntp: local mode, or handing to a TLS service. */
async function wrapper(flags: string[], mode: "local" | "remote") {
  const log = join(dir, `${mode}-${flags.join("")}.log`);
  const tls = { CERTFILE: cert.cert, KEYFILE: cert.key };
  const servers: RunningServer[] = [];
  let target: string[] = [];
  if (mode === "remote") {
    const service = await startServer(
      ours("tcpserver"),
      ["--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", FAKE],
      { env: { ...SERVER_ENV, ...tls, FAKE_LOG: log } },
    );
    servers.push(service);
    target = ["127.0.0.1", String(service.port)];
  }
  const front = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "nntp", ...flags, ...target, FAKE],
    { env: { ...SERVER_ENV, ...(mode === "local" ? tls : {}), FAKE_LOG: log } },
  );
  servers.push(front);
  return {
    port: front.port,
    log: () => readFileSync(log, "latin1"),
    stop: async () => {
      for (const s of servers) await s.stop();
    },
  };
}

const NNTPLIB = `
import json, nntplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
n = nntplib.NNTP("127.0.0.1", int(sys.argv[1]), readermode=False)
before = sorted(n.getcapabilities())
n.starttls(ctx)
out = {"before": before, "after": sorted(n.getcapabilities()), "version": n.sock.version()}
out["date"] = str(n.date()[1].year)
out["quit"] = n.quit()
print(json.dumps(out))
`;

for (const mode of ["local", "remote"] as const) {
  test(`${mode}: nntplib sees STARTTLS, upgrades, and the server behind TLS offers it no more`, async () => {
    const w = await wrapper([], mode);
    try {
      const r = await run("python3", ["-W", "ignore", "-c", NNTPLIB, String(w.port), pki.ca.cert]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.deepEqual(out["before"], ["AUTHINFO", "READER", "STARTTLS", "VERSION"]);
      assert.deepEqual(out["after"], ["AUTHINFO", "READER", "VERSION"]);
      assert.match(String(out["version"]), /^TLSv1\.3$/);
      assert.equal(out["date"], "2026");
      assert.match(String(out["quit"]), /^205 /);
      // The plaintext server saw CAPABILITIES; the one behind TLS the rest, never STARTTLS.
      assert.equal(
        w.log(),
        "127.0.0.1 CAPABILITIES\n127.0.0.1 CAPABILITIES\n127.0.0.1 DATE\n127.0.0.1 QUIT\n",
      );
    } finally {
      await w.stop();
    }
  });
}

test("openssl s_client -starttls nntp upgrades and verifies the certificate", async () => {
  const w = await wrapper([], "local");
  try {
    const r = await run(
      "openssl",
      [
        ...["s_client", "-starttls", "nntp", "-connect", `127.0.0.1:${w.port}`],
        ...["-CAfile", pki.ca.cert, "-verify_return_error", "-servername", "localhost", "-ign_eof"],
      ],
      { input: "DATE\r\nQUIT\r\n", timeoutMs: 20_000 },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(r.stdout, /^111 20261204000000\r?$/m);
    assert.match(r.stdout, /^205 bye\r?$/m);
  } finally {
    await w.stop();
  }
});

test("-r: AUTHINFO hidden and refused with 483, only CAPABILITIES, MODE READER, QUIT, STARTTLS followed", async () => {
  const w = await wrapper(["-r"], "local");
  try {
    const r = await run("python3", [
      "-c",
      `
import socket
s = socket.create_connection(("127.0.0.1", ${w.port}))
f = s.makefile("rb")
out = [f.readline()]
s.sendall(b"CAPABILITIES\\r\\n")
while True:
    out.append(f.readline())
    if out[-1] == b".\\r\\n":
        break
s.sendall(b"AUTHINFO USER me\\r\\nDATE\\r\\nMODE READER\\r\\nQUIT\\r\\n")
out += f.readlines()
print(b"".join(out).decode(), end="")
`,
    ]);
    assert.equal(
      r.stdout,
      "200 fake.example news ready\r\n101 Capability list:\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n" +
        "483 Encryption or stronger authentication required\r\n" +
        "483 Encryption or stronger authentication required\r\n" +
        "500 what is MODE READER\r\n205 bye\r\n",
    );
    assert.doesNotMatch(w.log(), /AUTHINFO|DATE/);
  } finally {
    await w.stop();
  }
});

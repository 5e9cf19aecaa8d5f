// tlsd with CERTDIR: certbot's live/ layout, a certificate per directory serving the DNS names
// of its subjectAltName, picked up when a directory is added while the server runs.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { servedPem } from "../helpers/tls-client.ts";
import { makePki } from "../helpers/certs.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;

function install(live: string, dir: string, pair: { cert: string; key: string }) {
  // As certbot does it: the directory appears whole (made aside, then renamed in).
  const tmp = join(live, `.${dir}.new`);
  mkdirSync(tmp);
  copyFileSync(pair.cert, join(tmp, "fullchain.pem"));
  copyFileSync(pair.key, join(tmp, "privkey.pem"));
  renameSync(tmp, join(live, dir));
}

async function served(port: number, name: string): Promise<string | undefined> {
  const r = await run(
    "openssl",
    ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", name],
    { input: "" },
  );
  const pem = servedPem(r.stdout);
  return pem ? new X509Certificate(pem).serialNumber : undefined;
}

test("CERTDIR: names from each certificate's SANs; new directories picked up; unknown names refused", async () => {
  const live = join(pki.dir, "live");
  mkdirSync(live);
  const a = pki.server("certdir-a", ["a.test", "www.a.test"]);
  const b = pki.server("certdir-b", ["*.b.test"]);
  install(live, "a.test", a);
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "hi"],
    {
      env: { PATH, CERTDIR: live },
    },
  );
  try {
    const serial = (pem: string) => new X509Certificate(readFileSync(pem)).serialNumber;
    assert.equal(await served(s.port, "a.test"), serial(a.cert));
    assert.equal(await served(s.port, "www.a.test"), serial(a.cert));
    assert.equal(await served(s.port, "x.b.test"), undefined, "no certificate for it yet: refused");
    install(live, "b.test", b);
    const deadline = Date.now() + 15_000;
    let seen = await served(s.port, "x.b.test");
    while (seen === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await served(s.port, "x.b.test");
    }
    assert.equal(seen, serial(b.cert));
  } finally {
    await s.stop();
  }
});

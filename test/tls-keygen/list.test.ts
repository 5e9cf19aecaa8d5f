// tls-keygen list CERTDIR: what a tlsd's CERTDIR holds, a line per certificate, from
// certificates Debian's pebble issued on demand.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { acmeSite } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { ours, run } from "../helpers/programs.ts";
import { sClientVerified } from "../helpers/tls-client.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

const utc = (text: string) => new Date(Date.parse(text)).toISOString().replace(/\.000Z$/, "Z");

test("tls-keygen list: a line per certificate (its end, its renewal by the ACME settings, serial, issuer, names), one being ordered or whose last order failed says so; one that cannot be read is a warning, exit 111", async () => {
  // Certificates live an hour: renewed with a third of that left, 20 minutes before the end.
  const s = await acmeSite(
    ours("tcpserver"),
    { ACME_NAMES: "a.test b.test" },
    { fallback, validitySeconds: 3600 },
  );
  try {
    for (const name of ["a.test", "b.test"]) {
      const r = await sClientVerified(s.port, name, s.rootFile);
      assert.equal(r.code, 0, r.stderr + s.server.log());
    }
    const acme = {
      ACME_DIRECTORY: s.pebble.directory,
      ACME_CAFILE: s.pebble.listenerCa,
      ACME_NAMES: "a.test b.test",
    };
    const list = (env: Record<string, string> = {}) =>
      run(ours("tls-keygen"), ["list", s.cache], { env: { ...process.env, ...env }, input: "" });
    const line = (name: string, renewal: boolean) => {
      const leaf = new X509Certificate(readFileSync(join(s.cache, name, "fullchain.pem")));
      const end = Date.parse(leaf.validTo);
      const renewed = new Date(end - 1_200_000).toISOString().replace(/\.000Z$/, "Z");
      const issuer = /CN=(.*)/.exec(leaf.issuer)?.[1];
      return `${name}: expires ${utc(leaf.validTo)}${renewal ? `, renewed from ${renewed}` : ""}, serial ${leaf.serialNumber.toLowerCase()}, issued by ${issuer}, for DNS:${name}`;
    };
    const plain = await list();
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `${line("a.test", false)}\n${line("b.test", false)}\n`);
    assert.equal(plain.stderr, "");
    // An order of b.test under way (its claim), and a.test's last order failed since.
    writeFileSync(join(s.cache, ".acme", "orders", "b.test"), "token\n");
    mkdirSync(join(s.cache, ".acme", "failures"), { recursive: true });
    writeFileSync(join(s.cache, ".acme", "failures", "a.test"), "no answer from the CA in 10 s\n");
    mkdirSync(join(s.cache, "c.test"));
    writeFileSync(join(s.cache, "c.test", "fullchain.pem"), "not a certificate\n");
    const full = await list(acme);
    assert.equal(full.code, 111, full.stderr);
    assert.equal(
      full.stdout,
      `${line("a.test", true)}, its last order failed: no answer from the CA in 10 s\n` +
        `${line("b.test", true)}, being ordered now\n`,
    );
    assert.match(
      full.stderr,
      /^tls-keygen: warning: c\.test: unable to read \S+c\.test\/fullchain\.pem: /,
    );
    assert.equal(full.stderr.split("\n").length, 2, full.stderr);
    const missing = await run(ours("tls-keygen"), ["list", join(s.cache, "none")], { input: "" });
    assert.equal(missing.code, 111);
    assert.match(missing.stderr, /^tls-keygen: fatal: unable to read CERTDIR \S+none: /);
  } finally {
    await s.stop();
  }
});

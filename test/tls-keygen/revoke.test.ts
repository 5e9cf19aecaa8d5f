// tls-keygen revoke CERTDIR NAME against Debian's pebble: the certificate a tlsd ordered on
// demand is revoked at the CA (by the account that ordered it, or for keyCompromise by the
// certificate's own key) and taken out of the CERTDIR, and the serving tlsd orders a new one,
// with a new key, for the next client; what the CA refuses leaves everything as it was.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { acmeSite } from "../helpers/acme-tlsd.ts";
import type { AcmeSite } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { ours, run } from "../helpers/programs.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

/** tls-keygen revoke of `name` in the site's CERTDIR with the site's ACME settings. */
function revoke(s: AcmeSite, name: string, args: string[] = [], env: Record<string, string> = {}) {
  return run(ours("tls-keygen"), ["revoke", ...args, s.cache, name], {
    env: {
      ...process.env,
      ACME_DIRECTORY: s.pebble.directory,
      ACME_CAFILE: s.pebble.listenerCa,
      ACME_NAMES: "a.test b.test",
      ...env,
    },
    input: "",
  });
}

/** The serial (hex, lowercase) of the certificate the site serves for `name` now. */
async function served(s: AcmeSite, name: string): Promise<string> {
  const r = await sClientVerified(s.port, name, s.rootFile, { showcerts: true });
  assert.equal(r.code, 0, r.stderr + s.server.log());
  return new X509Certificate(servedPem(r.stdout) ?? "").serialNumber.toLowerCase();
}

test("tls-keygen revoke: revoked at the CA (by the account; with --reason keyCompromise by the certificate's own key), taken out of CERTDIR, and the next client gets a new certificate with a new key; exit 0, one line", async () => {
  const s = await acmeSite(ours("tcpserver"), { ACME_NAMES: "a.test b.test" }, { fallback });
  try {
    for (const [name, args, reason, code] of [
      ["a.test", [], "unspecified", 0],
      ["b.test", ["-R", "keyCompromise"], "keyCompromise", 1],
    ] as const) {
      const before = await served(s, name);
      const key = readFileSync(join(s.cache, name, "privkey.pem"), "latin1");
      assert.deepEqual(await s.pebble.certificateStatus(before), { status: "Valid" });
      const r = await revoke(s, name, [...args]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stderr,
        `tls-keygen: info: acme: ${name}: certificate ${before} revoked (${reason}) and taken out of ${s.cache}: the next client orders a new one\n`,
      );
      assert.deepEqual(await s.pebble.certificateStatus(before), {
        status: "Revoked",
        reason: code,
      });
      assert.equal(existsSync(join(s.cache, name)), false);
      // The serving tlsd looks at the CERTDIR again within a second; then its next client
      // waits for a new order.
      let after = before;
      for (let i = 0; i < 20 && after === before; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        after = await served(s, name);
      }
      assert.notEqual(after, before, s.server.log());
      await s.server.waitForLog(
        new RegExp(`^tlsd: info: acme: ordering a certificate for ${name.replace(".", "\\.")}$`),
        2,
      );
      assert.notEqual(readFileSync(join(s.cache, name, "privkey.pem"), "latin1"), key);
    }
  } finally {
    await s.stop();
  }
});

test("tls-keygen revoke: a name with no certificate, one the CA refuses (not one it issued), a reason it does not take, no ACME_DIRECTORY: one line, its status, nothing taken out", async () => {
  const s = await acmeSite(ours("tcpserver"), { ACME_NAMES: "a.test b.test" }, { fallback });
  try {
    const none = await revoke(s, "a.test");
    assert.equal(none.code, 111);
    assert.match(
      none.stderr,
      new RegExp(`^tls-keygen: fatal: no certificate for a\\.test in ${s.cache}: `),
    );
    // A certificate of another CA's, put there by hand.
    mkdirSync(join(s.cache, "b.test"));
    copyFileSync(fallback.cert, join(s.cache, "b.test", "fullchain.pem"));
    copyFileSync(fallback.key, join(s.cache, "b.test", "privkey.pem"));
    const refused = await revoke(s, "b.test");
    assert.equal(refused.code, 111, refused.stderr);
    assert.match(
      refused.stderr,
      /^tls-keygen: fatal: the CA did not revoke b\.test's certificate: /,
    );
    assert.equal(refused.stderr.split("\n").length, 2, refused.stderr);
    assert.equal(existsSync(join(s.cache, "b.test", "fullchain.pem")), true);
    const path = await revoke(s, "../b.test");
    assert.equal(path.code, 100);
    assert.equal(
      path.stderr,
      "tls-keygen: fatal: not a host name, *.name or IP address: '../b.test'\n",
    );
    const reason = await revoke(s, "b.test", ["--reason", "toString"]);
    assert.equal(reason.code, 100);
    assert.equal(
      reason.stderr,
      "tls-keygen: fatal: --reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, not toString\n",
    );
    const unset = await revoke(s, "b.test", [], { ACME_DIRECTORY: "" });
    assert.equal(unset.code, 100);
    assert.equal(
      unset.stderr,
      "tls-keygen: fatal: revoke needs ACME_DIRECTORY and the other ACME_* settings of the tlsd that serves the CERTDIR\n",
    );
  } finally {
    await s.stop();
  }
});

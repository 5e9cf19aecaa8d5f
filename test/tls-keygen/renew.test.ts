// tls-keygen renew CERTDIR against Debian's pebble: the certificates a tlsd ordered on demand
// are renewed when due without a handshake for them, as tlsd would (the same ACME_* settings),
// while that tlsd serves the CERTDIR and answers the CA's tls-alpn-01 for the renewing process
// (from the challenge certificate it writes to CERTDIR/.acme/tls-alpn-01/). Run as root, it
// writes as the CERTDIR's owner.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, readFileSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { acmeSite } from "../helpers/acme-tlsd.ts";
import type { AcmeSite } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { ours, run } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { NOBODY } from "../helpers/supervise.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

const serial = (s: AcmeSite, name: string) =>
  new X509Certificate(readFileSync(join(s.cache, name, "fullchain.pem"))).serialNumber;

/** tls-keygen renew of the site's CERTDIR with the site's ACME settings, `env` added. */
function renew(s: AcmeSite, env: Record<string, string>, args = ["-v"]) {
  return run(ours("tls-keygen"), ["renew", ...args, s.cache], {
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      ACME_DIRECTORY: s.pebble.directory,
      // Where CERTDIR's owner can read it (renew runs as that user).
      ACME_CAFILE: join(s.cache, ".acme-ca.pem"),
      ACME_NAMES: "a.test b.test",
      ...env,
    },
    input: "",
    timeoutMs: 60_000,
  });
}

test("tls-keygen renew: a due certificate is renewed with no handshake for it (the site's tlsd answers the CA) and written as CERTDIR's owner, one not due is left with -v's line, a name no longer on ACME_NAMES is named; exit 0", async () => {
  // Pebble's certificates live 60 s here.
  const s = await acmeSite(
    ours("tcpserver"),
    { ACME_NAMES: "a.test b.test" },
    {
      fallback,
      validitySeconds: 60,
    },
  );
  try {
    for (const name of ["a.test", "b.test"]) {
      const r = await sClientVerified(s.port, name, s.rootFile);
      assert.equal(r.code, 0, r.stderr + s.server.log());
    }
    const before = { a: serial(s, "a.test"), b: serial(s, "b.test") };
    // The CERTDIR of a tlsd that runs as nobody: renew, run as root, writes as that user.
    copyFileSync(s.pebble.listenerCa, join(s.cache, ".acme-ca.pem"));
    chmodSync(join(s.cache, ".acme-ca.pem"), 0o644);
    execFileSync("chown", ["-R", `${NOBODY}:${NOBODY}`, s.cache]);
    // Not due: a third of 60 s left is 20 s from the end.
    const idle = await renew(s, {});
    assert.equal(idle.code, 0, idle.stderr);
    assert.match(idle.stderr, /^tls-keygen: info: acme: a\.test: not due before \d{4}-\d\d-\d\dT/m);
    assert.match(
      idle.stderr,
      new RegExp(
        `^tls-keygen: info: renewing as uid ${NOBODY}, gid ${NOBODY}: CERTDIR's owner$`,
        "m",
      ),
    );
    assert.equal(serial(s, "a.test"), before.a);
    // Due at once when renewal is 60 s before the end; b.test is off the list now.
    const r = await renew(s, { ACME_RENEW_BEFORE: "60", ACME_NAMES: "a.test" }, []);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.match(lines[0] ?? "", /^tls-keygen: info: acme: renewing a\.test \(expires \S+\)$/);
    assert.match(lines[1] ?? "", /^tls-keygen: info: acme: ordering a certificate for a\.test$/);
    assert.match(lines[2] ?? "", /^tls-keygen: info: acme: a\.test: issued in \d+ ms$/);
    assert.deepEqual(lines.slice(3), [
      "tls-keygen: warning: acme: b.test: not renewed: not on ACME_NAMES",
    ]);
    assert.notEqual(serial(s, "a.test"), before.a);
    assert.equal(serial(s, "b.test"), before.b);
    const key = statSync(realpathSync(join(s.cache, "a.test", "privkey.pem")));
    assert.deepEqual([key.uid, key.gid, key.mode & 0o777], [NOBODY, NOBODY, 0o600]);
    // The site serves the new one once it looks at CERTDIR again (within a second).
    let servedSerial = "";
    for (let i = 0; i < 40 && servedSerial !== serial(s, "a.test"); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 250));
      const served = await sClientVerified(s.port, "a.test", s.rootFile, { showcerts: true });
      assert.equal(served.code, 0, served.stderr);
      servedSerial = new X509Certificate(servedPem(served.stdout) ?? "").serialNumber;
    }
    assert.equal(servedSerial, serial(s, "a.test"));
    // A CA that cannot be reached: the order fails in one line, exit 111, nothing replaced.
    const closed = await freePort();
    const now = serial(s, "a.test");
    const failed = await renew(
      s,
      { ACME_RENEW_BEFORE: "60", ACME_DIRECTORY: `https://127.0.0.1:${closed}/dir` },
      [],
    );
    assert.equal(failed.code, 111, failed.stderr);
    assert.match(
      failed.stderr,
      /^tls-keygen: warning: acme: a\.test: order failed: the CA cannot be reached: /m,
    );
    assert.equal(serial(s, "a.test"), now);
  } finally {
    await s.stop();
  }
});

test("tls-keygen renew: without ACME_DIRECTORY, with a configuration tlsd refuses, or with no CERTDIR: one line, its status", async () => {
  const missing = join(scratchDir("renew"), "none");
  for (const [env, dir, code, line] of [
    [
      {},
      missing,
      100,
      "tls-keygen: fatal: renew needs ACME_DIRECTORY and the other ACME_* settings of the tlsd that serves the CERTDIR\n",
    ],
    [
      { ACME_DIRECTORY: "https://127.0.0.1:1/dir" },
      missing,
      100,
      "tls-keygen: fatal: ACME_DIRECTORY needs a name policy: ACME_NAMES (the names that may be ordered), ACME_RESOLVE or ACME_ASK\n",
    ],
    [
      { ACME_DIRECTORY: "https://127.0.0.1:1/dir", ACME_NAMES: "a.test" },
      missing,
      111,
      `tls-keygen: fatal: unable to read CERTDIR ${missing}: file does not exist\n`,
    ],
  ] as const) {
    const r = await run(ours("tls-keygen"), ["renew", dir], {
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env },
      input: "",
    });
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stderr, line);
  }
});

test("tls-keygen renew: six certificates due at once are all renewed (four orders at a time), each its own, exit 0", async () => {
  const names = ["a.test", "b.test", "c.test", "d.test", "e.test", "f.test"];
  const s = await acmeSite(
    ours("tcpserver"),
    { ACME_NAMES: names.join(" "), ACME_RATE: "20" },
    { fallback, validitySeconds: 60 },
  );
  try {
    for (const name of names) {
      const r = await sClientVerified(s.port, name, s.rootFile);
      assert.equal(r.code, 0, r.stderr + s.server.log());
    }
    const before = names.map((name) => serial(s, name));
    copyFileSync(s.pebble.listenerCa, join(s.cache, ".acme-ca.pem"));
    const r = await renew(
      s,
      { ACME_RENEW_BEFORE: "60", ACME_NAMES: names.join(" "), ACME_RATE: "20" },
      [],
    );
    assert.equal(r.code, 0, r.stderr);
    for (const [i, name] of names.entries()) {
      assert.match(
        r.stderr,
        new RegExp(`^tls-keygen: info: acme: ${name.replace(".", "\\.")}: issued in \\d+ ms$`, "m"),
      );
      const now = new X509Certificate(readFileSync(join(s.cache, name, "fullchain.pem")));
      assert.notEqual(now.serialNumber, before[i], name);
      assert.equal(now.checkHost(name), name);
    }
    assert.equal(r.stderr.trim().split("\n").length, 3 * names.length, r.stderr);
  } finally {
    await s.stop();
  }
});

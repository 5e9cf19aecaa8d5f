// Certificates for IP addresses on demand (RFC 8738), from Debian's pebble: a client that
// sends no server name gets one for the address it connected to, where ACME_NAMES lists that
// address, on either TLS engine; the CA's tls-alpn-01 validator names the address by its
// reverse-DNS name, which tlsd answers for it. A client with a name is served as before.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { acmeSite, serveAcmeTlsd } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { startServer } from "../helpers/server.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";
import { addressOfArpaName, arpaName, canonicalAddress } from "../../src/net/ip.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

/** openssl s_client to `address`:port (127.0.0.1 unless said) with no server name, verifying
 * against `ca` a certificate for that address, or for `host` (a failure fails the run): the
 * leaf served. */
async function noName(port: number, ca: string, host?: string, address = "127.0.0.1") {
  const r = await run(
    "openssl",
    [
      ...["s_client", "-connect", `[${address}]:${port}`, "-noservername", "-CAfile", ca],
      ...(host ? ["-verify_hostname", host] : ["-verify_ip", address]),
      ...["-verify_return_error", "-showcerts", "-ign_eof"],
    ],
    { input: "", timeoutMs: 30_000 },
  );
  const pem = servedPem(r.stdout);
  return { ...r, leaf: pem ? new X509Certificate(pem) : undefined };
}

const orders = (log: string) =>
  log.split("\n").filter((l) => l.startsWith("tlsd: info: acme: ordering a certificate for "));

for (const engine of ["native", "node"]) {
  test(`${engine} engine: a client with no server name, to an address ACME_NAMES lists, waits for that address's certificate (validated by tls-alpn-01 under its reverse-DNS name), which verifies; the next is served from CERTDIR; a named client gets its name's`, async () => {
    const s = await acmeSite(
      ours("tcpserver"),
      { ACME_NAMES: "a.test 127.0.0.1", UCSPI_TLS_ENGINE: engine },
      { fallback },
    );
    try {
      const first = await noName(s.port, s.rootFile);
      assert.equal(first.code, 0, first.stderr + s.server.log());
      assert.equal(/^tlsd: info: native TLS engine$/m.test(s.server.log()), engine === "native");
      // No name reached the program.
      assert.match(first.stdout, /^hello $/m);
      assert.equal(first.leaf?.subjectAltName, "IP Address:127.0.0.1");
      const cached = new X509Certificate(readFileSync(join(s.cache, "127.0.0.1", "fullchain.pem")));
      assert.equal(cached.serialNumber, first.leaf?.serialNumber);
      await s.server.waitForLog(/^tlsd: info: acme: tls-alpn-01 for 127\.0\.0\.1: answered$/);
      const again = await noName(s.port, s.rootFile);
      assert.equal(again.leaf?.serialNumber, first.leaf?.serialNumber, again.stderr);
      const named = await sClientVerified(s.port, "a.test", s.rootFile);
      assert.equal(named.code, 0, named.stderr + s.server.log());
      assert.deepEqual(orders(s.server.log()), [
        "tlsd: info: acme: ordering a certificate for 127.0.0.1",
        "tlsd: info: acme: ordering a certificate for a.test",
      ]);
    } finally {
      await s.stop();
    }
  });
}

test("IPv6: a client with no server name to [::1] gets the certificate of ::1 (an address ACME_NAMES names in another spelling), validated at [::1] under its ip6.arpa name", async () => {
  const s = await acmeSite(ours("tcpserver"), { ACME_NAMES: "a.test 0:0::1" }, { fallback });
  // The CA validates ::1 on the same port of [::1]: a tcpserver there, of the same CERTDIR.
  const v6 = await serveAcmeTlsd(
    ours("tcpserver"),
    s.port,
    s.cache,
    {
      ACME_DIRECTORY: s.pebble.directory,
      ACME_CAFILE: s.pebble.listenerCa,
      ACME_NAMES: "a.test 0:0::1",
    },
    { fallback, host: "::1" },
  );
  try {
    const r = await noName(s.port, s.rootFile, undefined, "::1");
    assert.equal(r.code, 0, r.stderr + v6.log());
    assert.equal(r.leaf?.checkIP("::1"), "::1");
    assert.ok(existsSync(join(s.cache, "::1", "fullchain.pem")));
    await v6.waitForLog(/^tlsd: info: acme: tls-alpn-01 for ::1: answered$/);
  } finally {
    await v6.stop();
    await s.stop();
  }
});

test("http-01: an address's certificate validated on the port-80 stand-in (acme-challenge); tls-keygen renew renews it as it renews a name's", async () => {
  const cache = scratchDir("acme-address");
  const web = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "acme-challenge", "-v2", "ucspi-demo", "http"],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTDIR: cache } },
  );
  // Certificates live an hour, and are due an hour before their end: at once, for renew.
  const pebble = await startPebble({
    tlsPort: await freePort(),
    httpPort: web.port,
    validitySeconds: 3600,
  });
  const acme = {
    ACME_DIRECTORY: pebble.directory,
    ACME_CAFILE: pebble.listenerCa,
    ACME_NAMES: "127.0.0.1",
    ACME_CHALLENGE: "http-01",
  };
  const tls = await serveAcmeTlsd(ours("tcpserver"), 0, cache, acme, { fallback });
  try {
    const rootFile = join(cache, ".pebble-root.pem");
    writeFileSync(rootFile, await pebble.root());
    const first = await noName(tls.port, rootFile);
    assert.equal(first.code, 0, first.stderr + tls.log() + web.log());
    assert.equal(first.leaf?.checkIP("127.0.0.1"), "127.0.0.1");
    await web.waitForLog(/^acme-challenge: info: 127\.0\.0\.1: answered [A-Za-z0-9_-]+$/);
    const renewed = await run(ours("tls-keygen"), ["renew", cache], {
      env: { ...process.env, PATH: PATH_WITH_BIN, ...acme, ACME_RENEW_BEFORE: "3600" },
      input: "",
    });
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stderr, /^tls-keygen: info: acme: 127\.0\.0\.1: issued in \d+ ms$/m);
    const now = new X509Certificate(readFileSync(join(cache, "127.0.0.1", "fullchain.pem")));
    assert.notEqual(now.serialNumber, first.leaf?.serialNumber);
    assert.equal(now.checkIP("127.0.0.1"), "127.0.0.1");
  } finally {
    await tls.stop();
    await web.stop();
    pebble.stop();
  }
});

test("an address ACME_NAMES does not list is never ordered: a client with no name gets the default certificate, and so does one whose ACME_ASK says yes to anything", async () => {
  const s = await acmeSite(ours("tcpserver"), { ACME_NAMES: "a.test" }, { fallback });
  try {
    const r = await noName(s.port, pki.ca.cert, "localhost");
    assert.equal(r.code, 0, r.stderr + s.server.log());
    assert.deepEqual(orders(s.server.log()), []);
    assert.equal(existsSync(join(s.cache, "127.0.0.1")), false);
  } finally {
    await s.stop();
  }
  const asked = await acmeSite(ours("tcpserver"), { ACME_ASK: "true" }, { fallback });
  try {
    const r = await noName(asked.port, pki.ca.cert, "localhost");
    assert.equal(r.code, 0, r.stderr + asked.server.log());
    assert.deepEqual(orders(asked.server.log()), []);
  } finally {
    await asked.stop();
  }
});

test("reverse-DNS names: an address's (IPv4, IPv6) is read back as that address; any other name is none", () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join("."));
  const v6 = fc
    .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
    .map((g) => g.map((n) => n.toString(16)).join(":"));
  fc.assert(
    fc.property(fc.oneof(v4, v6), (address) => {
      const canonical = canonicalAddress(address);
      assert.ok(canonical !== undefined, address);
      const arpa = arpaName(canonical) ?? "";
      assert.equal(addressOfArpaName(arpa), canonical);
      assert.equal(addressOfArpaName(`${arpa.toUpperCase()}.`), canonical);
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (name) => {
      const address = addressOfArpaName(name);
      if (address !== undefined)
        assert.equal(arpaName(address), name.toLowerCase().replace(/\.$/, ""), name);
    }),
    { numRuns: 300 },
  );
  assert.equal(arpaName("192.0.2.7"), "7.2.0.192.in-addr.arpa");
  assert.equal(
    arpaName("2001:db8::1"),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
  );
  for (const name of [
    "7.2.0.192.in-addr.arpa.x",
    "07.2.0.192.in-addr.arpa",
    "256.2.0.192.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "a.test",
    "in-addr.arpa",
    "",
  ])
    assert.equal(addressOfArpaName(name), undefined, name);
});

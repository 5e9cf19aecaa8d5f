// testssl.sh (Debian's) against tlsd in-process under our tcpserver, with an RSA 2048
// certificate, in one scan of every check group that is about the TLS layer: protocols, cipher
// lists, forward secrecy, the server's cipher order, renegotiation and every vulnerability
// check (ROBOT, DROWN and FREAK have something to look for with an RSA key; with ECDSA they
// would pass by default). tlsd has no finding worse than OK or INFO (the certificate's own
// findings aside: a test certificate). That bar is stricter than stunnel's findings: stunnel4
// with its defaults, scanned the same way, has a LOW and a HIGH (docs/tlsd.md); a comparison
// with its scan, which this test made once, could not fail where this one passes, so it costs
// no scan any more.
//
// One scan, not more: testssl.sh costs some 13 s of CPU before its first connection (over a
// thousand forks of its bash and 650 programs run, measured on this project's 2-core CI kind,
// where fork is dear), and the scans are a sixth of the suite's CPU. An ECDSA certificate
// serves from the same engine and the same cipher list (its TLS 1.2 suites are the ECDSA
// halves of the pairs); tlsd as a process of its own, spawned per connection by djb's
// tcpserver, is the same stage (test/tlsd/stress.test.ts and tlsd.test.ts run it so).
//
// The two scans (this one and the wrapper's) are in test/scans/, not beside the programs' other
// tests: node --test starts files in the order of their names, and these, among the longest of
// the suite, started last under test/tlsd/ and test/starttls-wrapper/ and ran on alone at its
// end.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { TLS12_AND_13, assertScan, testssl } from "../helpers/testssl.ts";
import { scratchDir } from "../helpers/scratch.ts";

const dir = scratchDir("testssl");

/** A self-signed RSA 2048 pair for localhost (what ROBOT and RSA key transport are about). */
function rsaPair(): { cert: string; key: string } {
  const cert = join(dir, "rsa.pem");
  const key = join(dir, "rsa.key");
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
      ...["-keyout", key, "-out", cert, "-subj", "/CN=localhost"],
      ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return { cert, key };
}

/** The checks that must be in every scan (a scan cut short must not pass): what each must say
 * of tlsd. */
const CIPHERS: Record<string, RegExp> = {
  SSLv2: /^not offered/,
  ...TLS12_AND_13,
  cipherlist_NULL: /^not offered/,
  cipherlist_aNULL: /^not offered/,
  cipherlist_EXPORT: /^not offered/,
  cipherlist_LOW: /^not offered/,
  cipherlist_3DES_IDEA: /^not offered/,
  cipherlist_AVERAGE: /^not offered/,
  cipherlist_STRONG: /^offered/,
  PFS: /^offered/,
  cipher_order: /^server$/,
  // Every TLS 1.2 suite has forward secrecy (ECDHE).
  cipherorder_TLSv1_2: /^(ECDHE-\S+)( ECDHE-\S+)*$/,
};

/** What the vulnerability checks (-U) must say of tlsd, in the scan that makes them. */
const VULNERABILITIES: Record<string, RegExp> = {
  secure_client_renego: /^not vulnerable/,
  heartbleed: /^not vulnerable/,
  CCS: /^not vulnerable/,
  ROBOT: /^not vulnerable/,
  POODLE_SSL: /^not vulnerable/,
  fallback_SCSV: /./,
  SWEET32: /^not vulnerable/,
  FREAK: /^not vulnerable/,
  DROWN: /^not vulnerable/,
  LOGJAM: /^not vulnerable/,
  BEAST: /^not vulnerable/,
  LUCKY13: /^not vulnerable/,
  RC4: /^not vulnerable/,
};

test(
  "testssl.sh -p -s -f -P -U: tlsd in-process (RSA) has no finding worse than OK or INFO",
  { timeout: 600_000 },
  async () => {
    const rsa = rsaPair();
    const server = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"],
      {
        env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: rsa.cert, KEYFILE: rsa.key },
      },
    );
    try {
      const found = await testssl("tlsd-rsa", server.port, {
        dir,
        ca: rsa.cert,
        checks: ["-p", "-s", "-f", "-P", "-U"],
        // A few thousand forks (-s and -U most): past a minute where fork is dear.
        timeoutMs: 540_000,
      });
      assertScan(found, { ...CIPHERS, ...VULNERABILITIES });
      assert.doesNotMatch(server.log(), /internal error/);
    } finally {
      await server.stop();
    }
  },
);

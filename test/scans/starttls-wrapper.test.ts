// testssl.sh's own STARTTLS client (-t PROTOCOL: its dialogue over bash's /dev/tcp, then its
// handshakes and openssl's) against starttls-wrapper in front of a plaintext server: the
// upgrade is found and made, and what it finds of the TLS behind it (protocols, the server's
// cipher order, renegotiation) is OK or INFO, as for tlsd alone (test/scans/tlsd.test.ts).
//
// Two dialogues, one of each family: SMTP (server-first lines) and PostgreSQL (binary, the
// client first). What comes after the upgrade is the same TLS stage for every protocol. A scan
// of the protocols alone (-p) would be mostly testssl.sh's own start-up, some 13 s of CPU
// before its first connection where fork is dear (over a thousand forks of its bash, 650
// programs run): every protocol's upgrade is made by real clients in the other tests (openssl
// s_client -starttls for each of ours that it knows, slixmpp, psql, mariadb, ldapsearch,
// sieve-connect, swaks, ...).
import assert from "node:assert/strict";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { serverBehind } from "../helpers/servers-behind.ts";
import { TLS12_AND_13, assertScan, testssl } from "../helpers/testssl.ts";
import { scratchDir } from "../helpers/scratch.ts";

/** What every scan must say: the upgrade was made (a scan whose STARTTLS failed has no
 * protocols), TLS 1.2 and 1.3 only, the server's order, no client renegotiation. */
const EXPECTED: Record<string, RegExp> = {
  service: /./,
  ...TLS12_AND_13,
  cipher_order: /^server$/,
  secure_client_renego: /^not vulnerable/,
};

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
const dir = scratchDir("testssl-starttls");

for (const protocol of ["smtp", "postgres"]) {
  test(
    `testssl.sh -t ${protocol} -p -P -R through starttls-wrapper -p ${protocol}: the upgrade is made, and the TLS behind it has no finding worse than OK or INFO`,
    // A scan forks for every probe: past a minute where fork is dear.
    { timeout: 240_000 },
    async () => {
      const server = await startServer(
        ours("tcpserver"),
        [
          ...["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol],
          ...serverBehind(protocol, true),
        ],
        { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key } },
      );
      try {
        const found = await testssl(protocol, server.port, {
          dir,
          ca: pki.ca.cert,
          checks: ["-p", "-P", "-R"],
          starttls: protocol,
        });
        assertScan(found, EXPECTED);
        assert.doesNotMatch(server.log(), /internal error/);
      } finally {
        await server.stop();
      }
    },
  );
}

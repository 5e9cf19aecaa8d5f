// testssl.sh's own STARTTLS client (-t PROTOCOL: its dialogue over bash's /dev/tcp, then its
// handshakes and openssl's) against starttls-wrapper in front of a plaintext server: the
// upgrade is found and made, and what it finds of the TLS behind it (protocols; for some, the
// server's cipher order and renegotiation) is OK or INFO, as for tlsd alone. The protocols are
// split over two test files (test/starttls-wrapper/testssl-*.test.ts): a scan is half a minute
// of forks where fork is dear, and two files run side by side where one would run them all in a
// row.
import assert from "node:assert/strict";
import { test } from "node:test";
import { makePki } from "./certs.ts";
import { PATH_WITH_BIN, ours } from "./programs.ts";
import { startServer } from "./server.ts";
import { serverBehind } from "./servers-behind.ts";
import { summary, testssl, worseThanOk } from "./testssl.ts";
import { scratchDir } from "./scratch.ts";

/** What every scan must say: the upgrade was made (a scan whose STARTTLS failed has no
 * protocols), and TLS 1.2 and 1.3 only. */
const UPGRADED: Record<string, RegExp> = {
  service: /./,
  SSLv3: /^not offered/,
  TLS1: /^not offered/,
  TLS1_1: /^not offered/,
  TLS1_2: /^offered/,
  TLS1_3: /^offered/,
};

/** What a full scan says besides: the server's order, no client renegotiation. */
const FULL: Record<string, RegExp> = {
  ...UPGRADED,
  cipher_order: /^server$/,
  secure_client_renego: /^not vulnerable/,
};

/** A scan forks for every probe: on a machine where fork is dear one takes past a minute (87 s
 * each, seen), as tlsd's own scan does (test/tlsd/testssl.test.ts). */
const SCAN_TIMEOUT = { timeout: 240_000 };

/** One test per protocol asked for. The callers take one of each shape of dialogue in
 * testssl.sh 3.0.8's STARTTLS list: server-first lines (smtp; lmtp, pop3 and nntp have the same
 * shape and their own openssl s_client -starttls tests), tagged lines (imap), XML (xmpp), binary
 * client-first (postgres) and server-first (mysql). It has no sieve, and its LDAP scan, even with
 * --ssl-native, stops after the protocol checks. A scan costs 15 s of CPU here, over 900
 * programs run, most of them testssl.sh's own awk, sed and tr. The protocols in `full` are also
 * scanned for the server's cipher order and renegotiation (-P, -R: a few dozen more upgrades
 * and handshakes each); the rest for the upgrade and the protocols offered (-p). What comes
 * after the upgrade is the same TLS stage for every protocol, so one server-first text
 * dialogue and one client-first binary one carry the order and renegotiation checks. */
export function starttlsScans(protocols: string[], full: string[]): void {
  const unknown = full.filter((p) => !protocols.includes(p));
  if (unknown.length) throw new Error(`full scans asked for protocols not scanned: ${unknown}`);
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
  const dir = scratchDir("testssl-starttls");

  for (const protocol of protocols) {
    const isFull = full.includes(protocol);
    const checks = isFull ? ["-p", "-P", "-R"] : ["-p"];
    test(
      `testssl.sh -t ${protocol} ${checks.join(" ")} through starttls-wrapper -p ${protocol}: the upgrade is made, and the TLS behind it has no finding worse than OK or INFO`,
      SCAN_TIMEOUT,
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
            checks: [...checks, ...(protocol === "xmpp" ? ["--xmpphost", "example.org"] : [])],
            starttls: protocol,
          });
          for (const [id, pattern] of Object.entries(isFull ? FULL : UPGRADED))
            assert.match(
              found.get(id)?.finding ?? "(no such check)",
              pattern,
              `${id}:\n${summary(found)}`,
            );
          assert.deepEqual(worseThanOk(found), [], summary(found));
          assert.doesNotMatch(server.log(), /internal error/);
        } finally {
          await server.stop();
        }
      },
    );
  }
}

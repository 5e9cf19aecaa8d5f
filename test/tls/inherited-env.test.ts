// Session variables that tlsd or tlsc inherit (an outer layer's, or set by hand) never reach
// the program as this session's: with or without --mod-ssl, before TLS (-n) or after, every one
// the session has no value for is unset. A program written for mod_ssl that reads
// SSL_CLIENT_S_DN_CN or SSL_CLIENT_VERIFY must never read a forged one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, TLSC_UNDER, TLSD_UNDER, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);

/** Values no session of ours would set, on names a session may. */
const FORGED = {
  SSL_PROTOCOL: "forged",
  SSL_CLIENT_S_DN: "/CN=forged",
  SSL_CLIENT_S_DN_CN: "forged",
  SSL_CLIENT_VERIFY: "forged",
  SSL_CLIENT_CERT: "forged",
  SSL_SERVER_S_DN_CN: "forged",
  SSL_SESSION_RESUMED: "forged",
  SSL_VERSION_INTERFACE: "forged",
  SSL_CIPHER_USEKEYSIZE: "forged",
  SSL_PEER_CERT_SUBJECT: "forged",
  SSL_ALPN_PROTOCOL: "forged",
  SSLREMOTEIP: "forged",
};
const DUMP = ["sh", "-c", "env | grep '^SSL' | sort; echo done"];

function forgedIn(output: string): string[] {
  return output
    .split("\n")
    .filter((line) => line.endsWith("=forged") || line.includes("=/CN=forged"));
}

for (const [who, tcpserver] of TLSD_UNDER) {
  for (const flags of [[], ["--mod-ssl"]]) {
    test(`${who}: tlsd ${flags.join(" ") || "(s6 names only)"}: no inherited session variable reaches the program`, async () => {
      const s = await startServer(
        tcpserver,
        ["-RHl0", "127.0.0.1", "0", "tlsd", ...flags, ...DUMP],
        // The launcher's list of the fds it had to hold (launcher.c) is its own word to the
        // program it starts: one inherited (here: "fd 0 was closed") is never taken for it.
        {
          env: {
            PATH,
            CERTFILE: server.cert,
            KEYFILE: server.key,
            ...FORGED,
            UCSPI_FD_NOT_OPEN: "0",
          },
        },
      );
      try {
        const r = await run(
          "openssl",
          ["s_client", "-quiet", "-connect", `127.0.0.1:${s.port}`, "-CAfile", pki.ca.cert],
          { input: "" },
        );
        assert.match(r.stdout, /^SSL_PROTOCOL=TLSv1\.3$/m);
        assert.match(r.stdout, /done\n$/);
        assert.deepEqual(forgedIn(r.stdout), []);
        if (flags.length > 0) {
          // The session's own values, where it has them.
          assert.match(r.stdout, /^SSL_CLIENT_VERIFY=NONE$/m);
          assert.match(r.stdout, /^SSL_SESSION_RESUMED=Initial$/m);
          assert.match(r.stdout, /^SSLREMOTEIP=127\.0\.0\.1$/m);
        }
      } finally {
        await s.stop();
      }
    });
  }

  test(`${who}: tlsd -n --mod-ssl: before TLS, only the address set, no inherited session variable`, async () => {
    const s = await startServer(
      tcpserver,
      ["-RHl0", "127.0.0.1", "0", "tlsd", "-n", "--mod-ssl", ...DUMP],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, ...FORGED } },
    );
    try {
      const out = await talk(s.port, "");
      assert.match(out, /^SSLREMOTEIP=127\.0\.0\.1$/m);
      assert.match(out, /done\n$/);
      assert.deepEqual(forgedIn(out), []);
    } finally {
      await s.stop();
    }
  });
}

for (const [who, tcpclient] of TLSC_UNDER) {
  test(`${who}: tlsc: no inherited session variable reaches the program`, async () => {
    const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
      env: { PATH, CERTFILE: server.cert, KEYFILE: server.key },
    });
    try {
      const r = await run(tcpclient, ["-RHl0", "127.0.0.1", String(s.port), "tlsc", ...DUMP], {
        env: { PATH, CAFILE: pki.ca.cert, ...FORGED },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^SSL_PROTOCOL=TLSv1\.3$/m);
      assert.deepEqual(forgedIn(r.stdout), []);
    } finally {
      await s.stop();
    }
  });
}

// SSL_TLS_SNI_SERVERNAME of a resumed session is the one a full handshake tells: the client's
// name, on node:tls and on the native engine alike, in TLS 1.2 and 1.3, whether the store
// chooses by name (-k 1 with a named pair) or not (-k 0). OpenSSL keeps a TLS 1.2 session's name
// only when a servername callback accepted it. Real clients: openssl s_client (-sess_out,
// -sess_in).
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientSession } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("resumed-sni");
const server = pki.server("localhost", ["localhost"]);
const PROGRAM = ["/bin/sh", "-c", 'echo "sni=${SSL_TLS_SNI_SERVERNAME-unset}"'];
const LEVELS = {
  "-k 0": { flags: ["-k", "0"], env: {} },
  "-k 1, a named pair": {
    flags: ["-k", "1"],
    env: { "CERTFILE:localhost": server.cert, "KEYFILE:localhost": server.key },
  },
};

let files = 0;

for (const engine of ["node", "native"]) {
  for (const [level, { flags, env }] of Object.entries(LEVELS)) {
    for (const version of ["-tls1_2", "-tls1_3"]) {
      test(`--engine ${engine}, ${level}, ${version}: a resumed session tells the client's name as a full one does`, async () => {
        const s = await startServer(
          ours("tcpserver"),
          ["-RHl0", "127.0.0.1", "0", "tlsd", "--engine", engine, ...flags, ...PROGRAM],
          {
            env: {
              PATH: `${BIN}:/usr/bin:/bin`,
              CERTFILE: server.cert,
              KEYFILE: server.key,
              ...env,
            },
          },
        );
        try {
          const session = (resume: boolean, name: string | false) => {
            const file = join(dir, `session-${files}`);
            const saveTo = join(dir, `session-${++files}`);
            return sClientSession(s.port, pki.ca.cert, file, version, resume, saveTo, name);
          };
          const told = (out: string) =>
            `${/^(New|Reused)/m.exec(out)?.[1]} ${/^sni=.*$/m.exec(out)?.[0]}`;
          assert.equal(told(await session(false, "localhost")), "New sni=localhost");
          assert.equal(told(await session(true, "localhost")), "Reused sni=localhost");
          assert.equal(told(await session(false, false)), "New sni=unset");
          assert.equal(told(await session(true, false)), "Reused sni=unset");
        } finally {
          await s.stop();
        }
      });
    }
  }
}

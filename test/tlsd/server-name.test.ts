// What tlsd does with the client's server name (SNI) beyond choosing a certificate: a name that
// is not a host name (a control character, an escape sequence) never reaches its log or the
// program's SSL_TLS_SNI_SERVERNAME; and a client that sends no name where there is no default
// certificate is told as that, not as OpenSSL's "no suitable signature algorithm".
import assert from "node:assert/strict";
import { connect } from "node:tls";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { BIN, TLSD_UNDER, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;
const server = pki.server("localhost", ["localhost"]);
const PROGRAM = ["sh", "-c", 'echo "sni=$SSL_TLS_SNI_SERVERNAME"'];
const EVIL = "evil\x1b[31m.example\r\ntlsd: forged";

/** A Node TLS client sending `servername` as it is; resolves with what it read, or its error. */
async function clientWithName(port: number, servername: string | undefined): Promise<string> {
  const socket = connect({
    port,
    host: "127.0.0.1",
    rejectUnauthorized: false,
    ...(servername === undefined ? {} : { servername }),
  });
  socket.setEncoding("latin1");
  let got = "";
  socket.on("data", (text: string) => (got += text));
  socket.on("error", (error) => (got += `error: ${error.message}`));
  // Nothing to say: the end once the handshake is done, and then read until the server's end.
  socket.once("secureConnect", () => socket.end());
  await new Promise((resolve) => socket.once("close", resolve));
  return got;
}

for (const [who, tcpserver] of TLSD_UNDER) {
  for (const level of ["0", "1"]) {
    test(`${who}: -k ${level}: a server name with control characters ends the session, and no byte of it is logged`, async () => {
      const s = await startServer(
        tcpserver,
        ["-RHl0", "127.0.0.1", "0", "tlsd", "-k", level, ...PROGRAM],
        {
          env: {
            PATH,
            CERTFILE: server.cert,
            KEYFILE: server.key,
            "CERTFILE:localhost": server.cert,
            "KEYFILE:localhost": server.key,
          },
        },
      );
      try {
        const bad = await clientWithName(s.port, EVIL);
        assert.doesNotMatch(bad, /sni=/);
        const [line] = await s.waitForLog(/server name/);
        assert.match(
          line ?? "",
          /^tlsd: fatal: 127\.0\.0\.1: (TLS handshake failed: )?the client's server name \(SNI\) is not a host name$/,
        );
        assert.doesNotMatch(s.log(), /evil|forged|\x1b/);
        // A host name is served as before, and told to the program.
        assert.equal(await clientWithName(s.port, "localhost"), "sni=localhost\n");
      } finally {
        await s.stop();
      }
    });
  }
}

test("-k 2 with no default certificate: a client without a name is told as that, and counted as no_certificate", async () => {
  const metricsPort = await freePort();
  const s = await startServer(
    ours("tcpserver"),
    [
      ...["-RHl0", "--metrics", `127.0.0.1:${metricsPort}`, "127.0.0.1", "0"],
      ...["tlsd", "-k", "2", ...PROGRAM],
    ],
    { env: { PATH, "CERTFILE:localhost": server.cert, "KEYFILE:localhost": server.key } },
  );
  try {
    const r = await run(
      "openssl",
      ["s_client", "-connect", `127.0.0.1:${s.port}`, "-noservername"],
      {
        input: "",
      },
    );
    assert.notEqual(r.code, 0);
    const [line] = await s.waitForLog(/server name/);
    assert.equal(
      line,
      "tlsd: fatal: 127.0.0.1: TLS handshake failed: the client sent no server name (SNI), and there is no default certificate (CERTFILE)",
    );
    const scrape = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(scrape, /^tlsd_handshakes_total\{[^}]*reason="no_certificate"[^}]*\} 1$/m);
    assert.doesNotMatch(scrape, /reason="no_shared_algorithms"/);
    // With the name, the certificate is there.
    assert.equal(await clientWithName(s.port, "localhost"), "sni=localhost\n");
  } finally {
    await s.stop();
  }
});

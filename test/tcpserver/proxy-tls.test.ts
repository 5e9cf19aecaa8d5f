// tcpserver --proxy behind a TLS-terminating proxy: what the PROXY v2 header says of the
// client's session (PP2_TYPE_SSL, AUTHORITY, ALPN) reaches the program in tlsd's names, from
// haproxy's send-proxy-v2 with proxy-v2-options ssl,cert-cn,ssl-cipher,authority and from our
// own `tlsd tcpforward --proxy`; a header that says nothing of TLS unsets every inherited one.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { freePort, isListening } from "../helpers/interop.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";

const pki = makePki();
const site = pki.server("localhost", ["localhost"]);
const client = pki.withSubject("zoe", "/O=Example/CN=Zoë");

const REPORT =
  'echo "$SSL_PROTOCOL|$SSL_CIPHER|$SSL_TLS_SNI_SERVERNAME|$SSL_ALPN_PROTOCOL|$SSL_CLIENT_VERIFY|$SSL_CLIENT_S_DN_CN|${SSL_PEER_CERT_SUBJECT-unset}"';

/** Our tcpserver --proxy running REPORT, with session variables inherited that must not pass
 * for the client's. */
function reader() {
  return startServer(
    ours("tcpserver"),
    ["-RHl0", "--proxy", "127.0.0.1", "0", "sh", "-c", REPORT],
    {
      env: {
        PATH: PATH_WITH_BIN,
        SSL_PROTOCOL: "inherited",
        SSL_CLIENT_VERIFY: "SUCCESS",
        SSL_PEER_CERT_SUBJECT: "CN=inherited",
      },
    },
  );
}

/** openssl s_client through a TLS front on `port`: what the program printed, as UTF-8. */
async function through(port: number, args: string[]): Promise<string> {
  const extra = ["-servername", "localhost", "-verify_return_error", ...args];
  const out = await answerWithCertificate(port, pki.ca.cert, undefined, extra);
  return Buffer.from(out, "latin1").toString("utf8");
}

test("behind haproxy (send-proxy-v2, ssl,cert-cn,ssl-cipher,authority): the program gets the TLS version, cipher, SNI, ALPN and a verified client certificate's CN, and no inherited subject", async () => {
  const back = await reader();
  const port = await freePort();
  const crt = join(pki.dir, "haproxy-site.pem");
  writeFileSync(crt, Buffer.concat([readFileSync(site.cert), readFileSync(site.key)]));
  const config = join(pki.dir, "haproxy.cfg");
  writeFileSync(
    config,
    [
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 20s",
      "  timeout server 20s",
      "frontend front",
      `  bind 127.0.0.1:${port} ssl crt ${crt} ca-file ${pki.ca.cert} verify optional alpn h2,http/1.1`,
      "  default_backend back",
      "backend back",
      `  server reader 127.0.0.1:${back.port} send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,authority`,
      "",
    ].join("\n"),
  );
  const haproxy = spawn("haproxy", ["-db", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  haproxy.stderr.on("data", (b: Buffer) => (log += b.toString()));
  const exited = once(haproxy, "exit");
  try {
    await waitFor(
      () => (isListening(port) ? true : haproxy.exitCode === null ? undefined : false),
      15_000,
      () => `haproxy did not start:\n${log}`,
    );
    assert.equal(
      await through(port, ["-tls1_3", "-alpn", "h2", "-cert", client.cert, "-key", client.key]),
      "TLSv1.3|TLS_AES_256_GCM_SHA384|localhost|h2|SUCCESS|Zoë|unset\n",
    );
    assert.equal(
      await through(port, ["-tls1_2"]),
      "TLSv1.2|ECDHE-ECDSA-AES256-GCM-SHA384|localhost||NONE||unset\n",
    );
  } finally {
    haproxy.kill();
    await exited;
    await back.stop();
  }
});

test("behind our own tlsd tcpforward --proxy the same; a header from a plaintext chain unsets every inherited session variable", async () => {
  const back = await reader();
  const env = {
    PATH: PATH_WITH_BIN,
    CERTFILE: site.cert,
    KEYFILE: site.key,
    CAFILE: pki.ca.cert,
  };
  const front = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      "tlsd",
      "-Y",
      "--alpn",
      "h2",
      "tcpforward",
      "--proxy",
      "127.0.0.1",
      String(back.port),
    ],
    { env },
  );
  const plain = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tcpforward", "--proxy", "127.0.0.1", String(back.port)],
    { env },
  );
  try {
    assert.equal(
      await through(front.port, [
        "-tls1_3",
        "-alpn",
        "h2",
        "-cert",
        client.cert,
        "-key",
        client.key,
      ]),
      "TLSv1.3|TLS_AES_256_GCM_SHA384|localhost|h2|SUCCESS|Zoë|unset\n",
    );
    assert.equal(await talk(plain.port), "||||||unset\n");
  } finally {
    await front.stop();
    await plain.stop();
    await back.stop();
  }
});

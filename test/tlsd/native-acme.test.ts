// Certificates on demand on tlsd's native TLS engine: the ClientHello held in the engine
// (its client-hello callback, SSL_CLIENT_HELLO_RETRY) while the certificate is ordered from
// Debian's pebble, then resumed (tlsResume); the CA's tls-alpn-01 validator answered by the
// engine; ACME_WAIT's timeout and a name the policy refuses as on the node:tls path; -K bounds
// the handshake, not the order.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientVerified } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

const ENGINE = /^tlsd: info: native TLS engine$/;

/** tcpserver running tlsd --engine native (default certificate: localhost), CERTDIR `cache`. */
function serveTlsd(
  port: number,
  cache: string,
  env: Record<string, string | undefined>,
  flags: string[] = [],
) {
  const all: Record<string, string | undefined> = {
    PATH: PATH_WITH_BIN,
    CERTFILE: fallback.cert,
    KEYFILE: fallback.key,
    CERTDIR: cache,
    ...env,
  };
  return startServer(
    ours("tcpserver"),
    [
      "-vRHl0",
      "127.0.0.1",
      String(port),
      "tlsd",
      "--engine",
      "native",
      "-v2",
      ...flags,
      "sh",
      "-c",
      'echo "hello $SSL_TLS_SNI_SERVERNAME"',
    ],
    // An undefined value leaves the variable out (no default certificate).
    { env: Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) },
  );
}

const sClient = (port: number, name: string, ca: string, verify = name) =>
  sClientVerified(port, name, ca, { verify });

/** tlsd on the engine with pebble as its CA for a.test (env added): `body` gets the port, the
 * server, and the file of pebble's root; everything is stopped and removed after. */
async function withPebble(
  env: Record<string, string | undefined>,
  body: (port: number, s: Awaited<ReturnType<typeof serveTlsd>>, root: string) => Promise<void>,
) {
  const port = await freePort();
  const pebble = await startPebble({ tlsPort: port });
  const cache = scratchDir("native-acme");
  const s = await serveTlsd(port, cache, {
    ACME_DIRECTORY: pebble.directory,
    ACME_CAFILE: pebble.listenerCa,
    ACME_NAMES: "a.test",
    ...env,
  });
  try {
    const root = join(cache, ".pebble-root.pem");
    writeFileSync(root, await pebble.root());
    await body(port, s, root);
  } finally {
    await s.stop();
    pebble.stop();
  }
}

test("the engine holds the first ClientHello for a listed name while pebble issues, answers pebble's validator itself, then serves the new certificate; a name outside the list gets the default one", async () => {
  await withPebble({}, async (port, s, root) => {
    const first = await sClient(port, "a.test", root);
    assert.equal(first.code, 0, first.stderr + s.log());
    assert.match(first.stdout, /^hello a\.test$/m);
    await s.waitForLog(/^tlsd: info: acme: tls-alpn-01 for a\.test: answered$/);
    const again = await sClient(port, "a.test", root);
    assert.equal(again.code, 0, again.stderr);
    const other = await sClient(port, "evil.test", pki.ca.cert, "localhost");
    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stdout, /^hello evil\.test$/m);
    assert.doesNotMatch(s.log(), /not the native engine|timed out/);
    // The three clients and at least one validator connection, each on the engine.
    await s.waitForLog(ENGINE, 4);
  });
});

test("no certificate at all before the first order (CERTDIR empty, no CERTFILE, as tls-everywhere runs it): the held ClientHello's name chooses the new certificate; a name outside the list is refused with one line", async () => {
  await withPebble(
    {
      CERTFILE: undefined,
      KEYFILE: undefined,
    },
    async (port, s, root) => {
      const first = await sClient(port, "a.test", root);
      assert.equal(first.code, 0, first.stderr + s.log());
      assert.match(first.stdout, /^hello a\.test$/m);
      const other = await sClient(port, "evil.test", root);
      assert.notEqual(other.code, 0);
      await s.waitForLog(/^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: .*evil\.test/);
      assert.doesNotMatch(s.log(), /not the native engine|no certificate$/);
    },
  );
});

test("a CA that never answers: the held ClientHello is refused after ACME_WAIT, with the node:tls path's lines, not cut by -K; other clients go on meanwhile", async () => {
  const held = new Set<Socket>();
  const silent = createServer((socket) => held.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const caPort = (silent.address() as { port: number }).port;
  const port = await freePort();
  const cache = scratchDir("native-acme");
  const s = await serveTlsd(
    port,
    cache,
    {
      ACME_DIRECTORY: `https://127.0.0.1:${caPort}/dir`,
      ACME_NAMES: "a.test",
      ACME_WAIT: "2500",
    },
    // -K (ms) is shorter than ACME_WAIT: it bounds the handshake, not the order.
    ["-K", "1000"],
  );
  try {
    let settled = false;
    const waiting = sClient(port, "a.test", fallback.cert).finally(() => (settled = true));
    await s.waitForLog(/^tlsd: info: acme: ordering a certificate for a\.test$/);
    const other = await sClient(port, "localhost", pki.ca.cert);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(settled, false, "a.test still waits");
    const r = await waiting;
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stdout, /BEGIN CERTIFICATE|^hello/m);
    await s.waitForLog(/^tlsd: warning: acme: a\.test: no certificate after 2500 ms; refused$/);
    await s.waitForLog(
      /^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: no certificate for a\.test yet$/,
    );
    assert.doesNotMatch(s.log(), /not the native engine|timed out/);
    await s.waitForLog(ENGINE, 2);
  } finally {
    await s.stop();
    for (const socket of held) socket.destroy();
    silent.close();
  }
});

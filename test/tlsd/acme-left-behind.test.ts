// What an order of a tlsd killed outright (SIGKILL) had set up for the CA's validator stays until
// the next order of the name, which takes it down before it begins: an http-01 answer
// (acme-challenge would serve it for ever) and a tls-alpn-01 certificate, with pebble validating
// at a stand-in that holds the validator's connection while the test kills the tlsd, and then
// lets the next ones through. dns-01's record: acme-dns.test.ts.
import assert from "node:assert/strict";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { ServerResponse } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { serveAcmeTlsd } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import { alive, childrenOf } from "../helpers/procs.ts";
import { djb } from "../helpers/programs.ts";
import { waitFor } from "../helpers/server.ts";
import { sClientVerified } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const fallback = makePki().server("localhost", ["localhost", "127.0.0.1"]);

/** Where pebble's validator connects: it holds what comes while `holding`, and lets what comes
 * after through; release() ends that (the killed order's validation fails) and the holding. */
interface StandIn {
  port: number;
  held(): number;
  release(): void;
  close(): void;
}

/** tlsd under djb's tcpserver (one per connection) orders a.test from pebble, validating at
 * `standIn` (`validator`: its port in pebble's options); once the validator is held, the tlsd
 * ordering is killed outright: what its order left in `left` (one file) stays until the next
 * order, which says it removed it (`what`) and is then issued. */
async function killedThenOrderedAgain(o: {
  cache: string;
  tlsPort: number;
  standIn: StandIn;
  validator: "httpPort" | "tlsPort";
  env: Record<string, string>;
  left: string;
  what: string;
}): Promise<void> {
  const other = await freePort();
  const pebble = await startPebble(
    o.validator === "httpPort"
      ? { tlsPort: other, httpPort: o.standIn.port }
      : { tlsPort: o.standIn.port },
  );
  const server = await serveAcmeTlsd(
    djb("tcpserver"),
    o.tlsPort,
    o.cache,
    {
      ACME_DIRECTORY: pebble.directory,
      ACME_CAFILE: pebble.listenerCa,
      ACME_NAMES: "a.test",
      ...o.env,
    },
    { fallback },
  );
  let tlsd = 0;
  try {
    const rootFile = join(o.cache, ".pebble-root.pem");
    writeFileSync(rootFile, await pebble.root());
    const first = sClientVerified(server.port, "a.test", rootFile);
    // The validator comes once the answer is set up and the CA told.
    await waitFor(
      () => o.standIn.held() > 0 || undefined,
      30_000,
      () => server.log(),
    );
    const written = readdirSync(o.left);
    assert.equal(written.length, 1, server.log());
    // djb's tcpserver runs one tlsd per connection: its one live child is the one ordering.
    const [ordering] = childrenOf(server.child.pid ?? 0).filter((c) => alive(c.pid));
    tlsd = ordering?.pid ?? 0;
    assert.ok(tlsd > 0, "no tlsd under djb's tcpserver");
    process.kill(tlsd, "SIGKILL");
    assert.notEqual((await first).code, 0);
    assert.deepEqual(readdirSync(o.left), written, "what the killed order set up is there");
    o.standIn.release();
    const second = await sClientVerified(server.port, "a.test", rootFile);
    assert.equal(second.code, 0, second.stderr + server.log() + pebble.log());
    assert.match(
      server.log(),
      new RegExp(
        `^tlsd: info: acme: a\\.test: removed the ${o.what} an order killed before its end left$`,
        "m",
      ),
    );
    await server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/);
    // Both orders' are gone.
    assert.deepEqual(readdirSync(o.left), []);
  } finally {
    if (tlsd && alive(tlsd)) process.kill(tlsd, "SIGKILL");
    o.standIn.release();
    await server.stop();
    pebble.stop();
    o.standIn.close();
  }
}

/** A server on a port of 127.0.0.1 of its own. */
async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

test("http-01, its tlsd killed outright mid-order: the answer stays until the next order of the name, which removes it first, then is issued", async () => {
  const cache = scratchDir("acme");
  const answers = join(cache, ".acme-http-01");
  // The port-80 stand-in: answers from CERTDIR/.acme-http-01 as acme-challenge does.
  let holding = true;
  const held: ServerResponse[] = [];
  const web = createServer((req, res) => {
    if (holding) return void held.push(res);
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
    try {
      res.end(readFileSync(join(answers, token ?? "-")));
    } catch {
      res.writeHead(404).end();
    }
  });
  await killedThenOrderedAgain({
    cache,
    tlsPort: await freePort(),
    standIn: {
      port: await listening(web),
      held: () => held.length,
      release: () => {
        holding = false;
        for (const res of held.splice(0)) res.writeHead(404).end();
      },
      close: () => web.close(),
    },
    validator: "httpPort",
    env: { ACME_CHALLENGE: "http-01" },
    left: answers,
    what: "http-01 answer",
  });
  // The answers' records are gone too.
  assert.deepEqual(readdirSync(join(cache, ".acme", "http-01")), []);
});

test("tls-alpn-01, its tlsd killed outright mid-order: the challenge certificate stays until the next order of the name, which removes it first, then is issued", async () => {
  const cache = scratchDir("acme");
  const tlsPort = await freePort();
  // The validator's way to tlsd's port.
  let holding = true;
  const held: Socket[] = [];
  const gate = createTcpServer((socket) => {
    if (holding) return void held.push(socket.on("error", () => {}));
    const tlsd = connect(tlsPort, "127.0.0.1");
    for (const [a, b] of [
      [socket, tlsd],
      [tlsd, socket],
    ] as const)
      a.on("error", () => b.destroy()).pipe(b);
  });
  await killedThenOrderedAgain({
    cache,
    tlsPort,
    standIn: {
      port: await listening(gate),
      held: () => held.length,
      release: () => {
        holding = false;
        for (const socket of held.splice(0)) socket.destroy();
      },
      close: () => gate.close(),
    },
    validator: "tlsPort",
    env: {},
    left: join(cache, ".acme", "tls-alpn-01"),
    what: "tls-alpn-01 certificate",
  });
});

// tcpserver gives memory back once it is idle after a burst of in-process TLS sessions: a real
// tcpserver + tlsd, real handshakes from Node's TLS client, and the server's own anonymous
// memory read from /proc (V8 never collects on its own while nothing allocates, so without the
// release the burst's heap stays for good).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { once } from "node:events";
import { connect } from "node:tls";
import type { TLSSocket } from "node:tls";
import { IdleMemory } from "../../src/tcpserver/idle-memory.ts";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const HANDSHAKES = 300;
const CONCURRENCY = 4;

/** Pss_Anon of a process, in KiB. */
function anonymousKiB(pid: number): number {
  const m = /^Pss_Anon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  assert.ok(m, `no Pss_Anon for ${pid}`);
  return Number(m[1]);
}

function handshake(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ port, host: "127.0.0.1", servername: "localhost", ca: [ca] });
    let reply = "";
    c.setEncoding("latin1");
    c.on("data", (d: string) => (reply += d));
    c.once("end", () => c.end());
    c.once("close", () => resolve(reply));
    c.once("error", reject);
  });
}

test("an idle tcpserver gives back the memory of its last burst of TLS sessions", async () => {
  const pki = makePki();
  const cert = pki.server("localhost", ["localhost"]);
  const s = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "hi"],
    { env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: cert.cert, KEYFILE: cert.key } },
  );
  try {
    const pid = s.child.pid;
    assert.ok(pid);
    const ca = readFileSync(pki.ca.cert);
    let done = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (done < HANDSHAKES) {
          done++;
          assert.equal(await handshake(s.port, ca), "hi\n");
        }
      }),
    );
    // Every session has ended in the server too.
    await s.waitForLog(/^tcpserver: end /, HANDSHAKES);
    const afterBurst = anonymousKiB(pid);
    // Bounded poll: the release comes a few seconds after the last connection ends.
    let now = afterBurst;
    for (let i = 0; i < 60 && now > afterBurst * 0.8; i++) {
      await new Promise((r) => setTimeout(r, 500));
      now = anonymousKiB(pid);
    }
    assert.ok(
      now <= afterBurst * 0.8,
      `anonymous memory ${now} KiB, ${afterBurst} KiB right after the burst: nothing given back`,
    );
    // It still serves afterwards.
    assert.equal(await handshake(s.port, ca), "hi\n");
  } finally {
    await s.stop();
  }
});

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("the release comes only after connections, and only when none came while it waited", async () => {
  let releases = 0;
  let open = 0;
  const idle = new IdleMemory(
    () => open === 0,
    () => releases++,
    20,
    () => false,
  );
  // Nothing served yet: quiet does not schedule anything.
  idle.quiet();
  await tick(100);
  assert.equal(releases, 0);
  // A connection, then quiet: one release.
  idle.busy();
  idle.quiet();
  while (releases === 0) await tick(5);
  assert.equal(releases, 1);
  // Quiet again with nothing served since: no second release.
  idle.quiet();
  await tick(100);
  assert.equal(releases, 1);
  // A connection still open when the timer fires: nothing until the server is quiet again.
  idle.busy();
  idle.quiet();
  open = 1;
  idle.busy();
  await tick(100);
  assert.equal(releases, 1);
  open = 0;
  idle.quiet();
  while (releases === 1) await tick(5);
  assert.equal(releases, 2);
});

test("held connections: a release once none has begun for the delay, if the heap grew enough", async () => {
  let releases = 0;
  let grown = true;
  const idle = new IdleMemory(
    () => false,
    () => releases++,
    20,
    () => grown,
  );
  // Connections keep coming: no release while they do.
  for (let i = 0; i < 20; i++) {
    idle.busy();
    await tick(5);
  }
  assert.equal(releases, 0);
  // They stop coming, the ones open stay open: one release.
  while (releases === 0) await tick(5);
  assert.equal(releases, 1);
  await tick(100);
  assert.equal(releases, 1, "nothing served since: no second release");
  // A new connection, but the heap has not grown enough: none.
  grown = false;
  idle.busy();
  await tick(100);
  assert.equal(releases, 1);
  // The next one finds it grown.
  grown = true;
  idle.busy();
  while (releases === 1) await tick(5);
  assert.equal(releases, 2);
});

// On both of tlsd's TLS engines: the native engine's sessions keep their bytes in C and leave
// little garbage in V8's heap, yet a burst of them leaves memory to give back all the same.
for (const engine of ["node", "native"])
  test(`a tcpserver holding TLS connections gives back the memory of the burst before them (tlsd --engine ${engine})`, async () => {
    const pki = makePki();
    const cert = pki.server("localhost", ["localhost"]);
    const s = await startServer(
      ours("tcpserver"),
      [
        "-vRHl0",
        "127.0.0.1",
        "0",
        "tlsd",
        "--engine",
        engine,
        "/bin/sh",
        "-c",
        "echo hi; exec cat",
      ],
      { env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: cert.cert, KEYFILE: cert.key } },
    );
    const held: TLSSocket[] = [];
    try {
      const pid = s.child.pid;
      assert.ok(pid);
      const ca = readFileSync(pki.ca.cert);
      const open = () =>
        new Promise<TLSSocket>((resolve, reject) => {
          const c = connect({ port: s.port, host: "127.0.0.1", servername: "localhost", ca: [ca] });
          c.once("data", () => resolve(c));
          c.once("error", reject);
        });
      // The burst: each connection opens, gets the program's line and closes.
      for (let i = 0; i < HANDSHAKES; i += CONCURRENCY)
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            const c = await open();
            c.end();
            await once(c, "close");
          }),
        );
      // Then connections that stay.
      for (let i = 0; i < 10; i++) held.push(await open());
      await s.waitForLog(/^tcpserver: end /, HANDSHAKES);
      const afterBurst = anonymousKiB(pid);
      let now = afterBurst;
      for (let i = 0; i < 60 && now > afterBurst * 0.8; i++) {
        await tick(500);
        now = anonymousKiB(pid);
      }
      assert.ok(
        now <= afterBurst * 0.8,
        `anonymous memory ${now} KiB, ${afterBurst} KiB right after the burst: nothing given back`,
      );
      // The held connections still work.
      for (const c of held) {
        c.write("ping\n");
        const [echo] = (await once(c, "data")) as [Buffer];
        assert.equal(echo.toString(), "ping\n");
      }
    } finally {
      for (const c of held) c.destroy();
      await s.stop();
    }
  });

// The in-process chain: our own programs run inside our tcpserver (no process per connection)
// and behave the same when a foreign tcpserver spawns them.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { makePki } from "../helpers/certs.ts";
import { djb, ours, BIN } from "../helpers/programs.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";

function session(port: number, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => {
      text += s;
      const next = lines.shift();
      if (next !== undefined) socket.write(`${next}\r\n`);
    });
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

const PATH = `${BIN}:/usr/bin:/bin`;

for (const server of [ours("tcpserver"), djb("tcpserver")]) {
  const who = server.startsWith("/usr")
    ? "djb's tcpserver spawns"
    : "our tcpserver runs in-process";
  test(`ucspi-demo: ${who} it, with the same dialogue`, async () => {
    const s = await startServer(server, ["-v", "-RHl0", "127.0.0.1", "0", "ucspi-demo"], {
      env: { PATH },
    });
    try {
      const text = await session(s.port, ["hello there", "quit"]);
      assert.match(
        text,
        /^hello 127\.0\.0\.1 port \d+; this is ucspi-tls\. Type a line, or quit\.\r\necho: hello there\r\n$/,
      );
      const [ok] = await s.waitForLog(/ ok /);
      const [end] = await s.waitForLog(/ end /);
      assert.match(end ?? "", / status 0$/);
      const id = Number(/ ok (\d+) /.exec(ok ?? "")?.[1]);
      // In-process connections carry ids above any real pid (2^22).
      if (server === ours("tcpserver")) assert.ok(id > 4_194_304, `in-process id ${id}`);
      else assert.ok(id <= 4_194_304, `djb's child pid ${id}`);
    } finally {
      await s.stop();
    }
  });
}

for (const server of [ours("tcpserver"), djb("tcpserver")]) {
  const who = server.startsWith("/usr") ? "djb's tcpserver" : "our tcpserver (in-process)";
  test(`half-close: a client that sends its lines and FIN still gets every answer, ${who}`, async () => {
    const s = await startServer(server, ["-RHl0", "127.0.0.1", "0", "ucspi-demo"], {
      env: { PATH },
    });
    try {
      const text = await talk(s.port, "one\r\ntwo\r\n");
      assert.match(text, /\r\necho: one\r\necho: two\r\n$/);
    } finally {
      await s.stop();
    }
  });
}

/** The pid that holds the one established connection to 127.0.0.1 port `port` (ss -p). */
function holderOf(port: number): number {
  const ss = execFileSync("ss", ["-Htnp", "state", "established", `( dport = :${port} )`], {
    encoding: "latin1",
  });
  const pids = [...ss.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, 1, ss);
  return pids[0] ?? 0;
}

/** The parent of process `pid`. */
function parentOf(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"))?.[1]);
}

const pki = makePki();
const service = pki.server("service", ["127.0.0.1"]);

for (const server of [ours("tcpserver"), djb("tcpserver")]) {
  const ourServer = server === ours("tcpserver");
  const who = ourServer ? "our tcpserver runs it in-process" : "djb's tcpserver spawns it";
  for (const tls of [false, true]) {
    const chain = tls ? ["tlsd", "tcpforward"] : ["tcpforward"];
    test(`${chain.join(" ")}: ${who}: the connection to the service is ${ourServer ? "the tcpserver's own" : "a child's"}`, async () => {
      // A service that holds its connection open until the test has looked at who holds the
      // other end.
      const held: Socket[] = [];
      const target = createServer((socket) => held.push(socket));
      await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
      const targetPort = (target.address() as AddressInfo).port;
      const s = await startServer(
        server,
        ["-v", "-RHl0", "127.0.0.1", "0", ...chain, "127.0.0.1", String(targetPort)],
        { env: { PATH, CERTFILE: service.cert, KEYFILE: service.key } },
      );
      const client = tls
        ? tlsConnect({ port: s.port, host: "127.0.0.1", ca: readFileSync(pki.ca.cert) })
        : connect({ port: s.port, host: "127.0.0.1" });
      client.on("error", () => {});
      try {
        await waitFor(
          () => held[0],
          15_000,
          () => `the service was never reached:\n${s.log()}`,
        );
        const holder = holderOf(targetPort);
        const [ok] = await s.waitForLog(/ ok /);
        const id = Number(/ ok (\d+) /.exec(ok ?? "")?.[1]);
        if (ourServer) {
          // No process per connection: tcpforward (after tlsd too) is in tcpserver itself.
          assert.equal(holder, s.child.pid);
          assert.ok(id > 4_194_304, `in-process id ${id}`);
        } else {
          assert.equal(parentOf(holder), s.child.pid);
          assert.equal(holder, id);
        }
      } finally {
        client.destroy();
        for (const socket of held) socket.destroy();
        target.close();
        await s.stop();
      }
    });
  }
}

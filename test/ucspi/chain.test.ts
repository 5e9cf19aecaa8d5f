// The in-process chain: our own programs run inside our tcpserver (no process per connection)
// and behave the same when a foreign tcpserver spawns them.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { djb, ours, BIN } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";

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

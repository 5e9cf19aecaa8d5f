// A time limit longer than a Node timer can hold (2^31 - 1 ms, about 24.8 days) is as good as
// none: it must not fire at once. Node sets such a timer to 1 ms, with its own three-line
// TimeoutOverflowWarning on stderr: tcpforward -t 999999999 then gave up on its service
// ("timed out") at once, and tcpclient -T and -t, tcpserver -t, acme-challenge -t (and
// starttls-wrapper -t/-T, which reads its values as tcpforward does) wrote Node's warning.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

// acme-challenge's CERTDIR: it answers no challenge here, every request goes to the program.
const certDir = scratchDir("limits");
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTDIR: certDir };
const HUGE = "999999999";

/** Our tcpserver running `program` for each client: what one client reads, and the log. */
async function served(program: string[], input = "", server: string[] = ["-RHl0"]) {
  const s = await startServer(ours("tcpserver"), ["-v", ...server, "127.0.0.1", "0", ...program], {
    env,
  });
  try {
    const answer = await talk(s.port, input);
    await s.waitForLog(/^tcpserver: end /);
    return { answer, log: s.log() };
  } finally {
    await s.stop();
  }
}

test("limits past a timer's range: no limit, and no word from Node", async () => {
  const service = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "echo", "hi"]);
  try {
    const port = String(service.port);
    const forward = await served(["tcpforward", "-t", HUGE, "127.0.0.1", port]);
    assert.equal(forward.answer, "hi\n");
    const client = await run(
      ours("tcpclient"),
      ["-T", `${HUGE}${HUGE}+${HUGE}`, "-t", HUGE, "-H", "127.0.0.1", port, "sh", "-c", "cat <&6"],
      { env },
    );
    assert.deepEqual([client.code, client.stdout, client.stderr], [0, "hi\n", ""]);
    const ident = await served(["echo", "ok"], "", ["-Hl0", "-t", HUGE]);
    assert.equal(ident.answer, "ok\n");
    const request = "GET / HTTP/1.0\r\n\r\n";
    const acme = await served(["acme-challenge", "-t", HUGE, "cat"], request);
    assert.equal(acme.answer, request);
    for (const { log } of [forward, ident, acme]) {
      assert.doesNotMatch(log, /Timeout|node|timed out/, log);
      assert.match(log, /^tcpserver: end \d+ status 0$/m, log);
    }
  } finally {
    await service.stop();
  }
});

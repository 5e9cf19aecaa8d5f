// tlsc's end of the program's writing, by TLS version (issue 11, item 8): in TLS 1.2 a
// close_notify ends the whole session, and a server that takes it so (s6-tlsd) never answers,
// so by default tlsc half-closes TCP there; in TLS 1.3 it sends close_notify, which closes
// one direction. The server is python3 ssl on memory BIOs, which tells the two ends apart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { after, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { pyTlsServer } from "../helpers/py-bio.ts";

const pki = makePki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));
const server = pki.server("localhost", ["localhost"]);
const PATH = `${BIN}:/usr/bin:/bin`;

/** A one-connection server in `version` that reads until the client's end, says how it came
 * ("close_notify" or "fin") on stdout, and answers "got N bytes" unless a TLS 1.2
 * close_notify ended the session (RFC 5246 7.2.1, as s6-tlsd does). */
function endWatcher(version: "TLSv1_2" | "TLSv1_3") {
  const script = `${pyTlsServer(
    server,
    `ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${version}`,
  )}
got, how = b"", None
while how is None:
    try:
        data = tls.read(65536)
        if not data:
            # Python reads a close_notify as b"" (or SSLZeroReturnError).
            how = "close_notify"
        got += data
    except ssl.SSLWantReadError:
        flush()
        data = raw.recv(65536)
        if data:
            inc.write(data)
        else:
            how = "fin"
    except ssl.SSLZeroReturnError:
        how = "close_notify"
if how == "fin" or ${version === "TLSv1_3" ? "True" : "False"}:
    tls.write(b"got %d bytes\\n" % len(got))
    flush()
try:
    tls.unwrap()
except ssl.SSLError:
    pass
flush()
raw.close()
print(how, flush=True)
`;
  const child = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  let said = "";
  child.stdout.setEncoding("latin1");
  child.stdout.on("data", (text: string) => (said += text));
  return {
    port: async () => {
      while (!said.includes("\n")) await once(child.stdout, "data");
      return said.split("\n")[0] ?? "";
    },
    how: async () => {
      if (child.exitCode === null) await once(child, "exit");
      return said.split("\n")[1] ?? "";
    },
    /** Never left behind, whatever the test found. */
    kill: () => child.kill("SIGKILL"),
  };
}

/** The program writes a line and half-closes (shutdown on fd 7), then reads to the end. */
const HALF_CLOSER = [
  "python3",
  "-c",
  [
    "import os, socket",
    "s = socket.socket(fileno=7)",
    's.sendall(b"hello\\n")',
    "s.shutdown(socket.SHUT_WR)",
    "got = b''",
    "while (d := os.read(6, 4096)): got += d",
    "print(got.decode(), end='')",
  ].join("\n"),
];

for (const [version, flags, how, answer] of [
  ["TLSv1_2", [], "fin", "got 6 bytes\n"],
  ["TLSv1_2", ["-S"], "close_notify", ""],
  ["TLSv1_3", [], "close_notify", "got 6 bytes\n"],
  ["TLSv1_3", ["-s"], "fin", "got 6 bytes\n"],
] as const) {
  test(`tlsc ${flags.join(" ") || "(default)"} in ${version}: the program's half-close is a ${how}`, async () => {
    const srv = endWatcher(version);
    try {
      const port = await srv.port();
      const r = await run(
        ours("tcpclient"),
        ["-RHl0", "127.0.0.1", port, "tlsc", ...flags, "-k", "localhost", ...HALF_CLOSER],
        { env: { PATH, CAFILE: pki.ca.cert }, timeoutMs: 30_000 },
      );
      assert.equal(await srv.how(), how);
      assert.equal(r.stdout, answer);
    } finally {
      srv.kill();
    }
  });
}

for (const client of [ours("tcpclient"), djb("tcpclient")]) {
  test(`${client.startsWith("/usr") ? "djb's tcpclient spawning tlsc" : "our tcpclient, tlsc in-process"}: the program's fds 6 and 7 are two descriptors: closing 7 alone is the end of what it sends`, async () => {
    const s = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c", "cat; echo after-eof"],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key } },
    );
    try {
      const r = await run(
        client,
        [
          ...["-RHl0", "127.0.0.1", String(s.port), "tlsc", "-k", "localhost"],
          ...["sh", "-c", "printf 'hi\\n' >&7; exec 7>&-; cat <&6"],
        ],
        { env: { PATH, CAFILE: pki.ca.cert }, timeoutMs: 20_000 },
      );
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, "hi\nafter-eof\n");
      assert.equal(r.code, 0);
    } finally {
      await s.stop();
    }
  });
}

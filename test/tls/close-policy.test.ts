// tlsc's end of the program's writing, by TLS version (issue 11, item 8): in TLS 1.2 a
// close_notify ends the whole session, and a server that takes it so (s6-tlsd) never answers,
// so by default tlsc half-closes TCP there; in TLS 1.3 it sends close_notify, which closes
// one direction. The server is python3 ssl on memory BIOs, which tells the two ends apart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT, TLSD_UNDER, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { PY_BIO, READ_TO_END, pyHandshakeTo, pyTlsServer } from "../helpers/py-bio.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const PATH = `${BIN}:/usr/bin:/bin`;

/** A one-connection server in `version` that reads until the client's end, says how it came
 * ("close_notify" or "fin") on stdout, and answers "got N bytes" unless a TLS 1.2
 * close_notify ended the session (RFC 5246 7.2.1, as s6-tlsd does). */
function endWatcher(version: "TLSv1_2" | "TLSv1_3") {
  const script = `${pyTlsServer(
    server,
    `ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${version}`,
  )}${READ_TO_END}
got, how = read_to_end()
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

// A close_notify from the peer (issue 11, item 8): in TLS 1.2 it ends the whole session
// (RFC 5246 7.2.1): we answer with ours, close, and drop what the program still writes, as
// s6-tlsd and s6-tlsc do on BearSSL; in TLS 1.3 it closes one direction, and the program's
// answer still goes out. The peer is python3 ssl on memory BIOs: it sends its close_notify,
// then reads to our end and prints what came and how the session ended (an OpenSSL error for
// data after its close_notify in TLS 1.2).
const CLOSE_AND_LISTEN = `${READ_TO_END}
def close_and_listen():
    send_close_notify()
    got, how = read_to_end()
    if how == "close_notify":
        rest = 0
        while (data := raw.recv(65536)):
            rest += len(data)
        how += ", then %d bytes and FIN" % rest
    print(got.decode() + "end: " + how, flush=True)
`;

/** A python3 client in `version` that sends a line, then its close_notify, then listens. */
function closingClient(port: number, version: "TLSv1_2" | "TLSv1_3") {
  const script = `${PY_BIO}${CLOSE_AND_LISTEN}
${pyHandshakeTo(pki.ca.cert, port, version)}tls.write(b"hello\\n")
flush()
close_and_listen()
`;
  return run("python3", ["-c", script], { timeoutMs: 40_000 });
}

/** After the peer's close_notify: its end of input, then a reply and a status of its own. */
const REPLIES_AFTER_EOF = "cat >/dev/null; echo reply-after-eof; exit 3";

for (const [who, tcpserver] of TLSD_UNDER) {
  for (const [version, reply] of [
    ["TLSv1_2", ""],
    ["TLSv1_3", "reply-after-eof\n"],
  ] as const) {
    test(`${who}: a client's close_notify in ${version} ${reply ? "closes one direction: the reply goes out" : "ends the session: nothing more is sent"}, the program's status is its own`, async () => {
      const s = await startServer(
        tcpserver,
        ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c", REPLIES_AFTER_EOF],
        { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key } },
      );
      try {
        const r = await closingClient(s.port, version);
        assert.equal(r.stderr, "");
        assert.equal(r.stdout, `${reply}end: close_notify, then 0 bytes and FIN\n`);
        // The program ran to its end, and its exit 3 is the connection's status.
        await s.waitForLog(/^tcpserver: end /);
        assert.doesNotMatch(s.log(), /^tlsd:/m);
        assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${3 << 8}$`, "m"));
      } finally {
        await s.stop();
      }
    });
  }

  test(`${who}: after a TLS 1.2 close_notify, a program that writes on for ever is cut off after a grace, no failure logged`, async () => {
    const s = await startServer(
      tcpserver,
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c"],
        "cat >/dev/null; yes; echo yes-ended >&2",
      ],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key } },
    );
    try {
      const r = await closingClient(s.port, "TLSv1_2");
      assert.equal(r.stdout, "end: close_notify, then 0 bytes and FIN\n");
      // Its writes fail once the grace is over (5 s), and the session ends without a word.
      await s.waitForLog(/^tcpserver: end /, 1, 30_000);
      assert.match(s.log(), /^yes-ended$/m);
      assert.doesNotMatch(s.log(), /^tlsd:/m);
    } finally {
      await s.stop();
    }
  });

  test(`${who}: a TLS 1.2 client's bare FIN is still a half-close: the reply goes out`, async () => {
    const s = await startServer(
      tcpserver,
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c", REPLIES_AFTER_EOF],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key } },
    );
    try {
      const script = `${PY_BIO}
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
raw = socket.create_connection(("127.0.0.1", ${s.port}))
raw.settimeout(30)
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
handshake()
tls.write(b"hello\\n")
flush()
raw.shutdown(socket.SHUT_WR)
print(read_line().decode(), end="")
`;
      const r = await run("python3", ["-c", script], { timeoutMs: 40_000 });
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, "reply-after-eof\n");
      await s.waitForLog(/^tcpserver: end /);
      assert.match(s.log(), new RegExp(`^tcpserver: end \\d+ status ${3 << 8}$`, "m"));
    } finally {
      await s.stop();
    }
  });
}

for (const [version, reply] of [
  ["TLSv1_2", ""],
  ["TLSv1_3", "after\n"],
] as const) {
  for (const client of [ours("tcpclient"), djb("tcpclient")]) {
    test(`${client.startsWith("/usr") ? "djb's tcpclient spawning tlsc" : "our tcpclient, tlsc in-process"}: a server's close_notify in ${version} ${reply ? "closes one direction: the program's answer goes out" : "ends the session: nothing more is sent"}`, async () => {
      const script = `${pyTlsServer(
        server,
        `ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${version}`,
      )}${CLOSE_AND_LISTEN}
read_line()
close_and_listen()
`;
      const srv = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
      try {
        let said = "";
        srv.stdout.setEncoding("latin1");
        srv.stdout.on("data", (text: string) => (said += text));
        while (!said.includes("\n")) await once(srv.stdout, "data");
        const port = said.split("\n")[0] ?? "";
        const r = await run(
          client,
          [
            ...["-RHl0", "127.0.0.1", port, "tlsc", "-k", "localhost", "sh", "-c"],
            "printf 'hello\\n' >&7; cat <&6; echo after >&7; exit 3",
          ],
          { env: { PATH, CAFILE: pki.ca.cert }, timeoutMs: 30_000 },
        );
        if (srv.exitCode === null) await once(srv, "exit");
        assert.equal(
          said.slice(said.indexOf("\n") + 1),
          `${reply}end: close_notify, then 0 bytes and FIN\n`,
        );
        assert.deepEqual([r.code, r.stderr], [3, ""]);
      } finally {
        srv.kill("SIGKILL");
      }
    });
  }
}

// tlsd -n (UCSPI-TLS, the program asks for TLS) relayed on after a TLS 1.2 close_notify: the
// same rule holds there, and TLS 1.3 keeps its half-close.
const APP = join(ROOT, "test", "fixtures", "starttls-app");
for (const [version, reply] of [
  ["TLSv1_2", ""],
  ["TLSv1_3", "250 after eof\r\n"],
] as const) {
  test(`tlsd -n: a client's close_notify in ${version} after STARTTLS ${reply ? "closes one direction" : "ends the session"}`, async () => {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "-n", APP, "Y"],
      {
        env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, APP_AFTER_EOF: "250 after eof" },
      },
    );
    try {
      const script = `${PY_BIO}${CLOSE_AND_LISTEN}
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.${version}
raw = socket.create_connection(("127.0.0.1", ${s.port}))
raw.settimeout(30)
def line():
    b = b""
    while not b.endswith(b"\\n"):
        b += raw.recv(1)
    return b
line()
raw.sendall(b"STARTTLS\\r\\n")
assert line().startswith(b"220 go ahead"), "no go-ahead"
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
handshake()
close_and_listen()
`;
      const r = await run("python3", ["-c", script], { timeoutMs: 40_000 });
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, `${reply}end: close_notify, then 0 bytes and FIN\n`);
      await s.waitForLog(/^tcpserver: end /);
      assert.doesNotMatch(s.log(), /^tlsd:/m);
    } finally {
      await s.stop();
    }
  });
}

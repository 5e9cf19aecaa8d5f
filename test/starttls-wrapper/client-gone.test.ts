// A client that goes away before any STARTTLS decision, by an end or by a reset, ends its
// session then, for every protocol: its slot and the server behind are not held until the
// pre-TLS limit (5 minutes by default). The XMPP wrapper used to wait out the limit after a
// reset, and the MySQL one after an end that came before the server's greeting. Then the
// clients that go later: with the upgrade waiting its turn, with <starttls/>, and inside
// MySQL's TLS before its authentication is over.
import assert from "node:assert/strict";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { writePacket } from "../../src/dialogue/mysql.ts";
import { makePki } from "../helpers/certs.ts";
import { sslRequestPayload } from "../helpers/mysql-packets.ts";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import { serverBehind } from "../helpers/servers-behind.ts";

/** What each protocol's server says first (nothing: the client speaks first, or, for MySQL,
 * a server that is slow to greet). */
const GREETING: Record<string, string> = {
  smtp: "220 fake ESMTP\\r\\n",
  lmtp: "220 fake LMTP\\r\\n",
  imap: "* OK fake\\r\\n",
  pop3: "+OK fake\\r\\n",
  nntp: "200 fake\\r\\n",
  sieve: '"IMPLEMENTATION" "fake"\\r\\nOK\\r\\n',
  postgres: "",
  ldap: "",
  mysql: "",
  xmpp: "",
};

/** The wrapper's certificate: it loads it at its start, though these clients never get to
 * TLS. */
const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const WRAPPER_ENV = {
  ...process.env,
  PATH: PATH_WITH_BIN,
  CERTFILE: pair.cert,
  KEYFILE: pair.key,
};

/** Connects, sends `bytes`, then ends or resets; resolves once its socket is closed. */
function goAway(port: number, bytes: string, how: "end" | "reset"): Promise<void> {
  return new Promise((resolve) => {
    const tcp = connect(port, "127.0.0.1");
    tcp.on("error", () => {});
    tcp.resume();
    tcp.once("close", () => resolve());
    tcp.write(bytes, () =>
      setTimeout(() => (how === "end" ? tcp.end() : tcp.resetAndDestroy()), 50),
    );
  });
}

for (const [protocol, greeting] of Object.entries(GREETING)) {
  test(`${protocol}: a client that ends, or resets, before any STARTTLS: its session ends then`, async () => {
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, "-t", "600"],
        ...["sh", "-c", `printf '${greeting}'; exec cat`],
      ],
      { env: WRAPPER_ENV },
    );
    try {
      for (const [i, how] of (["end", "reset", "end", "reset"] as const).entries()) {
        // First with nothing sent, then with a few bytes that decide nothing.
        await goAway(server.port, i < 2 ? "" : "x", how);
        await server.waitForLog(/^tcpserver: end \d+ status \d+$/, i + 1, 10_000);
      }
      assert.doesNotMatch(server.log(), /internal error/);
    } finally {
      await server.stop();
    }
  });
}

/** A command each line protocol's wrapper forwards, then its upgrade command. */
const BEFORE_UPGRADE: Record<string, string> = {
  smtp: "NOOP\r\nSTARTTLS\r\n",
  lmtp: "NOOP\r\nSTARTTLS\r\n",
  imap: "a CAPABILITY\r\nb STARTTLS\r\n",
  pop3: "CAPA\r\nSTLS\r\n",
  nntp: "CAPABILITIES\r\nSTARTTLS\r\n",
  sieve: "CAPABILITY\r\nSTARTTLS\r\n",
};

for (const [protocol, commands] of Object.entries(BEFORE_UPGRADE)) {
  test(`${protocol}: a client that ends while its STARTTLS waits for the reply to an earlier command: the server gets the end, the session ends (it used to wait out the pre-TLS limit)`, async () => {
    // A server that greets, then reads and never answers: the upgrade's turn never comes.
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, "-t", "600"],
        ...["sh", "-c", `printf '${GREETING[protocol] ?? ""}'; exec cat >/dev/null`],
      ],
      { env: WRAPPER_ENV },
    );
    try {
      for (const [i, how] of (["end", "reset"] as const).entries()) {
        await goAway(server.port, commands, how);
        await server.waitForLog(/^tcpserver: end \d+ status \d+$/, i + 1, 10_000);
      }
      assert.doesNotMatch(server.log(), /internal error/);
    } finally {
      await server.stop();
    }
  });
}

/** What an XMPP server behind says first: its stream header and (empty) features. */
const XMPP_FEATURES =
  "<?xml version='1.0'?><stream:stream from='example.org' id='x' xmlns='jabber:client'" +
  " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features>" +
  "</stream:features>";
const STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/** An XMPP client: its stream header, then `react` to all it has read at each read; resolves
 * once its connection is closed. */
function xmppClient(port: number, react: (tcp: Socket, seen: string) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const tcp = connect(port, "127.0.0.1");
    tcp.on("error", () => {});
    let seen = "";
    tcp.on("data", (d: Buffer) => {
      seen += d.toString("latin1");
      react(tcp, seen);
    });
    tcp.once("close", () => resolve());
    tcp.write(
      "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'" +
        " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
  });
}

test("xmpp: a client whose end comes with its <starttls/> (one read): the session ends then, not at tlsd's handshake limit", async () => {
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost"]);
  const server = await startServer(
    ours("tcpserver"),
    [
      ...[
        "-v",
        "-RHl0",
        "127.0.0.1",
        "0",
        "starttls-wrapper",
        "-p",
        "xmpp",
        "-t",
        "600",
        "-K",
        "600000",
      ],
      ...["sh", "-c", `printf "%s" "${XMPP_FEATURES}"; exec cat >/dev/null`],
    ],
    {
      env: {
        ...process.env,
        PATH: PATH_WITH_BIN,
        CERTFILE: pair.cert,
        KEYFILE: pair.key,
      },
    },
  );
  try {
    await xmppClient(server.port, (tcp, seen) => {
      if (seen.endsWith("</stream:features>")) tcp.end(STARTTLS);
    });
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 1, 10_000);
    assert.doesNotMatch(server.log(), /internal error/);
  } finally {
    await server.stop();
  }
});

test("xmpp: a client that sends part of its ClientHello after <proceed/> and ends: the session ends then, not at tlsd's handshake limit (its end was read before tlsd took the connection over)", async () => {
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "xmpp", "-K", "600000"],
      // A server slow to go once let go (it ignores SIGTERM): the client's end comes meanwhile.
      ...[
        "sh",
        "-c",
        `trap '' TERM; cat >/dev/null & printf "%s" "${XMPP_FEATURES}"; wait; sleep 1`,
      ],
    ],
    { env: WRAPPER_ENV },
  );
  try {
    await xmppClient(server.port, (tcp, seen) => {
      if (seen.endsWith("</stream:features>")) tcp.write(STARTTLS);
      // The first bytes of a ClientHello, and the end.
      if (/<proceed [^>]*\/>$/.test(seen)) tcp.end(Buffer.from("16030100c8010000c40303", "hex"));
    });
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 1, 10_000);
    assert.match(
      server.log(),
      /^tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: connection closed$/m,
    );
  } finally {
    await server.stop();
  }
});

test("mysql: a client that leaves inside TLS, right after the handshake or before its authentication is over, by an end or a reset: the server's input ends, the session ends (it used to be held while the server waited for the next packet) with an info line and status 100 (it was a warning that the connection phase broke off, and 111)", async () => {
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost"]);
  // A server that greets (4.1 protocol, no TLS), then reads and never answers.
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v", "2", "-p", "mysql"],
      ...["-t", "600", ...serverBehind("mysql", true)],
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  // CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
  const flags = 0x0200 | 0x0800 | 0x8000 | 0x80000;
  const sslRequest = writePacket(1, sslRequestPayload(flags));
  // Its HandshakeResponse41: user app, an empty auth response, the plugin it used.
  const response = writePacket(
    2,
    Buffer.concat([
      sslRequestPayload(flags),
      Buffer.from("app\0\0mysql_native_password\0", "latin1"),
    ]),
  );
  // A reset is tlsd's to tell (a TLS session that failed, status 98, when it sees it first).
  const ways = [
    ["handshake", "end"],
    ["response", "end"],
    ["response", "reset"],
  ] as const;
  try {
    for (const [i, [after, how]] of ways.entries()) {
      await new Promise<void>((resolve, reject) => {
        const tcp = connect(server.port, "127.0.0.1");
        tcp.on("error", () => {});
        tcp.once("close", () => resolve());
        tcp.once("data", () => {
          tcp.write(sslRequest);
          const tls = tlsConnect({
            socket: tcp,
            servername: "localhost",
            ca: readFileSync(pki.ca.cert),
          });
          tls.on("error", reject);
          const go = () => (how === "end" ? tls.end() : tcp.resetAndDestroy());
          // It goes once TLS is up, or once its response is out, while the server is on it.
          tls.once("secureConnect", () =>
            after === "handshake" ? go() : tls.write(response, () => setTimeout(go, 100)),
          );
        });
      });
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/, i + 1, 10_000);
    }
    assert.doesNotMatch(server.log(), /internal error|starttls-wrapper: warning/);
    const ends = server.log().match(/^tcpserver: end \d+ status \d+$/gm) ?? [];
    assert.deepEqual(
      ends.slice(0, 2).map((l) => l.replace(/ \d+ status/, " PID status")),
      ["tcpserver: end PID status 25600", "tcpserver: end PID status 25600"],
    );
    assert.ok(
      (server.log().match(/: the client left inside TLS before its login was over$/gm)?.length ??
        0) >= 2,
    );
  } finally {
    await server.stop();
  }
});

/** The request each client-first protocol's wrapper answers with its go-ahead: PostgreSQL's
 * SSLRequest, LDAP's StartTLS extended request (messageID 1). */
const UPGRADE_REQUEST: Record<string, string> = {
  postgres: "0000000804d2162f",
  ldap: "301d02010177188016312e332e362e312e342e312e313436362e3230303337",
};

for (const [protocol, request] of Object.entries(UPGRADE_REQUEST)) {
  test(`${protocol}: a python3 client that sends its upgrade request and goes at once, by a reset (SO_LINGER 0) or an end, never reading the go-ahead: the session ends non-zero, with one line naming why (a reset while the go-ahead was sent ended it with status 0), a reset's a warning`, async () => {
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v2", "-p", protocol],
        ...["sh", "-c", "exec cat >/dev/null"],
      ],
      { env: WRAPPER_ENV },
    );
    const script = [
      "import socket, struct, sys",
      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
      "if sys.argv[3] == 'reset':",
      "    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))",
      "s.sendall(bytes.fromhex(sys.argv[2]))",
      "s.close()",
    ].join("\n");
    const ways = ["reset", "reset", "reset", "end"];
    try {
      for (const [i, how] of ways.entries()) {
        const r = await run("python3", ["-c", script, String(server.port), request, how]);
        assert.equal(r.code, 0, r.stderr);
        await server.waitForLog(/^tcpserver: end \d+ status \d+$/, i + 1, 10_000);
      }
      const log = server.log();
      assert.doesNotMatch(log, /internal error/);
      // Every session: one line of the wrapper's (it saw the client go) or of tlsd's (the
      // handshake that never came), and a status that is not 0.
      const sessions = log.split(/^tcpserver: ok .*\n/m).slice(1);
      assert.equal(sessions.length, ways.length, log);
      for (const session of sessions) {
        assert.match(
          session,
          /^(starttls-wrapper: warning: 127\.0\.0\.1: client reset the connection( before the answer to its (SSLRequest|StartTLS))?|tlsd: fatal: 127\.0\.0\.1: TLS handshake failed: .*)\ntcpserver: end \d+ status (25600|25088)$/m,
          log,
        );
      }
    } finally {
      await server.stop();
    }
  });
}

/** A python3 client that sends `hex`, reads for a while (the server goes on), then resets its
 * connection (SO_LINGER 0). */
const RESETTER = [
  "import socket, struct, sys, time",
  "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
  "s.sendall(bytes.fromhex(sys.argv[2]))",
  "s.settimeout(0.1)",
  "end = time.time() + 0.5",
  "while time.time() < end:",
  "    try:",
  "        if not s.recv(65536): break",
  "    except socket.timeout:",
  "        pass",
  "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))",
  "s.close()",
].join("\n");

const hex = (text: string) => Buffer.from(text, "latin1").toString("hex");
const XMPP_HEADER =
  "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'" +
  " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
/** MySQL's HandshakeResponse41 without CLIENT_SSL: a login in plaintext. */
const MYSQL_LOGIN = writePacket(
  1,
  Buffer.concat([
    sslRequestPayload(0x0200 | 0x8000 | 0x80000),
    Buffer.from("app\0\0mysql_native_password\0", "latin1"),
  ]),
).toString("hex");

/** Per protocol, what the client sends before its reset: nothing that decides (the wrapper
 * still reads the dialogue), then, where the wrapper relays a session that declined TLS, a
 * decline (it relays, the server is still on). */
const BEFORE_RESET: [string, string, string][] = [
  ["smtp", "before any STARTTLS", hex("EHLO x\r\n")],
  ["lmtp", "before any STARTTLS", hex("LHLO x\r\n")],
  ["imap", "before any STARTTLS", hex("a NOOP\r\n")],
  ["pop3", "before any STARTTLS", hex("CAPA\r\n")],
  ["nntp", "before any STARTTLS", hex("MODE READER\r\n")],
  ["sieve", "before any STARTTLS", hex("NOOP\r\n")],
  ["postgres", "before its start-up packet", ""],
  ["ldap", "before its first request", ""],
  ["mysql", "before its login", ""],
  ["xmpp", "before its STARTTLS decision", hex(XMPP_HEADER)],
  ["smtp", "in plaintext, after MAIL", hex("EHLO x\r\nMAIL FROM:<a@example.org>\r\n")],
  ["imap", "in plaintext, after LOGIN", hex("a LOGIN user pass\r\n")],
  ["mysql", "in plaintext, after its login", MYSQL_LOGIN],
  [
    "xmpp",
    "in plaintext, after <auth>",
    hex(`${XMPP_HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>`),
  ],
];

for (const [protocol, when, bytes] of BEFORE_RESET) {
  test(`${protocol}: a python3 client that resets its connection ${when}, the server still on: one warning line at the default verbosity naming the reset, and a status that is not 0 (it was no line, or one at -v 2 only)`, async () => {
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, "-t", "600"],
        ...serverBehind(protocol, true),
      ],
      { env: WRAPPER_ENV },
    );
    try {
      const r = await run("python3", ["-c", RESETTER, String(server.port), bytes]);
      assert.equal(r.code, 0, r.stderr);
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 1, 10_000);
      const log = server.log();
      const lines = log.match(/^starttls-wrapper: .*$/gm) ?? [];
      assert.equal(lines.length, 1, log);
      assert.match(
        lines[0] ?? "",
        /^starttls-wrapper: warning: 127\.0\.0\.1: client reset the connection( before .*)?$/,
      );
      assert.doesNotMatch(log, /^tcpserver: end \d+ status 0$/m);
    } finally {
      await server.stop();
    }
  });
}

// The server ran in the wrapper's process (ucspi-demo, one of ours) and its connection was a
// stream over the wrapper's socket pair; the wrapper then closed that fd's number itself, under
// the live stream: libuv aborted the process (SIGABRT, no word), our tcpserver with every
// connection it served, and the client had no 221. A client that sends QUIT and ends at once.
for (const server of [ours("tcpserver"), djb("tcpserver")]) {
  const who = server.startsWith("/usr") ? "djb's tcpserver" : "our tcpserver";
  test(`${who}: QUIT and an end at once, to a server in the wrapper's process: its answer, status 0`, async () => {
    const s = await startServer(
      server,
      ["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "ucspi-demo", "smtp"],
      { env: WRAPPER_ENV },
    );
    try {
      for (let i = 1; i <= 3; i++) {
        assert.equal(
          await talk(s.port, "QUIT\r\n"),
          "220 ucspi-tls.demo ESMTP demo sink\r\n221 ucspi-tls.demo bye\r\n",
        );
        await s.waitForLog(/^tcpserver: end \d+ status \d+$/, i);
      }
      assert.doesNotMatch(s.log(), /status [1-9]/, s.log());
    } finally {
      assert.equal((await s.stop()).code, 0, s.log());
    }
  });
}

// ucspi-demo (the server behind the wrapper in the recipes) said a client's reset in Node's
// words: "ucspi-demo: fatal: internal error: read ECONNRESET" (or write ECONNRESET).
test("ucspi-demo, a line service and an SMTP sink: a client that resets gets one line in our words", async () => {
  for (const program of [["ucspi-demo"], ["ucspi-demo", "smtp"]]) {
    const s = await startServer(ours("tcpserver"), ["-v", "-RHl0", "127.0.0.1", "0", ...program], {
      env: WRAPPER_ENV,
    });
    try {
      await goAway(s.port, "hello\r\n", "reset");
      await s.waitForLog(/^tcpserver: end \d+ status \d+$/);
      const said = s
        .log()
        .split("\n")
        .filter((line) => line.startsWith("ucspi-demo: "));
      assert.equal(said.length, 1, s.log());
      assert.match(
        said[0] ?? "",
        /^ucspi-demo: fatal: 127\.0\.0\.1: the client's connection broke: (connection reset|broken pipe)$/,
      );
    } finally {
      await s.stop();
    }
  }
});

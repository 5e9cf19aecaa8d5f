// starttls-wrapper against a hostile client and a misbehaving server, with real processes:
// a client refused under -r that goes on sending while the server has not answered yet (its
// bytes must not be kept), a server whose reply is past the wrapper's bounds (the client must
// get an answer and the end, not a session that hangs while the reply piles up).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { GREETING, serverBehind } from "../helpers/servers-behind.ts";
import { scratchDir } from "../helpers/scratch.ts";

const dir = scratchDir("wrapper-hardening");
const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const ENV = { ...process.env, PATH: PATH_WITH_BIN };
const FLOOD = 64 * 1024 * 1024;

/** The wrapper (remote mode, its TLS service never reached) in front of `sh -c script`. */
function wrapper(flags: string[], script: string) {
  return startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", ...flags],
      ...["127.0.0.1", "1", "sh", "-c", script],
    ],
    { env: ENV },
  );
}

/** A client socket and everything it has read, until the server closes. */
function open(port: number) {
  const socket: Socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let got = "";
  socket.on("data", (b: Buffer) => (got += b.toString("latin1")));
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(got)));
  return { socket, closed, got: () => got };
}

/** The peak resident memory of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
  assert.ok(m, "no VmHWM");
  return Number(m[1]) * 1024;
}

test("-r: a refused client that goes on sending while the server has not greeted yet: none of its bytes are kept", async () => {
  // The server greets once the test creates the gate file (a server that delays its
  // greeting, as greetdelay or postscreen do).
  const gate = join(dir, "gate-1");
  const server = await wrapper(
    ["-r"],
    `while [ ! -e '${gate}' ]; do sleep 0.05; done; printf '220 late\\r\\n'; exec cat >/dev/null`,
  );
  try {
    const pid = server.child.pid ?? 0;
    const before = peakRss(pid);
    const c = open(server.port);
    // A bare LF: refused under -r, the refusal due after the greeting, which has not come.
    c.socket.write("EHLO a\n");
    const flood = Buffer.alloc(FLOOD, "A");
    // Once the kernel has taken it all, the wrapper has read all but its socket buffers.
    await new Promise<void>((resolve, reject) =>
      c.socket.write(flood, (error) => (error ? reject(error) : resolve())),
    );
    const grown = peakRss(pid) - before;
    writeFileSync(gate, "");
    assert.equal(await c.closed, "220 late\r\n500 5.5.2 bare LF in a command line\r\n");
    // Kept, the flood would be in the wrapper whole, and copied once more as each chunk was
    // added (its peak grew by more than twice the flood); dropped, it is garbage that the
    // collector takes back as it goes.
    assert.ok(grown < 1.5 * FLOOD, `the wrapper grew by ${grown} bytes`);
    await server.waitForLog(/^starttls-wrapper: warning: 127\.0\.0\.1: bare LF in a command line$/);
  } finally {
    await server.stop();
  }
});

/** An SMTP server whose EHLO reply is 1200 lines of 100 bytes (over the wrapper's 64 KiB a
 * reply), or, with LONG_LINE, one line of 20000 bytes (over its 16 KiB a line). Let go while
 * it writes, its shell would say so on the log it shares with tcpserver: it says nothing. */
const BIG_EHLO = `exec 2>/dev/null
printf '220 big\\r\\n'
while IFS= read -r line; do
  case "$line" in
    EHLO*) if [ -n "$LONG_LINE" ]; then printf '250 %020000d\\r\\n' 0
      else i=0; while [ $i -lt 1200 ]; do printf '250-%096d\\r\\n' $i; i=$((i+1)); done
        printf '250 end\\r\\n'; fi ;;
    QUIT*) printf '221 bye\\r\\n'; exit 0 ;;
    *) printf '250 ok\\r\\n' ;;
  esac
done`;

/** Reads until `pattern` matches what was read, or the end. */
async function readUntil(c: ReturnType<typeof open>, pattern: RegExp): Promise<string> {
  const ended = c.closed.then(() => undefined);
  while (!pattern.test(c.got())) {
    const more = new Promise<void>((resolve) => c.socket.once("data", () => resolve()));
    if ((await Promise.race([more.then(() => true), ended.then(() => false)])) === false) break;
  }
  return c.got();
}

for (const [what, longLine] of [
  ["a reply over 64 KiB", ""],
  ["a reply line over 16 KiB", "1"],
] as const) {
  test(`-o: the server's EHLO reply is ${what}: it reaches the client as it is, and the session goes on unread`, async () => {
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "127.0.0.1", "1"],
        ...["sh", "-c", BIG_EHLO],
      ],
      { env: { ...ENV, LONG_LINE: longLine } },
    );
    try {
      const c = open(server.port);
      c.socket.write("EHLO a\r\n");
      const reply = await readUntil(c, /^250 .*\r\n/m);
      assert.equal(reply.length, longLine ? 9 + 20006 : 9 + 1200 * 102 + 9);
      assert.doesNotMatch(reply, /STARTTLS/);
      c.socket.write("QUIT\r\n");
      assert.equal((await c.closed).slice(reply.length), "221 bye\r\n");
      const limit = longLine ? "reply line over 16384" : "reply over 65536";
      await server.waitForLog(
        new RegExp(`^starttls-wrapper: warning: 127\\.0\\.0\\.1: server ${limit} bytes$`),
      );
      await server.waitForLog(/^tcpserver: end \d+ status 0$/);
      // One line, in our words (the reply used to be pumped again for each chunk: the
      // runtime's MaxListenersExceededWarning).
      assert.doesNotMatch(server.log(), /^\(node:/m);
    } finally {
      await server.stop();
    }
  });

  test(`${what}, with a command due after it or under -r: the client gets 421 and the end`, async () => {
    for (const [flags, bytes] of [
      [[], "EHLO a\r\nNOOP\r\n"],
      [["-r"], "EHLO a\r\n"],
    ] as const) {
      const server = await startServer(
        ours("tcpserver"),
        [
          ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", ...flags, "127.0.0.1", "1"],
          ...["sh", "-c", BIG_EHLO],
        ],
        { env: { ...ENV, LONG_LINE: longLine } },
      );
      try {
        const c = open(server.port);
        c.socket.write(bytes);
        const limit = longLine ? "reply line over 16384" : "reply over 65536";
        assert.equal(await c.closed, `220 big\r\n421 4.7.0 server ${limit} bytes\r\n`);
        await server.waitForLog(
          new RegExp(`^starttls-wrapper: warning: 127\\.0\\.0\\.1: server ${limit} bytes$`),
        );
        await server.waitForLog(/^tcpserver: end \d+ status \d+$/);
      } finally {
        await server.stop();
      }
    }
  });
}

test("xmpp -r: the element a client sends instead of <starttls/> is named in the log printable and bounded", async () => {
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "xmpp", "-r"],
      ...["sh", "-c", "printf '<stream:stream><stream:features/>'; exec cat >/dev/null"],
    ],
    { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  try {
    for (const name of ["\x1b[31mEVIL\x07\b\b\b\b", "\x01\x7f\x85x", "n".repeat(20000)]) {
      const c = open(server.port);
      c.socket.write("<stream:stream to='example.org'>");
      await readUntil(c, /<\/stream:features>/);
      c.socket.write(`<${name} x='1'/>`);
      assert.match(await c.closed, /<policy-violation /);
    }
    const lines = await server.waitForLog(/^starttls-wrapper: warning: /, 3);
    assert.deepEqual(lines, [
      "starttls-wrapper: warning: 127.0.0.1: <?[31mEVIL?????> before STARTTLS: refused (-r)",
      "starttls-wrapper: warning: 127.0.0.1: <????x> before STARTTLS: refused (-r)",
      `starttls-wrapper: warning: 127.0.0.1: <${"n".repeat(61)}...> before STARTTLS: refused (-r)`,
    ]);
    assert.doesNotMatch(server.log(), /[^\x20-\x7e\n]/);
  } finally {
    await server.stop();
  }
});

test("a TLS service whose host name does not resolve: 454, and the log line says so in our words", async () => {
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "nosuchhost.invalid", "1"],
      ...["sh", "-c", "printf '220 hi\\r\\n'; exec cat >/dev/null"],
    ],
    { env: ENV },
  );
  try {
    const c = open(server.port);
    c.socket.write("STARTTLS\r\n");
    const got = await readUntil(c, /^454 .*\r\n/m);
    assert.equal(got, "220 hi\r\n454 4.7.0 TLS not available due to temporary reason\r\n");
    c.socket.destroy();
    const [line] = await server.waitForLog(/^starttls-wrapper: warning: /);
    assert.match(
      line ?? "",
      /^starttls-wrapper: warning: 127\.0\.0\.1: TLS service unavailable: (temporarily )?unable to figure out IP address for nosuchhost\.invalid$/,
    );
  } finally {
    await server.stop();
  }
});

test("a session the wrapper ends (a command pipelined after STARTTLS, a refusal under -r) ends with status 100, not that of the server it let go", async () => {
  for (const [flags, bytes, reply] of [
    [[], "STARTTLS\r\nRSET\r\n", "554 5.5.1 Error: command pipelined after STARTTLS\r\n"],
    [["-r"], "EHLO a\n", "500 5.5.2 bare LF in a command line\r\n"],
    [
      ["-r", "-p", "imap"],
      "a LOGIN {5}\r\n",
      "* BYE Literals are not accepted before STARTTLS\r\n",
    ],
  ] as const) {
    const greeting = (flags as readonly string[]).includes("imap") ? "* OK hi" : "220 hi";
    const server = await wrapper([...flags], `printf '${greeting}\\r\\n'; exec cat >/dev/null`);
    try {
      const c = open(server.port);
      c.socket.write(bytes);
      assert.equal(await c.closed, `${greeting}\r\n${reply}`);
      // tcpserver's end line has the wait status: exit 100 is 25600 (the server that was let
      // go, SIGTERM, is 15).
      await server.waitForLog(/^tcpserver: end \d+ status 25600$/);
    } finally {
      await server.stop();
    }
  }
});

test("-r -t: the pre-TLS limit ends the session even when the server has not answered (or greeted)", async () => {
  for (const [script, bytes, before] of [
    ["exec cat >/dev/null", "", ""],
    ["printf '220 hi\\r\\n'; read x; exec cat >/dev/null", "EHLO a\r\n", "220 hi\r\n"],
  ] as const) {
    const server = await wrapper(["-r", "-t", "1"], script);
    try {
      const c = open(server.port);
      c.socket.write(bytes);
      assert.equal(await c.closed, `${before}421 4.7.0 no STARTTLS within 1 s\r\n`);
      await server.waitForLog(/^starttls-wrapper: warning: 127\.0\.0\.1: no STARTTLS within 1 s$/);
      await server.waitForLog(/^tcpserver: end \d+ status 25600$/);
    } finally {
      await server.stop();
    }
  }
});

/** The -p mysql wrapper (-v 2) in front of `server`; a client that ends, then one that resets,
 * once `ready` (its connection is up, or the greeting came): each session ends with one line,
 * `when` (an info line for the end, a warning for the reset), and status 100 (exit 100 is wait
 * status 25600). */
async function mysqlClientLeaves(server: string[], ready: "connect" | "data", when: string) {
  const wrapper = await startServer(
    ours("tcpserver"),
    [...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v", "2", "-p", "mysql"], ...server],
    { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  try {
    for (const [i, how] of (["end", "reset"] as const).entries()) {
      const c = open(wrapper.port);
      await new Promise<void>((resolve) => c.socket.once(ready, () => resolve()));
      if (how === "end") c.socket.end();
      else c.socket.resetAndDestroy();
      await c.closed;
      await wrapper.waitForLog(/^tcpserver: end \d+ status \d+$/, i + 1);
    }
    const lines = wrapper.log().match(/^(starttls-wrapper|tcpserver: end).*$/gm) ?? [];
    assert.deepEqual(
      lines.map((l) => l.replace(/^tcpserver: end \d+ /, "tcpserver: end PID ")),
      [
        `starttls-wrapper: info: 127.0.0.1: the client left ${when}`,
        "tcpserver: end PID status 25600",
        `starttls-wrapper: warning: 127.0.0.1: client reset the connection ${when}`,
        "tcpserver: end PID status 25600",
      ],
    );
  } finally {
    await wrapper.stop();
  }
}

test("-t: a STARTTLS still waiting for an earlier reply when the limit runs out gets no go-ahead: -o answers it 'not now' and relays the rest in plaintext (the client's held bytes too), -r closes (it used to be upgraded once the reply came)", async () => {
  for (const [flags, expected] of [
    [[], "220 hi\r\n250 ok\r\n454 4.7.0 TLS not available due to temporary reason\r\n221 bye\r\n"],
    [["-r"], "220 hi\r\n421 4.7.0 no STARTTLS within 1 s\r\n"],
  ] as const) {
    // Local mode. The server answers NOOP only once it has the line after it: the client's
    // QUIT, which reaches it only in plaintext, once the limit has run out, whenever it is sent.
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-t", "1", "-K", "3000"],
        ...flags,
        ...[
          "sh",
          "-c",
          String.raw`printf '220 hi\r\n'; read a; read b; printf '250 ok\r\n221 bye\r\n'`,
        ],
      ],
      { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
    );
    try {
      const c = open(server.port);
      c.socket.write("NOOP\r\nSTARTTLS\r\n", () => c.socket.write("QUIT\r\n"));
      assert.equal(await c.closed, expected, flags.join(" "));
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/);
      assert.doesNotMatch(server.log(), /internal error|tlsd:/);
    } finally {
      await server.stop();
    }
  }
});

test("mysql: a client that leaves after the greeting, before its login or SSLRequest: no warning of a broken connection phase, status 100 (not 111, a failure of this side)", () =>
  mysqlClientLeaves(serverBehind("mysql", true), "data", "before its login or SSLRequest"));

test("mysql: a client that leaves before the server's greeting: one line naming it, status 100 as before its login (it was status 0)", () =>
  // A server that never greets: the client's end (or reset) comes first, whatever the timing.
  mysqlClientLeaves(
    ["sh", "-c", "exec cat >/dev/null"],
    "connect",
    "before the server's greeting",
  ));

/** python3's own clients: the capabilities each reads from the wrapper before TLS. */
const CAPABILITIES_SEEN = `
import json, sys, smtplib, poplib, imaplib
proto, port = sys.argv[1], int(sys.argv[2])
if proto == "smtp":
    s = smtplib.SMTP("127.0.0.1", port); s.ehlo("a"); seen = s.esmtp_features
elif proto == "pop3":
    seen = poplib.POP3("127.0.0.1", port).capa()
else:
    seen = imaplib.IMAP4("127.0.0.1", port).capabilities
print(json.dumps(sorted(k.upper() for k in seen)))
`;

test("-r: a capability the docs hide before TLS is hidden when a tab follows it (AUTH, SASL, USER, AUTH=): python3's smtplib, poplib and imaplib read the tab as a space, and used to see AUTH", async () => {
  for (const [protocol, script, expected] of [
    [
      "smtp",
      String.raw`printf '220 mx\r\n'; read x; printf '250-mx\r\n250-AUTH\tPLAIN LOGIN\r\n250-auth=login\tplain\r\n250 SIZE\t1000\r\n'; exec cat >/dev/null`,
      ["SIZE", "STARTTLS"],
    ],
    [
      "pop3",
      String.raw`printf '+OK hi\r\n'; read x; printf '+OK caps\r\nSASL\tPLAIN\r\nUSER\t\r\nTOP\r\n.\r\n'; exec cat >/dev/null`,
      ["STLS", "TOP"],
    ],
    [
      "imap",
      String.raw`printf '* OK [CAPABILITY IMAP4rev1\tAUTH=PLAIN] hi\r\n'; read t x; printf "* CAPABILITY\tIMAP4rev1\tAUTH=PLAIN AUTH=LOGIN\r\n$t OK done\r\n"; exec cat >/dev/null`,
      ["IMAP4REV1", "LOGINDISABLED", "STARTTLS"],
    ],
  ] as const) {
    const server = await wrapper(["-r", "-p", protocol], script);
    try {
      const r = await run("python3", ["-c", CAPABILITIES_SEEN, protocol, String(server.port)]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), expected, protocol);
    } finally {
      await server.stop();
    }
  }
});

test("mysql -r -t: a server that does not greet, or a client that sends no login or SSLRequest, within the limit: a warning naming what did not come, status 100 (it was 'the connection phase broke off' and 111, a failure of this side)", async () => {
  for (const [script, what] of [
    ["exec cat >/dev/null", "greeting from the server"],
    [serverBehind("mysql", true)[2] ?? "", "login or SSLRequest"],
  ] as const) {
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-r", "-t", "1", "-p", "mysql"],
        ...["sh", "-c", script],
      ],
      { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
    );
    try {
      await open(server.port).closed;
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/);
      const lines = server.log().match(/^(starttls-wrapper|tcpserver: end).*$/gm) ?? [];
      assert.deepEqual(
        lines.map((l) => l.replace(/^tcpserver: end \d+ /, "tcpserver: end PID ")),
        [
          `starttls-wrapper: warning: 127.0.0.1: no ${what} within 1 s`,
          "tcpserver: end PID status 25600",
        ],
      );
    } finally {
      await server.stop();
    }
  }
});

// The wrapper's end of the server was closed, and the server awaited until it left by itself.
test("mysql -r -t: a server that neither greets nor reads its input is let go when the session ends; its slot is not held", async () => {
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-r", "-t", "1", "-p", "mysql"],
      ...["sh", "-c", "exec sleep 60"],
    ],
    { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  try {
    await open(server.port).closed;
    await server.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: no greeting from the server within 1 s$/,
    );
    await server.waitForLog(/^tcpserver: end \d+ status 25600$/);
  } finally {
    await server.stop();
  }
});

test("mysql -t, opportunistic: a server that greets only after the limit: its greeting reaches the client as it sent it (no CLIENT_SSL added), and the session goes on in plaintext, as past the line protocols' limits (it used to end with status 100)", async () => {
  const gate = join(dir, "gate-mysql");
  const [, , greetThenEcho] = serverBehind("mysql");
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-v", "2", "-t", "1", "-p"],
      ...["mysql", "sh", "-c", `while [ ! -e '${gate}' ]; do sleep 0.05; done; ${greetThenEcho}`],
    ],
    { env: { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
  try {
    const c = open(server.port);
    await server.waitForLog(
      /^starttls-wrapper: info: 127\.0\.0\.1: no greeting from the server within 1 s: plaintext$/,
    );
    writeFileSync(gate, "");
    const greeting = GREETING["mysql"]?.toString("latin1") ?? "";
    await waitFor(
      () => c.got() === greeting || undefined,
      10_000,
      () => c.got(),
    );
    c.socket.end("after the limit");
    assert.equal(await c.closed, `${greeting}after the limit`);
    await server.waitForLog(/^tcpserver: end \d+ status 0$/);
    assert.doesNotMatch(server.log(), /starttls-wrapper: warning/);
  } finally {
    await server.stop();
  }
});

test("-r: the first command refused before STARTTLS is logged, once a session, printable", async () => {
  const server = await wrapper(["-r"], "printf '220 hi\\r\\n'; exec cat >/dev/null");
  try {
    for (const bytes of [
      "AUTH PLAIN AGEAYg==\r\nAUTH LOGIN\r\nMAIL FROM:<a@b>\r\n",
      "\x1b[2J\x07 x\r\nAUTH PLAIN\r\n",
    ]) {
      const c = open(server.port);
      c.socket.write(bytes);
      await readUntil(c, bytes.startsWith("AUTH") ? /^530 .*\r\n/m : /^538 .*\r\n/m);
      c.socket.destroy();
      await c.closed;
    }
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 2);
    assert.deepEqual(server.log().match(/^starttls-wrapper: .*$/gm), [
      "starttls-wrapper: warning: 127.0.0.1: AUTH before STARTTLS: refused (-r)",
      "starttls-wrapper: warning: 127.0.0.1: ?[2J? before STARTTLS: refused (-r)",
    ]);
  } finally {
    await server.stop();
  }
});

test("imap -r: every capability list before TLS is the wrapper's (an untagged CAPABILITY in a NOOP reply, a [CAPABILITY] code in a tagged line): none offers AUTH=, each has STARTTLS and LOGINDISABLED", async () => {
  const server = await wrapper(
    ["-r", "-p", "imap"],
    "printf '* OK hi\\r\\n'; while read t c rest; do " +
      "printf '* CAPABILITY IMAP4rev1 AUTH=PLAIN\\r\\n%s OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] done\\r\\n' \"$t\"; done",
  );
  try {
    const c = open(server.port);
    c.socket.write("a NOOP\r\nb CAPABILITY\r\n");
    const caps = "IMAP4rev1 STARTTLS LOGINDISABLED";
    assert.equal(
      await readUntil(c, /^b .*\r\n/m),
      `* OK hi\r\n` +
        `* CAPABILITY ${caps}\r\na OK [CAPABILITY ${caps}] done\r\n` +
        `* CAPABILITY ${caps}\r\nb OK [CAPABILITY ${caps}] done\r\n`,
    );
    c.socket.destroy();
  } finally {
    await server.stop();
  }
});

const CANNOT_RUN =
  "starttls-wrapper: fatal: unable to run /nonexistent/server: file does not exist";

// A server that cannot be run, on the paths that start it before the client has spoken (MySQL,
// XMPP): its failure was swallowed, the session ended as one of ours (status 100) with no line
// saying why, or (MySQL) a warning that the connection phase broke off. Now the line paths'
// one line, and 111.
test("mysql, xmpp: a server that cannot be run: one line saying so, status 111", async () => {
  const env = { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key };
  for (const protocol of ["mysql", "xmpp"]) {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, "/nonexistent/server"],
      { env },
    );
    try {
      const client = connect(s.port, "127.0.0.1");
      client.on("error", () => {});
      client.resume();
      await s.waitForLog(/^tcpserver: end /);
      client.destroy();
      const said = s
        .log()
        .split("\n")
        .filter((l) => l.startsWith("starttls-wrapper: "));
      assert.deepEqual(said, [CANNOT_RUN], protocol);
      assert.match(s.log(), /^tcpserver: end \d+ status 28416$/m, protocol);
    } finally {
      await s.stop();
    }
  }
});

// As a process of its own on two pipes, the line paths said a warning in Node's words after
// that line: "warning: unknown: client connection failed: The operation was aborted" (their
// own destroy of the client's stream, which Node's Duplex.from says as an AbortError).
test("on two pipes, a server that cannot be run: that one line, nothing after it", async () => {
  const env = { ...ENV, CERTFILE: pair.cert, KEYFILE: pair.key };
  for (const protocol of ["smtp", "imap"]) {
    const alone = await run(
      "/bin/sh",
      [
        "-c",
        `cat /dev/null | ${ours("starttls-wrapper")} -p ${protocol} /nonexistent/server | cat`,
      ],
      { env },
    );
    assert.equal(alone.stderr, `${CANNOT_RUN}\n`, protocol);
  }
});

// The server's side resets its connection in the middle of a session: one line names it, the
// session ends non-zero, and the client's TLS session is cut (no close_notify, so that its TLS
// library reports an unexpected end, not a clean one), or in plaintext its connection reset.
// The MySQL path inside TLS ended such a session with status 0 and a close_notify; a TLS
// service that reset the wrapper's hand-over connection (remote mode) ended it with status 0,
// no line, and a FIN to the client; a daemon that reset its connection before TLS or in a
// plaintext session had the client get a FIN, a clean end, for a cut reply.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { test } from "node:test";
import { writePacket } from "../../src/dialogue/mysql.ts";
import { makePki } from "../helpers/certs.ts";
import { greetingPayload } from "../helpers/mysql-packets.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { PY_STRICT_EOF } from "../helpers/py-bio.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
const ENV = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key };

/** A python3 daemon on a port of its own (printed first): per connection, it skips a PROXY v2
 * header (argv 3 "proxy", "tls"), makes the TLS handshake after it ("tls": a TLS service),
 * sends its greeting (hex, argv 1), answers each read with argv 2 (hex), and resets its
 * connection (SO_LINGER 0) once it has read RESETME ("proxy": its first bytes). */
const DAEMON = `
import socket, ssl, struct, sys, threading
greeting, answer, mode = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
l = socket.create_server(('127.0.0.1', 0))
print(l.getsockname()[1], flush=True)
def exact(c, n):
    b = b''
    while len(b) < n: b += c.recv(n - len(b))
    return b
def serve(raw):
    c = raw
    if mode != 'plain':
        head = exact(raw, 16)
        exact(raw, struct.unpack('>H', head[14:16])[0])
    if mode == 'tls':
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[4], sys.argv[5])
        try:
            c = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            pass
    if c is not raw or mode != 'tls':
        c.sendall(greeting)
    seen = b''
    while b'RESETME' not in seen and not (mode == 'proxy' and seen):
        try:
            d = c.recv(65536)
        except (OSError, ssl.SSLError):
            d = b''
        if not d:
            c.close()
            return
        seen += d
        if b'RESETME' not in seen and mode != 'proxy' and answer:
            c.sendall(answer)
    # On the TLS socket, which has the descriptor now: closed without a close_notify.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()
while True:
    threading.Thread(target=serve, args=(l.accept()[0],), daemon=True).start()
`;

/** Starts DAEMON; resolves with its port and the process. */
function daemon(args: string[]): Promise<{ port: number; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", DAEMON, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    child.once("exit", (code) => reject(new Error(`daemon exited: ${String(code)}`)));
    child.stdout.once("data", (d: Buffer) => resolve({ port: Number(String(d).trim()), child }));
  });
}

const hex = (text: string) => Buffer.from(text, "latin1").toString("hex");

/** tcpserver running starttls-wrapper (`args`, then tcpforward to the daemon's `port`). */
function wrapperBefore(args: string[], port: number): Promise<RunningServer> {
  return startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", ...args],
      ...["tcpforward", "127.0.0.1", String(port)],
    ],
    { env: ENV },
  );
}

/** The session's end: tcpforward's line naming the daemon's reset, the only one, and status
 * 111. */
async function tcpforwardsLine(server: RunningServer, port: number): Promise<void> {
  await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 1, 10_000);
  const lines = server.log().match(/^(?!tcpserver: ).+$/gm) ?? [];
  assert.deepEqual(
    lines,
    [
      `tcpforward: fatal: 127.0.0.1: the connection to 127.0.0.1 port ${port} broke: connection reset`,
    ],
    server.log(),
  );
  assert.match(server.log(), /^tcpserver: end \d+ status 28416$/m);
}

/** A python3 TLS client that reads to the end of its session: prints "clean" (a close_notify),
 * "cut" (a FIN without one) or "reset" (python's TLS says an unexpected end for a reset too:
 * a write on the TCP socket tells them apart, as it fails after a reset only). */
const READ_TO_END = `
def to_end(s):
    try:
        while s.recv(65536): pass
        print('clean')
    except ConnectionResetError:
        print('reset')
    except ssl.SSLEOFError:
        tcp = socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.send(b'x')
            print('cut')
        except (BrokenPipeError, ConnectionResetError):
            print('reset')
`;

/** MySQL: the client's steps through the wrapper (argv 2): a login in plaintext, then a query
 * the server resets at; an SSLRequest, then the login inside TLS, then the query; the login
 * inside TLS is what the server resets at. */
const MYSQL_CLIENT = `
import socket, ssl, struct, sys
${READ_TO_END}
def pkt(seq, payload): return struct.pack('<I', len(payload))[:3] + bytes([seq]) + payload
def read(s):
    head = b''
    while len(head) < 4: head += s.recv(4 - len(head))
    n, body = int.from_bytes(head[:3], 'little'), b''
    while len(body) < n: body += s.recv(n - len(body))
    return head[3], body
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
read(s)
flags = 0x0200 | 0x8000 | 0x80000
head = lambda f: struct.pack('<IIB', f, 16 * 1024 * 1024, 45) + bytes(23)
login = lambda user: head(flags | 0x0800) + user + b'\\0\\0mysql_native_password\\0'
if sys.argv[2] == 'plain':
    s.sendall(pkt(1, head(flags) + b'app\\0\\0mysql_native_password\\0'))
    read(s)
    s.sendall(pkt(0, b'\\x03select RESETME'))
    try:
        while s.recv(65536): pass
        print('clean')
    except ConnectionResetError:
        print('reset')
    sys.exit(0)
s.sendall(pkt(1, head(flags | 0x0800)))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
${PY_STRICT_EOF}
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
s = ctx.wrap_socket(s, suppress_ragged_eofs=False)
if sys.argv[2] == 'login':
    s.sendall(pkt(2, login(b'RESETME')))
else:
    s.sendall(pkt(2, login(b'app')))
    read(s)
    s.sendall(pkt(0, b'\\x03select RESETME'))
to_end(s)
`;

/** The server's OK to a login (sequence 2) and to a query (1; the client takes either). */
const MYSQL_OK = "0700000200000002000000";

for (const [when, expected] of [
  ["login", "cut"],
  ["query", "cut"],
  ["plain", "reset"],
] as const) {
  test(`mysql: a daemon behind tcpforward that resets its connection ${when === "login" ? "during the login inside TLS" : when === "query" ? "inside TLS, after the login" : "in plaintext, after the login"}: tcpforward's one line, status 111${expected === "cut" ? ", the client's TLS session cut (it was status 0 and a close_notify after the login, and a second line of the wrapper's during it)" : ", the client's connection reset (it was a FIN)"}`, async () => {
    const greeting = writePacket(0, greetingPayload(0x0200 | 0x8000 | 0x80000)).toString("hex");
    const behind = await daemon([greeting, MYSQL_OK, "plain"]);
    const server = await wrapperBefore(["-p", "mysql"], behind.port);
    try {
      const r = await run("python3", ["-c", MYSQL_CLIENT, String(server.port), when]);
      assert.equal(r.code, 0, r.stderr);
      // Cut: a reset or a FIN, never a close_notify.
      if (expected === "cut") assert.match(r.stdout.trim(), /^(cut|reset)$/);
      else assert.equal(r.stdout.trim(), expected);
      await tcpforwardsLine(server, behind.port);
    } finally {
      await server.stop();
      behind.child.kill();
    }
  });
}

/** SMTP up to the go-ahead, then TLS: the EHLO inside it, and RESETME, which the TLS service
 * resets at (argv 2 "session"), or only the ClientHello, which it resets at ("handshake"). */
const SMTP_CLIENT = `
import socket, ssl, sys
${READ_TO_END}
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
f.readline()
s.sendall(b'EHLO x\\r\\n')
while f.readline()[3:4] == b'-': pass
s.sendall(b'STARTTLS\\r\\n')
assert f.readline().startswith(b'220 ')
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
${PY_STRICT_EOF}
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
try:
    s = ctx.wrap_socket(s, suppress_ragged_eofs=False)
except ConnectionResetError:
    print('reset')
    sys.exit(0)
except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
    print('cut')
    sys.exit(0)
s.sendall(b'EHLO x\\r\\n')
s.recv(65536)
s.sendall(b'RESETME\\r\\n')
to_end(s)
`;

for (const when of ["handshake", "session"]) {
  test(`smtp, remote mode: a TLS service that resets the hand-over connection during the ${when}: one warning line, status 111, the client reset too (it was status 0, no line, and a FIN)`, async () => {
    // The TLS service: python3's TLS after the PROXY header (no greeting: tlsd would swallow
    // the server's), or a service that resets at the ClientHello.
    const service = await daemon(
      when === "session"
        ? ["", hex("250 fake\r\n"), "tls", pair.cert, pair.key]
        : ["", "", "proxy"],
    );
    const behind = await daemon([hex("220 fake ESMTP\r\n"), hex("250 ok\r\n"), "plain"]);
    const server = await wrapperBefore(["127.0.0.1", String(service.port)], behind.port);
    try {
      const r = await run("python3", ["-c", SMTP_CLIENT, String(server.port), when]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), "reset", server.log() + r.stderr);
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 1, 10_000);
      const lines = server.log().match(/^(?!tcpserver: ).+$/gm) ?? [];
      assert.deepEqual(
        lines,
        ["starttls-wrapper: warning: 127.0.0.1: TLS service reset the connection"],
        server.log(),
      );
      assert.match(server.log(), /^tcpserver: end \d+ status 28416$/m);
    } finally {
      await server.stop();
      service.child.kill();
      behind.child.kill();
    }
  });
}

/** A plaintext client (argv 1: the port): for each pair of argv after it, it waits for the
 * first (hex) to have come, then sends the second; then it reads to the end and prints
 * "reset" (ConnectionResetError) or "clean" (an EOF). */
const PLAIN_CLIENT = `
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
got, steps = b'', [bytes.fromhex(a) for a in sys.argv[2:]]
for wait, send in zip(steps[0::2], steps[1::2]):
    while wait not in got:
        d = s.recv(65536)
        assert d, got
        got += d
    s.sendall(send)
try:
    while s.recv(65536): pass
    print('clean')
except ConnectionResetError:
    print('reset')
`;

/** What the client got before. */
const FIN = " (it was a FIN, a clean end)";
const SMTP_GREETING = hex("220 fake ESMTP\r\n");
const XMPP_HEADER =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='example.test'>";
/** A PostgreSQL StartupMessage (protocol 3.0, user app). */
const STARTUP = (() => {
  const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from("user\0app\0\0", "latin1")]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length + 4);
  return Buffer.concat([length, body]).toString("hex");
})();

/** Plaintext sessions the daemon behind resets: the wrapper's arguments before tcpforward, the
 * daemon's greeting and answer, the client's steps (see PLAIN_CLIENT), and what it was. The
 * PostgreSQL path gives tcpforward the client's own connection: its reset was passed on
 * already. */
const PLAINTEXT: [string, string[], string, string, string[], string][] = [
  [
    "smtp, remote mode, a command the wrapper follows (EHLO)",
    ["127.0.0.1", "1"],
    SMTP_GREETING,
    "",
    [SMTP_GREETING, hex("EHLO RESETME\r\n")],
    FIN,
  ],
  [
    "smtp, remote mode, after the client declined TLS (MAIL)",
    ["127.0.0.1", "1"],
    SMTP_GREETING,
    hex("250 ok\r\n"),
    [SMTP_GREETING, hex("MAIL FROM:<RESETME>\r\n")],
    FIN,
  ],
  [
    "smtp, local mode, after the client declined TLS (MAIL)",
    [],
    SMTP_GREETING,
    hex("250 ok\r\n"),
    [SMTP_GREETING, hex("MAIL FROM:<RESETME>\r\n")],
    FIN,
  ],
  [
    "postgres, a start-up without TLS",
    ["-p", "postgres"],
    "",
    "",
    ["", STARTUP + hex("RESETME")],
    "",
  ],
  [
    "xmpp, after the client declined TLS (<auth>)",
    ["-p", "xmpp"],
    hex("<stream:stream><stream:features><mechanisms/></stream:features>"),
    "",
    [
      "",
      hex(XMPP_HEADER),
      hex("</stream:features>"),
      hex("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>RESETME</auth>"),
    ],
    FIN,
  ],
  [
    "xmpp, before the STARTTLS decision, after the server's features",
    ["-p", "xmpp"],
    hex("<stream:stream><stream:features><mechanisms/></stream:features>"),
    "",
    ["", hex(XMPP_HEADER.replace("example.test", "RESETME"))],
    " (it was status 100)",
  ],
  [
    "xmpp, before the STARTTLS decision and the server's features",
    ["-p", "xmpp"],
    hex("<stream:stream>"),
    "",
    ["", hex(XMPP_HEADER.replace("example.test", "RESETME"))],
    " (it was status 100)",
  ],
];

for (const [what, wrapperArgs, greeting, answer, steps, was] of PLAINTEXT) {
  test(`${what}: a daemon behind tcpforward that resets its connection has the client's reset too${was}, tcpforward's one line, status 111`, async () => {
    const behind = await daemon([greeting, answer, "plain"]);
    const server = await wrapperBefore(wrapperArgs, behind.port);
    try {
      const r = await run("python3", ["-c", PLAIN_CLIENT, String(server.port), ...steps]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), "reset", server.log());
      await tcpforwardsLine(server, behind.port);
    } finally {
      await server.stop();
      behind.child.kill();
    }
  });
}

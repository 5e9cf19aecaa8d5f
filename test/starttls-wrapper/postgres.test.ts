// starttls-wrapper -p postgres in front of a real PostgreSQL 15 server that has no TLS (ssl=off),
// reached by tcpforward: psql with sslmode=verify-full gets TLS from the wrapper and the server
// sees a plaintext session; sslmode=disable goes through untouched, or is refused with -r;
// a GSSENCRequest gets 'N'; bytes sent after an SSLRequest before its answer are refused.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { startPostgres } from "../helpers/postgres.ts";
import type { Postgres } from "../helpers/postgres.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import {
  CLIENT_PRELUDE,
  lateFirstPacket,
  opensslStartTls,
  startWrapperPair,
} from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost", "127.0.0.1"]);
let pg: Postgres;
let pgPort = 0;
let wrappers: WrapperPair | undefined;
let opportunistic: RunningServer;
let required: RunningServer;

before(async () => {
  pg = await startPostgres();
  pgPort = pg.port;
  wrappers = await startWrapperPair("postgres", pgPort, leaf);
  opportunistic = wrappers.opportunistic;
  required = wrappers.required;
});

after(async () => {
  await wrappers?.stop();
  await pg.stop();
});

/** psql through the wrapper: the rows of `sql`, or the failure. */
function psql(port: number, sslmode: string, sql: string) {
  return run("psql", [
    `host=localhost port=${port} user=postgres dbname=postgres sslmode=${sslmode} sslrootcert=${pki.ca.cert} gssencmode=disable`,
    "-Atc",
    sql,
  ]);
}

// What the client has, and what the server behind sees: pg_stat_ssl of its own session.
const BOTH_ENDS =
  "select 'client', current_setting('port'); select ssl from pg_stat_ssl where pid = pg_backend_pid()";

test("psql sslmode=verify-full: TLS from the wrapper, verified; the server has a plaintext session", async () => {
  const r = await psql(opportunistic.port, "verify-full", BOTH_ENDS);
  assert.equal(r.code, 0, r.stderr + opportunistic.log() + pg.log());
  assert.equal(r.stdout, `client|${pgPort}\nf\n`);
  const info = await psql(opportunistic.port, "verify-full", "select 1");
  assert.equal(info.code, 0);
  await opportunistic.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: SSLRequest: TLS$/);
  // Asked for another name, the certificate does not verify, as it should not.
  const wrong = await run("psql", [
    `host=other.test hostaddr=127.0.0.1 port=${opportunistic.port} user=postgres sslmode=verify-full sslrootcert=${pki.ca.cert} gssencmode=disable`,
    "-Atc",
    "select 1",
  ]);
  assert.notEqual(wrong.code, 0);
  assert.match(
    wrong.stderr,
    /server certificate for "localhost".* does not match host name "other\.test"/,
  );
});

test("to the server's UNIX socket (tcpforward PATH): TLS from the wrapper, and the server sees a local session", async () => {
  const server = await startServer(
    ours("tcpserver"),
    ["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "postgres", "tcpforward", pg.socket],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    // inet_client_addr() is null for a session on a UNIX socket, and the port setting is the
    // same: one server behind both ways in.
    const r = await psql(
      server.port,
      "verify-full",
      `${BOTH_ENDS}; select inet_client_addr() is null`,
    );
    assert.equal(r.code, 0, r.stderr + server.log() + pg.log());
    assert.equal(r.stdout, `client|${pgPort}\nf\nt\n`);
  } finally {
    await server.stop();
  }
});

test("psql sslmode=disable: untouched to the server when opportunistic; refused with the server's kind of error with -r", async () => {
  const plain = await psql(opportunistic.port, "disable", BOTH_ENDS);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, `client|${pgPort}\nf\n`);
  const refused = await psql(required.port, "disable", "select 1");
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /FATAL: +TLS is required \(sslmode=require\)/);
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: a start-up without TLS: refused \(-r\)$/,
  );
  const tls = await psql(required.port, "require", "select 2");
  assert.equal(tls.stdout, "2\n", tls.stderr);
});

/** A python3 client that speaks the start-up packets by hand; prints what it got. */
function raw(port: number, script: string) {
  return run("python3", [
    "-c",
    [
      "import socket, ssl, struct, sys",
      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10)",
      "def req(code): return struct.pack('!II', 8, code)",
      "SSL, GSS = 80877103, 80877104",
      script,
    ].join("\n"),
    String(port),
    pki.ca.cert,
  ]);
}

test("a GSSENCRequest gets 'N'; the SSLRequest after it 'S', TLS, and the server's AuthenticationOk behind it", async () => {
  const r = await raw(
    opportunistic.port,
    [
      "s.sendall(req(GSS)); print(s.recv(1))",
      "s.sendall(req(SSL)); print(s.recv(1))",
      "t = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname='localhost')",
      "body = struct.pack('!I', 196608) + b'user\\0postgres\\0database\\0postgres\\0\\0'",
      "t.sendall(struct.pack('!I', len(body) + 4) + body)",
      "print(t.recv(1))",
    ].join("\n"),
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "b'N'\nb'S'\nb'R'\n");
});

test("bytes after the SSLRequest, before its answer (CVE-2021-23214): refused, never relayed", async () => {
  const r = await raw(
    opportunistic.port,
    [
      "body = struct.pack('!I', 196608) + b'user\\0postgres\\0\\0'",
      "s.sendall(req(SSL) + struct.pack('!I', len(body) + 4) + body)",
      "print(s.recv(100))",
    ].join("\n"),
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "b''\n");
  await opportunistic.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: \d+ bytes after the SSLRequest, before its answer: refused$/,
  );
  await opportunistic.waitForLog(/^tcpserver: end \d+ status 25600$/);
});

test("not a start-up packet: the server's kind of error, one line, and nothing reaches the server", async () => {
  const before = pg.log().length;
  const r = await raw(
    opportunistic.port,
    "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(200)[:1])",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "b'E'\n");
  await opportunistic.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: not a PostgreSQL start-up packet: /,
  );
  assert.doesNotMatch(pg.log().slice(before), /connection received/);
});

test("one port for both negotiations: PostgreSQL 17's direct TLS (ALPN postgresql) through tls-sniff and tlsd, the SSLRequest through the wrapper", async () => {
  const forward = ["tcpforward", "127.0.0.1", String(pgPort)];
  const direct = ["tlsd", "--alpn", "postgresql", ...forward];
  const server = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      "tls-sniff",
      "--plain",
      "{",
      "starttls-wrapper",
      "-p",
      "postgres",
      ...forward,
      "}",
      "--alpn",
      "postgresql",
      "{",
      ...direct,
      "}",
      ...direct,
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    // sslnegotiation=direct: a ClientHello first, ALPN postgresql, then the StartupMessage.
    const r = await run("python3", [
      "-c",
      [
        "import socket, ssl, struct, sys",
        "ctx = ssl.create_default_context(cafile=sys.argv[2])",
        "ctx.set_alpn_protocols(['postgresql'])",
        "t = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10), server_hostname='localhost')",
        "print(t.selected_alpn_protocol())",
        "body = struct.pack('!I', 196608) + b'user\\0postgres\\0database\\0postgres\\0\\0'",
        "t.sendall(struct.pack('!I', len(body) + 4) + body)",
        "print(t.recv(1))",
      ].join("\n"),
      String(server.port),
      pki.ca.cert,
    ]);
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.equal(r.stdout, "postgresql\nb'R'\n");
    // libpq's usual way on the same port.
    const psqlRun = await psql(server.port, "verify-full", BOTH_ENDS);
    assert.equal(psqlRun.stdout, `client|${pgPort}\nf\n`, psqlRun.stderr + server.log());
  } finally {
    await server.stop();
  }
});

test("openssl s_client -starttls postgres: the upgrade, the certificate verified, TLS 1.3", async () => {
  const r = await opensslStartTls(opportunistic.port, "postgres", pki.ca.cert, "localhost");
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
  assert.match(r.stderr, /^Verification: OK$/m);
});

test("a CancelRequest of protocol 3.2 (PostgreSQL 18: a secret key of up to 256 bytes) goes through to the server untouched, as one of 3.0 does (it was taken for malformed unless 16 bytes, and refused); one past 256 bytes is refused", async () => {
  const dir = scratchDir("pg");
  const got = join(dir, "got");
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-v2", "-p", "postgres"],
      ...["sh", "-c", 'exec cat >> "$0"', got],
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    const cancel = (key: number) =>
      `s.sendall(struct.pack('!III', ${12 + key}, 80877102, 4242) + b"k" * ${key}); s.shutdown(socket.SHUT_WR); print(s.recv(1))`;
    for (const key of [4, 32, 256]) {
      const r = await raw(server.port, cancel(key));
      assert.equal(r.stdout, "b''\n", r.stderr + server.log());
    }
    await server.waitForLog(/^tcpserver: end \d+ status 0$/, 3);
    assert.deepEqual(server.log().match(/: a CancelRequest$/gm), [
      ": a CancelRequest",
      ": a CancelRequest",
      ": a CancelRequest",
    ]);
    assert.equal(readFileSync(got).length, 16 + 44 + 268);
    const long = await raw(server.port, cancel(257));
    assert.equal(long.stdout, "b'E'\n", long.stderr);
    await server.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: not a PostgreSQL start-up packet: a 269-byte CancelRequest$/,
    );
    assert.equal(readFileSync(got).length, 16 + 44 + 268);
  } finally {
    await server.stop();
  }
});

// The issue: a CancelRequest "on a plaintext connection or after SSLRequest" is passed through.
// After the SSLRequest the wrapper never sees it (it is inside TLS): under -r, where a plaintext
// one would be the only way in without TLS, a client whose every connection is TLS (as libpq 17's
// encrypted cancel is) cancels a running query of its own. The query is seen running first, so
// the cancel cannot come before it (a cancel to an idle backend is lost); a query not cancelled
// ends (CommandComplete) in 30 s, and the client with it.
test("-r: a CancelRequest after an SSLRequest, inside TLS, reaches the server and cancels the running pg_sleep(30): error 57014", async () => {
  const script = `
import ssl, subprocess
def tls(sock):
    sock.sendall(struct.pack("!II", 8, 80877103))
    assert sock.recv(1) == b"S"
    return ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(sock, server_hostname="localhost")
def until(kind):
    while True:
        k = read(1)
        body = read(struct.unpack("!I", read(4))[0] - 4)
        if k == kind:
            return body
        if k in (b"E", b"C"):
            sys.exit(repr(k + body))
s = tls(s)
body = struct.pack("!I", 196608) + b"user\\0postgres\\0database\\0postgres\\0\\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
pid, key = struct.unpack("!II", until(b"K"))
until(b"Z")
s.sendall(b"Q" + struct.pack("!I", 24) + b"select pg_sleep(30)\\0")
watch = "select count(*) from pg_stat_activity where state = 'active' and query = 'select pg_sleep(30)'"
while subprocess.run(["psql", "host=127.0.0.1 port=${pgPort} user=postgres dbname=postgres", "-Atc", watch],
        capture_output=True, text=True, check=True).stdout != "1\\n":
    time.sleep(0.05)
c = tls(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
print(c.version())
c.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
print(c.recv(1))
fields = {f[:1]: f[1:].decode() for f in until(b"E").split(b"\\0") if f}
print(fields[b"C"], fields[b"M"])
`;
  const argv = ["-c", CLIENT_PRELUDE + script, String(required.port), pki.ca.cert];
  const r = await run("python3", argv, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr + required.log() + pg.log());
  // The server closes a cancel connection without a word: the end over TLS.
  assert.equal(r.stdout, "TLSv1.3\nb''\n57014 canceling statement due to user request\n");
  assert.match(pg.log(), /ERROR: +canceling statement due to user request/);
  assert.doesNotMatch(required.log(), /a CancelRequest/);
});

test("-t: a client that sends its start-up packet only after the pre-TLS limit: served in plaintext when opportunistic, as the line protocols' clients are (it used to be refused, status 100); -r closes", () =>
  lateFirstPacket(
    "postgres",
    pgPort,
    leaf,
    `
time.sleep(2)
params = b"user\\0postgres\\0database\\0postgres\\0\\0"
s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
def until(kind):
    while True:
        t = read(1)
        body = read(struct.unpack("!i", read(4))[0] - 4)
        if t == b"E":
            sys.exit(body.decode("latin1"))
        if t == kind:
            return body
until(b"Z")
q = b"select 40 + 2\\0"
s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
print(until(b"D")[6:].decode())
`,
    { served: "42\n", why: "no start-up packet within 1 s" },
  ));

// starttls-wrapper -p mysql in front of a real MariaDB server that has no TLS, reached by
// tcpforward: the mariadb client with --ssl-verify-server-cert gets TLS from the wrapper (its
// status shows the cipher) while the server's own session has none (Ssl_cipher empty); the
// mysql_native_password and ed25519 logins work through the moved sequence numbers; a
// login without TLS goes through untouched, or gets MySQL's "insecure transport" error with -r.
// With proxy_protocol_networks and tcpforward --proxy, MariaDB sees the client's own address.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { startMariaDb } from "../helpers/mariadb.ts";
import type { MariaDb } from "../helpers/mariadb.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import {
  CLIENT_PRELUDE,
  TLS_BY_HAND,
  lateFirstPacket,
  opensslStartTls,
  startWrapperPair,
} from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost", "127.0.0.1"]);
let db: MariaDb;
let dbPort = 0;
let wrappers: WrapperPair | undefined;
let opportunistic: RunningServer;
let required: RunningServer;

before(async () => {
  db = await startMariaDb();
  dbPort = db.port;
  wrappers = await startWrapperPair("mysql", dbPort, leaf);
  opportunistic = wrappers.opportunistic;
  required = wrappers.required;
});

after(async () => {
  await wrappers?.stop();
  await db.stop();
});

function client(port: number, user: string, password: string, tls: boolean, sql: string) {
  return run("mariadb", [
    "--no-defaults",
    "--protocol=tcp",
    "-h",
    "localhost",
    "-P",
    String(port),
    "-u",
    user,
    `-p${password}`,
    ...(tls ? ["--ssl", `--ssl-ca=${pki.ca.cert}`, "--ssl-verify-server-cert"] : ["--skip-ssl"]),
    "-e",
    sql,
  ]);
}

test("TLS from the wrapper, the certificate verified; the server's own session has none; large results flow", async () => {
  const r = await client(
    opportunistic.port,
    "app",
    "pw",
    true,
    "status; show session status like 'Ssl_cipher'; select length(repeat('x', 3000000)) as n",
  );
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stdout, /SSL:\s+Cipher in use is TLS_AES/);
  assert.match(r.stdout, /^Ssl_cipher\t$/m);
  assert.match(r.stdout, /^3000000$/m);
  await opportunistic.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: SSLRequest: TLS$/);
  const big = await client(opportunistic.port, "app", "pw", true, "select repeat('y', 3000000)");
  assert.equal(big.code, 0, big.stderr);
  assert.ok(big.stdout.includes("y".repeat(3_000_000)));
});

test("ed25519 through TLS; a wrong password is the server's own refusal", async () => {
  const ok = await client(opportunistic.port, "ed", "pw2", true, "select current_user()");
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ed@%$/m);
  const wrong = await client(opportunistic.port, "app", "nope", true, "select 1");
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /ERROR 1045 \(28000\): Access denied for user 'app'/);
});

test("a login without TLS: untouched when opportunistic; MySQL's insecure-transport error with -r", async () => {
  const plain = await client(opportunistic.port, "app", "pw", false, "select 'plain'");
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^plain$/m);
  const refused = await client(required.port, "app", "pw", false, "select 1");
  assert.notEqual(refused.code, 0);
  assert.match(
    refused.stderr,
    /ERROR 3159 \(HY000\): Connections using insecure transport are prohibited/,
  );
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: a login without TLS: refused \(-r\)$/,
  );
  const tls = await client(required.port, "app", "pw", true, "select 'tls'");
  assert.match(tls.stdout, /^tls$/m, tls.stderr);
});

test("openssl s_client -starttls mysql: the upgrade, the certificate verified, TLS 1.3", async () => {
  const r = await opensslStartTls(opportunistic.port, "mysql", pki.ca.cert, "localhost");
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
  assert.match(r.stderr, /^Verification: OK$/m);
});

test("on tlsd's native TLS engine, which -v 2 names: the mariadb client, and a python3 client whose ClientHello is in the same write as its SSLRequest (only the SSLRequest is taken: the engine gets the socket with the ClientHello unread in it)", async () => {
  const env = {
    ...process.env,
    PATH: PATH_WITH_BIN,
    CERTFILE: leaf.cert,
    KEYFILE: leaf.key,
    UCSPI_TLS_ENGINE: "native",
  };
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-v2", "-p", "mysql"],
      ...["tcpforward", "127.0.0.1", String(dbPort)],
    ],
    { env },
  );
  try {
    const r = await client(server.port, "app", "pw", true, "select 'on the engine'");
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.match(r.stdout, /^on the engine$/m);
    const hello = await run("python3", [
      "-c",
      CLIENT_PRELUDE +
        TLS_BY_HAND +
        `
import hashlib
def packet(seq, p):
    return len(p).to_bytes(3, "little") + bytes([seq]) + p
head = read(4)
greeting = read(head[0] | head[1] << 8 | head[2] << 16)
v = greeting.index(b"\\0", 1)
salt = greeting[v + 5 : v + 13] + greeting[v + 32 : v + 44]
# CLIENT_PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, and SSL.
flags = 0x0200 | 0x8000 | 0x80000 | 0x0800
tls = Tls(s, sys.argv[2], "localhost", packet(1, struct.pack("<IIB23x", flags, 1 << 24, 45)))
h1 = hashlib.sha1(b"pw").digest()
h3 = hashlib.sha1(salt + hashlib.sha1(h1).digest()).digest()
auth = bytes(a ^ b for a, b in zip(h1, h3))
login = struct.pack("<IIB23x", flags, 1 << 24, 45)
login += b"app\\0" + bytes([len(auth)]) + auth + b"mysql_native_password\\0"
tls.sendall(packet(2, login))
head = tls.read(4)
answer = tls.read(head[0] | head[1] << 8 | head[2] << 16)
print("OK" if answer[0] == 0 else answer[9:].decode("latin1"))
`,
      String(server.port),
      pki.ca.cert,
    ]);
    assert.equal(hello.stdout, "OK\n", hello.stderr + server.log());
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 2);
    assert.equal(server.log().match(/^tlsd: info: native TLS engine$/gm)?.length, 2, server.log());
    assert.doesNotMatch(server.log(), /node:tls/);
  } finally {
    await server.stop();
  }
});

/** A MySQL server behind the wrapper (python3, on its stdin and stdout) whose greeting names
 * the auth plugin argv[1]: it writes the login it reads (the HandshakeResponse41) to the file
 * argv[2], says OK to it, and OK to every command till COM_QUIT. */
const FAKE_MYSQL = [
  "import os, sys, struct",
  "plugin, out = sys.argv[1].encode(), sys.argv[2]",
  "flags = 0x0200 | 0x8000 | 0x80000 | 0x0001 | 0x0004 | 0x2000 | 0x200000",
  "g = bytes([10]) + b'8.0.99-fake\\0' + struct.pack('<I', 1) + b'abcdefgh' + b'\\0' \\",
  "    + struct.pack('<H', flags & 0xffff) + bytes([45, 2, 0]) + struct.pack('<H', flags >> 16) \\",
  "    + bytes([21]) + bytes(10) + b'ijklmnopqrst\\0' + plugin + b'\\0'",
  "def send(seq, p):",
  "    os.write(1, struct.pack('<I', len(p))[:3] + bytes([seq]) + p)",
  "def recv():",
  "    head = b''",
  "    while len(head) < 4:",
  "        b = os.read(0, 4 - len(head))",
  "        if not b: sys.exit(0)",
  "        head += b",
  "    n = head[0] | head[1] << 8 | head[2] << 16",
  "    body = b''",
  "    while len(body) < n:",
  "        b = os.read(0, n - len(body))",
  "        if not b: sys.exit(0)",
  "        body += b",
  "    return head[3], body",
  "send(0, g)",
  "seq, resp = recv()",
  "with open(out, 'ab') as f: f.write(resp + b'\\n----\\n')",
  "send(seq + 1, b'\\x00\\x00\\x00\\x02\\x00\\x00\\x00')",
  "while True:",
  "    seq, p = recv()",
  "    if p[:1] == b'\\x01': sys.exit(0)",
  "    send(1, b'\\x00\\x00\\x00\\x02\\x00\\x00\\x00')",
].join("\n");

test("a greeting that names mysql_clear_password or dialog (PAM): the client's login inside TLS is refused with ERROR 1045 and one line, never relayed (it carried the password to the server behind in clear); mysql_native_password, and sha256_password's request for the RSA key, go through", async () => {
  const dir = scratchDir("mysql");
  const env = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key };
  const plugins = ["mysql_clear_password", "dialog", "mysql_native_password", "sha256_password"];
  for (const plugin of plugins) {
    const got = join(dir, plugin);
    const server = await startServer(
      ours("tcpserver"),
      [
        ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-v2", "-p", "mysql"],
        ...["python3", "-c", FAKE_MYSQL, plugin, got],
      ],
      { env },
    );
    try {
      const r = await client(server.port, "bob", "s3cret", true, "select 1");
      await server.waitForLog(/^tcpserver: end \d+ status \d+$/);
      if (plugin === "mysql_native_password") {
        assert.equal(r.code, 0, r.stderr + server.log());
        assert.match(readFileSync(got, "latin1"), /bob\0.*mysql_native_password\0/s);
        continue;
      }
      if (plugin === "sha256_password") {
        // The mariadb client's login asks for the server's RSA key (one byte, 1), no
        // password: it reaches the server (a user of another plugin is switched to it).
        assert.match(readFileSync(got, "latin1"), /bob\0\x01\x01sha256_password\0/);
        assert.doesNotMatch(readFileSync(got, "latin1"), /s3cret/);
        continue;
      }
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        new RegExp(
          `ERROR 1045 \\(28000\\): starttls-wrapper: the login uses ${plugin}; the password would cross the link behind it in clear`,
        ),
      );
      assert.equal(existsSync(got), false, "the server behind read a login");
      assert.match(
        server.log(),
        new RegExp(
          `^starttls-wrapper: warning: 127\\.0\\.0\\.1: refused: the login uses ${plugin}, and the server behind is reached without TLS\ntcpserver: end \\d+ status 25600$`,
          "m",
        ),
      );
    } finally {
      await server.stop();
    }
  }
});

test("-t: a client that answers the greeting only after the pre-TLS limit: served in plaintext when opportunistic, as the line protocols' clients are (it used to be refused, status 100); -r closes", () =>
  lateFirstPacket(
    "mysql",
    dbPort,
    leaf,
    `
import hashlib
def packet():
    head = read(4)
    return head[3], read(head[0] | head[1] << 8 | head[2] << 16)
seq, greeting = packet()
v = greeting.index(b"\\0", 1)
salt = greeting[v + 5 : v + 13] + greeting[v + 32 : v + 44]
time.sleep(2)
# app/pw by mysql_native_password, without TLS: CLIENT_PROTOCOL_41, SECURE_CONNECTION,
# PLUGIN_AUTH.
h1 = hashlib.sha1(b"pw").digest()
h3 = hashlib.sha1(salt + hashlib.sha1(h1).digest()).digest()
auth = bytes(a ^ b for a, b in zip(h1, h3))
payload = struct.pack("<IIB23x", 0x0200 | 0x8000 | 0x80000, 1 << 24, 45)
payload += b"app\\0" + bytes([len(auth)]) + auth + b"mysql_native_password\\0"
s.sendall(len(payload).to_bytes(3, "little") + bytes([seq + 1]) + payload)
seq, answer = packet()
print("OK" if answer[0] == 0 else answer[9:].decode("latin1"))
`,
    { served: "OK\n", why: "no login or SSLRequest within 1 s" },
  ));

test("a login in plaintext pipelined behind the SSLRequest, in one write (the CVE-2021-23214 class): taken for the TLS handshake, which fails; the server behind never reads it", async () => {
  const dir = scratchDir("mysql");
  const got = join(dir, "login");
  const env = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key };
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-v2", "-p", "mysql"],
      ...["python3", "-c", FAKE_MYSQL, "mysql_native_password", got],
    ],
    { env },
  );
  try {
    const r = await run("python3", [
      "-c",
      CLIENT_PRELUDE +
        `
s.settimeout(10)
head = read(4)
read(head[0] | head[1] << 8 | head[2] << 16)
def packet(seq, p):
    return len(p).to_bytes(3, "little") + bytes([seq]) + p
flags = 0x0200 | 0x8000 | 0x80000
ssl = struct.pack("<IIB23x", flags | 0x0800, 1 << 24, 45)
login = struct.pack("<IIB23x", flags, 1 << 24, 45) + b"attacker\\0\\0mysql_native_password\\0"
s.sendall(packet(1, ssl) + packet(2, login))
out = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
except (ConnectionResetError, socket.timeout):
    pass
# A TLS alert record (content type 21), or nothing: never a MySQL packet.
print("alert" if out[:1] == b"\\x15" else "nothing" if not out else out.hex())
`,
      String(server.port),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^(alert|nothing)\n$/, server.log());
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/);
    assert.equal(existsSync(got), false, "the server behind read a login");
  } finally {
    await server.stop();
  }
});

test("a MariaDB with proxy_protocol_networks behind tcpforward --proxy: the server sees the client's own address and port (PROXY v2), not tcpforward's, over the wrapper's TLS", async () => {
  const proxied = await startMariaDb({ args: ["--proxy-protocol-networks=127.0.0.0/8"] });
  const env = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key };
  const front = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "mysql", "-r"],
      ...["tcpforward", "--proxy", "127.0.0.1", String(proxied.port)],
    ],
    { env },
  );
  try {
    const r = await client(
      front.port,
      "app",
      "pw",
      true,
      "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()",
    );
    assert.equal(r.code, 0, r.stderr + front.log());
    // The client's own port, as tcpserver saw it, is the one the server names.
    const clientPort = /^tcpserver: ok \d+ .*:(\d+)$/m.exec(front.log())?.[1];
    assert.ok(clientPort, front.log());
    assert.match(r.stdout, new RegExp(`^(127\\.0\\.0\\.1|localhost):${clientPort}$`, "m"));
  } finally {
    await front.stop();
    await proxied.stop();
  }
});

// tcpforward --proxy behind tlsd tells the service about the client's TLS session in the PROXY
// v2 header (PP2_TYPE_SSL, AUTHORITY, ALPN), as haproxy's send-proxy-v2-ssl-cn does: dovecot
// then takes the connection for a secured one and lets a plaintext login through, which it
// refuses on the same chain without tlsd; and the bytes, read by a parser of the spec written
// here in python3, carry the version, cipher, SNI, ALPN and a verified client certificate's CN.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { manageSieveServer } from "../helpers/managesieve.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost"]);
const tlsEnv = {
  ...process.env,
  PATH: PATH_WITH_BIN,
  CERTFILE: leaf.cert,
  KEYFILE: leaf.key,
  CAFILE: pki.ca.cert,
};

/** A ManageSieve client from 127.0.0.2 (an address dovecot does not take for local), over TLS
 * or not: the greeting, then a SASL PLAIN login; prints dovecot's answer to the login. */
function sieveLogin(port: number, tls: boolean): Promise<{ stdout: string; stderr: string }> {
  const script = `
import base64, socket, ssl
raw = socket.create_connection(("127.0.0.1", ${port}), source_address=("127.0.0.2", 0))
s = raw
if ${tls ? "True" : "False"}:
    ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
    s = ctx.wrap_socket(raw, server_hostname="localhost")
def until(end):
    got = b""
    while not got.endswith(end) or b"\\r\\nOK" not in got and b"\\r\\nNO" not in got and not got.startswith((b"OK", b"NO")):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got
until(b"\\r\\n")
s.sendall(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b"\\0test\\0secret") + b'"\\r\\n')
print(until(b"\\r\\n").decode().strip())
`;
  return run("python3", ["-c", script], { timeoutMs: 20_000 });
}

test("dovecot takes tlsd's session for a secured one: a plaintext login passes through `tlsd tcpforward --proxy`, and is refused through `tcpforward --proxy` alone", async () => {
  const dir = scratchDir("proxy-tls");
  const sieve = await manageSieveServer(dir, { haproxy: true });
  const withTls = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "tcpforward", "--proxy", "127.0.0.1", String(sieve.port)],
    { env: tlsEnv },
  );
  const plain = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tcpforward", "--proxy", "127.0.0.1", String(sieve.port)],
    { env: tlsEnv },
  );
  try {
    const secured = await sieveLogin(withTls.port, true);
    assert.equal(secured.stderr, "");
    assert.equal(secured.stdout, 'OK "Logged in."\n');
    const refused = await sieveLogin(plain.port, false);
    assert.equal(refused.stderr, "");
    assert.equal(refused.stdout, 'NO "Plaintext authentication disabled."\n');
    // The real client, and dovecot's word for the TLS one.
    assert.match(sieve.log(), /Login: user=<test>, method=PLAIN, rip=127\.0\.0\.2, .*secured/);
  } finally {
    await withTls.stop();
    await plain.stop();
    await sieve.close();
  }
});

/** A service that reads one PROXY v2 header and answers with what its TLVs say, parsed as the
 * spec (proxy-protocol.txt 2.2) lays them out. */
const READ_HEADER = `
import json, socket, struct, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
def take(n):
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        if not chunk:
            sys.exit("short header")
        got += chunk
    return got
head = take(16)
assert head[:12] == b"\\r\\n\\r\\n\\x00\\r\\nQUIT\\n", head
body = take(struct.unpack("!H", head[14:16])[0])
fam = head[13] >> 4
pos = 12 if fam == 1 else 36
def tlvs(data):
    out, i = [], 0
    while i < len(data):
        t, n = data[i], struct.unpack("!H", data[i + 1:i + 3])[0]
        assert i + 3 + n <= len(data), "TLV past its end"
        out.append((t, data[i + 3:i + 3 + n]))
        i += 3 + n
    return out
seen = {}
for t, v in tlvs(body[pos:]):
    if t == 0x20:
        seen["client"] = v[0]
        seen["verify"] = struct.unpack("!I", v[1:5])[0]
        for st, sv in tlvs(v[5:]):
            seen[hex(st)] = sv.decode("utf-8")
    elif t in (0x01, 0x02):
        seen[hex(t)] = v.decode("utf-8")
conn.sendall((json.dumps(seen, sort_keys=True) + "\\n").encode())
conn.close()
`;

async function headerSeen(args: string[], client: string[]): Promise<Record<string, unknown>> {
  const reader = spawn("python3", ["-c", READ_HEADER], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = once(reader, "exit");
  const [first] = (await once(reader.stdout, "data")) as [Buffer];
  const port = first.toString().trim();
  const server = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", ...args, "tcpforward", "--proxy", "127.0.0.1", port],
    { env: tlsEnv },
  );
  try {
    const extra = ["-servername", "localhost", "-verify_return_error", ...client];
    const out = await answerWithCertificate(server.port, pki.ca.cert, undefined, extra);
    return JSON.parse(out) as Record<string, unknown>;
  } finally {
    await server.stop();
    reader.kill();
    await exited;
  }
}

test("the header's TLVs: TLS version, cipher, SNI and ALPN; a verified client certificate's CN (UTF-8, a comma in it) with verify 0; none without one", async () => {
  const client = pki.withSubject("odd-cn", "/O=Example/CN=Zoë, root");
  const withCert = await headerSeen(
    ["-Y", "--alpn", "h2,http/1.1"],
    ["-tls1_3", "-alpn", "h2", "-cert", client.cert, "-key", client.key],
  );
  assert.deepEqual(withCert, {
    "0x1": "h2",
    "0x2": "localhost",
    "0x21": "TLSv1.3",
    "0x22": "Zoë, root",
    "0x23": "TLS_AES_256_GCM_SHA384",
    client: 0x07,
    verify: 0,
  });
  const without = await headerSeen([], ["-tls1_2"]);
  assert.deepEqual(without, {
    "0x2": "localhost",
    "0x21": "TLSv1.2",
    "0x23": "ECDHE-ECDSA-AES256-GCM-SHA384",
    client: 0x01,
    verify: 1,
  });
});

// The close_notify policies of s6-tlsd and s6-tlsc (-S/-s, -J/-j), with python3's ssl as the
// peer: it tells a close_notify from a bare FIN (suppress_ragged_eofs=False), and can end its
// own side either way.
import assert from "node:assert/strict";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { PY_STRICT_EOF } from "../helpers/py-bio.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key };

/** Connects, sends `input`, ends its side with a close_notify ("notify") or a bare TCP FIN
 * ("fin"), and prints what it read and how the server's side ended. */
function client(port: number, input: string, end: "notify" | "fin") {
  const script = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
${PY_STRICT_EOF}
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ${port})),
                    server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(${JSON.stringify(input)}.encode())
if ${JSON.stringify(end)} == "fin":
    s._sslobj = None  # what follows is the bare TCP socket: no close_notify
    socket.socket.shutdown(s, socket.SHUT_WR)
    out = b""
    while True:
        chunk = socket.socket.recv(s, 65536)
        if not chunk:
            break
        out += chunk
    sys.stdout.write("read %d raw bytes\\n" % len(out))
    sys.exit(0)
out = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    how = "close_notify"
except ssl.SSLEOFError:
    how = "FIN without close_notify"
sys.stdout.write(out.decode() + "end: " + how + "\\n")
try:
    s.unwrap()
except (ssl.SSLError, OSError):
    pass
`;
  return run("python3", ["-c", script]);
}

async function withTlsd(flags: string[], check: (s: RunningServer) => Promise<void>) {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", ...flags, "/bin/sh", "-c", "head -n 1; echo done"],
    { env },
  );
  try {
    await check(s);
  } finally {
    await s.stop();
  }
}

test("by default (-S) the program's end reaches the client as a close_notify", async () => {
  await withTlsd([], async ({ port }) => {
    const r = await client(port, "hello\n", "notify");
    assert.equal(r.stdout, "hello\ndone\nend: close_notify\n");
  });
});

test("-s ends with a bare TCP half-close: the client sees a FIN without close_notify", async () => {
  await withTlsd(["-s"], async ({ port }) => {
    const r = await client(port, "hello\n", "notify");
    assert.equal(r.stdout, "hello\ndone\nend: FIN without close_notify\n");
  });
});

test("-j (default): a client's FIN without close_notify is an ordinary end", async () => {
  await withTlsd([], async ({ port, log, waitForLog }) => {
    const r = await client(port, "hello\n", "fin");
    assert.match(r.stdout, /^read [1-9][0-9]* raw bytes\n$/);
    await waitForLog(/^tcpserver: end /, 1);
    assert.doesNotMatch(log(), /close_notify/);
    assert.match(log(), /^tcpserver: end \d+ status 0$/m);
  });
});

test("-J: a client's FIN without close_notify is fatal, status 98", async () => {
  await withTlsd(["-J"], async ({ port, log, waitForLog }) => {
    await client(port, "hello\n", "fin");
    await waitForLog(/^tcpserver: end /, 1);
    assert.match(
      log(),
      /^tlsd: fatal: 127\.0\.0\.1: remote closed connection without a close_notify$/m,
    );
    assert.match(log(), /^tcpserver: end \d+ status 25088$/m);
  });
});

test("-J: a client that ends with close_notify ends normally", async () => {
  await withTlsd(["-J"], async ({ port, log, waitForLog }) => {
    const r = await client(port, "hello\n", "notify");
    assert.equal(r.stdout, "hello\ndone\nend: close_notify\n");
    await waitForLog(/^tcpserver: end /, 1);
    assert.doesNotMatch(log(), /fatal/);
    assert.match(log(), /^tcpserver: end \d+ status 0$/m);
  });
});

test("tlsc -J: a server's FIN without close_notify is fatal (exit 98); -j reads to the end", async () => {
  const script = `
import socket, ssl
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(${JSON.stringify(server.cert)}, ${JSON.stringify(server.key)})
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
for _ in range(2):
    conn, _ = listener.accept()
    s = ctx.wrap_socket(conn, server_side=True)
    s.sendall(b"hi\\n")
    s._sslobj = None
    socket.socket.shutdown(s, socket.SHUT_WR)
    socket.socket.recv(s, 1)
    socket.socket.close(s)
`;
  const { spawn } = await import("node:child_process");
  const py = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise<string>((resolve) =>
      py.stdout.once("data", (b: Buffer) => resolve(b.toString().trim())),
    );
    const clientEnv = { PATH: env.PATH, CAFILE: pki.ca.cert };
    const tcpclient = ours("tcpclient");
    const prog = ["/bin/sh", "-c", "cat <&6"];
    const lax = await run(
      tcpclient,
      ["-RHl0", "127.0.0.1", port, "tlsc", "-k", "localhost", ...prog],
      {
        env: clientEnv,
      },
    );
    assert.deepEqual([lax.code, lax.stdout, lax.stderr], [0, "hi\n", ""]);
    const strict = await run(
      tcpclient,
      ["-RHl0", "127.0.0.1", port, "tlsc", "-J", "-k", "localhost", ...prog],
      { env: clientEnv },
    );
    assert.equal(strict.code, 98);
    assert.equal(strict.stderr, "tlsc: fatal: remote closed connection without a close_notify\n");
  } finally {
    py.kill();
  }
});

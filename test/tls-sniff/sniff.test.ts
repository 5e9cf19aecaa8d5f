// tls-sniff with real clients: one port for TLS and plaintext (curl both ways, the same
// backend), routing by SNI and ALPN (openssl s_client, python3 ssl), a client that speaks first
// (HTTP) and one that waits for the server (python3 smtplib against an SMTP sink), a ClientHello
// sent one byte at a time, broken and unfinished hellos, and the pipeline form `tls-sniff |
// tlsd`; under our tcpserver (in-process, the socket peeked, not read) and djb's (a process of
// its own).
import assert from "node:assert/strict";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const main = pki.server("localhost", ["localhost", "127.0.0.1", "::1"]);
const other = pki.server("other.test", ["other.test"]);
const CA = pki.ca.cert;

const ENV = {
  ...process.env,
  PATH: PATH_WITH_BIN,
  CERTFILE: main.cert,
  KEYFILE: main.key,
  "CERTFILE:other.test": other.cert,
  "KEYFILE:other.test": other.key,
};

/** One port, both kinds: plaintext straight to the demo's HTTP page, TLS through tlsd to it. */
const ONE_PORT = ["tls-sniff", "--plain", "{", "ucspi-demo", "http", "}"];
const TLS_HTTP = ["tlsd", "ucspi-demo", "http"];

const SERVERS = [
  ["ours (in-process)", ours("tcpserver")],
  ["djb's (tls-sniff a process of its own)", djb("tcpserver")],
] as const;

function serve(server: string, chain: string[], host = "127.0.0.1"): Promise<RunningServer> {
  return startServer(server, ["-vRHl0", host, "0", ...chain], { env: ENV });
}

function curl(args: string[]) {
  return run("curl", ["-sS", "--max-time", "10", ...args]);
}

/** openssl s_client with these options; what the server's program printed. */
async function sClient(port: number, options: string[]): Promise<string> {
  const r = await run(
    "openssl",
    ["s_client", "-quiet", "-connect", `127.0.0.1:${port}`, "-CAfile", CA, ...options],
    { input: "GET / HTTP/1.0\r\n\r\n", timeoutMs: 10_000 },
  );
  return r.stdout;
}

for (const [who, server] of SERVERS) {
  describe(`${who}`, () => {
    test("one port: curl http:// and https:// reach the same backend, TLS only through tlsd", async () => {
      const s = await serve(server, [...ONE_PORT, ...TLS_HTTP]);
      try {
        const plain = await curl([`http://127.0.0.1:${s.port}/plain`]);
        assert.equal(plain.code, 0, plain.stderr);
        assert.match(plain.stdout, /^hello from ucspi-tls: GET \/plain$/m);
        assert.match(plain.stdout, /^tls: none \(plaintext\)$/m);
        assert.match(plain.stdout, /^tls-sniff: plain$/m);
        const tls = await curl(["--cacert", CA, `https://localhost:${s.port}/tls`]);
        assert.equal(tls.code, 0, tls.stderr);
        assert.match(tls.stdout, /^hello from ucspi-tls: GET \/tls$/m);
        assert.match(tls.stdout, /^tls: TLSv1\.3 /m);
        assert.match(tls.stdout, /^tls-sniff: tls$/m);
        assert.match(tls.stdout, /^sni: localhost$/m);
        assert.match(tls.stdout, /^alpn offered: (h2,)?http\/1\.1$/m);
        await s.waitForLog(/ end \d+ status 0$/, 2);
      } finally {
        await s.stop();
      }
    });

    test("routes by SNI and by ALPN; no SNI and other names take the default", async () => {
      const s = await serve(server, [
        "tls-sniff",
        "--sni",
        "other.test",
        "{",
        "tlsd",
        "-k1",
        "sh",
        "-c",
        'echo "route other $SSL_TLS_SNI_SERVERNAME"',
        "}",
        "--alpn",
        "imap",
        "{",
        "tlsd",
        "sh",
        "-c",
        'echo "route imap $TLS_SNIFF_ALPN"',
        "}",
        "tlsd",
        "sh",
        "-c",
        'echo "route default ${SSL_TLS_SNI_SERVERNAME:-no-sni}"',
      ]);
      try {
        assert.match(
          await sClient(s.port, ["-servername", "other.test", "-verify_hostname", "other.test"]),
          /^route other other\.test$/m,
        );
        assert.match(
          await sClient(s.port, ["-servername", "localhost", "-alpn", "smtp,imap"]),
          /^route imap smtp,imap$/m,
        );
        assert.match(
          await sClient(s.port, ["-servername", "localhost", "-alpn", "h2"]),
          /^route default localhost$/m,
        );
        assert.match(await sClient(s.port, ["-noservername"]), /^route default no-sni$/m);
        // python3's ssl, verifying the certificate that tlsd chose for the routed name.
        const py = await run("python3", [
          "-c",
          [
            "import socket, ssl, sys",
            "ctx = ssl.create_default_context(cafile=sys.argv[2])",
            "raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
            "s = ctx.wrap_socket(raw, server_hostname='other.test')",
            "print(s.recv(100).decode().strip(), s.version())",
          ].join("\n"),
          String(s.port),
          CA,
        ]);
        assert.equal(py.stdout.trim(), "route other other.test TLSv1.3", py.stderr);
      } finally {
        await s.stop();
      }
    });

    test("a client that waits for the server: plaintext after -t; SMTPS on the same port", async () => {
      const s = await serve(server, [
        "tls-sniff",
        "-t",
        "100",
        "--plain",
        "{",
        "ucspi-demo",
        "smtp",
        "}",
        "tlsd",
        "ucspi-demo",
        "smtp",
      ]);
      try {
        const script = [
          "import smtplib, ssl, sys",
          "port, ca = int(sys.argv[1]), sys.argv[2]",
          "def send(s):",
          "    s.ehlo('client.test')",
          "    s.mail('a@example.org'); s.rcpt('b@example.org')",
          "    print(s.data(b'Subject: hi\\r\\n\\r\\nhello\\r\\n')[1].decode())",
          "with smtplib.SMTP('127.0.0.1', port, timeout=10) as s: send(s)",
          "ctx = ssl.create_default_context(cafile=ca)",
          "with smtplib.SMTP_SSL('localhost', port, context=ctx, timeout=10) as s: send(s)",
        ].join("\n");
        const py = await run("python3", ["-c", script, String(s.port), CA]);
        assert.equal(py.code, 0, py.stderr);
        const [first, second] = py.stdout.trim().split("\n");
        assert.match(first ?? "", /from 127\.0\.0\.1 in plaintext/);
        assert.match(second ?? "", /from 127\.0\.0\.1 over TLSv1\.3/);
        await s.waitForLog(/ end \d+ status 0$/, 2);
      } finally {
        await s.stop();
      }
    });

    test("a ClientHello sent one byte at a time", async () => {
      const s = await serve(server, [...ONE_PORT, ...TLS_HTTP]);
      try {
        const page = await dribbledHttps(s.port);
        assert.match(page, /^tls: TLSv1\.3 /m);
        assert.match(page, /^sni: localhost$/m);
      } finally {
        await s.stop();
      }
    });

    test("a ClientHello of 60 KB in 100-byte segments is routed; one over 64 KiB is refused, named", async () => {
      // The ALPN route, last in the hello, reached; the default would say so.
      const s = await serve(server, [
        ...ONE_PORT,
        ...["--alpn", "http/1.1", "{", ...TLS_HTTP, "}"],
        ...["tlsd", "sh", "-c", "echo default route"],
      ]);
      try {
        // 240 ALPN names of 249 bytes: a hello of 60 KB, more than a peek can hold once the
        // socket's receive buffer is full of small segments.
        const big = await bigHello(s.port, 240);
        assert.equal(big.code, 0, big.stderr);
        assert.match(big.stderr, /^hello bytes 6\d{4}$/m);
        assert.match(big.stdout, /^tls: TLSv1\.3 /m);
        assert.match(big.stdout, /^alpn offered: x000p+,.*,http\/1\.1$/m);
        await s.waitForLog(/ end \d+ status 0$/);
        // 261 names: over the 65536 bytes that tls-sniff looks at (65570 from pyenv's Python,
        // 65600 from Debian's, whose hello has more in it).
        const over = await bigHello(s.port, 261);
        assert.notEqual(over.code, 0);
        const bytes = Number(/^hello bytes (\d+)$/m.exec(over.stderr)?.[1]);
        assert.ok(bytes > 65536 && bytes < 65536 + 1024, over.stderr);
        await s.waitForLog(
          /^tls-sniff: warning: 127\.0\.0\.1: refused: malformed ClientHello: ClientHello over 65536 bytes, the most looked at$/,
        );
        await s.waitForLog(/ end \d+ status 25600$/);
        assert.doesNotMatch(s.log(), /closed/);
      } finally {
        await s.stop();
      }
    });

    test("a malformed hello: closed (a FIN, no reset), one log line, status 100", async () => {
      const s = await serve(server, [...ONE_PORT, ...TLS_HTTP]);
      try {
        // A handshake record of length 0 (RFC 8446 forbids empty handshake fragments).
        const reply = await exchange(s.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00]));
        assert.deepEqual(reply, { bytes: "", reset: false });
        await s.waitForLog(/^tls-sniff: warning: 127\.0\.0\.1: refused: malformed ClientHello: /);
        await s.waitForLog(/ end \d+ status 25600$/);
      } finally {
        await s.stop();
      }
    });

    test("a PROXY header in place of a ClientHello: named and refused; a plaintext 'PRO...' still served", async () => {
      const s = await serve(server, [...ONE_PORT, ...TLS_HTTP]);
      try {
        const v1 = Buffer.from("PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n");
        const v2 = Buffer.from("0d0a0d0a000d0a515549540a2111000cc00002077f00000115b301bb", "hex");
        for (const header of [v1, v2]) {
          const reply = await exchange(s.port, header);
          assert.equal(reply.bytes, "");
        }
        await s.waitForLog(/ end \d+ status 25600$/, 2);
        assert.deepEqual(s.log().match(/^tls-sniff: .*$/gm), [
          ...Array<string>(2).fill(
            "tls-sniff: warning: 127.0.0.1: refused: got a PROXY protocol header: run tcpserver with --proxy",
          ),
        ]);
        // Plaintext that starts as a v1 signature does, and leaves it: the --plain route.
        const propfind = await exchange(s.port, Buffer.from("PROPFIND / HTTP/1.0\r\n\r\n"), true);
        assert.match(propfind.bytes, /^HTTP\/1\.[01] 405 /);
        // A client that says "PR" and leaves: too little to be a header; plaintext.
        await exchange(s.port, Buffer.from("PR"), true);
        await s.waitForLog(/ end \d+ status 0$/, 2);
        assert.equal((s.log().match(/refused/g) ?? []).length, 2);
      } finally {
        await s.stop();
      }
    });

    test("plaintext with no --plain route, an unfinished hello (-K), a client gone mid-hello", async () => {
      const s = await serve(server, ["tls-sniff", "-K", "300", ...TLS_HTTP]);
      try {
        const plain = await curl([`http://127.0.0.1:${s.port}/`]);
        assert.notEqual(plain.code, 0);
        await s.waitForLog(/refused: plaintext and no --plain route$/);
        // A record header that promises 512 bytes, and 3 of them.
        const stalled = await exchange(
          s.port,
          Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]),
        );
        assert.equal(stalled.bytes, "");
        await s.waitForLog(/refused: unfinished ClientHello: timed out inside the ClientHello$/);
        await exchange(s.port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), true);
        await s.waitForLog(/refused: unfinished ClientHello: closed/);
        // Gone before a byte: nothing to say, status 0.
        await exchange(s.port, Buffer.alloc(0), true);
        await s.waitForLog(/ end \d+ status 0$/);
        assert.equal((s.log().match(/ end \d+ status 25600$/gm) ?? []).length, 3);
      } finally {
        await s.stop();
      }
    });

    test("the pipeline form: tls-sniff | tlsd prog (TLS through, plaintext refused)", async () => {
      const s = await serve(server, ["sh", "-c", "tls-sniff -v2 | exec tlsd ucspi-demo http"]);
      try {
        const tls = await curl(["--cacert", CA, `https://localhost:${s.port}/piped`]);
        assert.equal(tls.code, 0, tls.stderr);
        assert.match(tls.stdout, /^hello from ucspi-tls: GET \/piped$/m);
        assert.match(tls.stdout, /^tls: TLSv1\.3 /m);
        // What a pipe cannot carry: tls-sniff's findings in the environment.
        assert.doesNotMatch(tls.stdout, /^tls-sniff: /m);
        // Read off a pipe's other end, not peeked: a hello in pieces is put back together.
        assert.match(await dribbledHttps(s.port), /^tls: TLSv1\.3 /m);
        await s.waitForLog(/^tls-sniff: info: 127\.0\.0\.1: tls sni=localhost alpn=/);
        const plain = await curl([`http://127.0.0.1:${s.port}/`]);
        assert.notEqual(plain.code, 0);
        await s.waitForLog(/^tls-sniff: warning: 127\.0\.0\.1: refused: plaintext/);
      } finally {
        await s.stop();
      }
    });

    test("the pipeline form: the next program gone, tls-sniff ends and the client is closed", async () => {
      const s = await serve(server, ["sh", "-c", "tls-sniff | true"]);
      try {
        const r = await curl(["--cacert", CA, `https://localhost:${s.port}/`]);
        // curl's "connection closed" family, not its --max-time 28.
        assert.notEqual(r.code, 0);
        assert.notEqual(r.code, 28, r.stderr);
        await s.waitForLog(/ end \d+ status 0$/);
      } finally {
        await s.stop();
      }
    });
  });
}

test("IPv6 (::1): both kinds on one port", async () => {
  const s = await serve(ours("tcpserver"), [...ONE_PORT, ...TLS_HTTP], "::1");
  try {
    const plain = await curl(["-g", `http://[::1]:${s.port}/`]);
    assert.match(plain.stdout, /^client: ::1 port \d+$/m, plain.stderr);
    const tls = await curl(["-g", "--cacert", CA, `https://[::1]:${s.port}/`]);
    assert.match(tls.stdout, /^tls: TLSv1\.3 /m, tls.stderr);
  } finally {
    await s.stop();
  }
});

test("no program on the connection itself: a usage error, not an echo", async () => {
  const s = await serve(ours("tcpserver"), ["tls-sniff", "-v2"]);
  try {
    const reply = await exchange(s.port, Buffer.from("GET / HTTP/1.0\r\n\r\n"));
    assert.equal(reply.bytes, "");
    await s.waitForLog(/^tls-sniff: usage: tls-sniff /);
    await s.waitForLog(/ end \d+ status 25600$/);
  } finally {
    await s.stop();
  }
});

test("usage errors name the program and the cause", async () => {
  const cases: [string[], RegExp][] = [
    [["--plain", "httpd"], /--plain: expected '\{ prog\.\.\. \}'/],
    [["--plain", "{", "httpd"], /--plain: '\{' without its '\}'/],
    [["--sni", "bad name", "{", "x", "}", "y"], /--sni: not a host name/],
    [["--plain", "{", "x", "}"], /routes need a default program/],
    [["-K", "0", "x"], /-K: must be more than 0/],
    [["-t", "soon", "x"], /-t needs a number, not 'soon'/],
  ];
  for (const [args, message] of cases) {
    const r = await run(ours("tls-sniff"), args, { env: ENV });
    assert.equal(r.code, 100, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^tls-sniff: /);
    assert.match(r.stderr, message);
  }
});

/** python3's ssl with `names` ALPN protocol names of 249 bytes (and http/1.1): its ClientHello
 * goes out in 100-byte segments (TCP_NODELAY, a pause between them), then an HTTPS GET as
 * usual; stderr says how long the hello was, stdout has the page. */
function bigHello(port: number, names: number) {
  const script = [
    "import socket, ssl, sys, time",
    "port, ca, names = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])",
    "ctx = ssl.create_default_context(cafile=ca)",
    "ctx.set_alpn_protocols(['x%03d' % i + 'p' * 245 for i in range(names)] + ['http/1.1'])",
    "inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()",
    "tls = ctx.wrap_bio(inc, out, server_hostname='localhost')",
    "raw = socket.create_connection(('127.0.0.1', port), timeout=20)",
    "raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)",
    "def pump(call):",
    "    while True:",
    "        try:",
    "            result = call()",
    "            raw.sendall(out.read())",
    "            return result",
    "        except ssl.SSLWantReadError:",
    "            raw.sendall(out.read())",
    "            got = raw.recv(65536)",
    "            if not got: sys.exit('closed by the server')",
    "            inc.write(got)",
    "try:",
    "    tls.do_handshake()",
    "except ssl.SSLWantReadError:",
    "    pass",
    "hello = out.read()",
    "print('hello bytes', len(hello), file=sys.stderr, flush=True)",
    "for i in range(0, len(hello), 100):",
    "    raw.sendall(hello[i:i + 100])",
    "    time.sleep(0.0005)",
    "pump(tls.do_handshake)",
    "tls.write(b'GET / HTTP/1.0\\r\\n\\r\\n')",
    "page = b''",
    "while True:",
    "    try:",
    "        chunk = pump(lambda: tls.read(65536))",
    "    except SystemExit:",
    "        break",
    "    if not chunk: break",
    "    page += chunk",
    "print(page.decode('latin1'))",
  ].join("\n");
  return run("python3", ["-c", script, String(port), CA, String(names)], { timeoutMs: 60_000 });
}

/** Sends `bytes` (then half-closes if asked); what came back before the close, and whether
 * the close was a reset. */
function exchange(
  port: number,
  bytes: Buffer,
  halfClose = false,
): Promise<{ bytes: string; reset: boolean }> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    socket.on("connect", () => {
      if (bytes.length > 0) socket.write(bytes);
      if (halfClose) socket.end();
    });
    socket.on("data", (b: Buffer) => (got += b.toString("latin1")));
    socket.on("error", () => resolve({ bytes: got, reset: true }));
    socket.on("end", () => {
      socket.destroy();
      resolve({ bytes: got, reset: false });
    });
  });
}

/** An HTTPS GET whose ClientHello goes out one byte per TCP segment (Nagle off, one write per
 * turn of the event loop); the rest of the connection as usual. */
function dribbledHttps(port: number): Promise<string> {
  const raw = connect({ port, host: "127.0.0.1", noDelay: true });
  let first = true;
  const wire = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk: Buffer, _encoding, done) {
      if (!first) return raw.write(chunk, done);
      first = false;
      let i = 0;
      const next = () => {
        if (i >= chunk.length) return done();
        raw.write(chunk.subarray(i, ++i));
        setImmediate(next);
      };
      next();
    },
    final(done) {
      raw.end();
      done();
    },
  });
  raw.on("data", (b: Buffer) => {
    if (!wire.push(b)) raw.pause();
  });
  raw.on("end", () => wire.push(null));
  raw.on("error", (e) => wire.destroy(e));
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ socket: wire, servername: "localhost", ca: readFileSync(CA) });
    let page = "";
    tls.on("secureConnect", () => tls.write("GET / HTTP/1.0\r\n\r\n"));
    tls.on("data", (b: Buffer) => (page += b.toString("latin1")));
    tls.on("end", () => resolve(page));
    tls.on("error", reject);
  });
}

// Words of a command line that are not UTF-8 reach the program as they were given, as through
// djb's programs: Node alone would hand it U+FFFD (ef bf bd) for each such byte. The programs
// print the hex of the words they got (ARGV_HEX); the words are made bytes by WITH_BYTES.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { ARGV_HEX, WITH_BYTES, envArgvHex, escaped } from "../helpers/bytes.ts";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, TLSD_UNDER, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { tlsExchange } from "../helpers/tls-client.ts";
import { decodeOs, encodeOs, osFromBytes, shownOs } from "../../src/ucspi/os-string.ts";
import { toBytes } from "../../src/ucspi/env.ts";
import { scratchDir } from "../helpers/scratch.ts";

/** ff alone, é (valid UTF-8) between two letters, an encoded surrogate (not UTF-8), empty. */
const WORDS = ["\\xff", "a\\xc3\\xa9b", "\\xed\\xa0\\x80", ""];
const HEX = "ff 61c3a962 eda080 \n";
const env = { ...process.env, PATH: PATH_WITH_BIN };

/** All a client reads from `port` (one character per byte), having sent `send`. */
function readAll(port: number, send = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const c = connect(port, "127.0.0.1");
    c.end(send, "latin1");
    c.setEncoding("latin1");
    c.on("data", (d: string) => (got += d));
    c.on("close", () => resolve(got));
    c.on("error", reject);
  });
}

test("tcpserver: the program it spawns gets the bytes of its words (in-process chain)", async () => {
  const server = await startServer(
    ours("tcpserver"),
    ["127.0.0.1", "0", ...ARGV_HEX, "1", ...WORDS],
    { env, wrap: WITH_BYTES },
  );
  try {
    assert.equal(await readAll(server.port), HEX);
  } finally {
    await server.stop();
  }
});

test("tcpserver: a program named with such a byte is named readably when it cannot run", async () => {
  const server = await startServer(ours("tcpserver"), ["127.0.0.1", "0", "\\xffnone"], {
    env,
    wrap: WITH_BYTES,
  });
  try {
    await readAll(server.port);
    await server.waitForLog(/unable to run \\xffnone: file does not exist$/);
  } finally {
    await server.stop();
  }
});

test("tcpserver --workers 2: the programs a worker spawns get the bytes of words and environment too", async () => {
  // Which process spawned it (the grandparent: each worker spawns through its own
  // ucspi-spawner), the hex of $X, then the hex of its words.
  const program =
    "import os, sys\n" +
    "worker = open('/proc/%d/stat' % os.getppid()).read().split()[3]\n" +
    "x = os.environb[b'X'].hex()\n" +
    "os.write(1, (worker + ' ' + x + ' ' + ' '.join(os.fsencode(w).hex() for w in sys.argv[1:]) + '\\n').encode())";
  const server = await startServer(
    ours("tcpserver"),
    ["--workers", "2", "127.0.0.1", "0", "python3", "-c", program, ...WORDS],
    { env, wrap: [...WITH_BYTES, "env", "X=a\\xffb"] },
  );
  try {
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      const [worker = "", ...words] = (await readAll(server.port)).split(" ");
      assert.equal(words.join(" "), `61ff62 ${HEX}`);
      seen.add(worker);
    }
    assert.equal(seen.size, 2, "both processes served");
  } finally {
    await server.stop();
  }
});

const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);

for (const [who, tcpserver] of TLSD_UNDER) {
  test(`tlsd (${who}): the program it runs gets the bytes of its words`, async () => {
    const server = await startServer(
      tcpserver,
      ["127.0.0.1", "0", ours("tlsd"), ...ARGV_HEX, "1", ...WORDS],
      { env: { ...env, CERTFILE: pair.cert, KEYFILE: pair.key }, wrap: WITH_BYTES },
    );
    try {
      assert.equal(await tlsExchange(server.port, pki.ca.cert), HEX);
    } finally {
      await server.stop();
    }
  });
}

/** The first line a client reads from `port` (after sending a ClientHello, with `hello`), as
 * hex: the program may end the connection with a reset after it. */
async function firstLine(port: number, hello = false): Promise<string> {
  const r = await run("python3", [
    "-c",
    [
      "import socket, ssl, sys",
      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)",
      "if sys.argv[2] == 'hello':",
      "    out = ssl.MemoryBIO()",
      "    tls = ssl._create_unverified_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname='x.test')",
      "    try: tls.do_handshake()",
      "    except ssl.SSLWantReadError: s.sendall(out.read())",
      "got = b''",
      "while b'\\n' not in got:",
      "    more = s.recv(4096)",
      "    if not more: break",
      "    got += more",
      "sys.stdout.write(got.hex())",
    ].join("\n"),
    String(port),
    hello ? "hello" : "",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** What envArgvHex writes for $X=a\xffb and WORDS, after `prefix`. */
const envAndWords = (prefix = "") =>
  Buffer.from(`${prefix}61ff62 ${HEX.replace("\n", "\r\n")}`).toString("hex");

for (const [who, tcpserver] of TLSD_UNDER) {
  const under = who.replace("tlsd", "starttls-wrapper");
  test(`starttls-wrapper (${under}): the server it runs gets the bytes of its words and environment`, async () => {
    const server = await startServer(
      tcpserver,
      ["127.0.0.1", "0", ours("starttls-wrapper"), "-p", "smtp", ...envArgvHex("220 "), "1"].concat(
        WORDS,
      ),
      {
        env: { ...env, CERTFILE: pair.cert, KEYFILE: pair.key },
        wrap: [...WITH_BYTES, "env", "X=a\\xffb"],
      },
    );
    try {
      // The server's greeting, as the wrapper passes it on.
      assert.equal(await firstLine(server.port), envAndWords("220 "));
    } finally {
      await server.stop();
    }
  });
}

for (const [who, tcpserver] of TLSD_UNDER) {
  const under = who.replace("tlsd", "tcpforward");
  test(`tcpforward --if-plain (${under}): the program it runs for a TLS client of a plaintext service gets the bytes of its words and environment`, async () => {
    const service = await startServer(ours("tcpserver"), ["127.0.0.1", "0", "echo", "220 plain"], {
      env,
    });
    const server = await startServer(
      tcpserver,
      ["127.0.0.1", "0", ours("tcpforward"), "--if-plain", "{", ...envArgvHex(), "1"].concat(
        WORDS,
        ["}", "127.0.0.1", String(service.port)],
      ),
      { env, wrap: [...WITH_BYTES, "env", "X=a\\xffb"] },
    );
    try {
      assert.equal(await firstLine(server.port, true), envAndWords());
    } finally {
      await server.stop();
      await service.stop();
    }
  });
}

test("ucspi-demo: the client's bytes and the environment's go back as they are, in-process and as a process of its own", async () => {
  // Each greeting or page names the client's address: the one that env(1) sets has a byte ff.
  const answers = async (program: string[], send: string) => {
    const server = await startServer(ours("tcpserver"), ["127.0.0.1", "0", ...program], {
      env,
      wrap: WITH_BYTES,
    });
    try {
      return await readAll(server.port, send);
    } finally {
      await server.stop();
    }
  };
  const own = ["env", "TCPREMOTEIP=a\\xffb", "ucspi-demo"];
  assert.match(await answers(["ucspi-demo"], "x\xffy\r\nquit\r\n"), /\r\necho: x\xffy\r\n$/);
  assert.match(await answers(own, "quit\r\n"), /^hello a\xffb port \d+;/);
  const page = await answers([...own, "http"], "GET /\xe9 HTTP/1.0\r\n\r\n");
  const [head = "", body = ""] = page.split("\r\n\r\n");
  assert.match(body, /^hello from ucspi-tls: GET \/\xe9\nclient: a\xffb port \d+\n/);
  assert.match(head, new RegExp(`^Content-Length: ${body.length}\r$`, "m"));
  // The bytes of a mail's lines are counted: é is two.
  const mail = await answers(["ucspi-demo", "smtp"], "DATA\r\n\xc3\xa9\r\n.\r\nQUIT\r\n");
  assert.match(mail, /^250 ok: 4 bytes from 127\.0\.0\.1 in plaintext/m);
});

let peer: RunningServer;
before(async () => {
  peer = await startServer(ours("tcpserver"), ["127.0.0.1", "0", "true"], { env });
});
after(() => peer.stop());

/** What tcpclient's program printed of its words (to stdout: fd 1, not the connection). */
async function underTcpclient(words: readonly string[]): Promise<string> {
  const [python = "", ...head] = WITH_BYTES;
  const args = [...head, ours("tcpclient"), "127.0.0.1", String(peer.port), ...ARGV_HEX, "1"];
  const r = await run(python, [...args, ...words], { env });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test("tcpclient: the program it runs gets the bytes of its words", async () => {
  assert.equal(await underTcpclient(WORDS), HEX);
});

const word = fc.uint8Array({ min: 1, maxLength: 12 }); // no NUL: argv cannot hold one
test("tcpclient: any words, any bytes, reach its program unchanged (property)", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(word, { minLength: 1, maxLength: 4 }), async (words) => {
      const hex = words.map((w) => Buffer.from(w).toString("hex")).join(" ");
      assert.equal(await underTcpclient(words.map(escaped)), `${hex}\n`);
    }),
    { numRuns: 15 },
  );
});

test("the conversion: any bytes come back from their string exactly (property)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const text = decodeOs(bytes);
      assert.deepEqual(encodeOs(text), Buffer.from(bytes));
      // Into the environment (byte strings) and back out as a file name: the same bytes.
      assert.equal(toBytes(text), Buffer.from(bytes).toString("latin1"));
      assert.equal(osFromBytes(toBytes(text)), text);
      // Shown for a human: no lone surrogate left, so it is printable as UTF-8.
      assert.ok(shownOs(text).isWellFormed());
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (text) => {
      // Valid UTF-8 is the very string Node would give.
      const bytes = Buffer.from(text, "utf8");
      assert.equal(decodeOs(bytes), bytes.toString("utf8"));
    }),
    { numRuns: 2000 },
  );
});

/** The names in dir, as hex of their bytes. */
const namesIn = (dir: string) =>
  readdirSync(dir, { encoding: "buffer" })
    .map((name) => name.toString("hex"))
    .sort();

/** Runs a program of ours with its words made bytes (WITH_BYTES) in `cwd`. */
async function ourWithBytes(cwd: string, words: readonly string[], input: string | Buffer = "") {
  const [python = "", ...head] = WITH_BYTES;
  return run(python, [...head, ...words], { env, cwd, input });
}

test("tcprules, tcprulescheck and tcpserver -x: rules files named with a byte ff are those files", async () => {
  const dir = scratchDir("bytes");
  const rules = Buffer.concat([
    Buffer.from("=h"),
    Buffer.of(0xff),
    Buffer.from(':allow,X="by host"\n127.0.0.1:allow,X="from rules"\n:deny\n'),
  ]);
  const made = await ourWithBytes(dir, ["tcprules", "r\\xff.cdb", "r\\xff.tmp"], rules);
  assert.equal(made.code, 0, made.stderr);
  assert.deepEqual(namesIn(dir), ["72ff2e636462"]); // r\xff.cdb, and no temp file left
  const [python = "", ...head] = WITH_BYTES;
  const checked = await run(python, [...head, "tcprulescheck", "r\\xff.cdb"], {
    env: { ...env, TCPREMOTEIP: "127.0.0.1" },
    cwd: dir,
  });
  assert.match(checked.stdout, /^set environment variable X=from rules$/m, checked.stderr);
  // The environment's bytes are matched too (TCPREMOTEHOST with a byte ff).
  const byHost = ["env", "TCPREMOTEHOST=h\\xff", "tcprulescheck", "r\\xff.cdb"];
  const host = await ourWithBytes(dir, byHost);
  assert.match(host.stdout, /^set environment variable X=by host$/m, host.stderr);
  const server = await startServer(
    ours("tcpserver"),
    ["-x", "r\\xff.cdb", "127.0.0.1", "0", "sh", "-c", 'echo "$X"'],
    { env, cwd: dir, wrap: WITH_BYTES },
  );
  try {
    assert.equal(await readAll(server.port), "from rules\n");
  } finally {
    await server.stop();
  }
});

test("tls-keygen: outputs named with a byte ff are written under those names", async () => {
  const dir = scratchDir("bytes");
  const pair = await ourWithBytes(dir, ["tls-keygen", "self-signed", "c\\xff", "k\\xff"]);
  assert.equal(pair.code, 0, pair.stderr);
  const tickets = await ourWithBytes(dir, ["tls-keygen", "ticket", "t\\xff"]);
  assert.equal(tickets.code, 0, tickets.stderr);
  // Rotated: the file is read again by its name.
  const rotated = await ourWithBytes(dir, ["tls-keygen", "ticket", "t\\xff"]);
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.deepEqual(namesIn(dir), ["63ff", "6bff", "74ff"]);
  const taken = await ourWithBytes(dir, ["tls-keygen", "self-signed", "c\\xff", "k\\xff"]);
  assert.equal(taken.stderr, "tls-keygen: fatal: c\\xff exists: use --force to replace it\n");
});

test("tls-keygen: two names for one file through a directory named with a byte ff are refused", async () => {
  const dir = scratchDir("bytes");
  const sub = Buffer.concat([Buffer.from(join(dir, "s")), Buffer.of(0xff)]);
  mkdirSync(sub);
  symlinkSync(Buffer.from("s\xff", "latin1"), join(dir, "l"));
  const r = await ourWithBytes(dir, ["tls-keygen", "self-signed", "s\\xff/n.pem", "l/n.pem"]);
  assert.equal(r.code, 100, r.stderr);
  assert.equal(
    r.stderr,
    "tls-keygen: fatal: certfile s\\xff/n.pem and keyfile l/n.pem are the same file\n",
  );
  assert.deepEqual(readdirSync(sub), []);
});

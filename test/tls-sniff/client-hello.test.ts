// The ClientHello sniffer (src/tls-sniff/client-hello.ts): first flights of real clients
// (openssl s_client, python3 ssl, node:tls) captured on a local listener, plaintext openings,
// hand-made faults, and properties over generated, truncated, corrupted and random bytes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import net from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import fc from "fast-check";
import { MAX_SNIFF_BYTES, sniff } from "../../src/tls-sniff/client-hello.ts";
import type { ClientHelloInfo, SniffResult } from "../../src/tls-sniff/client-hello.ts";

const TLS13 = 0x0304;
const TLS12 = 0x0303;

// ---- helpers ------------------------------------------------------------------------------

/**
 * Opens a listener on 127.0.0.1 port 0, lets `start` connect a client to it, and returns the
 * bytes of the first connection once sniff() decides (or the client stops sending).
 */
async function capture(start: (port: number) => ChildProcess | tls.TLSSocket): Promise<Buffer> {
  let client: ChildProcess | tls.TLSSocket | undefined;
  const server = net.createServer();
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no ClientHello within 10 s")), 10_000);
      server.on("connection", (socket) => {
        let buf = Buffer.alloc(0);
        const done = () => {
          clearTimeout(timer);
          socket.destroy();
          resolve(buf);
        };
        socket.on("data", (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          if (sniff(buf).kind !== "more") done();
        });
        socket.on("end", done);
        socket.on("error", done);
      });
      server.listen(0, "127.0.0.1", () => {
        client = start((server.address() as net.AddressInfo).port);
        client.on("error", () => {}); // the listener hangs up on purpose
      });
    });
  } finally {
    server.close();
    if (client instanceof tls.TLSSocket) client.destroy();
    else client?.kill();
  }
}

function openssl(...args: string[]): (port: number) => ChildProcess {
  return (port) =>
    spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, ...args], {
      stdio: ["pipe", "ignore", "ignore"],
    });
}

function expectTls(r: SniffResult, what = ""): { hello: ClientHelloInfo; length: number } {
  assert.equal(r.kind, "tls", `${what}: ${JSON.stringify(r)}`);
  if (r.kind !== "tls") throw new Error("unreachable");
  return r;
}

/** The handshake message carried by the records at the start of `wire`. */
function handshakeOf(wire: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  const end = expectTls(sniff(wire)).length;
  for (let pos = 0; pos < end; pos += 5 + ((wire[pos + 3] ?? 0) << 8) + (wire[pos + 4] ?? 0)) {
    const length = ((wire[pos + 3] ?? 0) << 8) | (wire[pos + 4] ?? 0);
    parts.push(Buffer.from(wire.subarray(pos + 5, pos + 5 + length)));
  }
  return Buffer.concat(parts);
}

/** Cuts a handshake message into records whose payload sizes follow `sizes` (cycled). */
function records(message: Uint8Array, sizes: readonly number[] = [16384], version = 0x0301) {
  const out: number[] = [];
  for (let pos = 0, i = 0; pos < message.length; i++) {
    const size = Math.max(1, Math.min(16384, sizes[i % sizes.length] ?? 1));
    const chunk = message.subarray(pos, pos + size);
    out.push(0x16, version >> 8, version & 0xff, chunk.length >> 8, chunk.length & 0xff, ...chunk);
    pos += chunk.length;
  }
  return Buffer.from(out);
}

/** Re-fragments a captured first flight into records of the given sizes. */
function refragment(wire: Uint8Array, sizes: readonly number[]): Buffer {
  return records(handshakeOf(wire), sizes, ((wire[1] ?? 0) << 8) | (wire[2] ?? 0));
}

/** Every proper prefix is "more" (with a need past it and within the hello), then `expected`. */
function assertPrefixes(wire: Uint8Array, expected: SniffResult): void {
  for (let n = 0; n < wire.length; n++) {
    const r = sniff(wire.subarray(0, n));
    assert.ok(r.kind === "more" && r.need > n && r.need <= wire.length, `${n}: ${r.kind}`);
  }
  assert.deepEqual(sniff(wire), expected);
}

/** Checks a captured hello three ways: whole, byte by byte, and re-fragmented. */
function checkCaptured(wire: Buffer): ClientHelloInfo {
  const whole = sniff(wire);
  const { hello, length } = expectTls(whole, "captured");
  assert.equal(length, wire.length, "the first flight is the hello and nothing else");
  assertPrefixes(wire, whole);
  const tiny = refragment(wire, [1, 2, 3, 5, 7]);
  assertPrefixes(tiny, { kind: "tls", hello, length: tiny.length });
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 20 }),
      (s) => {
        const again = refragment(wire, s);
        assert.deepEqual(sniff(again), { kind: "tls", hello, length: again.length });
      },
    ),
    { numRuns: 100 },
  );
  return hello;
}

// ---- a ClientHello writer (knows where its length fields are) -----------------------------

class Writer {
  bytes: number[] = [];
  /** Every length field written: where, how many bytes wide, of which extension's data. */
  fields: { at: number; size: number; ext?: number }[] = [];

  int(value: number, size: number): void {
    for (let i = size - 1; i >= 0; i--) this.bytes.push((value >>> (8 * i)) & 0xff);
  }

  raw(data: Iterable<number>): void {
    this.bytes.push(...data);
  }

  /** A vector with a `size`-byte length prefix, filled by `fill`. */
  vec(size: number, fill: () => void, ext?: number): void {
    const at = this.bytes.length;
    this.int(0, size);
    this.fields.push({ at, size, ext });
    fill();
    const length = this.bytes.length - at - size;
    // A length its field cannot hold would be written cut to its low bytes: a corrupt hello
    // the test would blame on the parser. Say so where it is made.
    if (length >= 2 ** (8 * size))
      throw new RangeError(`a vector of ${length} bytes in a ${size}-byte length`);
    for (let i = 0; i < size; i++) this.bytes[at + i] = (length >>> (8 * (size - 1 - i))) & 0xff;
  }
}

interface HelloSpec {
  legacyVersion?: number;
  sessionId: Uint8Array;
  suites: number[];
  compression?: number[];
  /** undefined: no extension block at all. */
  extensions?: { type: number; data: (w: Writer) => void }[];
}

function writeHello(spec: HelloSpec): Writer {
  const w = new Writer();
  w.int(1, 1);
  w.vec(3, () => {
    w.int(spec.legacyVersion ?? TLS12, 2);
    w.raw(new Uint8Array(32).fill(0x5a));
    w.vec(1, () => w.raw(spec.sessionId));
    w.vec(2, () => spec.suites.forEach((s) => w.int(s, 2)));
    w.vec(1, () => w.raw(spec.compression ?? [0]));
    const exts = spec.extensions;
    if (exts) {
      w.vec(2, () => {
        for (const e of exts) {
          w.int(e.type, 2);
          w.vec(2, () => e.data(w), e.type);
        }
      });
    }
  });
  return w;
}

const sniExt = (name: Uint8Array | string, type = 0) => ({
  type: 0,
  data: (w: Writer) =>
    w.vec(2, () => {
      w.int(type, 1);
      w.vec(2, () => w.raw(typeof name === "string" ? Buffer.from(name, "latin1") : name));
    }),
});
const alpnExt = (names: (Uint8Array | string)[]) => ({
  type: 16,
  data: (w: Writer) =>
    w.vec(2, () => {
      for (const n of names) w.vec(1, () => w.raw(typeof n === "string" ? Buffer.from(n) : n));
    }),
});
const versionsExt = (versions: number[]) => ({
  type: 43,
  data: (w: Writer) => w.vec(1, () => versions.forEach((v) => w.int(v, 2))),
});
const rawExt = (type: number, data: Iterable<number>) => ({
  type,
  data: (w: Writer) => w.raw(data),
});

function helloWire(spec: Partial<HelloSpec>, sizes?: number[]): Buffer {
  const w = writeHello({ sessionId: new Uint8Array(0), suites: [0x1301], ...spec });
  return records(Buffer.from(w.bytes), sizes);
}

function reasonOf(bytes: Uint8Array): string {
  const r = sniff(bytes);
  assert.equal(r.kind, "malformed", `${Buffer.from(bytes).toString("hex")}: ${JSON.stringify(r)}`);
  return r.kind === "malformed" ? r.reason : "";
}

// ---- real clients -------------------------------------------------------------------------

test("openssl s_client, default (TLS 1.3), with SNI and ALPN", async () => {
  const wire = await capture(openssl("-servername", "Sniff.Example", "-alpn", "h2,http/1.1"));
  const hello = checkCaptured(wire);
  assert.equal(hello.serverName, "sniff.example");
  assert.deepEqual(hello.alpn, ["h2", "http/1.1"]);
  assert.equal(hello.legacyVersion, TLS12);
  assert.ok(hello.supportedVersions?.includes(TLS13), `${hello.supportedVersions}`);
  assert.ok(hello.cipherSuites.includes(0x1301));
  assert.deepEqual(hello.extensions.slice(0, 1), [0]);
});

test("openssl s_client -tls1_2, with SNI and ALPN", async () => {
  const wire = await capture(
    openssl("-tls1_2", "-servername", "twelve.example", "-alpn", "h2,http/1.1"),
  );
  const hello = checkCaptured(wire);
  assert.equal(hello.serverName, "twelve.example");
  assert.deepEqual(hello.alpn, ["h2", "http/1.1"]);
  assert.equal(hello.legacyVersion, TLS12);
  assert.ok(!hello.supportedVersions?.includes(TLS13));
});

test("openssl s_client -noservername: no SNI, no ALPN", async () => {
  const hello = checkCaptured(await capture(openssl("-noservername")));
  assert.equal(hello.serverName, undefined);
  assert.equal(hello.alpn, undefined);
  assert.ok(!hello.extensions.includes(0));
});

test("python3 ssl", async () => {
  const script = [
    "import socket, ssl, sys",
    "ctx = ssl.create_default_context()",
    "ctx.set_alpn_protocols(['h2', 'http/1.1'])",
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
    "try: ctx.wrap_socket(s, server_hostname='py.example')",
    "except Exception: pass",
  ].join("\n");
  const wire = await capture((port) =>
    spawn("python3", ["-c", script, String(port)], { stdio: "ignore" }),
  );
  const hello = checkCaptured(wire);
  assert.equal(hello.serverName, "py.example");
  assert.deepEqual(hello.alpn, ["h2", "http/1.1"]);
  assert.ok(hello.supportedVersions?.includes(TLS13));
});

test("node:tls connect", async () => {
  const wire = await capture((port) =>
    tls.connect({
      host: "127.0.0.1",
      port,
      servername: "node.example",
      ALPNProtocols: ["h2", "http/1.1"],
    }),
  );
  const hello = checkCaptured(wire);
  assert.equal(hello.serverName, "node.example");
  assert.deepEqual(hello.alpn, ["h2", "http/1.1"]);
  assert.ok(hello.supportedVersions?.includes(TLS13));
});

// ---- plaintext and early decisions --------------------------------------------------------

test("plaintext is decided on the first byte", () => {
  for (const text of ["GET / HTTP/1.1\r\n", "EHLO x\r\n", "G", "\x00", "\x15\x03\x01"]) {
    assert.deepEqual(sniff(Buffer.from(text, "latin1")), { kind: "plain" }, JSON.stringify(text));
  }
  // An SSLv2-style hello is not a TLS record.
  assert.deepEqual(sniff(Buffer.from("802e0103010015", "hex")), { kind: "plain" });
});

test("too few bytes to decide", () => {
  assert.deepEqual(sniff(Buffer.alloc(0)), { kind: "more", need: 1 });
  assert.deepEqual(sniff(Buffer.from([0x16])), { kind: "more", need: 2 });
  assert.deepEqual(sniff(Buffer.from([0x16, 0x03])), { kind: "more", need: 5 });
  assert.deepEqual(sniff(Buffer.from([0x16, 0x03, 0x01, 0x00])), { kind: "more", need: 5 });
  // A record header: the handshake type comes next, then its length.
  assert.deepEqual(sniff(Buffer.from("1603010200", "hex")), { kind: "more", need: 6 });
  assert.deepEqual(sniff(Buffer.from("160301020001", "hex")), { kind: "more", need: 9 });
  // A handshake header split over two records: the next record header, then its byte.
  assert.deepEqual(sniff(Buffer.from("16030100020100", "hex")), { kind: "more", need: 8 });
  assert.deepEqual(sniff(Buffer.from("1603010002010016", "hex")), { kind: "more", need: 9 });
});

test("0x16 followed by a major version other than 3 is plain", () => {
  for (const hex of ["1604", "160400", "1602", "16ff0102"]) {
    assert.deepEqual(sniff(Buffer.from(hex, "hex")), { kind: "plain" }, hex);
  }
});

// ---- faults -------------------------------------------------------------------------------

test("record layer faults", () => {
  const good = helloWire({ extensions: [sniExt("a.example")] });
  assert.match(reasonOf(Buffer.from("1603010000", "hex")), /empty handshake record/);
  assert.match(reasonOf(Buffer.from("1603014001", "hex")), /record of 16385 bytes/);
  // A handshake message of another type (server_hello), or too short to be a hello.
  assert.match(reasonOf(Buffer.from("160303000402", "hex")), /type 2 /);
  assert.match(reasonOf(Buffer.from("16030300040100000a", "hex")), /too short/);
  // A record of another type, or another major version, before the hello is whole.
  const split = helloWire({ extensions: [sniExt("a.example")] }, [20]);
  const at = 5 + 20;
  for (const [i, value, re] of [
    [at, 0x17, /record of type 23/],
    [at, 0x15, /record of type 21/],
    [at + 1, 0x02, /record version 2\.x/],
  ] as const) {
    const bad = Buffer.from(split);
    bad[i] = value;
    assert.match(reasonOf(bad.subarray(0, i + 1)), re, "decided on that byte");
    assert.match(reasonOf(bad), re);
  }
  // Bytes after the hello inside its last record (a second message, say).
  const trailing = records(Buffer.concat([handshakeOf(good), Buffer.from("1400000000", "hex")]));
  assert.match(reasonOf(trailing), /5 bytes after the ClientHello/);
});

test("the 65536-byte bound, records included", () => {
  // Decided from the first record and handshake headers: with the rest in one more record,
  // a body of 0xfff2 bytes could still end at 65536; 0xfff3 could not.
  assert.equal(MAX_SNIFF_BYTES, 65536);
  assert.equal(sniff(Buffer.from("16030140000100fff2", "hex")).kind, "more");
  assert.match(reasonOf(Buffer.from("16030140000100fff3", "hex")), /over 65536 bytes/);
  assert.match(reasonOf(Buffer.from("1603014000010fffff", "hex")), /over 65536 bytes/);
  // A real hello of 65516 bytes in 16384-byte records takes exactly 65536 bytes; one more is over.
  const padded = (k: number) => helloWire({ extensions: [rawExt(21, new Uint8Array(k))] }, [16384]);
  const fits = padded(65465);
  assert.equal(fits.length, 65536);
  assert.equal(expectTls(sniff(fits)).length, 65536);
  assert.match(reasonOf(padded(65466)), /over 65536 bytes/);
  // The same bytes in smaller records take more room on the wire.
  assert.match(reasonOf(records(handshakeOf(fits), [8000])), /over 65536 bytes/);
});

test("body faults", () => {
  const cases: [Partial<HelloSpec>, RegExp][] = [
    [{ sessionId: new Uint8Array(33) }, /session id of 33 bytes/],
    [{ suites: [], extensions: [rawExt(7, [])] }, /cipher suite list of 0 bytes/],
    [{ compression: [1, 2] }, /no null compression method/],
    [{ compression: [], extensions: [] }, /no null compression method/],
    [{ legacyVersion: 0x0200 }, /legacy_version 0x0200/],
    [{ extensions: [sniExt("a"), sniExt("b")] }, /extension 0 appears twice/],
    [{ extensions: [rawExt(7, []), rawExt(7, [1])] }, /extension 7 appears twice/],
    [{ extensions: [sniExt("a.example", 1)] }, /server name type 1/],
    [{ extensions: [sniExt("")] }, /empty server name/],
    [{ extensions: [sniExt("a..b")] }, /empty label/],
    [{ extensions: [sniExt(".a")] }, /empty label/],
    [{ extensions: [sniExt("a.example.")] }, /trailing dot/],
    [{ extensions: [sniExt("a b")] }, /byte 0x20/],
    [{ extensions: [sniExt("caf\xe9")] }, /byte 0xe9/],
    [{ extensions: [sniExt("a\x00b")] }, /byte 0x00/],
    [{ extensions: [sniExt(`${"a".repeat(64)}.b`)] }, /label over 63/],
    [{ extensions: [sniExt(`${"abc.".repeat(63)}ab`)] }, /254 bytes/],
    [{ extensions: [rawExt(0, [])] }, /server_name list length/],
    [{ extensions: [rawExt(0, [0, 0])] }, /empty server_name list/],
    [{ extensions: [rawExt(0, [0, 6, 0, 0, 1, 0x61, 0, 0])] }, /more than one entry/],
    [{ extensions: [rawExt(0, [0, 4, 0, 0, 2, 0x61])] }, /runs past the server_name list/],
    [{ extensions: [alpnExt([])] }, /empty ALPN list/],
    [{ extensions: [alpnExt(["h2", ""])] }, /empty ALPN protocol name/],
    [{ extensions: [rawExt(16, [0, 3, 5, 0x68, 0x32])] }, /runs past the list/],
    [{ extensions: [rawExt(16, [0, 9, 2, 0x68, 0x32])] }, /ALPN list length/],
    [{ extensions: [rawExt(43, [5, 3, 4, 3, 3])] }, /supported_versions list length/],
    [{ extensions: [versionsExt([])] }, /supported_versions list of 0 bytes/],
    [{ extensions: [rawExt(43, [1, 3])] }, /supported_versions list of 1 bytes/],
  ];
  for (const [spec, re] of cases) {
    assert.match(reasonOf(helloWire(spec)), re, `${re}`);
    assert.match(reasonOf(helloWire(spec, [3, 11])), re, `${re}, fragmented`);
  }
});

// Drawn with fast-check's size "large": 128 versions, 256 bytes, were written with a length
// byte of 0, and the parser's right "malformed" failed the properties below.
test("the longest supported_versions list is read whole; a longer one cannot be written", () => {
  const versions = Array.from({ length: 127 }, (_, i) => 0x0300 + i);
  const wire = helloWire({ extensions: [versionsExt(versions)] });
  assertPrefixes(wire, {
    kind: "tls",
    length: wire.length,
    hello: {
      recordVersion: 0x0301,
      legacyVersion: TLS12,
      cipherSuites: [0x1301],
      extensions: [43],
      supportedVersions: versions,
    },
  });
  assert.throws(
    () => helloWire({ extensions: [versionsExt([...versions, 0x0304])] }),
    /a vector of 256 bytes in a 1-byte length/,
  );
});

// Drawn with fast-check's size "large": a name of 254 bytes from fc.domain() was refused,
// rightly ("server name of 254 bytes (max 253)"), and failed the properties below.
test("a server name of 253 bytes is read whole; the drawn names never pass 253", () => {
  const name = `${"abc.".repeat(62)}abcde`;
  assert.equal(name.length, 253);
  const { hello } = expectTls(sniff(helloWire({ extensions: [sniExt(name)] })), name);
  assert.equal(hello.serverName, name);
  for (const drawn of fc.sample(hostName("large"), { numRuns: 200, seed: 1 }))
    assert.ok(drawn.length <= 253, `${drawn.length}: ${drawn}`);
});

test("lengths that overrun or leave bytes over", () => {
  const w = writeHello({
    sessionId: new Uint8Array(0),
    suites: [0x1301],
    extensions: [sniExt("a.example"), rawExt(99, [1, 2, 3])],
  });
  const message = Buffer.from(w.bytes);
  // The extension block's length field is the fifth length written (hs, sid, suites,
  // compression, block, ...).
  const block = w.fields[4];
  assert.ok(block);
  const corrupt = (delta: number) => {
    const m = Buffer.from(message);
    m.writeUInt16BE(m.readUInt16BE(block.at) + delta, block.at);
    return records(m);
  };
  assert.match(reasonOf(corrupt(1)), /extension block runs past/);
  assert.match(reasonOf(corrupt(-1)), /1 bytes after extensions/);
  // An extension whose length overruns the block.
  const ext = Buffer.from(message);
  ext.writeUInt16BE(200, message.length - 5);
  assert.match(reasonOf(records(ext)), /extension 99 runs past/);
  // A stray byte where the extension block's length should be.
  const stray = Buffer.from(writeHello({ sessionId: new Uint8Array(0), suites: [1] }).bytes);
  stray[3] = (stray[3] ?? 0) + 1;
  assert.match(reasonOf(records(Buffer.concat([stray, Buffer.from([0])]))), /runs past/);
});

test("a hello without extensions (old clients) and with an empty extension block", () => {
  for (const extensions of [undefined, []]) {
    const wire = helloWire({ suites: [0x002f, 0x00ff], extensions });
    assertPrefixes(wire, {
      kind: "tls",
      length: wire.length,
      hello: {
        recordVersion: 0x0301,
        legacyVersion: TLS12,
        cipherSuites: [0x2f, 0xff],
        extensions: [],
      },
    });
  }
});

// ---- properties ---------------------------------------------------------------------------

const latin1 = (b: Uint8Array) => Buffer.from(b).toString("latin1");

/** A host name of at most 253 bytes, the most a name has (255 bytes as DNS labels), and the
 * most sniff() takes: fc.domain() draws up to 255 at larger sizes. */
const hostName = (size?: fc.Size) => fc.domain({ size }).filter((name) => name.length <= 253);

/** A valid hello and what sniff() must report for it. */
const arbHello = fc
  .record({
    sessionId: fc.uint8Array({ maxLength: 32 }),
    suites: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 40 }),
    name: fc.option(fc.tuple(hostName(), fc.boolean())),
    // Bounded by the protocol, whatever size of draws: supported_versions holds at most 127
    // versions (a one-byte length, <2..254>), and the ALPN list stays far below its two-byte
    // length and the whole hello below MAX_SNIFF_BYTES.
    alpn: fc.option(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 1000 }),
    ),
    versions: fc.option(
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 127 }),
    ),
    others: fc.uniqueArray(
      fc.record({
        type: fc.integer({ min: 1, max: 0xffff }).filter((t) => t !== 16 && t !== 43),
        data: fc.uint8Array({ maxLength: 40 }),
      }),
      { selector: (e) => e.type, maxLength: 8 },
    ),
    positions: fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
    noBlock: fc.boolean(),
  })
  .map((g) => {
    const exts = g.others.map((e) => rawExt(e.type, e.data));
    const expected: ClientHelloInfo = {
      recordVersion: 0x0301,
      legacyVersion: TLS12,
      cipherSuites: g.suites,
      extensions: [],
    };
    const known = [
      g.name && sniExt(g.name[1] ? g.name[0].toUpperCase() : g.name[0]),
      g.alpn && alpnExt(g.alpn),
      g.versions && versionsExt(g.versions),
    ];
    known.forEach((e, i) => {
      if (e) exts.splice((g.positions[i] ?? 0) % (exts.length + 1), 0, e);
    });
    if (g.name) expected.serverName = g.name[0].toLowerCase();
    if (g.alpn) expected.alpn = g.alpn.map(latin1);
    if (g.versions) expected.supportedVersions = g.versions;
    expected.extensions = exts.map((e) => e.type);
    const w = writeHello({
      sessionId: g.sessionId,
      suites: g.suites,
      extensions: exts.length === 0 && g.noBlock ? undefined : exts,
    });
    return { message: Buffer.from(w.bytes), fields: w.fields, expected };
  });

const arbSizes = fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 10 });

function assertShape(r: SniffResult, n: number): void {
  switch (r.kind) {
    case "more":
      assert.ok(Number.isInteger(r.need) && r.need > n && r.need <= MAX_SNIFF_BYTES + 1);
      break;
    case "plain":
      break;
    case "tls":
      assert.ok(r.length > 0 && r.length <= n);
      assert.ok(Array.isArray(r.hello.cipherSuites) && Array.isArray(r.hello.extensions));
      break;
    case "malformed":
      assert.ok(typeof r.reason === "string" && r.reason.length > 0);
      break;
    default:
      assert.fail(`unknown verdict ${JSON.stringify(r)}`);
  }
}

/** A decided verdict survives any bytes after it; "more" holds below its `need`. */
function assertStable(bytes: Uint8Array, extra: Uint8Array): void {
  const r = sniff(bytes);
  assertShape(r, bytes.length);
  const longer = sniff(Buffer.concat([bytes, extra]));
  if (r.kind === "more") {
    if (bytes.length + extra.length < r.need) assert.equal(longer.kind, "more");
  } else if (r.kind === "malformed") {
    assert.equal(longer.kind, "malformed");
  } else {
    assert.deepEqual(longer, r);
  }
}

test("property: generated hellos, in any record sizes, give exactly what they carry", () => {
  fc.assert(
    fc.property(arbHello, arbSizes, fc.array(fc.nat()), ({ message, expected }, sizes, cuts) => {
      const wire = records(message, sizes);
      assert.deepEqual(sniff(wire), { kind: "tls", hello: expected, length: wire.length });
      for (const cut of cuts) {
        const n = cut % wire.length;
        const r = sniff(wire.subarray(0, n));
        assert.ok(r.kind === "more" && r.need > n && r.need <= wire.length, `${n}`);
      }
    }),
    { numRuns: 300 },
  );
});

// A corrupted length field can turn a hello into another valid one: grown by exactly the size
// of what follows it, a field the parser does not look into (an unknown extension, the session
// id, the compression methods) swallows the server_name extension, and what is left happens to
// add up. No parser can see that. So the property is: the server name never becomes another
// name; it can only vanish that way.
test("property: a corrupted length field never yields a hello with another server name", () => {
  fc.assert(
    fc.property(arbHello, arbSizes, fc.nat(), fc.nat(), (h, sizes, which, value) => {
      const field = h.fields[which % h.fields.length];
      assert.ok(field);
      const m = Buffer.from(h.message);
      const max = 2 ** (8 * field.size);
      const old = m.readUIntBE(field.at, field.size);
      m.writeUIntBE((old + 1 + (value % (max - 1))) % max, field.at, field.size);
      const wire = records(m, sizes);
      const r = sniff(wire);
      assertShape(r, wire.length);
      if (r.kind !== "tls" || r.hello.serverName === h.expected.serverName) return;
      assert.equal(r.hello.serverName, undefined, "another server name");
      assert.notEqual(field.ext, 0, "the server_name extension's own length");
    }),
    { numRuns: 1000 },
  );
});

test("property: truncated hellos are 'more', the same records then cut short 'malformed'", () => {
  fc.assert(
    fc.property(arbHello, arbSizes, fc.nat(), ({ message }, sizes, cut) => {
      // The message cut short, its header still claiming the full length: only "more".
      const wire = records(message, sizes);
      const n = cut % wire.length;
      assert.equal(sniff(wire.subarray(0, n)).kind, "more");
      // The message cut short and re-recorded, then application data: a record type change.
      const short = message.subarray(0, Math.max(1, cut % message.length));
      const r = sniff(Buffer.concat([records(short, sizes), Buffer.from("170303000100", "hex")]));
      assert.equal(r.kind, "malformed");
    }),
    { numRuns: 300 },
  );
});

test("property: random bytes never throw and give a stable verdict", () => {
  const tlsish = fc
    .uint8Array({ maxLength: 300 })
    .map((b) => Buffer.concat([Buffer.from([0x16, 0x03]), b]));
  const headerish = fc
    .tuple(fc.integer({ min: 0, max: 400 }), fc.uint8Array({ maxLength: 400 }))
    .map(([len, b]) =>
      Buffer.concat([Buffer.from([0x16, 0x03, 0x01, len >> 8, len & 0xff, 0x01]), b]),
    );
  // Right record and handshake headers around random body bytes, or around a random
  // extension block (mostly the three extensions we read, random inside).
  const wrap = (body: Uint8Array) => records(Buffer.from([1, 0, 0, body.length, ...body]));
  const bodyish = fc.uint8Array({ minLength: 41, maxLength: 250 }).map(wrap);
  const extension = fc
    .tuple(fc.constantFrom(0, 16, 43, 7), fc.uint8Array({ maxLength: 30 }))
    .map(([type, data]) => [0, type, 0, data.length, ...data]);
  const extish = fc
    .array(
      fc.oneof(
        extension,
        fc.uint8Array({ maxLength: 8 }).map((b) => [...b]),
      ),
    )
    .map((parts) => {
      const block = parts.flat().slice(0, 200);
      const head = [3, 3, ...new Array<number>(32).fill(0), 0, 0, 2, 0x13, 1, 1, 0];
      return wrap(Buffer.from([...head, 0, block.length, ...block]));
    });
  fc.assert(
    fc.property(
      fc.oneof(fc.uint8Array({ maxLength: 300 }), tlsish, headerish, bodyish, extish),
      fc.uint8Array({ maxLength: 300 }),
      (bytes, extra) => assertStable(bytes, extra),
    ),
    { numRuns: 3000 },
  );
});

test("property: corrupted and truncated real-shaped hellos never throw, verdicts stable", () => {
  fc.assert(
    fc.property(
      arbHello,
      arbSizes,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 64 }),
      ({ message }, sizes, flips, cut, extra) => {
        const wire = records(message, sizes);
        for (const [at, value] of flips) wire[at % wire.length] = value;
        const n = cut % (wire.length + 1);
        assertStable(wire.subarray(0, n), Buffer.concat([wire.subarray(n), extra]));
        assertStable(wire, extra);
      },
    ),
    { numRuns: 1000 },
  );
});

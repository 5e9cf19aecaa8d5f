// The resume record (DESIGN.md section 5): a STARTTLS wrapper hands a client to
// `tcpserver --proxy ... tlsd prog` with a PROXY v2 header carrying the real addresses and the
// record; tlsd swallows the fresh program's greeting, so the client's first answer after the
// handshake is the answer to its own command, and the program sees the real client.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { encodeProxyV2, resumeTlv } from "../../src/proxy/index.ts";
import type { ResumeRecord } from "../../src/proxy/index.ts";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key };

/** A server of `protocol` that greets with `greeting` (printf format), then answers each line
 * with `reply` followed by what it read and where from. */
function fakeServer(greeting: string, reply: string): string[] {
  return [
    "/bin/sh",
    "-c",
    `printf '${greeting}'; while IFS= read -r line; do printf '${reply} %s from %s\\r\\n' "$line" "$TCPREMOTEIP"; done`,
  ];
}

/** Sends the PROXY header with `record` (and `early` bytes right after it, before TLS), makes
 * the TLS handshake, sends `command`, and reads until the server closes. */
function handOver(port: number, record: ResumeRecord, command: string, early = Buffer.alloc(0)) {
  return new Promise<string>((resolve, reject) => {
    const raw = tcpConnect(port, "127.0.0.1", () => {
      raw.write(
        Buffer.concat([
          encodeProxyV2({
            command: "proxy",
            family: "tcp4",
            source: { ip: "192.0.2.7", port: 40000 },
            destination: { ip: "192.0.2.25", port: 25 },
            tlvs: [resumeTlv(record)],
          }),
          early,
        ]),
      );
      const tls = tlsConnect(
        { socket: raw, servername: "localhost", ca: readFileSync(pki.ca.cert) },
        () => {
          tls.end(command);
        },
      );
      let out = "";
      tls.on("data", (b: Buffer) => (out += b.toString("latin1")));
      tls.on("end", () => resolve(out));
      tls.on("error", reject);
    });
    raw.on("error", reject);
  });
}

async function withServer(program: string[], check: (s: RunningServer) => Promise<void>) {
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", ...program],
    { env },
  );
  try {
    await check(s);
  } finally {
    await s.stop();
  }
}

// Each greeting case on both paths: a record without noUpgrade puts the program's words
// through resume.ts's stream (the capability filter); one with it (the wrapper saw no STARTTLS
// of the server's own) has the engine relay to the program, its greeting read off first
// (greeting-reader.ts).
for (const [path, extra] of [
  ["filtered", {}],
  ["direct", { noUpgrade: true }],
] as const) {
  const rec = (protocol: string): ResumeRecord => ({ protocol, swallow: "greeting", ...extra });

  test(`${path}: smtp: a multi-line 220 greeting is swallowed, the EHLO answer comes first`, async () => {
    await withServer(fakeServer("220-mx.example ESMTP\\r\\n220 ready\\r\\n", "250"), async (s) => {
      const out = await handOver(s.port, rec("smtp"), "EHLO me\r\n");
      assert.equal(out, "250 EHLO me\r from 192.0.2.7\r\n");
    });
  });

  test(`${path}: a greeting written in parts, a pause between them, is swallowed whole`, async () => {
    const program = [
      "/bin/sh",
      "-c",
      `printf '220-mx.example'; sleep 0.3; printf ' ESMTP\\r\\n220'; sleep 0.3; printf ' ready\\r\\n'; ${fakeServer("", "250")[2]}`,
    ];
    await withServer(program, async (s) => {
      const out = await handOver(s.port, rec("smtp"), "EHLO me\r\n");
      assert.equal(out, "250 EHLO me\r from 192.0.2.7\r\n");
    });
  });

  test(`${path}: what the program writes with its greeting, before any command, reaches the client first`, async () => {
    await withServer(fakeServer("220 hi\\r\\n250 unasked\\r\\n", "250"), async (s) => {
      const out = await handOver(s.port, rec("smtp"), "EHLO me\r\n");
      assert.equal(out, "250 unasked\r\n250 EHLO me\r from 192.0.2.7\r\n");
    });
  });

  for (const [protocol, greeting, command, reply] of [
    ["imap", "* OK [CAPABILITY IMAP4rev1] ready\\r\\n", "a1 CAPABILITY\r\n", "* CAPABILITY"],
    ["pop3", "+OK POP3 ready\\r\\n", "CAPA\r\n", "+OK"],
    ["lmtp", "220 lmtp ready\\r\\n", "LHLO me\r\n", "250"],
  ] as const) {
    test(`${path}: ${protocol}: the greeting is swallowed`, async () => {
      await withServer(fakeServer(greeting, reply), async (s) => {
        const out = await handOver(s.port, rec(protocol), command);
        assert.equal(out, `${reply} ${command.trim()}\r from 192.0.2.7\r\n`);
      });
    });
  }

  test(`${path}: a refusal instead of a greeting reaches the client as it is`, async () => {
    await withServer(fakeServer("554 go away\\r\\n", "250"), async (s) => {
      const out = await handOver(s.port, rec("smtp"), "EHLO me\r\n");
      assert.equal(out, "554 go away\r\n250 EHLO me\r from 192.0.2.7\r\n");
    });
  });

  test(`${path}: imap PREAUTH cannot be resumed: the session is cut, one line in the log`, async () => {
    await withServer(fakeServer("* PREAUTH logged in\\r\\n", "*"), async (s) => {
      const out = await handOver(s.port, rec("imap"), "a1 NOOP\r\n");
      assert.equal(out, "");
      await s.waitForLog(/^tcpserver: end /);
      assert.match(
        s.log(),
        /^tlsd: fatal: 192\.0\.2\.7: resumed imap session: the server greeted with PREAUTH: the client would skip authentication$/m,
      );
      assert.match(s.log(), /^tcpserver: end \d+ status 25088$/m);
    });
  });

  test(`${path}: a program that ends before a whole greeting: the session ends, its status passed on`, async () => {
    await withServer(["/bin/sh", "-c", "printf '220-half'; exit 3"], async (s) => {
      const out = await handOver(s.port, rec("smtp"), "EHLO me\r\n");
      assert.equal(out, "");
      await s.waitForLog(/^tcpserver: end /);
      assert.match(s.log(), /^tcpserver: end \d+ status 768$/m);
      assert.doesNotMatch(s.log(), /fatal/);
    });
  });
}

test("the record's data is replayed to the program before the client's bytes", async () => {
  await withServer(fakeServer("220 hi\\r\\n", "250"), async (s) => {
    const out = await handOver(
      s.port,
      { protocol: "smtp", swallow: "greeting", data: Buffer.from("NOOP\r\n") },
      "EHLO me\r\n",
    );
    assert.equal(out, "250 NOOP\r from 192.0.2.7\r\n250 EHLO me\r from 192.0.2.7\r\n");
  });
});

test("plaintext bytes between the header and the handshake never reach the program", async () => {
  await withServer(fakeServer("220 hi\\r\\n", "250"), async (s) => {
    // The client sees the handshake fail (an alert, or the connection closed), never an answer.
    const out = await handOver(
      s.port,
      { protocol: "smtp", swallow: "greeting" },
      "EHLO me\r\n",
      Buffer.from("RSET\r\n"),
    ).catch(() => "");
    assert.equal(out, "");
    await s.waitForLog(/^tcpserver: end /);
    assert.match(s.log(), /^tlsd: fatal: [^ ]*: TLS handshake failed/m);
  });
});

test("a record for a protocol without a greeting grammar is refused, status 100", async () => {
  await withServer(fakeServer("220 hi\\r\\n", "250"), async (s) => {
    // The client gets nothing: its handshake fails (a reset, when its ClientHello was there
    // before the close) or its connection just ends (a FIN, when tlsd refused first).
    const got = await handOver(s.port, { protocol: "gopher", swallow: "greeting" }, "x\r\n").catch(
      () => "",
    );
    assert.equal(got, "");
    await s.waitForLog(/^tcpserver: end /);
    assert.match(s.log(), /^tlsd: fatal: resume record: no greeting grammar for 'gopher'$/m);
    assert.match(s.log(), /^tcpserver: end \d+ status 25600$/m);
  });
});

// starttls-wrapper -p nntp (RFC 4642) and -p sieve (RFC 5804) with real clients (python3's
// nntplib, openssl s_client -starttls nntp|sieve, python3 ssl), in front of fake-nntp and
// fake-sieve (test/fixtures): STARTTLS advertised and
// upgraded in local mode and handed over in remote mode; inside TLS the fresh server's own
// STARTTLS is not offered again; -r refuses everything but the short list with 483.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("nntp");
const cert = pki.server("localhost", ["localhost", "127.0.0.1"]);
const FAKE = join(ROOT, "test", "fixtures", "fake-nntp");
const PATH = `${BIN}:/usr/bin:/bin`;
let serial = 0;
// Both servers have STARTTLS of their own: the plaintext one's is kept once, the one behind
// TLS must not be offered again.
const SERVER_ENV = { PATH, FAKE_STARTTLS: "1" };

/** The wrapper in front of fake-nntp (or `fake`, for -p `protocol`): local mode, or handing to
 * a TLS service. */
async function wrapper(flags: string[], mode: "local" | "remote", protocol = "nntp", fake = FAKE) {
  const log = join(dir, `${protocol}-${mode}-${++serial}.log`);
  const tls = { CERTFILE: cert.cert, KEYFILE: cert.key };
  const servers: RunningServer[] = [];
  let target: string[] = [];
  if (mode === "remote") {
    const service = await startServer(
      ours("tcpserver"),
      ["--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", fake],
      { env: { ...SERVER_ENV, ...tls, FAKE_LOG: log } },
    );
    servers.push(service);
    target = ["127.0.0.1", String(service.port)];
  }
  const front = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, ...flags, ...target, fake],
    { env: { ...SERVER_ENV, ...(mode === "local" ? tls : {}), FAKE_LOG: log } },
  );
  servers.push(front);
  return {
    port: front.port,
    log: () => readFileSync(log, "latin1"),
    stop: async () => {
      for (const s of servers) await s.stop();
    },
  };
}

const NNTPLIB = `
import json, nntplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
n = nntplib.NNTP("127.0.0.1", int(sys.argv[1]), readermode=False)
before = sorted(n.getcapabilities())
n.starttls(ctx)
out = {"before": before, "after": sorted(n.getcapabilities()), "version": n.sock.version()}
out["date"] = str(n.date()[1].year)
out["quit"] = n.quit()
print(json.dumps(out))
`;

for (const mode of ["local", "remote"] as const) {
  test(`${mode}: nntplib sees STARTTLS, upgrades, and the server behind TLS offers it no more`, async () => {
    const w = await wrapper([], mode);
    try {
      const r = await run("python3", ["-W", "ignore", "-c", NNTPLIB, String(w.port), pki.ca.cert]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.deepEqual(out["before"], ["AUTHINFO", "READER", "STARTTLS", "VERSION"]);
      assert.deepEqual(out["after"], ["AUTHINFO", "READER", "VERSION"]);
      assert.match(String(out["version"]), /^TLSv1\.3$/);
      assert.equal(out["date"], "2026");
      assert.match(String(out["quit"]), /^205 /);
      // The plaintext server saw CAPABILITIES; the one behind TLS the rest, never STARTTLS.
      assert.equal(
        w.log(),
        "127.0.0.1 CAPABILITIES\n127.0.0.1 CAPABILITIES\n127.0.0.1 DATE\n127.0.0.1 QUIT\n",
      );
    } finally {
      await w.stop();
    }
  });
}

for (const [protocol, fake, input, answer] of [
  ["nntp", FAKE, "DATE\r\nQUIT\r\n", /^111 20261204000000\r?$/m],
  [
    "sieve",
    join(ROOT, "test", "fixtures", "fake-sieve"),
    "NOOP\r\nLOGOUT\r\n",
    /^OK "NOOP completed\."\r?$/m,
  ],
] as const) {
  test(`openssl s_client -starttls ${protocol} upgrades, verifies the certificate and is answered`, async () => {
    const w = await wrapper([], "local", protocol, fake);
    try {
      const r = await run(
        "openssl",
        [
          ...["s_client", "-starttls", protocol, "-connect", `127.0.0.1:${w.port}`],
          ...[
            "-CAfile",
            pki.ca.cert,
            "-verify_return_error",
            "-servername",
            "localhost",
            "-ign_eof",
          ],
        ],
        { input, timeoutMs: 20_000 },
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
      assert.match(r.stdout, answer);
    } finally {
      await w.stop();
    }
  });
}

test("-r: AUTHINFO hidden and refused with 483, only CAPABILITIES, MODE READER, QUIT, STARTTLS followed", async () => {
  const w = await wrapper(["-r"], "local");
  try {
    const r = await run("python3", [
      "-c",
      `
import socket
s = socket.create_connection(("127.0.0.1", ${w.port}))
f = s.makefile("rb")
out = [f.readline()]
s.sendall(b"CAPABILITIES\\r\\n")
while True:
    out.append(f.readline())
    if out[-1] == b".\\r\\n":
        break
s.sendall(b"AUTHINFO USER me\\r\\nDATE\\r\\nMODE READER\\r\\nQUIT\\r\\n")
out += f.readlines()
print(b"".join(out).decode(), end="")
`,
    ]);
    assert.equal(
      r.stdout,
      "200 fake.example news ready\r\n101 Capability list:\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n" +
        "483 Encryption or stronger authentication required\r\n" +
        "483 Encryption or stronger authentication required\r\n" +
        "500 what is MODE READER\r\n205 bye\r\n",
    );
    assert.doesNotMatch(w.log(), /AUTHINFO|DATE/);
  } finally {
    await w.stop();
  }
});

test("an RFC 977 server (no CAPABILITIES) whose MODE READER says 201: the wrapper's capability list loses POST then (it followed the greeting's 200 only)", async () => {
  // A reader server that knows no CAPABILITIES, and that forbids posting once in reader mode.
  const server = String.raw`printf '200 hi\r\n'; while IFS= read -r l; do case "$l" in CAPABILITIES*) printf '500 what\r\n' ;; MODE*) printf '201 reading only\r\n' ;; *) printf '205 bye\r\n'; exit ;; esac; done`;
  const w = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "nntp", "sh", "-c", server],
    { env: { PATH, CERTFILE: cert.cert, KEYFILE: cert.key } },
  );
  try {
    const r = await run("python3", [
      "-c",
      `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
out = [f.readline()]
def ask(command, lines):
    s.sendall(command)
    for _ in range(lines):
        out.append(f.readline())
ask(b"CAPABILITIES\\r\\n", 6)
ask(b"MODE READER\\r\\n", 1)
ask(b"CAPABILITIES\\r\\n", 5)
ask(b"QUIT\\r\\n", 1)
print(b"".join(out).decode(), end="")
`,
      String(w.port),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "200 hi\r\n" +
        "101 Capability list:\r\nVERSION 2\r\nREADER\r\nPOST\r\nSTARTTLS\r\n.\r\n" +
        "201 reading only\r\n" +
        "101 Capability list:\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n" +
        "205 bye\r\n",
    );
  } finally {
    await w.stop();
  }
});

const SIEVE = join(ROOT, "test", "fixtures", "fake-sieve");

/** A ManageSieve client in python3: reads the greeting, says STARTTLS, does TLS, reads the
 * capabilities the server sends again, then NOOP and LOGOUT; prints all it read. */
const SIEVE_CLIENT = `
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
out = []
def response(f):
    while True:
        line = f.readline()
        out.append(line)
        if not line or line.split(b" ")[0].rstrip(b"\\r\\n") in (b"OK", b"NO", b"BYE"):
            return
response(f)
s.sendall(b"STARTTLS\\r\\n")
response(f)
t = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname="localhost")
g = t.makefile("rb")
out.append(b"-- TLS --\\n")
response(g)
t.sendall(b"NOOP\\r\\n")
response(g)
t.sendall(b"LOGOUT\\r\\n")
response(g)
print(b"".join(out).decode(), end="")
`;

const CAPS = '"IMPLEMENTATION" "fake sieve"\r\n"SASL" "PLAIN"\r\n"SIEVE" "fileinto"\r\n';

for (const mode of ["local", "remote"] as const) {
  test(`${mode}: ManageSieve: STARTTLS advertised; behind TLS the fresh server's capabilities come again, without STARTTLS`, async () => {
    const w = await wrapper([], mode, "sieve", SIEVE);
    try {
      const r = await run("python3", ["-c", SIEVE_CLIENT, String(w.port), pki.ca.cert]);
      assert.equal(r.stderr, "");
      assert.equal(
        r.stdout,
        `${CAPS}"VERSION" "1.0"\r\n"STARTTLS"\r\nOK "fake ready"\r\n` +
          'OK "Begin TLS negotiation now."\r\n-- TLS --\n' +
          `${CAPS}"VERSION" "1.0"\r\nOK "fake ready"\r\n` +
          'OK "NOOP completed."\r\nOK "Logout completed."\r\n',
      );
      assert.equal(w.log(), "127.0.0.1 NOOP\n127.0.0.1 LOGOUT\n");
    } finally {
      await w.stop();
    }
  });
}

test("ManageSieve -r: AUTHENTICATE refused with ENCRYPT-NEEDED, SASL emptied before TLS", async () => {
  const w = await wrapper(["-r"], "local", "sieve", SIEVE);
  try {
    const r = await run("python3", [
      "-c",
      `
import socket
s = socket.create_connection(("127.0.0.1", ${w.port}))
f = s.makefile("rb")
out = []
while not out or not out[-1].startswith(b"OK"):
    out.append(f.readline())
s.sendall(b'AUTHENTICATE "PLAIN" "AGEAYg=="\\r\\nPUTSCRIPT\\r\\nLOGOUT\\r\\n')
out += f.readlines()
print(b"".join(out).decode(), end="")
`,
    ]);
    assert.equal(
      r.stdout,
      '"IMPLEMENTATION" "fake sieve"\r\n"SASL" ""\r\n"SIEVE" "fileinto"\r\n"VERSION" "1.0"\r\n"STARTTLS"\r\nOK "fake ready"\r\n' +
        'NO (ENCRYPT-NEEDED) "TLS is required before authentication."\r\n' +
        'NO "TLS is required first: use STARTTLS."\r\nOK "Logout completed."\r\n',
    );
    assert.doesNotMatch(w.log(), /AUTHENTICATE|PUTSCRIPT/);
  } finally {
    await w.stop();
  }
});

test("-r: an NNTP server's SASL line (RFC 4643: the mechanisms of AUTHINFO SASL) is hidden with AUTHINFO before TLS, and kept when opportunistic (it was listed under -r, for an AUTHINFO that is refused)", async () => {
  const script =
    "printf '200 fake\\r\\n'; while IFS= read -r l; do case \"$l\" in " +
    "CAPABILITIES*) printf '101 list\\r\\nVERSION 2\\r\\nREADER\\r\\nAUTHINFO USER SASL\\r\\nSASL PLAIN\\r\\n.\\r\\n' ;; " +
    "*) printf '205 bye\\r\\n'; exit 0 ;; esac; done";
  const lists: Record<string, string> = {};
  for (const policy of ["-r", "-o"]) {
    const front = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "nntp", policy, "sh", "-c", script],
      { env: { PATH, CERTFILE: cert.cert, KEYFILE: cert.key } },
    );
    try {
      const r = await run("python3", [
        "-c",
        [
          "import socket, sys",
          "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
          "f = s.makefile('rb')",
          "f.readline()",
          "s.sendall(b'CAPABILITIES\\r\\n')",
          "out = []",
          "while not out or out[-1] != b'.\\r\\n': out.append(f.readline())",
          "print(b''.join(out).decode(), end='')",
        ].join("\n"),
        String(front.port),
      ]);
      lists[policy] = r.stdout;
    } finally {
      await front.stop();
    }
  }
  assert.deepEqual(lists, {
    "-r": "101 list\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n",
    "-o": "101 list\r\nVERSION 2\r\nREADER\r\nAUTHINFO USER SASL\r\nSASL PLAIN\r\nSTARTTLS\r\n.\r\n",
  });
});

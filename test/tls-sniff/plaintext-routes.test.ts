// sslh's own case on one port: SSH, plain HTTP, HTTPS and a client that waits for the server,
// each to its program, with real clients: OpenSSH's ssh to Debian's sshd in inetd mode (`-i`,
// run per connection by the route), curl http:// and https://, a silent python3 socket, and a
// protocol named by --prefix. Under our tcpserver (in-process, peeked) and djb's (tls-sniff a
// process of its own).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const main = pki.server("localhost", ["localhost", "127.0.0.1"]);
const dir = scratchDir("sniff-ssh");

// sshd in inetd mode with a key pair of the test's own; it needs its privilege separation
// directory, which its package makes at boot.
mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
for (const name of ["host", "client"])
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, name)]);
execFileSync("cp", [join(dir, "client.pub"), join(dir, "authorized_keys")]);
writeFileSync(
  join(dir, "sshd_config"),
  [
    `HostKey ${join(dir, "host")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "PermitRootLogin prohibit-password",
    "StrictModes no",
    "PidFile none",
    "",
  ].join("\n"),
);

const ENV = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: main.cert, KEYFILE: main.key };
// Each route's program says which it is, then reads to the client's end (bytes left unread
// would make the close a reset).
const say = (text: string) => ["sh", "-c", `echo "${text} $TLS_SNIFF"; cat >/dev/null`];
const CHAIN = [
  "tls-sniff",
  "-v2",
  "--ssh",
  "{",
  "/usr/sbin/sshd",
  "-i",
  "-e",
  "-f",
  join(dir, "sshd_config"),
  "}",
  "--http",
  "{",
  "ucspi-demo",
  "http",
  "}",
  "--prefix",
  "HELLO",
  "{",
  ...say("hello route"),
  "}",
  "--plain",
  "{",
  ...say("plain route"),
  "}",
  "tlsd",
  "ucspi-demo",
  "http",
];

/** A client of its own (python3): sends `send` (nothing: a client that waits), reads the first
 * line, ends its side, reads to the end. */
async function client(s: RunningServer, send: string): Promise<string> {
  const r = await run("python3", [
    "-c",
    [
      "import socket, sys",
      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=15)",
      "s.sendall(sys.argv[2].encode())",
      "out = b''",
      "while not out.endswith(b'\\n'):",
      "    b = s.recv(1)",
      "    if not b: break",
      "    out += b",
      "s.shutdown(socket.SHUT_WR)",
      "while True:",
      "    b = s.recv(4096)",
      "    if not b: break",
      "    out += b",
      "sys.stdout.write(out.decode())",
    ].join("\n"),
    String(s.port),
    send,
  ]);
  assert.equal(r.code, 0, r.stderr + s.log());
  return r.stdout;
}

for (const [who, server] of [
  ["ours (in-process)", ours("tcpserver")],
  ["djb's (tls-sniff a process of its own)", djb("tcpserver")],
] as const) {
  describe(who, () => {
    let s: RunningServer;
    test("SSH, HTTP, HTTPS, a named protocol and a silent client on one port, each to its route", async () => {
      s = await startServer(server, ["-vRHl0", "127.0.0.1", "0", ...CHAIN], { env: ENV });
      try {
        const ssh = await run("ssh", [
          "-F",
          "/dev/null",
          "-i",
          join(dir, "client"),
          "-p",
          String(s.port),
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "BatchMode=yes",
          "-o",
          "LogLevel=ERROR",
          `${userInfo().username}@127.0.0.1`,
          "echo over ssh",
        ]);
        assert.equal(ssh.code, 0, ssh.stderr + s.log());
        assert.equal(ssh.stdout, "over ssh\n");
        const http = await run("curl", ["-sS", "--max-time", "10", `http://127.0.0.1:${s.port}/h`]);
        assert.equal(http.code, 0, http.stderr);
        assert.match(http.stdout, /^hello from ucspi-tls: GET \/h$/m);
        assert.match(http.stdout, /^tls-sniff: plain$/m);
        const https = await run("curl", [
          "-sS",
          "--max-time",
          "10",
          "--cacert",
          pki.ca.cert,
          `https://localhost:${s.port}/`,
        ]);
        assert.equal(https.code, 0, https.stderr);
        assert.match(https.stdout, /^tls-sniff: tls$/m);
        assert.equal(await client(s, "HELLO there\n"), "hello route plain\n");
        // Plaintext that no route takes, and a client that waits for the server (-t, 2 s).
        assert.equal(await client(s, "EHLO example.org\r\n"), "plain route plain\n");
        assert.equal(await client(s, ""), "plain route plain\n");
        const log = await s.waitForLog(/tls-sniff: info: /, 6);
        const seen = log.map((line) => line.replace(/^.*tls-sniff: info: 127\.0\.0\.1: /, ""));
        const expected = [
          /^plain ssh$/,
          /^plain http$/,
          /^tls sni=localhost alpn=(h2,)?http\/1\.1$/,
          /^plain prefix:HELLO$/,
          /^plain$/,
          /^plain \(silent\)$/,
        ];
        assert.equal(seen.length, expected.length, seen.join("\n"));
        for (const [i, pattern] of expected.entries()) assert.match(seen[i] ?? "", pattern);
      } finally {
        await s.stop();
      }
    });

    test("a client that stops before its bytes tell: what came decides after -K, no hang", async () => {
      s = await startServer(
        server,
        ["-vRHl0", "127.0.0.1", "0", ...CHAIN.slice(0, 1), "-K", "300", ...CHAIN.slice(1)],
        {
          env: ENV,
        },
      );
      try {
        // "GET / HT" is not yet a request line, "HEL" not yet HELLO, "SS" not yet SSH-: after
        // -K they are plaintext that no route takes.
        assert.equal(await client(s, "GET / HT"), "plain route plain\n");
        assert.equal(await client(s, "HEL"), "plain route plain\n");
        assert.equal(await client(s, "SS"), "plain route plain\n");
        await s.waitForLog(/ end \d+ status 0$/, 3);
      } finally {
        await s.stop();
      }
    });
  });
}

test("without --plain, plaintext that no route takes is refused, and the line says so", async () => {
  const s = await startServer(
    ours("tcpserver"),
    [
      "-vRHl0",
      "127.0.0.1",
      "0",
      "tls-sniff",
      "--ssh",
      "{",
      ...say("ssh route"),
      "}",
      "tlsd",
      "true",
    ],
    { env: ENV },
  );
  try {
    const r = await run("python3", [
      "-c",
      "import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.sendall(b'EHLO x\\r\\n'); print(s.recv(100))",
      String(s.port),
    ]);
    assert.equal(r.stdout, "b''\n", r.stderr);
    await s.waitForLog(/ end \d+ status 25600$/);
    assert.match(
      s.log(),
      /^tls-sniff: warning: 127\.0\.0\.1: refused: plaintext that no --ssh, --http or --prefix route takes, and no --plain route$/m,
    );
  } finally {
    await s.stop();
  }
});

test("usage: the routes' own mistakes are usage errors", async () => {
  for (const [args, line] of [
    [["--ssh", "{", "a", "}", "--ssh", "{", "b", "}", "c"], "tls-sniff: --ssh given twice"],
    [
      ["--prefix", "a b", "{", "a", "}", "c"],
      "tls-sniff: --prefix: 1 to 64 printable ASCII characters, no space, not 'a b'",
    ],
    [["--http=x", "{", "a", "}", "c"], "tls-sniff: --http takes no value"],
    [
      ["--http", "{", "a", "}"],
      "tls-sniff: routes need a default program (the filter form has none)",
    ],
  ] as const) {
    const r = await run(ours("tls-sniff"), [...args]);
    assert.equal(r.code, 100, args.join(" "));
    assert.equal(r.stderr.split("\n")[0], line);
  }
});

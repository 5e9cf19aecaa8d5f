// starttls-wrapper -p nntp (RFC 4642) in front of a real NNTP server: Debian's leafnode 1.12,
// run per connection as from inetd (the session on stdin/stdout) under our tcpserver, the
// wrapper doing TLS itself (local mode). Clients: openssl s_client -starttls nntp, python3's
// nntplib (Debian 12's Python 3.11) and our tcpclient + tlsc --starttls nntp, each reading a
// group's article over TLS. leafnode 1.12 knows no CAPABILITIES (500): the wrapper answers it
// before TLS with its own list (VERSION 2, READER, POST, STARTTLS); over TLS the question is leafnode's,
// and STARTTLS is offered no more. A command pipelined behind STARTTLS is refused and never
// reaches leafnode; a STARTTLS after AUTHINFO, or inside TLS, is leafnode's to answer.
//
// leafnode reads /etc/news/leafnode/config and /var/spool/news, fixed at build time (no option
// or variable moves them): each connection's leafnode runs in a mount namespace of its own
// (unshare --mount, root) where a temporary directory's etc/ and spool/ are bind-mounted over
// those two paths, so nothing outside the temporary directory is read or written. The config
// names a host leafnode accepts as unique (it refuses .test, .example and the like) and sets
// allowSTRANGERS: behind the wrapper leafnode's stdin is an AF_UNIX socket, which its
// local-network check refuses ("502 Remote access denied.") without it. The group local.test
// and its two articles are spool files written here (leafnode 1.12 has no local groups).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("leafnode");
const cert = pki.server("localhost", ["localhost", "127.0.0.1"]);
// Debian's python3 (3.11, nntplib still there) and our programs first.
const PATH = `${BIN}:/usr/bin:/bin`;
const FQDN = "news.ucspi-tls.home.arpa";
const LEAFNODE = "/usr/sbin/leafnode";
/** Per connection: the private etc/ and spool/ ($1, $2) over leafnode's fixed paths, in this
 * process's own mount namespace (unshare makes its mounts private), then leafnode. */
const MOUNT_AND_RUN =
  'mount --bind "$1" /etc/news/leafnode && mount --bind "$2" /var/spool/news && exec ' + LEAFNODE;

before(() => {
  assert.ok(existsSync(LEAFNODE), "Debian's leafnode package is needed (.ci/run installs it)");
  assert.equal(process.getuid?.(), 0, "leafnode's private mounts need root, as CI runs it");
});

/** Article `n` of local.test, its lines. */
function article(n: number): string[] {
  return [
    `Path: ${FQDN}!not-for-mail`,
    "From: Tester <tester@example.org>",
    "Newsgroups: local.test",
    `Subject: article ${n}`,
    "Date: Thu, 04 Dec 2025 00:00:00 +0000",
    `Message-ID: <art${n}@${FQDN}>`,
    "Lines: 1",
    "",
    `Body of article ${n}.`,
  ];
}

/** A leafnode of its own: config and spool under `dir`/`name`, the group local.test with
 * articles 1 and 2. Gives the command that serves one connection, and the spool. */
function leafnode(name: string): { argv: string[]; spool: string } {
  const etc = join(dir, name, "etc");
  const spool = join(dir, name, "spool");
  const group = join(spool, "local", "test");
  mkdirSync(etc, { recursive: true });
  mkdirSync(join(spool, "leaf.node"), { recursive: true });
  mkdirSync(group, { recursive: true });
  writeFileSync(
    join(etc, "config"),
    // server: the upstream fetchnews would use (never here); expire: mandatory too.
    `server = upstream.invalid\nexpire = 20\nhostname = ${FQDN}\nallowSTRANGERS = 42\n`,
  );
  // groupinfo, leafnode 1.x: name high low time description.
  writeFileSync(
    join(spool, "leaf.node", "groupinfo"),
    `local.test 2 1 ${Math.floor(Date.now() / 1000)} Articles for the tests\n`,
  );
  for (const n of [1, 2]) writeFileSync(join(group, String(n)), `${article(n).join("\n")}\n`);
  return { argv: ["unshare", "--mount", "sh", "-c", MOUNT_AND_RUN, "leafnode", etc, spool], spool };
}

/** Our tcpserver running starttls-wrapper -p nntp (local mode) in front of a fresh leafnode. */
async function wrapped(name: string): Promise<RunningServer & { spool: string }> {
  const news = leafnode(name);
  const server = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "nntp", ...news.argv],
    { env: { PATH, CERTFILE: cert.cert, KEYFILE: cert.key } },
  );
  return Object.assign(server, { spool: news.spool });
}

const GREETING = new RegExp(
  `^200 Leafnode NNTP Daemon, version 1\\.12\\.0 running at ${FQDN.replaceAll(".", "\\.")} `,
);

test("openssl s_client -starttls nntp: upgraded, certificate verified, leafnode lists, selects and serves over TLS", async () => {
  const server = await wrapped("openssl");
  try {
    const r = await run(
      "openssl",
      [
        ...["s_client", "-starttls", "nntp", "-connect", `127.0.0.1:${server.port}`],
        ...["-CAfile", pki.ca.cert, "-verify_return_error", "-servername", "localhost"],
        "-ign_eof",
      ],
      {
        input: "LIST\r\nGROUP local.test\r\nARTICLE 2\r\nQUIT\r\n",
        env: { PATH },
        timeoutMs: 20_000,
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr + server.log());
    assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(r.stdout, /^\s*Protocol\s*: TLSv1\.3$/m);
    // leafnode's answers, all after the handshake.
    const tls = r.stdout.slice(r.stdout.indexOf("Verify return code"));
    assert.match(
      tls,
      /^215 Newsgroups in form "group high low flags"\.\r?\nlocal\.test 2 1 y\r?\n\.\r?$/m,
    );
    assert.match(tls, /^211 2 1 2 local\.test group selected\r?$/m);
    assert.ok(
      tls.includes(
        `\n220 2 <art2@${FQDN}> article retrieved - text follows\r\n` +
          `${article(2).join("\r\n")}\r\n.\r\n205 Always happy to serve!\r\n`,
      ),
      tls,
    );
    await server.waitForLog(/^tcpserver: end \d+ status 0$/);
  } finally {
    await server.stop();
  }
});

/** nntplib with readermode: CAPABILITIES (READER listed: no MODE READER), STARTTLS,
 * CAPABILITIES over TLS, then GROUP, ARTICLE, LIST, QUIT over TLS. */
const NNTPLIB = `
import json, nntplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
n = nntplib.NNTP("127.0.0.1", int(sys.argv[1]), readermode=True)
out = {"python": sys.version_info[:2], "welcome": n.welcome, "before": n.getcapabilities()}
n.starttls(ctx)
out["after"] = n.getcapabilities()
out["version"] = n.sock.version()
out["group"] = list(n.group("local.test")[1:])
out["article"] = [line.decode() for line in n.article(1)[1].lines]
out["list"] = [list(g) for g in n.list()[1]]
out["quit"] = n.quit()
print(json.dumps(out))
`;

test("nntplib: STARTTLS in the wrapper's CAPABILITIES before TLS, not in leafnode's answer after; the group and an article over TLS", async () => {
  const server = await wrapped("nntplib");
  try {
    const r = await run(
      "python3",
      ["-W", "ignore", "-c", NNTPLIB, String(server.port), pki.ca.cert],
      { env: { PATH } },
    );
    assert.equal(r.code, 0, r.stderr + server.log());
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(out["python"], [3, 11]);
    // The wrapper's list says READER, so nntplib sends no MODE READER: the welcome is
    // leafnode's greeting.
    assert.match(String(out["welcome"]), GREETING);
    // leafnode 1.12 answers CAPABILITIES with 500: before TLS the list is the wrapper's...
    assert.deepEqual(out["before"], { VERSION: ["2"], READER: [], POST: [], STARTTLS: [] });
    // ...and over TLS the question reaches leafnode, whose 500 nntplib takes as no list.
    assert.deepEqual(out["after"], {});
    assert.equal(out["version"], "TLSv1.3");
    assert.deepEqual(out["group"], [2, 1, 2, "local.test"]);
    assert.deepEqual(out["article"], article(1));
    assert.deepEqual(out["list"], [["local.test", "2", "1", "y"]]);
    assert.equal(out["quit"], "205 Always happy to serve!");
  } finally {
    await server.stop();
  }
});

/** A python3 client by hand: the greeting, CAPABILITIES and its list, then `send` in one
 * write; prints all it read until the end. */
const PIPELINED = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(20)
f = s.makefile("rb")
out = [f.readline()]
s.sendall(b"CAPABILITIES\\r\\n")
while out[-1] and out[-1] != b".\\r\\n":
    out.append(f.readline())
s.sendall(sys.argv[2].encode())
out += f.readlines()
print(b"".join(out).decode(), end="")
`;

test("STARTTLS and LISTGROUP in one segment: refused with 400 and closed; leafnode never sees LISTGROUP", async () => {
  const server = await wrapped("pipelined");
  // leafnode marks a group interesting (a file) on LISTGROUP: the trace of the command.
  const marker = join(server.spool, "interesting.groups", "local.test");
  // leafnode greets with 200 (posting allowed) and knows no CAPABILITIES: the wrapper's list.
  const caps = "101 Capability list:\r\nVERSION 2\r\nREADER\r\nPOST\r\nSTARTTLS\r\n.\r\n";
  try {
    const r = await run(
      "python3",
      ["-c", PIPELINED, String(server.port), "STARTTLS\r\nLISTGROUP local.test\r\n"],
      { env: { PATH } },
    );
    assert.equal(r.stderr, "");
    const [greeting = "", ...rest] = r.stdout.split(/(?<=\r\n)/);
    assert.match(greeting, GREETING);
    assert.equal(rest.join(""), `${caps}400 Command pipelined after STARTTLS\r\n`);
    await server.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: command pipelined after STARTTLS$/,
    );
    await server.waitForLog(/^tcpserver: end \d+ /);
    assert.equal(existsSync(marker), false, "leafnode got the pipelined LISTGROUP");
    // The same LISTGROUP alone, TLS declined: forwarded to leafnode, which leaves its mark.
    const plain = await run(
      "python3",
      ["-c", PIPELINED, String(server.port), "LISTGROUP local.test\r\nQUIT\r\n"],
      { env: { PATH } },
    );
    assert.match(plain.stdout, /\r\n211 Article list for local\.test follows\r\n/);
    await server.waitForLog(/^tcpserver: end \d+ /, 2);
    assert.equal(existsSync(marker), true);
  } finally {
    await server.stop();
  }
});

/** The program under tlsc: what it is told of TLS, then its commands on fd 7 and leafnode's
 * answers from fd 6 (the greeting first, kept from before TLS) until the end. */
const TLSC_PROGRAM = `echo "SSL_PROTOCOL=$SSL_PROTOCOL"
printf 'GROUP local.test\\r\\nARTICLE 2\\r\\nQUIT\\r\\n' >&7
exec cat <&6`;

test("tcpclient + tlsc --starttls nntp: the program reads leafnode's greeting, selects the group and reads an article over TLS", async () => {
  const server = await wrapped("tlsc");
  try {
    const r = await run(
      ours("tcpclient"),
      [
        ...["-RHl0", "127.0.0.1", String(server.port)],
        ...["tlsc", "--starttls", "nntp", "sh", "-c", TLSC_PROGRAM],
      ],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.equal(r.stderr, "");
    const [protocol = "", greeting = "", ...rest] = r.stdout.split(/(?<=\n)/);
    assert.equal(protocol, "SSL_PROTOCOL=TLSv1.3\n");
    assert.match(greeting, GREETING);
    const answers = rest.join("");
    assert.match(answers, /^211 2 1 2 local\.test group selected\r\n220 2 <art2@/);
    assert.ok(
      answers.endsWith(`${article(2).join("\r\n")}\r\n.\r\n205 Always happy to serve!\r\n`),
      answers,
    );
    await server.waitForLog(/^tcpserver: end \d+ status 0$/);
  } finally {
    await server.stop();
  }
});

/** A python3 client by hand, two sessions: AUTHINFO then STARTTLS in plaintext; STARTTLS, TLS,
 * then STARTTLS again inside it. Each command's first answer line, and the TLS version. */
const WRONG_TIME = `
import json, socket, ssl, sys
def session(commands, upgrade=False):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 20)
    f = s.makefile("rb")
    out = [f.readline().decode()[:4]]
    if upgrade:
        s.sendall(b"STARTTLS\\r\\n")
        out.append(f.readline().decode())
        s = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname="localhost")
        f = s.makefile("rb")
        out.append(s.version())
    for command in commands:
        s.sendall(command.encode() + b"\\r\\n")
        out.append(f.readline().decode())
    return out
print(json.dumps([
    session(["AUTHINFO USER test", "STARTTLS", "GROUP local.test", "QUIT"]),
    session(["STARTTLS", "GROUP local.test", "QUIT"], upgrade=True),
]))
`;

// RFC 4642: no STARTTLS after AUTHINFO, nor once TLS is on; the server says 502 (or, as
// leafnode 1.12, which knows neither command, 500). Ours is never the answer then: AUTHINFO ends
// the snooping (opportunistic), and inside TLS the wrapper only relays.
test("STARTTLS after AUTHINFO, and STARTTLS again inside TLS: leafnode's refusal, not our 382; the session goes on", async () => {
  const server = await wrapped("wrong-time");
  try {
    const r = await run("python3", ["-c", WRONG_TIME, String(server.port), pki.ca.cert], {
      env: { PATH },
    });
    assert.equal(r.code, 0, r.stderr + server.log());
    const group = "211 2 1 2 local.test group selected\r\n";
    const bye = "205 Always happy to serve!\r\n";
    const unknown = "500 Unknown command\r\n";
    assert.deepEqual(JSON.parse(r.stdout), [
      ["200 ", unknown, unknown, group, bye],
      ["200 ", "382 Continue with TLS negotiation\r\n", "TLSv1.3", unknown, group, bye],
    ]);
    await server.waitForLog(/^tcpserver: end \d+ status 0$/, 2);
  } finally {
    await server.stop();
  }
});

// tlsc --starttls: the client half of STARTTLS, against real servers with TLS of their own
// (exim4 -bs with GnuTLS, PostgreSQL 15 with ssl=on, slapd, Prosody, MariaDB, Dovecot's
// ManageSieve), against real plaintext servers given
// STARTTLS by our starttls-wrapper (GNU imap4d and pop3d, and the NNTP and ManageSieve
// fixtures), and against small servers that misbehave the ways of starttls-attacks.md: no
// STARTTLS offered (a failure unless --plaintext-fallback), STARTTLS refused, bytes injected
// after the go-ahead, IMAP PREAUTH. Every failure: exit 98, one line, the program never runs.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CLIENT_SSL, writePacket } from "../../src/dialogue/mysql.ts";
import { makePki } from "../helpers/certs.ts";
import { imapServer, lmtpServer, pop3Server, smtpServer } from "../helpers/mail-servers.ts";
import type { MailServer } from "../helpers/mail-servers.ts";
import { freePort } from "../helpers/interop.ts";
import { manageSieveServer } from "../helpers/managesieve.ts";
import { greetingPayload } from "../helpers/mysql-packets.ts";
import { startMariaDb } from "../helpers/mariadb.ts";
import { startPostgres } from "../helpers/postgres.ts";
import { startProsody } from "../helpers/prosody.ts";
import { LDAP_ADMIN, startSlapd } from "../helpers/slapd.ts";
import { BIN, ROOT, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost", "127.0.0.1"]);
const xmppLeaf = pki.server("example.test", ["example.test"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const STEPS = join(ROOT, "test", "fixtures", "client-steps");

/** Our tcpclient + tlsc --starttls to `port`, running the client-steps fixture. */
async function client(
  port: number,
  protocol: string,
  steps: [string, string][],
  flags: string[] = [],
) {
  const r = await run(
    ours("tcpclient"),
    [
      ...["-RHl0", "127.0.0.1", String(port)],
      ...["tlsc", "--starttls", protocol, ...flags, "-k", "localhost"],
      ...[STEPS, JSON.stringify(steps)],
    ],
    { env: { PATH, CAFILE: pki.ca.cert } },
  );
  const [first = "", texts = "[]"] = r.stdout.split("\n");
  return {
    ...r,
    ssl: first.replace(/^SSL_PROTOCOL=/, ""),
    texts: r.stdout === "" ? [] : (JSON.parse(texts) as string[]),
  };
}

/** A server of the test's own (node:net) listening on a port of 127.0.0.1: that port. */
async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

/** A server under our tcpserver: `script` is sh, run per connection. */
function fakeServer(script: string): Promise<RunningServer> {
  return startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "sh", "-c", script], {
    env: { PATH },
  });
}

/** A plaintext mail server behind our starttls-wrapper (local mode, tlsd in-process). */
async function wrapped(protocol: string, argv: string[], env: Record<string, string> = {}) {
  return startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", protocol, ...argv],
    { env: { PATH, CERTFILE: leaf.cert, KEYFILE: leaf.key, ...env } },
  );
}

const SMTP_MAIL: [string, string][] = [
  ["", "^220 [^\\n]*\\n"],
  ["EHLO client.test\r\n", "\\n250 [^\\n]*\\n"],
  ["MAIL FROM:<sender@example.net>\r\n", "^250[^\\n]*\\n"],
  ["RCPT TO:<test@example.org>\r\n", "^250[^\\n]*\\n"],
  ["DATA\r\n", "^354[^\\n]*\\n"],
  ["Subject: over STARTTLS\r\n\r\nhello\r\n.\r\n", "^250[^\\n]*\\n"],
  ["QUIT\r\n", "^221[^\\n]*\\n"],
];

let exim: MailServer;
let eximTls: RunningServer;
let eximPlain: RunningServer;
before(async () => {
  exim = await smtpServer(scratchDir("tlsc-starttls"), { tls: leaf });
  eximTls = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", ...exim.argv], {
    env: { PATH },
  });
  const plain = await smtpServer(scratchDir("tlsc-starttls"));
  eximPlain = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", ...plain.argv], {
    env: { PATH },
  });
});
after(async () => {
  await eximTls.stop();
  await eximPlain.stop();
});

test("smtp: exim's own STARTTLS; the program gets exim's greeting over TLS and sends a mail", async () => {
  const r = await client(eximTls.port, "smtp", SMTP_MAIL);
  assert.equal(r.code, 0, r.stderr + exim.log());
  assert.equal(r.ssl, "TLSv1.3");
  assert.match(r.texts[0] ?? "", /^220 mail\.test ESMTP Exim/);
  // Over TLS exim offers STARTTLS no more.
  assert.match(r.texts[1] ?? "", /^250-mail\.test Hello client\.test/);
  assert.doesNotMatch(r.texts[1] ?? "", /STARTTLS/);
  const [message] = exim.messages();
  assert.match(message ?? "", /with esmtps\s+\(TLS1\.3\)/);
  assert.match(message ?? "", /Subject: over STARTTLS/);
});

test("smtp: a server that offers no STARTTLS is a failure; the program never runs", async () => {
  const r = await client(eximPlain.port, "smtp", SMTP_MAIL);
  assert.equal(r.code, 98);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "tlsc: fatal: STARTTLS (smtp) failed: server does not offer STARTTLS\n");
});

test("smtp --plaintext-fallback: the same server, in plaintext, with a warning", async () => {
  const steps = SMTP_MAIL.slice(0, 2).concat([["QUIT\r\n", "^221[^\\n]*\\n"]]);
  const r = await client(eximPlain.port, "smtp", steps, ["--plaintext-fallback"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.ssl, "");
  assert.match(r.texts[0] ?? "", /^220 mail\.test ESMTP Exim/);
  assert.match(r.texts[1] ?? "", /^250-mail\.test Hello client\.test/);
  assert.equal(r.stderr, "tlsc: warning: server does not offer STARTTLS: going on in plaintext\n");
});

const EHLO_STARTTLS =
  "printf '220 fake ESMTP\\r\\n'; read l; printf '250-fake\\r\\n250 STARTTLS\\r\\n'; read l;";
const XMPP_TLS = 'xmlns="urn:ietf:params:xml:ns:xmpp-tls"';
/** A stream header and features with <starttls/>, once the client has begun its stream. */
const XMPP_FEATURES =
  'head -c 1 >/dev/null; printf \'<?xml version="1.0"?><stream:stream xmlns="jabber:client" ' +
  'xmlns:stream="http://etherx.jabber.org/streams" id="x" version="1.0"><stream:features>' +
  `<starttls ${XMPP_TLS}/></stream:features>';`;
/** A MySQL server's greeting with CLIENT_SSL, and bytes as printf's octal escapes. */
const MYSQL_GREETING = writePacket(0, greetingPayload(0x0200 | CLIENT_SSL | 0x8000 | 0x80000));
const octal = (b: Buffer) => [...b].map((c) => `\\${c.toString(8).padStart(3, "0")}`).join("");
for (const [name, script, protocol, cause] of [
  [
    "bytes after the go-ahead (response injection)",
    `${EHLO_STARTTLS} printf '220 go ahead\\r\\n250 injected\\r\\n'; sleep 5`,
    "smtp",
    "server sent 14 bytes after its STARTTLS answer, before TLS",
  ],
  // The same for every protocol (starttls-attacks.md class B): EAST's B_1 cases for IMAP and
  // POP3, a reply of a later command for NNTP and ManageSieve, another message for LDAP and
  // XMPP, each in the same write as the go-ahead.
  [
    "bytes after the go-ahead (response injection, EAST's B_1)",
    "printf '* OK fake\\r\\n'; read l; printf '* CAPABILITY IMAP4rev1 STARTTLS\\r\\nt1 OK done\\r\\n'; read l; printf 't2 OK begin\\r\\n* CAPABILITY IMAP4REV1 AUTH=PLAIN\\r\\n'; sleep 5",
    "imap",
    "server sent 35 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes after the go-ahead (response injection, EAST's B_1)",
    "printf '+OK fake\\r\\n'; read l; printf '+OK\\r\\nSTLS\\r\\n.\\r\\n'; read l; printf '+OK begin\\r\\n+OK\\r\\nPLAIN\\r\\n.\\r\\n'; sleep 5",
    "pop3",
    "server sent 15 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes after the go-ahead (response injection)",
    "printf '200 fake\\r\\n'; read l; printf '101 caps\\r\\nVERSION 2\\r\\nSTARTTLS\\r\\n.\\r\\n'; read l; printf '382 go\\r\\n281 injected\\r\\n'; sleep 5",
    "nntp",
    "server sent 14 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes after the go-ahead (response injection)",
    'printf \'"SASL" "PLAIN"\\r\\n"STARTTLS"\\r\\nOK "hi"\\r\\n\'; read l; printf \'OK "go"\\r\\nOK "injected"\\r\\n\'; sleep 5',
    "sieve",
    "server sent 15 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes after the go-ahead (response injection: a BindResponse behind the StartTLS success)",
    "head -c 1 >/dev/null; printf '\\060\\014\\002\\001\\001\\170\\007\\012\\001\\000\\004\\000\\004\\000\\060\\014\\002\\001\\002\\141\\007\\012\\001\\000\\004\\000\\004\\000'; sleep 5",
    "ldap",
    "server sent 14 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes after the go-ahead (response injection)",
    `${XMPP_FEATURES} printf '<proceed ${XMPP_TLS}/><message>injected</message>'; sleep 5`,
    "xmpp",
    "server sent 27 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "bytes behind the greeting, before TLS (response injection: an OK packet)",
    `printf '${octal(Buffer.concat([MYSQL_GREETING, Buffer.from("0700000200000002000000", "hex")]))}'; sleep 5`,
    "mysql",
    "server sent 11 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "STARTTLS refused",
    `${EHLO_STARTTLS} printf '454 TLS not available \\033[31mnow\\r\\n'; sleep 5`,
    "smtp",
    'server refused STARTTLS: "454 TLS not available ?[31mnow"',
  ],
  [
    "the server closes in the middle",
    "printf '220 fake ESMTP\\r\\n'; read l",
    "smtp",
    "server closed the connection",
  ],
  [
    "an IMAP server greeting with PREAUTH",
    "printf '* PREAUTH logged in already\\r\\n'; sleep 5",
    "imap",
    "server greeted with PREAUTH: no STARTTLS after it",
  ],
  [
    "PostgreSQL's 'S' with bytes behind it",
    "head -c 8 >/dev/null; printf 'SE'; sleep 5",
    "postgres",
    "server sent 1 bytes after its STARTTLS answer, before TLS",
  ],
  [
    "a PostgreSQL server that answers a space (the cause once ended its log line in a space)",
    "head -c 8 >/dev/null; printf ' '; sleep 5",
    "postgres",
    "server refused SSLRequest: it answered 0x20, not S or N",
  ],
  [
    "an SMTP server whose refusal ends in a colon and a space",
    `${EHLO_STARTTLS} printf '454 try later: \\r\\n'; sleep 5`,
    "smtp",
    'server refused STARTTLS: "454 try later: "',
  ],
  // A multi-line reply is read whole: its first line's code was taken for the reply's.
  [
    "a STARTTLS answer whose lines have two codes (220-ok, then 454 no)",
    `${EHLO_STARTTLS} printf '220-ok\\r\\n454 no\\r\\n'; sleep 5`,
    "smtp",
    'server sent a malformed reply: "454 no"',
  ],
  [
    "an EHLO reply whose last line has another code",
    "printf '220 fake ESMTP\\r\\n'; read l; printf '250-fake\\r\\n250-STARTTLS\\r\\n550 no\\r\\n'; sleep 5",
    "smtp",
    'server sent a malformed reply: "550 no"',
  ],
  [
    "a greeting that is no reply",
    "printf 'hello there\\r\\n'; sleep 5",
    "smtp",
    'server sent a malformed reply: "hello there"',
  ],
  // Only a <failure/> with nothing before it is a refusal; anything else was reported as one.
  [
    "an XMPP server that sends something else before <proceed/>",
    `${XMPP_FEATURES} printf '<message>injected</message><proceed ${XMPP_TLS}/>'; sleep 5`,
    "xmpp",
    `server answered <starttls/> with "<message>injected</message><proceed ${XMPP_TLS}/>"`,
  ],
  [
    "an XMPP server that answers <starttls/> with a stream error",
    `${XMPP_FEATURES} printf '<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>'; sleep 5`,
    "xmpp",
    'server answered <starttls/> with "<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"',
  ],
  [
    "an XMPP server that refuses",
    `${XMPP_FEATURES} printf '<failure ${XMPP_TLS}/>'; sleep 5`,
    "xmpp",
    "server refused STARTTLS (<failure/>)",
  ],
  // The BYE's words were lost in "server closed the connection".
  [
    "an IMAP server that says BYE to STARTTLS",
    "printf '* OK fake\\r\\n'; read l; printf '* CAPABILITY IMAP4rev1 STARTTLS\\r\\nt1 OK done\\r\\n'; read l; printf '* BYE going down\\r\\n'",
    "imap",
    'server ended the session at STARTTLS: "* BYE going down"',
  ],
  // Status words were prefix matches: "+OKAY" and "3820" passed for "+OK" and "382".
  [
    "a POP3 server that greets with +OKAY",
    "printf '+OKAY fake\\r\\n'; sleep 5",
    "pop3",
    'server refused the session: "+OKAY fake"',
  ],
  [
    "a POP3 server that answers STLS with +OKAY",
    "printf '+OK fake\\r\\n'; read l; printf '+OK\\r\\nSTLS\\r\\n.\\r\\n'; read l; printf '+OKAY\\r\\n'; sleep 5",
    "pop3",
    'server refused STLS: "+OKAY"',
  ],
  [
    "an NNTP server that answers STARTTLS with 3820",
    "printf '200 fake\\r\\n'; read l; printf '101 caps\\r\\nVERSION 2\\r\\nSTARTTLS\\r\\n.\\r\\n'; read l; printf '3820 go\\r\\n'; sleep 5",
    "nntp",
    'server refused STARTTLS: "3820 go"',
  ],
  // An answer to another message ID was called the server's end of the session.
  [
    "an LDAP server that answers message ID 2",
    "head -c 1 >/dev/null; printf '\\060\\014\\002\\001\\002\\170\\007\\012\\001\\000\\004\\000\\004\\000'; sleep 5",
    "ldap",
    "server answered message ID 2, not our StartTLS's (1)",
  ],
  [
    "a POP3 server without CAPA",
    "printf '+OK fake\\r\\n'; read l; printf -- '-ERR what\\r\\n'; sleep 5",
    "pop3",
    "server does not offer STARTTLS",
  ],
] as const) {
  test(`${protocol}: ${name}: exit 98 with the cause, and the program never runs`, async () => {
    const server = await fakeServer(script);
    try {
      const r = await client(server.port, protocol, [["", "x"]]);
      assert.equal(r.code, 98, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, `tlsc: fatal: STARTTLS (${protocol}) failed: ${cause}\n`);
    } finally {
      await server.stop();
    }
  });
}

// The streams namespace's prefix is the server's choice (RFC 6120 §4.8.5): tlsc knew only
// "stream:", and waited for features it could not see until -K.
test("xmpp: a server whose stream prefix is not 'stream': its features are read, TLS follows", async () => {
  const server = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "python3", "-c", XMPP_PREFIXED_SERVER],
    { env: { PATH, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    const r = await client(server.port, "xmpp", [["", "over TLS"]], ["-K", "10000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.ssl, "TLSv1.3");
    assert.deepEqual(r.texts, ["over TLS\n"]);
  } finally {
    await server.stop();
  }
});

// tlsc reads at most 64 KiB of the server's stream before its features end. The bound was
// applied to the bytes as they happened to come: features ending past it were taken when the
// read that crossed it held their end too (here: 60000 bytes, then the rest), and were "too
// long" only when that read ended before it (a server that dribbled them).
test("xmpp: features that end past 64 KiB are too long however they come, in two writes too", async () => {
  const header =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " +
    "xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'><stream:features>";
  const features = Buffer.from(
    `${header}<x a='${"p".repeat(66_000)}'/><starttls ${XMPP_TLS}/></stream:features>`,
  );
  const server = createServer((socket) => {
    socket.on("error", () => {});
    let heard = "";
    socket.on("data", (d: Buffer) => {
      heard += d.toString("latin1");
      if (heard.endsWith("streams'>")) {
        socket.write(features.subarray(0, 60_000));
        setTimeout(() => socket.write(features.subarray(60_000)), 200);
      } else if (heard.includes("<starttls")) socket.end(`<proceed ${XMPP_TLS}/>`);
    });
  });
  const port = await listening(server);
  try {
    const r = await client(port, "xmpp", [["", "x"]], ["-K", "20000"]);
    assert.equal(r.code, 98, r.stderr);
    assert.equal(r.stderr, "tlsc: fatal: STARTTLS (xmpp) failed: server reply too long\n");
  } finally {
    server.close();
  }
});

/** Per connection: a stream with the prefix "s", <starttls/> offered, <proceed/>, then our
 * tlsd in its place, whose program says "over TLS". */
const XMPP_PREFIXED_SERVER = `
import os
def until(mark):
    got = b""
    while mark not in got:
        chunk = os.read(0, 4096)
        if not chunk: raise SystemExit(1)
        got += chunk
until(b"streams'>")
os.write(1, b"<?xml version='1.0'?><s:stream xmlns='jabber:client' "
    b"xmlns:s='http://etherx.jabber.org/streams' id='x' version='1.0'><s:features>"
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></s:features>")
until(b"xmpp-tls'/>")
os.write(1, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
os.execvp("tlsd", ["tlsd", "sh", "-c", "echo over TLS; sleep 1"])
`;

// -K is one bound for the dialogue and the handshake: each had its own, so a server that
// dribbled its dialogue got up to twice -K before the program ran. Here the dialogue takes 1.5 s
// of -K 2000 and the server then stays silent until it leaves at 3 s: with one bound the
// handshake times out first (at 2 s); with two it would have run to the server's leaving.
test("smtp: -K bounds the STARTTLS dialogue and the handshake together, not each", async () => {
  const server = await fakeServer(
    `${EHLO_STARTTLS} sleep 1.5; printf '220 go ahead\\r\\n'; sleep 1.5`,
  );
  try {
    const r = await client(server.port, "smtp", [["", "x"]], ["-K", "2000"]);
    assert.equal(r.code, 98, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "tlsc: fatal: handshake timed out\n");
  } finally {
    await server.stop();
  }
});

test("smtp: a server that says go ahead and leaves in the same breath: the handshake fails at once (not at -K), one line, exit 98", async () => {
  const server = createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 fake ESMTP\r\n");
    let text = "";
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (text.endsWith("STARTTLS\r\n")) socket.end("220 go ahead\r\n");
      else if (text.endsWith("\r\n")) socket.write("250-fake\r\n250 STARTTLS\r\n");
    });
  });
  const port = await listening(server);
  try {
    const r = await client(port, "smtp", [["", "x"]], ["-K", "600000"]);
    assert.equal(r.code, 98, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "tlsc: fatal: TLS handshake failed: connection closed\n");
  } finally {
    server.close();
  }
});

test("postgres: a server that says 'S', then resets at the ClientHello: exit 98, the cause in our words (it was Node's 'write ECONNRESET')", async () => {
  const server = createServer((socket) => {
    socket.on("error", () => {});
    let got = 0;
    socket.on("data", (d: Buffer) => {
      got += d.length;
      if (got === 8) socket.write("S");
      else socket.resetAndDestroy();
    });
  });
  const port = await listening(server);
  try {
    const r = await client(port, "postgres", [["", "x"]]);
    assert.equal(r.code, 98, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^tlsc: fatal: TLS handshake failed: connection (reset|closed)\n$/);
  } finally {
    server.close();
  }
});

test("postgres: PostgreSQL's own TLS (ssl=on): the session is encrypted on the server's side", async () => {
  const pg = await startPostgres({ ssl: leaf });
  try {
    const r = await run(
      ours("tcpclient"),
      [
        ...[
          "-RHl0",
          "127.0.0.1",
          String(pg.port),
          "tlsc",
          "--starttls",
          "postgres",
          "-k",
          "localhost",
        ],
        ...[join(ROOT, "test", "fixtures", "pg-client")],
        "select ssl::text || ' ' || version from pg_stat_ssl where pid = pg_backend_pid()",
      ],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(r.code, 0, r.stderr + pg.log());
    assert.equal(r.stdout, "true TLSv1.3\nSSL_PROTOCOL=TLSv1.3\n");
  } finally {
    await pg.stop();
  }
});

test("postgres: a server with ssl=off answers 'N': a failure", async () => {
  const pg = await startPostgres();
  try {
    const r = await client(pg.port, "postgres", [["", "x"]]);
    assert.equal(r.code, 98);
    assert.equal(
      r.stderr,
      "tlsc: fatal: STARTTLS (postgres) failed: server does not offer TLS (N)\n",
    );
  } finally {
    await pg.stop();
  }
});

/** tcpclient + tlsc --starttls `protocol` -k `name` to `port`, running a fixture. */
function fixture(
  port: number,
  protocol: string,
  name: string,
  program: string[],
  flags: string[] = [],
) {
  return run(
    ours("tcpclient"),
    [
      ...["-RHl0", "127.0.0.1", String(port), "tlsc", "--starttls", protocol, ...flags, "-k", name],
      ...[join(ROOT, "test", "fixtures", program[0] ?? ""), ...program.slice(1)],
    ],
    { env: { PATH, CAFILE: pki.ca.cert } },
  );
}

test("ldap: slapd's own StartTLS; a bind and WhoAmI over TLS", async () => {
  const slapd = await startSlapd({ tls: leaf });
  try {
    const r = await fixture(slapd.port, "ldap", "localhost", ["ldap-whoami", LDAP_ADMIN, "secret"]);
    assert.equal(r.code, 0, r.stderr + slapd.log());
    assert.equal(r.stdout, `bind 0\ndn:${LDAP_ADMIN}\nSSL_PROTOCOL=TLSv1.3\n`);
    assert.match(slapd.log(), /TLS established/);
  } finally {
    await slapd.stop();
  }
});

test("ldap: a slapd without TLS (protocolError): a failure; with --plaintext-fallback the bind in plaintext", async () => {
  const slapd = await startSlapd();
  try {
    const args = ["ldap-whoami", LDAP_ADMIN, "secret"];
    const r = await fixture(slapd.port, "ldap", "localhost", args);
    assert.equal(r.code, 98);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "tlsc: fatal: STARTTLS (ldap) failed: server does not offer StartTLS\n");
    const plain = await fixture(slapd.port, "ldap", "localhost", args, ["--plaintext-fallback"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `bind 0\ndn:${LDAP_ADMIN}\nSSL_PROTOCOL=\n`);
  } finally {
    await slapd.stop();
  }
});

test("xmpp: Prosody's own STARTTLS (encryption required); SASL PLAIN over the new stream", async () => {
  const domain = "example.test";
  const prosody = await startProsody(domain, { tls: xmppLeaf });
  try {
    const r = await fixture(prosody.port, "xmpp", domain, ["xmpp-login", domain]);
    assert.equal(r.code, 0, r.stderr + prosody.log());
    assert.equal(
      r.stdout,
      "no starttls PLAIN\n<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\nSSL_PROTOCOL=TLSv1.3\n",
    );
  } finally {
    await prosody.stop();
  }
  const plain = await startProsody(domain);
  try {
    const r = await fixture(plain.port, "xmpp", domain, ["xmpp-login", domain]);
    assert.equal(r.code, 98);
    assert.equal(r.stderr, "tlsc: fatal: STARTTLS (xmpp) failed: server does not offer STARTTLS\n");
  } finally {
    await plain.stop();
  }
});

/** The mariadb client, unpatched and without TLS (--skip-ssl), reaching tlsc's fds 6/7 through
 * a socat on a loopback port of its own: the program behind tlsc --starttls mysql. Every step
 * is bounded: a socat that could not listen (the port taken since it was drawn: exit 97, and
 * another port is tried), a listener that is someone else's, a client that never gets in. */
async function mariadbBehindTlsc(dbPort: number, user: string, password: string) {
  for (let attempt = 1; ; attempt++) {
    const localPort = await freePort();
    const script = [
      `socat TCP-LISTEN:${localPort},bind=127.0.0.1 'FD:6!!FD:7' &`,
      "listener=$!",
      "i=0",
      `until ss -Hltnp 'sport = :${localPort}' | grep -q "pid=$listener,"; do`,
      `  kill -0 $listener 2>/dev/null || { echo "socat: no listener on ${localPort}" >&2; exit 97; }`,
      `  i=$((i + 1)); [ $i -lt 200 ] || { kill $listener; echo "socat: not listening on ${localPort}" >&2; exit 97; }`,
      "  sleep 0.05",
      "done",
      `timeout 20 mariadb --no-defaults --protocol=tcp --connect-timeout=10 -h 127.0.0.1 -P ${localPort} -u ${user} -p${password} --skip-ssl -N -e "SHOW SESSION STATUS LIKE 'Ssl_version'; SELECT CURRENT_USER()"`,
      "status=$?",
      // socat ends with its one connection; one that never came is ended here.
      '[ "$status" -eq 0 ] || kill $listener 2>/dev/null',
      "wait",
      "exit $status",
    ].join("\n");
    const r = await run(
      ours("tcpclient"),
      [
        ...["-RHl0", "127.0.0.1", String(dbPort), "tlsc", "--starttls", "mysql", "-k", "localhost"],
        ...["sh", "-c", script],
      ],
      { env: { PATH, CAFILE: pki.ca.cert }, timeoutMs: 40_000 },
    );
    if (r.code !== 97 || attempt === 3) return r;
  }
}

test("mysql: MariaDB's own TLS; the unpatched mariadb client logs in through the moved sequence numbers", async () => {
  const db = await startMariaDb({ tls: leaf });
  try {
    for (const [user, password] of [
      ["app", "pw"],
      ["ed", "pw2"],
    ] as const) {
      const r = await mariadbBehindTlsc(db.port, user, password);
      assert.equal(r.code, 0, r.stderr);
      // The server's own session is TLS; the client, behind tlsc, never asked for it.
      assert.equal(r.stdout, `Ssl_version\tTLSv1.3\n${user}@%\n`);
    }
  } finally {
    await db.stop();
  }
  const plain = await startMariaDb();
  try {
    const r = await mariadbBehindTlsc(plain.port, "app", "pw");
    assert.equal(r.code, 98);
    assert.equal(r.stderr, "tlsc: fatal: STARTTLS (mysql) failed: server does not offer TLS\n");
  } finally {
    await plain.stop();
  }
});

const SIEVE_AUTH = Buffer.from("\0test\0secret").toString("base64");
const SIEVE_SESSION: [string, string][] = [
  ["", "\\nOK[^\\n]*\\n"],
  [`AUTHENTICATE "PLAIN" "${SIEVE_AUTH}"\r\n`, "^(OK|NO)[^\\n]*\\n"],
  ["LISTSCRIPTS\r\n", "(^|\\n)(OK|NO)[^\\n]*\\n"],
  ["LOGOUT\r\n", "\\n"],
];

test("sieve: Dovecot's own ManageSieve STARTTLS; SASL PLAIN and LISTSCRIPTS over TLS", async () => {
  const dovecot = await manageSieveServer(scratchDir("tlsc-starttls"), { tls: leaf });
  try {
    const r = await client(dovecot.port, "sieve", SIEVE_SESSION);
    assert.equal(r.code, 0, r.stderr + dovecot.log());
    assert.equal(r.ssl, "TLSv1.3");
    // Over TLS the server says its capabilities again, without STARTTLS.
    assert.match(r.texts[0] ?? "", /^"IMPLEMENTATION" "Dovecot/);
    assert.doesNotMatch(r.texts[0] ?? "", /STARTTLS/);
    assert.match(r.texts[1] ?? "", /^OK/);
    assert.match(r.texts[2] ?? "", /^OK/m);
  } finally {
    await dovecot.close();
  }
});

test("sieve: a Dovecot without TLS behind starttls-wrapper (tcpforward); the same session", async () => {
  const dovecot = await manageSieveServer(scratchDir("tlsc-starttls"));
  const server = await wrapped("sieve", ["tcpforward", "127.0.0.1", String(dovecot.port)]);
  try {
    const r = await client(server.port, "sieve", SIEVE_SESSION);
    assert.equal(r.code, 0, r.stderr + server.log() + dovecot.log());
    assert.equal(r.ssl, "TLSv1.3");
    assert.match(r.texts[0] ?? "", /^"IMPLEMENTATION" "Dovecot/);
    assert.doesNotMatch(r.texts[0] ?? "", /STARTTLS/);
    assert.match(r.texts[1] ?? "", /^OK/);
  } finally {
    await server.stop();
    await dovecot.close();
  }
});

test("imap: imap4d behind starttls-wrapper; the greeting without its plaintext capabilities", async () => {
  const mail = await imapServer(scratchDir("tlsc-starttls"));
  const server = await wrapped("imap", mail.argv, mail.env);
  try {
    const r = await client(server.port, "imap", [
      ["", "^\\* OK[^\\n]*\\n"],
      ["a CAPABILITY\r\n", "a OK[^\\n]*\\n"],
      [`b LOGIN ${mail.user} ${mail.password}\r\n`, "b (OK|NO)[^\\n]*\\n"],
      ["c LOGOUT\r\n", "c OK[^\\n]*\\n"],
    ]);
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.equal(r.ssl, "TLSv1.3");
    assert.doesNotMatch(r.texts[0] ?? "", /CAPABILITY/);
    assert.match(r.texts[1] ?? "", /^\* CAPABILITY /);
    assert.doesNotMatch(r.texts[1] ?? "", /STARTTLS/);
    assert.match(r.texts[2] ?? "", /^b OK/m);
  } finally {
    await server.stop();
    await mail.close();
  }
});

test("lmtp: dovecot's lmtp behind starttls-wrapper: LHLO, STARTTLS, then a delivery over TLS", async () => {
  const mail = await lmtpServer(scratchDir("tlsc-starttls"));
  const server = await wrapped("lmtp", mail.argv, mail.env);
  try {
    const r = await client(server.port, "lmtp", [
      ["", "^220 [^\\n]*\\n"],
      ["LHLO client.test\r\n", "\\n250 [^\\n]*\\n"],
      ["MAIL FROM:<sender@example.net>\r\n", "^250[^\\n]*\\n"],
      [`RCPT TO:<${mail.address}>\r\n`, "^250[^\\n]*\\n"],
      ["DATA\r\n", "^354[^\\n]*\\n"],
      ["Subject: over LMTP and STARTTLS\r\n\r\nhello\r\n.\r\n", "^250[^\\n]*\\n"],
      ["QUIT\r\n", "^221[^\\n]*\\n"],
    ]);
    assert.equal(r.code, 0, r.stderr + server.log() + mail.log());
    assert.equal(r.ssl, "TLSv1.3");
    // The program sees dovecot's greeting; over TLS no STARTTLS is offered again.
    assert.match(r.texts[0] ?? "", /^220 mail\.test Dovecot/);
    assert.match(r.texts[1] ?? "", /^250-mail\.test/);
    assert.doesNotMatch(r.texts[1] ?? "", /STARTTLS/);
    const [message] = mail.messages();
    assert.match(message ?? "", /Subject: over LMTP and STARTTLS/);
    assert.equal(mail.messages().length, 1);
  } finally {
    await server.stop();
    await mail.close();
  }
});

test("pop3: pop3d behind starttls-wrapper: STLS, then USER/PASS over TLS", async () => {
  const mail = await pop3Server(scratchDir("tlsc-starttls"));
  mail.deposit("Subject: one\n\nbody\n");
  const server = await wrapped("pop3", mail.argv, mail.env);
  try {
    const r = await client(server.port, "pop3", [
      ["", "^\\+OK[^\\n]*\\n"],
      [`USER ${mail.user}\r\n`, "\\n"],
      [`PASS ${mail.password}\r\n`, "\\n"],
      ["STAT\r\n", "\\n"],
      ["QUIT\r\n", "\\n"],
    ]);
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.equal(r.ssl, "TLSv1.3");
    assert.match(r.texts[2] ?? "", /^\+OK/);
    assert.match(r.texts[3] ?? "", /^\+OK 1 /);
  } finally {
    await server.stop();
    await mail.close();
  }
});

for (const [protocol, fixture, steps, check] of [
  [
    "nntp",
    "fake-nntp",
    [
      ["", "^200[^\\n]*\\n"],
      ["DATE\r\n", "\\n"],
      ["QUIT\r\n", "\\n"],
    ],
    /^111 20261204000000/,
  ],
  [
    "sieve",
    "fake-sieve",
    [
      ["", "\\nOK[^\\n]*\\n"],
      ["NOOP\r\n", "\\n"],
      ["LOGOUT\r\n", "\\n"],
    ],
    /^OK "NOOP completed\."/,
  ],
] as const) {
  test(`${protocol}: the ${fixture} fixture behind starttls-wrapper`, async () => {
    const server = await wrapped(protocol, [join(ROOT, "test", "fixtures", fixture)]);
    try {
      const r = await client(
        server.port,
        protocol,
        steps.map((s) => [s[0], s[1]]),
      );
      assert.equal(r.code, 0, r.stderr + server.log());
      assert.equal(r.ssl, "TLSv1.3");
      assert.match(r.texts[1] ?? "", check);
      // ManageSieve's server repeats its capabilities over TLS, without STARTTLS.
      if (protocol === "sieve") assert.doesNotMatch(r.texts[0] ?? "", /STARTTLS/);
    } finally {
      await server.stop();
    }
  });
}

test("--starttls: an unknown protocol, and --plaintext-fallback alone, are usage errors", async () => {
  // fds 6 and 7 open, as under a tcpclient: the usage is what is checked.
  const fds = {
    env: { PATH },
    stdio: ["pipe", "pipe", "pipe", "ignore", "ignore", "ignore", "pipe", "pipe"],
  } as const;
  const unknown = await run(ours("tlsc"), ["--starttls", "gopher", "true"], {
    ...fds,
    stdio: [...fds.stdio],
  });
  assert.equal(unknown.code, 100);
  assert.match(
    unknown.stderr,
    /^tlsc: unknown STARTTLS protocol gopher: one of smtp, lmtp, imap, pop3, nntp, sieve, postgres, mysql, ldap, xmpp\ntlsc: usage: /,
  );
  const alone = await run(ours("tlsc"), ["--plaintext-fallback", "true"], {
    ...fds,
    stdio: [...fds.stdio],
  });
  assert.equal(alone.code, 100);
  assert.match(alone.stderr, /--plaintext-fallback and --local-name go with --starttls/);
});

test("smtp: our EHLO name is one line of a host name or [address]: --local-name with a line end is a usage error, and a TCPLOCALHOST with one is not used", async () => {
  // What the server reads first: our EHLO line (it then offers no STARTTLS).
  const heard: string[] = [];
  const server = createServer((socket) => {
    socket.on("error", () => {});
    socket.write("220 fake ESMTP\r\n");
    socket.once("data", (d: Buffer) => {
      heard.push(d.toString("latin1"));
      socket.end("250 fake\r\n");
    });
  });
  const port = String(await listening(server));
  try {
    const usage = await run(
      ours("tcpclient"),
      [
        "-RHl0",
        "127.0.0.1",
        port,
        "tlsc",
        "--starttls",
        "smtp",
        "--local-name",
        "a\r\nRSET",
        "true",
      ],
      { env: { PATH } },
    );
    assert.equal(usage.code, 100);
    assert.match(
      usage.stderr,
      /^tlsc: --local-name: not a host name or \[address\]: "a\?\?RSET"\n/,
    );
    assert.equal(heard.length, 0, "nothing said to the server");
    // tlsc run by hand (as s6-tlsc is), TCPLOCALHOST from the environment.
    const connected = await run(
      "bash",
      [
        "-c",
        `exec 6<>/dev/tcp/127.0.0.1/${port} 7>&6; exec tlsc --starttls smtp -k localhost true`,
      ],
      { env: { PATH, TCPLOCALHOST: "evil\r\nRSET", TCPREMOTEIP: "127.0.0.1" } },
    );
    assert.equal(connected.code, 98, connected.stderr);
    assert.equal(heard.length, 1);
    assert.match(heard[0] ?? "", /^EHLO [A-Za-z0-9._-]+\r\n$/);
  } finally {
    server.close();
  }
});

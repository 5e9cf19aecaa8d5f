// Random client bytes against every protocol of starttls-wrapper, many clients at once: pieces
// of every protocol's dialogue (STARTTLS in each form, SSLRequest, LDAP's extended request,
// MySQL's SSL request, XMPP stream heads, the head of a ClientHello) mixed with random bytes,
// cut at random places, written with pauses, then ended, reset or dropped. Whatever a client
// sends, its session ends when it goes: tcpserver goes on serving, logs no internal error, is
// back to 0 connections, and no fd or child is left (test/helpers/chaos.ts).
import { rmSync } from "node:fs";
import { connect } from "node:net";
import { after, test } from "node:test";
import fc from "fast-check";
import { makePki } from "../helpers/certs.ts";
import { chaos } from "../helpers/chaos.ts";
import type { Outcome, Plan, Target } from "../helpers/chaos.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
after(() => rmSync(pki.dir, { recursive: true, force: true }));

const text = (t: string) => Buffer.from(t, "latin1");
const hex = (h: string) => Buffer.from(h, "hex");

/** A PostgreSQL message without a type byte: its Int32 length (itself included), the rest. */
function pgMessage(body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length + 4);
  return Buffer.concat([length, body]);
}

/** An LDAPMessage (message ID 1) whose operation is `op`, short-form lengths only. */
function ldapMessage(op: Buffer): Buffer {
  const body = Buffer.concat([hex("020101"), op]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
const STARTTLS_OID = text("1.3.6.1.4.1.1466.20037");

/** A MySQL packet: 3-byte length, sequence number, payload. */
function mysqlPacket(seq: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([payload.length, 0, 0, seq]), payload]);
}
// CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
const MYSQL_CLIENT_FLAGS = 0x0200 | 0x0800 | 0x8000 | 0x80000;

/** A server's HandshakeV10 greeting with the 4.1 protocol and no TLS. */
function mysqlGreeting(): Buffer {
  const flags = Buffer.alloc(4);
  flags.writeUInt32LE(0x0200 | 0x8000 | 0x80000);
  const payload = Buffer.concat([
    Buffer.from([10]),
    text("10.11.0-fake\0"),
    hex("01000000"), // thread id
    text("abcdefgh"), // auth-plugin-data, part 1
    Buffer.from([0]),
    flags.subarray(0, 2),
    Buffer.from([45]), // character set
    hex("0200"), // status flags
    flags.subarray(2, 4),
    Buffer.from([21]), // auth-plugin-data length
    Buffer.alloc(10),
    text("ijklmnopqrst\0"),
    text("mysql_native_password\0"),
  ]);
  return mysqlPacket(0, payload);
}

const STARTUP = pgMessage(Buffer.concat([hex("00030000"), text("user\0postgres\0\0")]));
const ANONYMOUS_BIND = ldapMessage(hex("600702010304008000"));
const XMPP_STREAM = text(
  "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'" +
    " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
);

/** Pieces of every protocol's dialogue, for any protocol. */
const PIECES: Buffer[] = [
  text("STARTTLS\r\n"),
  text("EHLO client.example\r\n"),
  text("LHLO client.example\r\n"),
  text("a1 STARTTLS\r\n"),
  text("a0 CAPABILITY\r\n"),
  text("a2 LOGIN user secret\r\n"),
  text("STLS\r\n"),
  text("CAPA\r\n"),
  text("QUIT\r\n"),
  text("LOGOUT\r\n"),
  text("MODE READER\r\n"),
  text('AUTHENTICATE "PLAIN"\r\n'),
  text("\r\n"),
  text("\n"),
  hex("16030100c8010000c40303"), // the head of a ClientHello
  XMPP_STREAM,
  text("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
  text("</stream:stream>"),
  pgMessage(hex("04d2162f")), // SSLRequest
  pgMessage(hex("04d21630")), // GSSENCRequest
  pgMessage(hex("04d2162e0000000100000002")), // CancelRequest
  STARTUP,
  ldapMessage(
    Buffer.concat([
      Buffer.from([0x77, STARTTLS_OID.length + 2, 0x80]),
      Buffer.from([STARTTLS_OID.length]),
      STARTTLS_OID,
    ]),
  ),
  ANONYMOUS_BIND,
  (() => {
    const head = Buffer.alloc(32);
    head.writeUInt32LE(MYSQL_CLIENT_FLAGS, 0);
    head.writeUInt32LE(16 * 1024 * 1024, 4);
    head[8] = 45;
    return mysqlPacket(1, head); // SSLRequest
  })(),
];

/** What the server behind says first, per protocol (nothing: the client speaks first). */
const GREETING: Record<string, Buffer> = {
  smtp: text("220 fake ESMTP\r\n"),
  lmtp: text("220 fake LMTP\r\n"),
  imap: text("* OK [CAPABILITY IMAP4rev1] fake\r\n"),
  pop3: text("+OK fake\r\n"),
  nntp: text("200 fake\r\n"),
  sieve: text('"IMPLEMENTATION" "fake"\r\n"SASL" "PLAIN"\r\nOK "ready"\r\n'),
  postgres: Buffer.alloc(0),
  ldap: Buffer.alloc(0),
  mysql: mysqlGreeting(),
  // Said at once, before the client's stream header (as the wrapper reads it, that is the
  // same): a stream header and features that offer no TLS.
  xmpp: text(
    "<?xml version='1.0'?><stream:stream from='example.org' id='fake' xmlns='jabber:client'" +
      " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features>" +
      "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>" +
      "</mechanisms></stream:features>",
  ),
};

const HOW = ["end", "reset", "drop"] as const;

/** One client: its bytes, where they are cut, the pause after each write, how it goes. */
const client = fc.record({
  pieces: fc.array(fc.oneof(fc.constantFrom(...PIECES), fc.uint8Array({ maxLength: 24 })), {
    maxLength: 5,
  }),
  cuts: fc.array(fc.nat(), { maxLength: 3 }),
  pause: fc.integer({ min: 0, max: 20 }),
  how: fc.constantFrom(...HOW),
});
type Client = typeof client extends fc.Arbitrary<infer C> ? C : never;

/** The client's bytes in the pieces it writes them in. */
function writes(c: Client): Buffer[] {
  const all = Buffer.concat(c.pieces.map((p) => Buffer.from(p)));
  const at = [...new Set(c.cuts.map((n) => (all.length ? n % all.length : 0)))].sort(
    (a, b) => a - b,
  );
  return [0, ...at]
    .map((from, i) => all.subarray(from, at[i] ?? all.length))
    .filter((b) => b.length > 0);
}

/** Runs one client against `target`; resolves when its socket is closed, fails after 15 s (a
 * session that outlives its client's end). */
function run(target: Target, c: Client): Promise<Outcome> {
  target.connections++;
  const chunks = writes(c);
  const said = () => `${c.how} after ${JSON.stringify(chunks.map((b) => b.toString("latin1")))}`;
  return new Promise((resolve, reject) => {
    const tcp = connect(target.server.port, "127.0.0.1");
    let got = 0;
    const timer = setTimeout(() => {
      tcp.destroy();
      reject(new Error(`a session not over 15 s after its client's ${said()}`));
    }, 15_000);
    tcp.on("data", (d: Buffer) => (got += d.length));
    tcp.on("error", () => {});
    tcp.once("close", () => {
      clearTimeout(timer);
      resolve({ got: String(got) });
    });
    const next = (i: number) => {
      if (tcp.destroyed) return;
      const chunk = chunks[i];
      if (chunk) return void tcp.write(chunk, () => setTimeout(() => next(i + 1), c.pause));
      if (c.how === "end") tcp.end();
      else if (c.how === "reset") tcp.resetAndDestroy();
      else tcp.destroy();
    };
    tcp.once("connect", () => {
      const port = tcp.localPort ?? 0;
      target.said?.set(port, [...(target.said.get(port) ?? []), said()]);
      next(0);
    });
  });
}

/** The server behind: its greeting (in printf's octal escapes), then it echoes what it reads;
 * its complaints of resets are not this test's (and would cut tcpserver's log lines). */
function serverBehind(greeting: Buffer): string[] {
  const escaped = [...greeting].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
  return ["sh", "-c", `printf '${escaped}'; exec cat 2>/dev/null`];
}

/** A pattern for `bytes` and nothing else. */
function exactly(bytes: Buffer): RegExp {
  return new RegExp(`^${bytes.toString("latin1").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
}

/** A whole exchange per protocol: what a client sends first, if anything, and what it must
 * then read (the server's greeting with TLS offered; where the client speaks first, the
 * server's echo of what it sent). */
const SERVED: Record<string, { send?: Buffer; read: RegExp }> = {
  smtp: { read: /^220 fake ESMTP\r\n$/ },
  lmtp: { read: /^220 fake LMTP\r\n$/ },
  imap: { read: /^\* OK .*STARTTLS.*\r\n$/ },
  pop3: { read: /^\+OK fake\r\n$/ },
  nntp: { read: /^200 fake\r\n$/ },
  sieve: { read: /"STARTTLS"\r\n[^]*OK "ready"\r\n$/ },
  postgres: { send: STARTUP, read: exactly(STARTUP) },
  ldap: { send: ANONYMOUS_BIND, read: exactly(ANONYMOUS_BIND) },
  mysql: { read: /^P\0\0\0\n10\.11\.0-fake\0[^]*mysql_native_password\0$/ },
  xmpp: { send: XMPP_STREAM, read: /<stream:features><starttls [^]*<\/stream:features>/ },
};

/** A whole exchange that must work (SERVED): resolves once the client has read what it must
 * and ended, fails after 10 s with what it read. */
function served(target: Target, protocol: string): Promise<void> {
  target.connections++;
  const { send, read } = SERVED[protocol] ?? { read: /^$/ };
  return new Promise((resolve, reject) => {
    const tcp = connect(target.server.port, "127.0.0.1", () => tcp.write(send ?? ""));
    let got = "";
    const timer = setTimeout(() => {
      tcp.destroy();
      reject(new Error(`-p ${protocol}: not served in 10 s: ${JSON.stringify(got)}`));
    }, 10_000);
    tcp.setEncoding("latin1");
    tcp.on("data", (d: string) => {
      got += d;
      if (read.test(got)) tcp.end();
    });
    tcp.on("error", reject);
    tcp.once("close", () => {
      clearTimeout(timer);
      if (read.test(got)) resolve();
      else reject(new Error(`-p ${protocol}: ended with ${JSON.stringify(got)}`));
    });
  });
}

const serverEnv = () => ({
  ...process.env,
  PATH: PATH_WITH_BIN,
  CERTFILE: pair.cert,
  KEYFILE: pair.key,
});

/** The wrapper for `protocol` in front of its server; with `tlsService`, handing clients over
 * to it at STARTTLS (a `tcpserver --proxy ... tlsd`) instead of doing TLS itself. */
async function wrapper(protocol: string, tlsService?: RunningServer): Promise<Target> {
  const to = tlsService ? ["127.0.0.1", String(tlsService.port)] : [];
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "-c", "200", "127.0.0.1", "0"],
      ...["starttls-wrapper", "-p", protocol, "-t", "600", ...to],
      ...serverBehind(GREETING[protocol] ?? Buffer.alloc(0)),
    ],
    { env: serverEnv() },
  );
  return { server, connections: 0, said: new Map() };
}

const plan = (target: Target, protocol: string): Plan<Client> => ({
  client,
  run: (c) => run(target, c),
  check: () => {},
  whole: () => served(target, protocol),
  maxLength: 10,
  numRuns: 20,
});

for (const protocol of Object.keys(GREETING)) {
  test(`starttls-wrapper -p ${protocol}: random bytes from many clients at once, ended, reset or dropped anywhere; every session ends with its client, nothing is left`, async () => {
    const target = await wrapper(protocol);
    await chaos(target, plan(target, protocol));
  });

  // The binary protocols and XMPP have local mode only.
  if (["postgres", "ldap", "mysql", "xmpp"].includes(protocol)) continue;
  test(`starttls-wrapper -p ${protocol} handing clients over to tcpserver --proxy tlsd: the same; every session ends on both sides, nothing is left on either`, async () => {
    const tlsService = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "--proxy", "-RHl0", "-c", "200", "127.0.0.1", "0", "tlsd"],
        ...serverBehind(GREETING[protocol] ?? Buffer.alloc(0)),
      ],
      { env: serverEnv() },
    );
    const target = await wrapper(protocol, tlsService);
    await chaos(target, plan(target, protocol), tlsService);
  });
}

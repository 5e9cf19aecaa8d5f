// Random client bytes against every protocol of starttls-wrapper, many clients at once: pieces
// of every protocol's dialogue (STARTTLS in each form, SSLRequest, LDAP's extended request,
// MySQL's SSL request, XMPP stream heads, the head of a ClientHello) mixed with random bytes,
// cut at random places, written with pauses, then ended, reset or dropped. Whatever a client
// sends, its session ends when it goes: tcpserver goes on serving, logs no internal error, is
// back to 0 connections, and no fd or child is left (test/helpers/chaos.ts).
import { connect } from "node:net";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { test } from "node:test";
import fc from "fast-check";
import { writePacket } from "../../src/dialogue/mysql.ts";
import { escapeRegExp } from "../helpers/normalize.ts";
import { sslRequestPayload } from "../helpers/mysql-packets.ts";
import { ANSWER, GREETING, serverBehind } from "../helpers/servers-behind.ts";
import { makePki } from "../helpers/certs.ts";
import { HOW, chaos, cutInto, talkOf, talkRandomly } from "../helpers/chaos.ts";
import type { Outcome, Plan, Target } from "../helpers/chaos.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);

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

// CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
const MYSQL_CLIENT_FLAGS = 0x0200 | 0x0800 | 0x8000 | 0x80000;

/** A server's greeting with the 4.1 protocol and no TLS. */
const STARTUP = pgMessage(Buffer.concat([hex("00030000"), text("user\0postgres\0\0")]));
const ANONYMOUS_BIND = ldapMessage(hex("600702010304008000"));
const XMPP_STREAM = text(
  "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'" +
    " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
);

/** LDAP's StartTLS extended request. */
const LDAP_STARTTLS = ldapMessage(
  Buffer.concat([
    Buffer.from([0x77, STARTTLS_OID.length + 2, 0x80, STARTTLS_OID.length]),
    STARTTLS_OID,
  ]),
);
/** MySQL's SSLRequest. */
const MYSQL_SSL_REQUEST = writePacket(1, sslRequestPayload(MYSQL_CLIENT_FLAGS));

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
  LDAP_STARTTLS,
  ANONYMOUS_BIND,
  MYSQL_SSL_REQUEST,
];

/** One client: how far it goes in the protocol's own upgrade first (not at all; the upgrade
 * command and its go-ahead; or on into a TLS session), then its random bytes (in plaintext, or
 * inside TLS), where they are cut, the pause after each write, and how it goes. */
const client = fc.record({
  upgrade: fc.constantFrom("none", "go-ahead", "tls"),
  ...talkOf(PIECES, 5),
  how: fc.constantFrom(...HOW),
});
type Client = typeof client extends fc.Arbitrary<infer C> ? C : never;

/** The client's random bytes in the pieces it writes them in. */
const writes = (c: Client) => cutInto(Buffer.concat(c.pieces.map((p) => Buffer.from(p))), c.cuts);

/** Each protocol's way to TLS: what the client waits for first (the greeting), then each thing
 * it sends and the answer it waits for (none: MySQL's client starts TLS at once). */
const UPGRADE: Record<string, { first?: RegExp; steps: [Buffer, RegExp | undefined][] }> = {
  smtp: {
    first: /\n$/,
    steps: [
      [text("EHLO client.example\r\n"), /250 [^\n]*\n$/],
      [text("STARTTLS\r\n"), /220 [^\n]*\n$/],
    ],
  },
  lmtp: {
    first: /\n$/,
    steps: [
      [text("LHLO client.example\r\n"), /250 [^\n]*\n$/],
      [text("STARTTLS\r\n"), /220 [^\n]*\n$/],
    ],
  },
  imap: { first: /\n$/, steps: [[text("a1 STARTTLS\r\n"), /a1 OK [^\n]*\n$/]] },
  pop3: { first: /\n$/, steps: [[text("STLS\r\n"), /\+OK[^\n]*\n$/]] },
  nntp: { first: /\n$/, steps: [[text("STARTTLS\r\n"), /382 [^\n]*\n$/]] },
  sieve: { first: /OK[^\n]*\n$/, steps: [[text("STARTTLS\r\n"), /OK [^\n]*\n$/]] },
  postgres: { steps: [[pgMessage(hex("04d2162f")), /S$/]] },
  ldap: { steps: [[LDAP_STARTTLS, /^0[^]*\x78/]] },
  mysql: { first: /mysql_native_password\0$/, steps: [[MYSQL_SSL_REQUEST, undefined]] },
  xmpp: {
    steps: [
      [XMPP_STREAM, /<\/stream:features>/],
      [text("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), /<proceed [^>]*\/>$/],
    ],
  },
};

/** Runs one client of `protocol` against `target` (talkRandomly): the protocol's own upgrade
 * as far as the client goes, then its random bytes. */
function run(target: Target, protocol: string, c: Client): Promise<Outcome> {
  const chunks = writes(c);
  const upgrade = c.upgrade === "none" ? "" : `the upgrade (${c.upgrade}) and `;
  const prelude = async (tcp: Socket, seen: { text: string }): Promise<Duplex> => {
    if (c.upgrade === "none") return tcp;
    const { first, steps } = UPGRADE[protocol] ?? { steps: [] };
    if (first) await answer(tcp, seen, first);
    for (const [bytes, expect] of steps) {
      seen.text = "";
      tcp.write(bytes);
      if (expect) await answer(tcp, seen, expect);
    }
    return c.upgrade === "tls" && !tcp.destroyed ? tlsSession(tcp) : tcp;
  };
  return talkRandomly(target, {
    chunks,
    pause: c.pause,
    how: c.how,
    said: `${c.how} after ${upgrade}${JSON.stringify(chunks.map((b) => b.toString("latin1")))}`,
    prelude,
  });
}

/** Waits till what `stream` said since the last step matches `expect`, it closes, or 1 s. */
function answer(stream: Duplex, seen: { text: string }, expect: RegExp): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stream.off("data", check);
      stream.off("close", done);
      resolve();
    };
    const check = () => {
      if (expect.test(seen.text)) done();
    };
    const timer = setTimeout(done, 1000);
    stream.on("data", check);
    stream.once("close", done);
    setImmediate(check);
  });
}

/** A TLS session on `tcp` (any certificate: the wrapper's is not what is tested), once its
 * handshake is over or failed. */
function tlsSession(tcp: Socket): Promise<Duplex> {
  return new Promise((resolve) => {
    const tls = tlsConnect({ socket: tcp, servername: "localhost", rejectUnauthorized: false });
    tls.on("error", () => {});
    tls.resume();
    tls.once("secureConnect", () => resolve(tls));
    tls.once("close", () => resolve(tls));
  });
}

/** A pattern for `bytes` and nothing else. */
function exactly(bytes: Buffer): RegExp {
  return new RegExp(`^${escapeRegExp(bytes.toString("latin1"))}$`);
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
async function wrapper(
  protocol: string,
  answering: boolean,
  tlsService?: RunningServer,
): Promise<Target> {
  const to = tlsService ? ["127.0.0.1", String(tlsService.port)] : [];
  const server = await startServer(
    ours("tcpserver"),
    [
      ...["-v", "-RHl0", "-c", "200", "127.0.0.1", "0"],
      ...["starttls-wrapper", "-p", protocol, "-t", "600", ...to],
      ...serverBehind(protocol, answering),
    ],
    { env: serverEnv() },
  );
  return { server, connections: 0, said: new Map() };
}

const plan = (target: Target, protocol: string): Plan<Client> => ({
  client,
  run: (c) => run(target, protocol, c),
  check: () => {},
  // Then a whole upgrade into TLS, so that the program behind TLS has been run once before
  // the batches (its spawner's fds are made then).
  whole: async () => {
    await served(target, protocol);
    if (ANSWER[protocol])
      await run(target, protocol, { upgrade: "tls", pieces: [], cuts: [], pause: 0, how: "end" });
  },
  maxLength: 10,
  numRuns: 12,
});

for (const protocol of Object.keys(GREETING)) {
  test(`starttls-wrapper -p ${protocol} in front of a server that echoes: random bytes from many clients at once, ended, reset or dropped anywhere; every session ends with its client, nothing is left`, async () => {
    const target = await wrapper(protocol, false);
    await chaos(target, plan(target, protocol));
  });

  // The binary protocols and XMPP: the wrapper answers the upgrade itself, in local mode only.
  if (!ANSWER[protocol]) continue;

  test(`starttls-wrapper -p ${protocol} in front of a server that answers every command: the same`, async () => {
    const target = await wrapper(protocol, true);
    await chaos(target, plan(target, protocol));
  });

  test(`starttls-wrapper -p ${protocol} handing clients over to tcpserver --proxy tlsd: the same; every session ends on both sides, nothing is left on either`, async () => {
    const tlsService = await startServer(
      ours("tcpserver"),
      [
        ...["-v", "--proxy", "-RHl0", "-c", "200", "127.0.0.1", "0", "tlsd"],
        ...serverBehind(protocol, true),
      ],
      { env: serverEnv() },
    );
    const target = await wrapper(protocol, true, tlsService);
    await chaos(target, plan(target, protocol), tlsService);
  });
}

// tlsc against servers that say anything, at once in TLS and for every --starttls protocol:
// random mixes of the protocol's own replies (up to the go-ahead, or not), other protocols'
// replies, the heads of TLS records and random bytes, cut anywhere, written with pauses, then
// the server ends, resets or goes silent, many at once. No such server can complete a TLS
// handshake, so each tlsc must end with exit 98 and exactly one line naming the cause in
// printable ASCII (no runtime's words), within -K, and the program must never run.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { Socket } from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import { CLIENT_SSL, writePacket } from "../../src/dialogue/mysql.ts";
import { cutInto, talkOf } from "../helpers/chaos.ts";
import { greetingPayload } from "../helpers/mysql-packets.ts";
import { RUNTIME_WORDS } from "../helpers/normalize.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";

const text = (t: string) => Buffer.from(t, "latin1");
const hex = (h: string) => Buffer.from(h, "hex");

const XMPP_HEAD =
  "<?xml version='1.0'?><stream:stream from='example.org' id='x' xmlns='jabber:client'" +
  " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const XMPP_TLS = "xmlns='urn:ietf:params:xml:ns:xmpp-tls'";

/** Each protocol's server side of a whole dialogue, up to its go-ahead, as if it had read the
 * client's every command (it reads them, and answers nothing else). */
const GO_AHEAD: Record<string, Buffer> = {
  smtp: text("220 fake ESMTP\r\n250-fake\r\n250 STARTTLS\r\n220 go ahead\r\n"),
  lmtp: text("220 fake LMTP\r\n250-fake\r\n250 STARTTLS\r\n220 go ahead\r\n"),
  imap: text("* OK fake\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\nt1 OK done\r\nt2 OK go ahead\r\n"),
  pop3: text("+OK fake\r\n+OK capabilities\r\nSTLS\r\n.\r\n+OK go ahead\r\n"),
  nntp: text("200 fake\r\n101 capabilities\r\nVERSION 2\r\nSTARTTLS\r\n.\r\n382 go ahead\r\n"),
  sieve: text('"IMPLEMENTATION" "fake"\r\n"STARTTLS"\r\nOK "ready"\r\nOK "go ahead"\r\n'),
  postgres: text("S"),
  // An ExtendedResponse to message 1: resultCode success, empty matchedDN and message.
  ldap: hex("300c02010178070a010004000400"),
  mysql: writePacket(0, greetingPayload(0x0200 | CLIENT_SSL | 0x8000 | 0x80000)),
  xmpp: text(
    `${XMPP_HEAD}<stream:features><starttls ${XMPP_TLS}/></stream:features><proceed ${XMPP_TLS}/>`,
  ),
};

/** Pieces of every protocol's replies, refusals, and the TLS records a server could send. */
const PIECES: Buffer[] = [
  ...Object.values(GO_AHEAD),
  text("250 fake\r\n"),
  text("454 TLS not available\r\n"),
  text("t2 NO not now\r\n"),
  text("* PREAUTH ready\r\n"),
  text("* BYE\r\n"),
  text("-ERR no\r\n"),
  text("580 no\r\n"),
  text('NO "no"\r\n'),
  text("\r\n"),
  text("N"),
  text("E\0\0\0\x08SFATAL\0\0"),
  hex("300c02010178070a010204000400"), // LDAP protocolError
  hex("ff1004"), // the head of a MySQL ERR packet
  text(`<failure ${XMPP_TLS}/>`),
  text("</stream:stream>"),
  hex("160303007a020000760303"), // the head of a ServerHello
  hex("15030300020228"), // a fatal handshake_failure alert
];

const HOW = ["end", "reset", "silent"] as const;

/** One server: whether it first goes through the protocol's dialogue to the go-ahead, then
 * its pieces (cut where `cuts` say, a pause after each write), then how it goes: an end, a
 * reset, or silence until tlsc gives up (-K). */
const server = fc.record({
  goAhead: fc.boolean(),
  ...talkOf(PIECES, 4),
  how: fc.constantFrom(...HOW),
});
type Server = typeof server extends fc.Arbitrary<infer S> ? S : never;

/** The server's bytes in the pieces it writes them in. */
function writes(protocol: string, s: Server): Buffer[] {
  const first = s.goAhead ? [GO_AHEAD[protocol] ?? Buffer.alloc(0)] : [];
  return cutInto(Buffer.concat([...first, ...s.pieces.map((p) => Buffer.from(p))]), s.cuts);
}

/** Listens for one connection and plays `s` on it; resolves with the port. */
async function fakeServer(protocol: string, s: Server): Promise<number> {
  const listener = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    listener.close();
    socket.on("error", () => {});
    socket.resume(); // the client's commands, read and dropped
    void (async () => {
      for (const chunk of writes(protocol, s)) {
        if (socket.destroyed) return;
        socket.write(chunk);
        await new Promise((resolve) => setTimeout(resolve, s.pause));
      }
      if (s.how === "end") socket.end();
      else if (s.how === "reset" && !socket.destroyed) socket.resetAndDestroy();
      // silent: it stays open until tlsc goes
    })();
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  return (listener.address() as { port: number }).port;
}

/** tlsc --starttls `protocol` (TLS at once for "tls") under our tcpclient against one fake
 * server: how it ended. */
async function tlscAgainst(protocol: string, s: Server) {
  const port = await fakeServer(protocol, s);
  const result = await run(
    ours("tcpclient"),
    [
      ...["-RHl0", "127.0.0.1", String(port)],
      ...["tlsc", "-K", "1500", ...(protocol === "tls" ? [] : ["--starttls", protocol])],
      ...["sh", "-c", "echo program ran >&2"],
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN }, timeoutMs: 20_000 },
  );
  const said = JSON.stringify(writes(protocol, s).map((b) => b.toString("latin1")));
  return { ...result, said: `${said} then ${s.how}` };
}

for (const protocol of ["tls", ...Object.keys(GO_AHEAD)]) {
  const tlsc = protocol === "tls" ? "tlsc" : `tlsc --starttls ${protocol}`;
  test(`${tlsc} against servers that say anything, many at once: each tlsc ends with exit 98 and one printable line naming the cause; the program never runs`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(server, { minLength: 1, maxLength: 4 }), async (batch) => {
        const results = await Promise.all(batch.map((s) => tlscAgainst(protocol, s)));
        for (const [i, r] of results.entries()) {
          assert.equal(r.signal, null, `tlsc did not end against ${r.said}`);
          // A reset that comes before tcpclient has seen its connection up is a failure to
          // connect (djb's tcpclient says the same): tlsc never ran.
          if (batch[i]?.how === "reset" && r.code === 111) {
            assert.match(r.stderr, /^tcpclient: unable to connect to [^\n]*: connection reset\n$/);
            continue;
          }
          assert.equal(r.code, 98, `exit ${r.code} against ${r.said}: ${r.stderr}`);
          assert.match(r.stderr, /^tlsc: fatal: [\x20-\x7e]{1,240}[^ :]\n$/, r.said);
          // Nothing in a runtime's words ("write ECONNRESET", "ERR_...").
          assert.doesNotMatch(r.stderr, RUNTIME_WORDS, r.said);
        }
      }),
      { numRuns: 5 },
    );
  });
}

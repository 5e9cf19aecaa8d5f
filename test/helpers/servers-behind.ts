// The plaintext servers behind starttls-wrapper in the tests that throw whole clients at it
// (random bytes, scanners): per protocol, a greeting offering no TLS, then an echo of what they
// read or, for the line protocols, a success for every line.
import { writePacket } from "../../src/dialogue/mysql.ts";
import { greetingPayload } from "./mysql-packets.ts";

const text = (t: string) => Buffer.from(t, "latin1");

/** A server's greeting with MySQL's 4.1 protocol and no TLS. */
const mysqlGreeting = () => writePacket(0, greetingPayload(0x0200 | 0x8000 | 0x80000));

/** What the server behind says first, per protocol (nothing: the client speaks first). */
export const GREETING: Record<string, Buffer> = {
  smtp: text("220 fake ESMTP\r\n"),
  lmtp: text("220 fake LMTP\r\n"),
  imap: text("* OK [CAPABILITY IMAP4rev1] fake\r\n"),
  pop3: text("+OK fake\r\n"),
  nntp: text("200 fake\r\n"),
  sieve: text('"IMPLEMENTATION" "fake"\r\n"SASL" "PLAIN"\r\nOK "ready"\r\n'),
  postgres: Buffer.alloc(0),
  ldap: Buffer.alloc(0),
  mysql: mysqlGreeting(),
  // Said at once, often before the client's stream header has come (the wrapper takes a late
  // header for what it is): a stream header and features that offer no TLS.
  xmpp: text(
    "<?xml version='1.0'?><stream:stream from='example.org' id='fake' xmlns='jabber:client'" +
      " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features>" +
      "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>" +
      "</mechanisms></stream:features>",
  ),
};

/** How a line protocol's server behind answers every line it reads (a success, so that the
 * dialogue goes on to STARTTLS's turn and the handshake). */
export const ANSWER: Record<string, string> = {
  smtp: "printf '250 ok\\r\\n'",
  lmtp: "printf '250 ok\\r\\n'",
  imap:
    "case \"$line\" in *CAPABILITY*) printf '* CAPABILITY IMAP4rev1\\r\\n' ;; esac; " +
    "printf '%s OK done\\r\\n' \"${line%% *}\"",
  pop3: "printf '+OK\\r\\n'",
  nntp: "printf '200 ok\\r\\n'",
  sieve: "printf 'OK\\r\\n'",
};

/** The server behind: its greeting (in printf's octal escapes), then it echoes what it reads
 * or, `answering`, behaves as a real one: answers each line of a line protocol, and otherwise
 * reads and says nothing (a real XMPP server never sends the client's stream header back,
 * which openssl s_client -starttls xmpp would read in place of <proceed/>). Its complaints
 * of resets are not this test's (and would cut tcpserver's log lines). */
export function serverBehind(protocol: string, answering = false): string[] {
  const greeting = [...(GREETING[protocol] ?? [])];
  const escaped = greeting.map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
  const answer = ANSWER[protocol];
  const then = !answering
    ? "exec cat 2>/dev/null"
    : answer
      ? `while IFS= read -r line; do ${answer}; done`
      : "exec cat >/dev/null 2>&1";
  return ["sh", "-c", `printf '${escaped}'; ${then}`];
}

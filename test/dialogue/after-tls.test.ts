// The filters that take a resumed server's upgrade capability out of what it says inside TLS
// (src/dialogue/after-tls.ts): what they change, what they must never touch (IMAP literals,
// POP3 message bodies), and that any split of the bytes gives the same result (fast-check).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { capabilityFilter } from "../../src/dialogue/after-tls.ts";

/** The filter's output for `server`, given in `cuts` pieces, after the client's `client`. */
function filtered(protocol: string, server: string, client = "", cuts: number[] = []): string {
  const filter = capabilityFilter(protocol);
  assert.ok(filter);
  filter.fromClient(Buffer.from(client, "latin1"));
  const bytes = Buffer.from(server, "latin1");
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let out = "";
  let start = 0;
  for (const point of [...points, bytes.length]) {
    out += filter.fromServer(bytes.subarray(start, point)).toString("latin1");
    start = point;
  }
  return out;
}

/** The property: every split of `server` gives `expected`. */
function anySplit(protocol: string, server: string, expected: string, client = ""): void {
  assert.equal(filtered(protocol, server, client), expected);
  fc.assert(
    fc.property(fc.array(fc.nat(), { maxLength: 8 }), (cuts) => {
      assert.equal(filtered(protocol, server, client, cuts), expected);
    }),
    { numRuns: 200 },
  );
}

test("smtp: STARTTLS leaves the EHLO reply, in the middle or last; other replies as they are", () => {
  anySplit(
    "smtp",
    "250-mx\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n",
    "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n",
  );
  anySplit("lmtp", "250-mx\r\n250-SIZE 10\r\n250 starttls\r\n", "250-mx\r\n250 SIZE 10\r\n");
  anySplit(
    "smtp",
    "354 go ahead\r\n250 STARTTLS queued\r\n",
    "354 go ahead\r\n250 STARTTLS queued\r\n",
  );
});

test("imap: STARTTLS leaves CAPABILITY lists; a literal's bytes are never read as lines", () => {
  const literal = "* CAPABILITY IMAP4rev1 STARTTLS\r\nSTARTTLS\r\n";
  anySplit(
    "imap",
    "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n" +
      "a OK [CAPABILITY IMAP4rev1 starttls IDLE] Logged in\r\n" +
      `* 1 FETCH (BODY[] {${literal.length}}\r\n${literal})\r\n` +
      "b OK done\r\n",
    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" +
      "a OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n" +
      `* 1 FETCH (BODY[] {${literal.length}}\r\n${literal})\r\n` +
      "b OK done\r\n",
  );
});

test("pop3: STLS leaves the CAPA list only; RETR bodies pass as they are", () => {
  anySplit(
    "pop3",
    "+OK logged in\r\n" +
      "+OK\r\nTOP\r\nSTLS\r\nUSER\r\n.\r\n" +
      "+OK 20 octets\r\nSTLS\r\n..\r\n.\r\n" +
      "+OK 2 messages\r\n1 20\r\nSTLS\r\n.\r\n" +
      "+OK bye\r\n",
    "+OK logged in\r\n" +
      "+OK\r\nTOP\r\nUSER\r\n.\r\n" +
      "+OK 20 octets\r\nSTLS\r\n..\r\n.\r\n" +
      "+OK 2 messages\r\n1 20\r\nSTLS\r\n.\r\n" +
      "+OK bye\r\n",
    "AUTH PLAIN AGEAYg==\r\nCAPA\r\nRETR 1\r\nLIST\r\nQUIT\r\n",
  );
});

test("pop3: a SASL answer after a challenge is not taken for a command", () => {
  const filter = capabilityFilter("pop3");
  assert.ok(filter);
  const say = (bytes: string) => filter.fromServer(Buffer.from(bytes)).toString("latin1");
  filter.fromClient(Buffer.from("AUTH PLAIN\r\n"));
  assert.equal(say("+ \r\n"), "+ \r\n");
  filter.fromClient(Buffer.from("AGEAYg==\r\nCAPA\r\n"));
  assert.equal(
    say("+OK logged in\r\n+OK\r\nSTLS\r\nTOP\r\n.\r\n"),
    "+OK logged in\r\n+OK\r\nTOP\r\n.\r\n",
  );
});

test("a line longer than the filter holds passes whole, and a literal announced at its end is kept", () => {
  const long = `* 1 FETCH (X ${"y".repeat(70_000)} BODY[] {17}\r\n`;
  const server = `${long}* CAPABILITY X\r\n)\r\n* CAPABILITY STARTTLS Y\r\n`;
  assert.equal(
    filtered("imap", server, "", [1000, 69_000, 70_010]),
    `${long}* CAPABILITY X\r\n)\r\n* CAPABILITY Y\r\n`,
  );
});

test("pop3: a client that pipelines more commands than are followed: everything passes as it is from then on", () => {
  const filter = capabilityFilter("pop3");
  assert.ok(filter);
  filter.fromClient(Buffer.from("CAPA\r\n"));
  assert.equal(filter.fromServer(Buffer.from("+OK\r\nST")).toString(), "+OK\r\n");
  filter.fromClient(Buffer.from("NOOP\r\n".repeat(10_001)));
  filter.fromClient(Buffer.from("NOOP\r\n"));
  assert.equal(filter.fromServer(Buffer.from("LS\r\n.\r\n")).toString(), "STLS\r\n.\r\n");
});

test("nntp: STARTTLS leaves the CAPABILITIES list; articles, LISTGROUP and HELP bodies pass as they are", () => {
  anySplit(
    "nntp",
    "101 Capability list:\r\nVERSION 2\r\nSTARTTLS\r\nREADER\r\n.\r\n" +
      "211 2 1 2 misc\r\n" +
      "211 2 1 2 misc list follows\r\n1\r\nSTARTTLS\r\n.\r\n" +
      "220 1 <a@b> article\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\n" +
      "100 help\r\nSTARTTLS\r\n.\r\n",
    "101 Capability list:\r\nVERSION 2\r\nREADER\r\n.\r\n" +
      "211 2 1 2 misc\r\n" +
      "211 2 1 2 misc list follows\r\n1\r\nSTARTTLS\r\n.\r\n" +
      "220 1 <a@b> article\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\n" +
      "100 help\r\nSTARTTLS\r\n.\r\n",
    "CAPABILITIES\r\nGROUP misc\r\nLISTGROUP misc\r\nARTICLE 1\r\nHELP\r\n",
  );
});

test("nntp: an RFC 2980 body (LIST EXTENSIONS' 202) is followed, so the CAPABILITIES after it is still found", () => {
  anySplit(
    "nntp",
    "202 Extensions supported:\r\nOVER\r\nSTARTTLS\r\n.\r\n" +
      "282 list follows\r\nmisc a group\r\n.\r\n" +
      "101 Capability list:\r\nVERSION 2\r\nSTARTTLS\r\n.\r\n",
    "202 Extensions supported:\r\nOVER\r\nSTARTTLS\r\n.\r\n" +
      "282 list follows\r\nmisc a group\r\n.\r\n" +
      "101 Capability list:\r\nVERSION 2\r\n.\r\n",
    "LIST EXTENSIONS\r\nXGTITLE misc\r\nCAPABILITIES\r\n",
  );
});

test("nntp: an article the client posts is not taken for commands", () => {
  const filter = capabilityFilter("nntp");
  assert.ok(filter);
  const say = (bytes: string) => filter.fromServer(Buffer.from(bytes)).toString("latin1");
  filter.fromClient(Buffer.from("POST\r\n"));
  assert.equal(say("340 send it\r\n"), "340 send it\r\n");
  filter.fromClient(Buffer.from("Subject: x\r\n\r\nCAPABILITIES\r\n.\r\nCAPABILITIES\r\n"));
  assert.equal(
    say("240 posted\r\n101 list\r\nSTARTTLS\r\nIHAVE\r\n.\r\n"),
    "240 posted\r\n101 list\r\nIHAVE\r\n.\r\n",
  );
});

test('sieve: "STARTTLS" leaves the capabilities; a script sent back as a literal passes as it is', () => {
  const script = '"STARTTLS"\r\nrequire "fileinto";\r\n';
  anySplit(
    "sieve",
    `"IMPLEMENTATION" "x"\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\nOK "TLS negotiation successful."\r\n` +
      `{${script.length}}\r\n${script}\r\nOK "Getscript completed."\r\n`,
    `"IMPLEMENTATION" "x"\r\n"VERSION" "1.0"\r\nOK "TLS negotiation successful."\r\n` +
      `{${script.length}}\r\n${script}\r\nOK "Getscript completed."\r\n`,
  );
});

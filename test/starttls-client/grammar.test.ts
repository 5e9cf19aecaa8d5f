// The byte and line parsers of tlsc --starttls, property-tested (fast-check): the EHLO, CAPA,
// CAPABILITIES and ManageSieve lists find STARTTLS wherever it is and never where it is not;
// IMAP's greeting loses only its capability code; LDAP's ExtendedResponse reader gives back
// what was encoded, asks for exactly the bytes missing, and never throws on any bytes. A
// server's words quoted in a log line are one printable line, never an empty one.
import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { test } from "node:test";
import fc from "fast-check";
import { integer, tlv } from "../../src/dialogue/ldap.ts";
import { readLdapAnswer, startTlsRequest } from "../../src/starttls-client/binary.ts";
import { capabilityAtoms, greetingWithoutCode } from "../../src/starttls-client/imap.ts";
import { UpgradeError, upgrade } from "../../src/starttls-client/index.ts";
import { quoted } from "../../src/starttls-client/reader.ts";
import { TagScanner } from "../../src/dialogue/tags.ts";
import {
  ehloOffersStartTls,
  listOffers,
  sieveOffersStartTls,
  statusIs,
} from "../../src/starttls-client/text-replies.ts";
import { featuresOfferStartTls, streamPrefix } from "../../src/starttls-client/xmpp.ts";

const word = fc.stringMatching(/^[A-Z0-9][A-Z0-9=-]{0,11}$/).filter((w) => w !== "STARTTLS");
const casing = (text: string, flips: boolean[]) =>
  [...text].map((c, i) => (flips[i % flips.length] ? c.toLowerCase() : c)).join("");

test("EHLO reply: STARTTLS found on any keyword line in any case, never in the domain line", () => {
  fc.assert(
    fc.property(
      fc.array(word, { maxLength: 8 }),
      fc.option(fc.nat(8)),
      fc.array(fc.boolean(), { minLength: 1 }),
      (keywords, at, flips) => {
        const lines = [...keywords];
        if (at !== null) lines.splice(Math.min(at, lines.length), 0, casing("STARTTLS", flips));
        const all = ["mail.example STARTTLS", ...lines];
        const reply = all.map((l, i) => `250${i === all.length - 1 ? " " : "-"}${l}\r\n`);
        assert.equal(ehloOffersStartTls(reply), at !== null);
      },
    ),
  );
});

test("CAPA/CAPABILITIES lists and ManageSieve capabilities: the name as a whole first word only", () => {
  fc.assert(
    fc.property(fc.array(word, { maxLength: 8 }), fc.boolean(), (names, offered) => {
      const lines = names.map((n) => `${n} arg\r\n`);
      if (offered) lines.push("STLS\r\n", "STARTTLS\r\n");
      else lines.push("XSTLS\r\n", "STARTTLSX\r\n", "X STARTTLS\r\n");
      assert.equal(listOffers(lines, "STLS"), offered);
      assert.equal(listOffers(lines, "STARTTLS"), offered);
      const sieve = names.map((n) => `"${n}" "v"\r\n`);
      sieve.push(offered ? `"StartTLS"\r\n` : `"SASL" "STARTTLS"\r\n`);
      assert.equal(sieveOffersStartTls(sieve), offered);
    }),
  );
});

test("IMAP: the greeting loses any response code it came with in plaintext (a REFERRAL to another server, an ALERT), nothing else", () => {
  for (const code of [
    "REFERRAL imap://evil.example/",
    "REFERRAL imap://[::1]/",
    "ALERT",
    "UNAVAILABLE",
  ])
    assert.equal(greetingWithoutCode(`* OK [${code}] ready\r\n`), "* OK ready\r\n", code);
  assert.equal(greetingWithoutCode("* OK ready [not a code]\r\n"), "* OK ready [not a code]\r\n");
  assert.equal(greetingWithoutCode("* OK [unclosed ready\r\n"), "* OK [unclosed ready\r\n");
});

test("IMAP: capability atoms of every CAPABILITY line; the greeting loses only its code", () => {
  fc.assert(
    fc.property(fc.array(word, { minLength: 1, maxLength: 8 }), fc.string(), (atoms, text) => {
      const clean = text.replace(/[\r\n\]]/g, "");
      assert.deepEqual(
        capabilityAtoms([`* CAPABILITY ${atoms.join(" ")}\r\n`, "t1 OK\r\n"]),
        atoms,
      );
      assert.equal(
        greetingWithoutCode(`* OK [CAPABILITY ${atoms.join(" ")}] ${clean}\r\n`),
        `* OK ${clean}\r\n`,
      );
      assert.equal(greetingWithoutCode(`* OK ${clean}\r\n`), `* OK ${clean}\r\n`);
    }),
  );
});

test("XMPP: <starttls/> found in the features with either quote, not outside them", () => {
  const ns = "urn:ietf:params:xml:ns:xmpp-tls";
  assert.equal(
    featuresOfferStartTls(`<stream:features><starttls xmlns='${ns}'/></stream:features>`),
    true,
  );
  assert.equal(
    featuresOfferStartTls(
      `<stream:features><starttls xmlns="${ns}"><required/></starttls></stream:features>`,
    ),
    true,
  );
  assert.equal(featuresOfferStartTls(`<stream:features><mechanisms/></stream:features>`), false);
  assert.equal(
    featuresOfferStartTls(`<x a='<starttls xmlns="${ns}"/>'/><stream:features/>`),
    false,
  );
  assert.equal(
    featuresOfferStartTls(`<stream:features><starttls xmlns='${ns}"/></stream:features>`),
    false,
  );
});

function extendedResponse(id: number, code: number, dn: string, diagnostic: string): Buffer {
  const result = [
    tlv(0x0a, Buffer.from([code])),
    tlv(0x04, Buffer.from(dn, "latin1")),
    tlv(0x04, Buffer.from(diagnostic, "latin1")),
  ];
  return tlv(0x30, Buffer.concat([tlv(0x02, integer(id)), tlv(0x78, Buffer.concat(result))]));
}

test("LDAP: an ExtendedResponse read back whole, and byte by byte asking for what is missing", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0x7fffffff }),
      fc.integer({ min: 0, max: 127 }),
      fc.string({ maxLength: 40 }),
      fc.string({ maxLength: 400 }),
      (id, code, dn, diagnostic) => {
        const latin1 = (s: string) => Buffer.from(s, "latin1").toString("latin1");
        const bytes = extendedResponse(id, code, dn, diagnostic);
        assert.deepEqual(readLdapAnswer(bytes), {
          kind: "extended",
          messageId: id,
          resultCode: code,
          diagnostic: latin1(diagnostic),
        });
        let have = 0;
        for (;;) {
          const answer = readLdapAnswer(bytes.subarray(0, have));
          if (answer.kind !== "more") {
            assert.equal(have, bytes.length);
            break;
          }
          assert.ok(answer.need >= 1 && have + answer.need <= bytes.length);
          have += answer.need;
        }
      },
    ),
  );
});

test("LDAP: any bytes give an answer, 'more' or a reason, and never an exception", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const answer = readLdapAnswer(Buffer.concat([Buffer.from([0x30]), Buffer.from(bytes)]));
      assert.ok(["more", "bad", "extended"].includes(answer.kind));
    }),
  );
  // Our own request is a well-formed LDAPMessage that the reader frames (as "not a response").
  assert.deepEqual(readLdapAnswer(startTlsRequest()), {
    kind: "bad",
    why: "not an ExtendedResponse",
  });
});

test("a server's words in a log line: printable ASCII, 1 to 120 characters, the same when they are so already", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (words) => {
      const q = quoted(words);
      assert.match(q, /^(\(empty\)|"[\x20-\x7e]{1,120}")$/);
      if (/^[\x20-\x7e]{1,120}$/.test(words)) assert.equal(q, `"${words}"`);
    }),
  );
  assert.equal(quoted("\r\n"), "(empty)");
  assert.equal(quoted("454 no\r\n"), '"454 no"');
  assert.equal(quoted("454 no: \r\n"), '"454 no: "');
});

/** Every tag of `text` read at once, one after the other: `<` up to the first `>` outside
 * quotes (a tag that never ends holds everything after it). */
function tagsAtOnce(text: string): string[] {
  const tag = /[^<]*(<(?:[^'">]|'[^']*'|"[^"]*")*>)/y;
  const tags: string[] = [];
  for (let m = tag.exec(text); m; m = tag.exec(text)) tags.push(m[1] ?? "");
  return tags;
}

test("XMPP tags: found the same however the server's bytes are cut, each ending where it ends", () => {
  const piece = fc.oneof(
    fc.constantFrom("<", ">", "'", '"', " ", "/", "a", "<proceed/>", "</stream:features>"),
    fc.string({ maxLength: 6 }),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), fc.array(fc.nat(40)), (pieces, cuts) => {
      const text = pieces.join("");
      const bytes = Buffer.from(text, "latin1");
      const tags = new TagScanner();
      const found: string[] = [];
      let at = 0;
      for (const cut of [...cuts, bytes.length]) {
        at = Math.min(bytes.length, at + cut);
        // The scanner is given the bytes so far, as the reader's buffer grows.
        for (let t = tags.next(bytes.subarray(0, at)); t; t = tags.next(bytes.subarray(0, at))) {
          assert.equal(bytes.toString("latin1", t.end - t.tag.length, t.end), t.tag);
          found.push(t.tag);
        }
      }
      assert.deepEqual(found, tagsAtOnce(text));
    }),
  );
});

test("status words: +OK, 200, 382 only as a word of their own, whatever follows", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("+OK", "200", "201", "382"),
      fc.string({ unit: fc.constantFrom(" ", "\t", "\r", "\n", "A", "0", "Y", "-"), maxLength: 6 }),
      (status, tail) => {
        const own = tail === "" || /^([ \t]|\r?\n)/.test(tail);
        assert.equal(statusIs(status + tail, status), own);
      },
    ),
  );
});

test("XMPP: the streams prefix is the header's own, only when bound to the streams namespace", () => {
  const ns = "http://etherx.jabber.org/streams";
  fc.assert(
    fc.property(
      fc.stringMatching(/^[A-Za-z_][\w.-]{0,8}$/),
      fc.constantFrom("'", '"'),
      (prefix, q) => {
        const header = `<${prefix}:stream xmlns='jabber:client' xmlns:${prefix}=${q}${ns}${q} version='1.0'>`;
        assert.equal(streamPrefix(header), prefix);
        assert.equal(streamPrefix(header.replace(ns, "urn:other")), undefined);
        const starttls = `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`;
        assert.equal(
          featuresOfferStartTls(
            `${header}<${prefix}:features>${starttls}</${prefix}:features>`,
            prefix,
          ),
          true,
        );
        // Before the features, a <starttls/> is no offer.
        assert.equal(
          featuresOfferStartTls(`${header}${starttls}<${prefix}:features/>`, prefix),
          false,
        );
      },
    ),
  );
});

/** What tlsc --starttls xmpp makes of a server that sends `chunks`, one at a time, each once
 * the reader has taken the one before: "tls", or the failure's kind and words. */
async function xmppVerdict(chunks: readonly Buffer[]): Promise<string> {
  const server = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
  const names = { local: "client.test", server: "example.test" };
  const verdict = upgrade("xmpp", server, names, 0, false).then(
    (r) => r.kind,
    (error: unknown) =>
      error instanceof UpgradeError ? `${error.kind}: ${error.message}` : String(error),
  );
  for (const chunk of chunks) {
    server.push(chunk);
    await new Promise((resolve) => setImmediate(resolve));
  }
  server.push(null);
  return verdict;
}

test("XMPP: tlsc's verdict on the server's stream is the same however its bytes are cut, the 64 KiB bound included", async () => {
  const HEADER =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " +
    "xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>";
  // Elements before the features and inside them (some long enough to take the features'
  // end past the bound), drawn by their index so that a counterexample names them short.
  const PARTS = [
    `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>",
    `<x a='${"p".repeat(30_000)}'/>`,
    " ".repeat(20_000),
  ];
  // The server's answer to our <starttls/>; nothing follows it, as bytes after the go-ahead
  // are refused as far as they have come when it is read (the check against injection).
  const ANSWERS = [
    "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "</stream:stream>",
    "",
  ];
  const parts = fc.array(fc.nat(PARTS.length - 1), { maxLength: 3 });
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        before: parts,
        selfClosing: fc.boolean(),
        inside: parts,
        closed: fc.boolean(),
        answer: fc.nat(ANSWERS.length - 1),
      }),
      fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 70_000 })), {
        maxLength: 8,
      }),
      async (stream, cuts) => {
        const join = (indices: number[]) => indices.map((i) => PARTS[i]).join("");
        const features = stream.selfClosing
          ? "<stream:features/>"
          : `<stream:features>${join(stream.inside)}${stream.closed ? "</stream:features>" : ""}`;
        const text = HEADER + join(stream.before) + features + (ANSWERS[stream.answer] ?? "");
        const bytes = Buffer.from(text, "latin1");
        const chunks: Buffer[] = [];
        let at = 0;
        for (const cut of cuts) {
          if (at >= bytes.length) break;
          chunks.push(bytes.subarray(at, at + cut));
          at += cut;
        }
        if (at < bytes.length) chunks.push(bytes.subarray(at));
        assert.equal(await xmppVerdict(chunks), await xmppVerdict([bytes]));
      },
    ),
    { numRuns: 500 },
  );
});

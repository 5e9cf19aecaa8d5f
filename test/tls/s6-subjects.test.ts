// Issue 11, item 0: SSL_PEER_CERT_SUBJECT has the bytes s6-tlsd exports for the same client
// certificate, on both of tlsd's engines, but for the differences kept on purpose below.
// s6-tlsd's bytes are test/fixtures/s6-tlsd-subjects.json, which scripts/s6-subject-fixture.ts
// records from a real s6-tlsd (none is installed here); the certificates are made anew with
// openssl from the same subjects.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT } from "../helpers/programs.ts";
import {
  SUBJECT_CASES,
  caseCertificate,
  exportedSubjects,
  opensslSubject,
} from "../helpers/subject-cases.ts";
import type { Rdn } from "../helpers/subject-cases.ts";

interface Fixture {
  s6Networking: string;
  cases: { name: string; rdns: Rdn[]; openssl: unknown; s6tlsdSubjectHex: string | null }[];
}
const fixture = JSON.parse(
  readFileSync(join(ROOT, "test", "fixtures", "s6-tlsd-subjects.json"), "utf8"),
) as Fixture;

/** Where tlsd's subject is not s6-tlsd's, and what it is instead. s6-tlsd's rules lose what the
 * certificate says or let its bytes pass for structure; RFC 4514 escaping keeps every value whole
 * and every separator ours (the property in identity-env.test.ts). */
const KEPT: Record<string, string> = {
  // s6-tlsd drops them, so a CN of " root" would read as "root".
  "leading and trailing spaces": "O=\\ lead, OU=trail\\ , CN=\\  both \\ ",
  "a space at the start": "CN=\\ x",
  // s6-tlsd (BearSSL's name elements) keeps the first value of each type only.
  "several OUs": "O=Org, OU=first, OU=second, OU=third, CN=carol",
  "several CNs": "CN=alice, CN=root",
  "multi-valued RDN of two CNs": "CN=a, CN=b",
  // RFC 4514 escapes ; and ": an RFC 2253 reader parts RDNs at a ;, and a value that starts
  // with " is quoted there, up to the next ", over our separators.
  "specials inside": 'CN=a\\,b\\+c\\"d\\\\e\\;f\\=g\\#h\\<i\\>j',
  '" at the start': 'CN=\\"x',
  "; at the start": "CN=\\;x",
  // s6-tlsd writes \ and a raw newline, the tab raw: a raw control character ends a line (or
  // more) for a program that logs the name or writes it into a mail header.
  "a newline": "CN=a\\0ab",
  "a tab": "CN=a\\09b",
  // s6-tlsd says <invalid>: BearSSL's buffer for a CN is 64 bytes, where X.520 allows 64
  // characters.
  "40 characters, 80 bytes of UTF-8": `CN=${"\u00e9".repeat(40)}`,
};

const hex = (text: string) => Buffer.from(text, "utf8").toString("hex");
const shown = (h: string | null | undefined) =>
  h === null || h === undefined ? "unset" : JSON.stringify(Buffer.from(h, "hex").toString("utf8"));

test("the fixture has s6-tlsd's answers for the cases of subject-cases.ts, as openssl is given them", () => {
  assert.deepEqual(
    fixture.cases.map((c) => [c.name, c.rdns, c.openssl]),
    SUBJECT_CASES.map((c) => [c.name, c.rdns, opensslSubject(c.rdns)]),
    "subject-cases.ts changed: run scripts/s6-subject-fixture.ts with an s6-networking",
  );
  for (const [name, ours] of Object.entries(KEPT)) {
    const s6 = fixture.cases.find((c) => c.name === name);
    assert.ok(s6, `no case ${name}`);
    assert.notEqual(s6.s6tlsdSubjectHex, hex(ours), `${name}: s6-tlsd now says the same`);
  }
});

const pki = makePki();
const server = pki.server("localhost", ["localhost"]);
const certificates = SUBJECT_CASES.map((c, i) => caseCertificate(pki, i, c.rdns));

for (const engine of ["node", "native"]) {
  test(`tlsd --engine ${engine}: SSL_PEER_CERT_SUBJECT has s6-tlsd ${fixture.s6Networking}'s bytes, but for the differences kept`, async () => {
    const got = await exportedSubjects(
      ["tlsd", "-Y", "--engine", engine],
      { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key },
      pki,
      certificates,
    );
    const wrong = fixture.cases.flatMap((c, i) => {
      const kept = KEPT[c.name];
      const want = kept === undefined ? c.s6tlsdSubjectHex : hex(kept);
      return got[i] === want ? [] : [`${c.name}: ${shown(got[i])}, not ${shown(want)}`];
    });
    assert.deepEqual(wrong, []);
  });
}

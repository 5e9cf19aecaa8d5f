// Certificate names as the program reads them (issue 11, item 0): UTF-8 bytes, RFC 4514
// escaping applied after decoding, so no character of a certificate can forge a separator or
// cut a name short. A property over random Unicode names, and real certificates through tlsd
// and tlsc, in-process and as a process of its own.
import "reflect-metadata";
import assert from "node:assert/strict";
import { X509Certificate, webcrypto } from "node:crypto";
import { test } from "node:test";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { certificateEnv, s6Subject } from "../../src/tls/peer-env.ts";
import type { Env } from "../../src/ucspi/env.ts";
import { programEnv } from "../../src/tls/peer-env.ts";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { answerWithCertificate } from "../helpers/tls-client.ts";

x509.cryptoProvider.set(webcrypto);

const pki = makePki();
const PATH = `${BIN}:/usr/bin:/bin`;

/** RFC 4514 read back: `type=value` pairs split at unescaped ", ", `\c` and `\HH` undone
 * (a hex pair is one UTF-8 byte). */
function parseDn(text: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    assert.ok(eq > i, `no type at ${i} in ${JSON.stringify(text)}`);
    const type = text.slice(i, eq);
    i = eq + 1;
    const bytes: number[] = [];
    while (i < text.length && text[i] !== ",") {
      if (text[i] === "\\") {
        const pair = text.slice(i + 1, i + 3);
        if (/^[0-9a-f]{2}$/i.test(pair)) {
          bytes.push(parseInt(pair, 16));
          i += 3;
        } else {
          bytes.push(...Buffer.from(text[i + 1] ?? "", "utf8"));
          i += 2;
        }
      } else {
        const c = String.fromCodePoint(text.codePointAt(i) ?? 0);
        bytes.push(...Buffer.from(c, "utf8"));
        i += c.length;
      }
    }
    out.push([type, Buffer.from(bytes).toString("utf8")]);
    if (i < text.length) {
      assert.equal(text.slice(i, i + 2), ", ", `separator at ${i} in ${JSON.stringify(text)}`);
      i += 2;
    }
  }
  return out;
}

/** A single value as --mod-ssl exports it, read back: `\\`, `\/` and `\HH` undone. */
function parsePlain(text: string): string {
  return text.replace(/\\(\\|\/|[0-9a-f]{2})/g, (_, e: string) =>
    e.length === 1 ? e : String.fromCharCode(parseInt(e, 16)),
  );
}

/** OpenSSL's /T=v/T=v form with our escapes, read back into pairs. */
function parseSlashForm(text: string): [string, string][] {
  const parts: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? "";
    if (c === "/") parts.push("");
    else if (c === "\\") {
      parts[parts.length - 1] += c + (text[i + 1] ?? "");
      i++;
    } else parts[parts.length - 1] += c;
  }
  return parts.map((part) => {
    const eq = part.indexOf("=");
    return [part.slice(0, eq), parsePlain(part.slice(eq + 1))];
  });
}

/** The environment's bytes as a program decodes them (UTF-8). */
function asProgramSees(facts: [string, string | undefined][]): Env {
  const env = programEnv({}, { keepEnv: true, modSsl: false }, facts);
  const decoded: Env = {};
  for (const [k, v] of Object.entries(env))
    if (v !== undefined) decoded[k] = Buffer.from(v, "latin1").toString("utf8");
  return decoded;
}

// Characters that matter to a DN's syntax or to the environment, and any Unicode character.
const special = fc.constantFrom(
  ...[",", "=", "+", "<", ">", "#", ";", "\\", '"', " ", "/", "\n", "\t", "\0", "\x7f"],
  ...["\u012c", "\u013d", "\u00eb", "\u00a0", "\u2028", "\u{1f600}"],
);
const character = fc.oneof(special, fc.string({ unit: "binary", minLength: 1, maxLength: 1 }));
const value = fc.string({ unit: character, minLength: 1, maxLength: 12 });
const subject = fc.record({
  C: fc.option(fc.constantFrom("FR", "DE", "US"), { nil: undefined }),
  ST: fc.option(value, { nil: undefined }),
  L: fc.option(value, { nil: undefined }),
  O: fc.option(value, { nil: undefined }),
  OU: fc.array(value, { maxLength: 3 }),
  CN: fc.array(value, { maxLength: 2 }),
});

test("property: the exported subject parses back to exactly the certificate's RDNs (s6 form and --mod-ssl)", async () => {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  await fc.assert(
    fc.asyncProperty(subject, async (s) => {
      const rdns: [string, string][] = [];
      for (const key of ["C", "ST", "L", "O"] as const) {
        const v = s[key];
        if (v !== undefined) rdns.push([key, v]);
      }
      for (const v of s.OU) rdns.push(["OU", v]);
      for (const v of s.CN) rdns.push(["CN", v]);
      fc.pre(rdns.length > 0);
      const cert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: "01",
        name: rdns.map(([k, v]) => ({ [k]: [{ utf8String: v }] })) as unknown as x509.JsonName,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 86_400_000),
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
        keys,
      });
      // Node's own decoding of the DER, as getPeerCertificate() gives it.
      const legacy = new X509Certificate(Buffer.from(cert.rawData)).toLegacyObject();
      const env = asProgramSees([
        ["SSL_PEER_CERT_SUBJECT", s6Subject(legacy.subject)],
        ...certificateEnv("SSL_CLIENT", legacy),
      ]);
      assert.deepEqual(parseDn(env["SSL_PEER_CERT_SUBJECT"] ?? ""), rdns);
      const cn = s.CN[0];
      if (cn !== undefined) assert.equal(parsePlain(env["SSL_CLIENT_S_DN_CN"] ?? ""), cn);
      // The /-form: each value's / and \ escaped, so the unescaped slashes part the RDNs.
      const slashForm = parseSlashForm(env["SSL_CLIENT_S_DN"] ?? "");
      assert.deepEqual(
        slashForm.map(([k]) => k).sort(),
        rdns.map(([k]) => k).sort(),
        "as many RDNs in the /-form as in the certificate",
      );
      for (const [k, v] of slashForm) assert.ok(rdns.some(([k2, v2]) => k2 === k && v2 === v));
    }),
    { numRuns: 150 },
  );
});

/** What a program prints of these variables: each one's bytes in hex, one per line. */
const HEX_OF = (names: string[]) =>
  names.map((n) => `printf %s "$${n}" | od -An -tx1 -v | tr -d ' \\n'; echo`).join("; ");
const hex = (text: string) => Buffer.from(text, "utf8").toString("hex");

for (const [who, tcpserver] of [
  ["our tcpserver, tlsd in-process", ours("tcpserver")],
  ["djb's tcpserver spawning our tlsd", djb("tcpserver")],
] as const) {
  test(`${who}: a client certificate's names reach the program as UTF-8; U+012C and U+013D forge no RDN`, async () => {
    const evil = pki.withSubject("evil", "/C=FR/O=Evil Org/CN=guest\u012c CN\u013droot");
    const server = pki.server("localhost", ["localhost"]);
    const s = await startServer(
      tcpserver,
      [
        "-RHl0",
        "127.0.0.1",
        "0",
        "tlsd",
        "-y",
        "--mod-ssl",
        "sh",
        "-c",
        HEX_OF(["SSL_PEER_CERT_SUBJECT", "SSL_CLIENT_S_DN_CN", "SSL_CLIENT_S_DN"]),
      ],
      { env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, CAFILE: pki.ca.cert } },
    );
    try {
      const out = await answerWithCertificate(s.port, pki.ca.cert, evil);
      assert.equal(
        out,
        [
          hex("C=FR, O=Evil Org, CN=guest\u012c CN\u013droot"),
          hex("guest\u012c CN\u013droot"),
          hex("/C=FR/O=Evil Org/CN=guest\u012c CN\u013droot"),
          "",
        ].join("\n"),
      );
    } finally {
      await s.stop();
    }
  });
}

test("tlsc: the server certificate's names reach the program as UTF-8", async () => {
  const unicode = pki.withSubject("unicode", "/O=\u00dcn\u00efc\u00f6d\u00e9 GmbH/CN=Zo\u00eb");
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH, CERTFILE: unicode.cert, KEYFILE: unicode.key },
  });
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "-k",
        "localhost",
        "--mod-ssl",
        "sh",
        "-c",
        HEX_OF(["SSL_PEER_CERT_SUBJECT", "SSL_SERVER_S_DN_O"]),
      ],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(r.stderr, "");
    assert.equal(
      r.stdout,
      `${hex("O=\u00dcn\u00efc\u00f6d\u00e9 GmbH, CN=Zo\u00eb")}\n${hex("\u00dcn\u00efc\u00f6d\u00e9 GmbH")}\n`,
    );
  } finally {
    await s.stop();
  }
});

/** s6-tlsd's rules for one value (sbearssl_send_environment.c, read, not run): leading and
 * trailing spaces dropped (the ASCII space only: JavaScript's trim() also takes U+00A0, which
 * a random draw once put first), `,=+<>#\` and newline after a backslash, a NUL ends it. */
function s6Value(value: string): string {
  const cut = value.split("\0")[0] ?? "";
  return cut.replace(/^ +| +$/g, "").replace(/[,=\n+<>#\\]/g, (c) => `\\${c}`);
}

test("property: where s6-tlsd's rules keep every character, the subject has s6-tlsd's bytes", () => {
  // No leading or trailing space, no ; " NUL or other control character, one value each.
  const plain = fc
    .string({
      unit: fc.oneof(
        fc.constantFrom(",", "=", "+", "<", ">", "#", "\\", " ", "\u012c", "\u00eb", "/"),
        fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
      ),
      minLength: 1,
      maxLength: 12,
    })
    .filter((v) => !/^ | $|[;"\x00-\x1f\x7f]/.test(v));
  fc.assert(
    fc.property(
      fc.record({
        C: fc.option(plain, { nil: undefined }),
        ST: fc.option(plain, { nil: undefined }),
        O: fc.option(plain, { nil: undefined }),
        OU: fc.option(plain, { nil: undefined }),
        CN: fc.option(plain, { nil: undefined }),
      }),
      (name) => {
        const subject = Object.fromEntries(
          Object.entries(name).filter(([, v]) => v !== undefined),
        ) as unknown as Parameters<typeof s6Subject>[0];
        const s6 = (["C", "ST", "L", "O", "OU", "CN"] as const)
          .filter((k) => name[k as keyof typeof name] !== undefined)
          .map((k) => `${k}=${s6Value(name[k as keyof typeof name] ?? "")}`)
          .join(", ");
        assert.equal(s6Subject(subject), s6);
      },
    ),
    { numRuns: 300 },
  );
});

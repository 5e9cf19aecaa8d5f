// Client certificates whose subjects are the edge cases of certificate-name formatting (issue
// 11, item 0), and what a TLS server's program is told of each (SSL_PEER_CERT_SUBJECT's bytes).
// scripts/s6-subject-fixture.ts records s6-tlsd's answers with these; test/tls/s6-subjects.test.ts
// compares tlsd's with them.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pair, TestPki } from "./certs.ts";
import { ours } from "./programs.ts";
import { startServer } from "./server.ts";
import { answerWithCertificate } from "./tls-client.ts";

/** One RDN: its attributes (type, value), several in a multi-valued RDN. */
export type Rdn = [string, string][];

export interface SubjectCase {
  name: string;
  /** The subject, RDN by RDN, in the certificate's order. */
  rdns: Rdn[];
}

const one = (...pairs: [string, string][]): Rdn[] => pairs.map((pair) => [pair]);

export const SUBJECT_CASES: readonly SubjectCase[] = [
  { name: "plain", rdns: one(["C", "FR"], ["O", "Test Org"], ["CN", "alice"]) },
  {
    name: "the six, out of order",
    rdns: one(
      ["CN", "bob"],
      ["OU", "Unit"],
      ["O", "Org"],
      ["L", "Munich"],
      ["ST", "Bavaria"],
      ["C", "DE"],
    ),
  },
  {
    name: "leading and trailing spaces",
    rdns: one(["O", " lead"], ["OU", "trail "], ["CN", "  both  "]),
  },
  { name: "inner spaces", rdns: one(["CN", "a  b c"]) },
  {
    name: "several OUs",
    rdns: one(["O", "Org"], ["OU", "first"], ["OU", "second"], ["OU", "third"], ["CN", "carol"]),
  },
  { name: "several CNs", rdns: one(["CN", "alice"], ["CN", "root"]) },
  { name: "< and >", rdns: one(["O", "a>b"], ["CN", "<admin>"]) },
  { name: "specials inside", rdns: one(["CN", 'a,b+c"d\\e;f=g#h<i>j']) },
  ...[",", "+", '"', "\\", ";", "=", "#", "<", " "].map((c) => ({
    name: `${c === " " ? "a space" : c} at the start`,
    rdns: one(["CN", `${c}x`]),
  })),
  {
    name: "non-ASCII UTF-8",
    rdns: one(
      ["O", "\u00dcn\u00efc\u00f6d\u00e9 GmbH"],
      ["OU", "\u65e5\u672c"],
      ["CN", "Zo\u00eb \u{1f600}"],
    ),
  },
  { name: "64 ASCII bytes", rdns: one(["CN", "a".repeat(64)]) },
  { name: "40 characters, 80 bytes of UTF-8", rdns: one(["CN", "\u00e9".repeat(40)]) },
  { name: "no-break space at the start", rdns: one(["CN", "\u00a0x"]) },
  { name: "a newline", rdns: one(["CN", "a\nb"]) },
  { name: "a tab", rdns: one(["CN", "a\tb"]) },
  { name: "an empty O", rdns: one(["O", ""], ["CN", "x"]) },
  { name: "an empty CN", rdns: one(["C", "FR"], ["CN", ""]) },
  {
    name: "multi-valued RDN",
    rdns: [
      [["O", "Org"]],
      [
        ["OU", "Unit"],
        ["CN", "dave"],
      ],
    ],
  },
  {
    name: "multi-valued RDN of two CNs",
    rdns: [
      [
        ["CN", "a"],
        ["CN", "b"],
      ],
    ],
  },
  { name: "none of the six", rdns: one(["emailAddress", "a@example.org"], ["DC", "example"]) },
  {
    name: "others beside the six",
    rdns: one(["DC", "org"], ["DC", "example"], ["CN", "erin"], ["emailAddress", "e@example.org"]),
  },
];

/** How openssl is given the subject: `-subj` (with `-multivalue-rdn` for a multi-valued RDN),
 * or, when a value is empty (which `-subj` skips, and the stock minimum length of 1 refuses), a
 * configuration whose distinguished_name section has it, the attributes' minimum set to 0. */
export function opensslSubject(rdns: readonly Rdn[]): { subj: string } | { config: string } {
  const values = rdns.flat();
  if (values.some(([, v]) => v === "")) {
    const dn = values.map(([type, v], i) => {
      if (!/^[A-Za-z0-9@.]*$/.test(v)) throw new Error(`${v}: not a plain value for a config`);
      return `${i}.${type} = ${v}`;
    });
    if (rdns.some((rdn) => rdn.length > 1)) throw new Error("a config here has single RDNs");
    return { config: dn.join("\n") };
  }
  const escaped = (v: string) => v.replace(/[\\/+]/g, (c) => `\\${c}`);
  return {
    subj: rdns.map((rdn) => "/" + rdn.map(([t, v]) => `${t}=${escaped(v)}`).join("+")).join(""),
  };
}

const RELAXED = [
  "openssl_conf = init",
  "[init]",
  "stbl_section = stbl",
  "[stbl]",
  ...["organizationName", "commonName"].map((n) => `${n} = min:0,max:64,mask:UTF8String`),
  "[req]",
  "prompt = no",
  "distinguished_name = dn",
  "string_mask = utf8only",
  "[dn]",
];

/** A client certificate from `pki` with this subject. */
export function caseCertificate(pki: TestPki, index: number, rdns: readonly Rdn[]): Pair {
  const how = opensslSubject(rdns);
  const file = `subject-${index}`;
  if ("subj" in how) {
    const multi = rdns.some((rdn) => rdn.length > 1) ? ["-multivalue-rdn"] : [];
    return pki.withName(file, ["-subj", how.subj, ...multi]);
  }
  const config = join(pki.dir, `${file}.cnf`);
  writeFileSync(config, [...RELAXED, how.config, ""].join("\n"));
  return pki.withName(file, ["-config", config]);
}

/** Prints SSL_PEER_CERT_SUBJECT's bytes in hex, or `unset`. */
const PRINT_SUBJECT =
  'if [ -n "${SSL_PEER_CERT_SUBJECT+set}" ]; then printf %s "$SSL_PEER_CERT_SUBJECT" | ' +
  "od -An -tx1 -v | tr -d ' \\n'; else printf unset; fi";

/**
 * What `server` (a TLS server's argv that runs the argv it is given after it, under our
 * tcpserver: `tlsd -Y`, `s6-tlsd -Y --`) exports as SSL_PEER_CERT_SUBJECT for each certificate:
 * its bytes in hex, or null when unset.
 */
export async function exportedSubjects(
  server: readonly string[],
  env: NodeJS.ProcessEnv,
  pki: TestPki,
  certificates: readonly Pair[],
): Promise<(string | null)[]> {
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", ...server, "sh", "-c", PRINT_SUBJECT],
    { env: { ...env, CAFILE: pki.ca.cert } },
  );
  try {
    const out: (string | null)[] = [];
    for (const pair of certificates) {
      const got = await answerWithCertificate(s.port, pki.ca.cert, pair);
      if (!/^(unset|[0-9a-f]*)$/.test(got))
        throw new Error(`unexpected answer: ${got}\n${s.log()}`);
      out.push(got === "unset" ? null : got);
    }
    return out;
  } finally {
    await s.stop();
  }
}
